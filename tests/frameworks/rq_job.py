"""RQ: enqueue a job and let a worker run it.

RQ has no key-prefix option. Its worker moves a job id from the queue's list to the queue's
"intermediate" list with LMOVE, one atomic command on two keys, which a cluster can only run
when both are in one slot: naming the queue with a hash tag (`{name}`) puts them there. The
other keys RQ writes together (job hash, registries, worker sets) are in many slots, in
MULTI/EXEC, which needs cross_slot_transactions = "per-slot".
"""

import redis
from rq import Queue, SimpleWorker

from common import URL, run
from jobs import add


def check():
    r = redis.Redis.from_url(URL)
    queue = Queue("{slotproxy-check}", connection=r)
    job = queue.enqueue(add, 2, 3)
    SimpleWorker([queue], connection=r).work(burst=True)
    job.refresh()
    assert job.get_status() == "finished", job.get_status()
    assert job.return_value() == 5, job.return_value()


run(check)
