"""Functions the RQ and Celery checks run as jobs."""


def add(a, b):
    return a + b
