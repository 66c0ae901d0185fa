"""Celery (Redis as broker and result backend): a worker runs a task.

Celery's Redis transport (kombu) binds queues with a Lua script over two keys,
`_kombu.binding.<queue>` and `_kombu.binding_deadlines`, which hash to different slots: no
Redis Cluster can run it, so Celery's bare defaults can't work through slotproxy. kombu's
`global_keyprefix` transport option puts every broker key under one hash tag, after which
everything runs; the result backend's transactions span slots and need "per-slot".
"""

from celery import Celery
from celery.contrib.testing.worker import start_worker

from common import URL, run

app = Celery("slotproxy_check", broker=URL, backend=URL)
app.conf.broker_connection_retry_on_startup = False
app.conf.broker_transport_options = {"global_keyprefix": "{celery}"}


@app.task
def add(a, b):
    return a + b


def check():
    app.loader.import_module("celery.contrib.testing.tasks")
    with start_worker(app, pool="solo", perform_ping_check=True, shutdown_timeout=10):
        assert add.delay(2, 3).get(timeout=20) == 5


run(check)
