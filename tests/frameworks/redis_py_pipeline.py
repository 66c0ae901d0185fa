"""redis-py's default pipeline (a MULTI/EXEC) over keys in different slots."""

import redis

from common import URL, run


def check():
    r = redis.Redis.from_url(URL)
    pipe = r.pipeline()  # transaction=True by default
    for i in range(10):
        pipe.set(f"pipeline:{i}", i)
    pipe.incr("pipeline:counter")
    for i in range(10):
        pipe.get(f"pipeline:{i}")
    replies = pipe.execute()
    assert replies[:10] == [True] * 10, replies
    assert replies[10] >= 1, replies
    assert replies[11:] == [str(i).encode() for i in range(10)], replies


run(check)
