"""The request-work threads of one service process: a small fixed pool whose threads live as long as the process.

anyio's default pool (what ``run_in_threadpool`` uses) starts up to 40 threads and ends those idle for 10 s; each new
thread pays for its own pyproj transformer (≈ 80 ms, :func:`twin.crs._transformer` keeps one per thread) and 40
threads fight over one GIL. Area queries are ≈ 1 ms of mostly-GIL work, so a few long-lived threads answer them
faster; the pool size is ``$TWIN_QUERY_THREADS`` (default 4).
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from twin.crs import warm_transformers

__all__ = ["run_query", "query_pool", "start_query_threads"]

T = TypeVar("T")
_pool: ThreadPoolExecutor | None = None
_pid = 0


def query_pool() -> ThreadPoolExecutor:
    """This process's pool (made on first use; a forked or spawned worker process makes its own)."""
    global _pool, _pid
    if _pool is None or _pid != os.getpid():
        n = max(1, int(os.environ.get("TWIN_QUERY_THREADS", "4")))
        _pool, _pid = ThreadPoolExecutor(n, thread_name_prefix="twin-query", initializer=warm_transformers), os.getpid()
    return _pool


def start_query_threads(timeout_s: float = 30.0) -> int:
    """Start every thread of this process's pool now (each makes its transformer, ≈ 80 ms) instead of one by one
    under the first load; returns how many threads the pool has. A pool thread starts only when no thread is idle,
    so each warm-up task holds its thread until all have started."""
    pool = query_pool()
    n = pool._max_workers
    started = threading.Barrier(n, timeout=timeout_s)
    for f in [pool.submit(started.wait) for _ in range(n)]:
        f.result()
    return len(pool._threads)


async def run_query(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in the query pool, awaited from the event loop."""
    return await asyncio.get_running_loop().run_in_executor(query_pool(), functools.partial(fn, *args))
