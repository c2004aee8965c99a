"""The journeys of locustfile.py for a distributed run (run_distributed.py): each worker logs in as its own accounts.

locustfile.py numbers the seeded accounts with one counter per process, so N worker processes would all start at
load_0000 and share their first accounts (and their X-Forwarded-For addresses). Here worker i of N (the
LOAD_WORKER_INDEX and LOAD_WORKER_COUNT that run_distributed.py sets) takes accounts i, i + N, i + 2N, ...: every
simulated user of the run has an account of its own as long as the run has at most LOAD_USERS users.
"""

from __future__ import annotations

import itertools
import os

import locustfile
from locustfile import AccountUser, SocketUser

locustfile._next = itertools.count(
    int(os.environ.get("LOAD_WORKER_INDEX", "0")), max(1, int(os.environ.get("LOAD_WORKER_COUNT", "1")))
)

__all__ = ["AccountUser", "SocketUser"]
