"""django-redis: set_many, get_many and delete_pattern through the cache API."""

import django
from django.conf import settings

from common import URL, run

settings.configure(
    CACHES={
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": URL,
            "OPTIONS": {"CLIENT_CLASS": "django_redis.client.DefaultClient"},
        }
    }
)
django.setup()

from django.core.cache import cache  # noqa: E402  (needs the settings above)


def check():
    values = {f"user:{i}": {"id": i} for i in range(20)}
    cache.set_many(values, timeout=60)
    assert cache.get_many(list(values)) == values
    assert cache.delete_pattern("user:1*") == 11  # user:1, user:10 .. user:19
    assert cache.get("user:1") is None and cache.get("user:2") == {"id": 2}


run(check)
