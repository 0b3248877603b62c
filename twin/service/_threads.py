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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from twin.crs import lnglat_to_xy

__all__ = ["run_query", "query_pool"]

T = TypeVar("T")
_pool: ThreadPoolExecutor | None = None
_pid = 0


def _warm_thread() -> None:
    lnglat_to_xy(np.array([113.1]), np.array([23.0]))  # this thread's transformer, made once


def query_pool() -> ThreadPoolExecutor:
    """This process's pool (made on first use; a forked or spawned worker process makes its own)."""
    global _pool, _pid
    if _pool is None or _pid != os.getpid():
        n = max(1, int(os.environ.get("TWIN_QUERY_THREADS", "4")))
        _pool, _pid = ThreadPoolExecutor(n, thread_name_prefix="twin-query", initializer=_warm_thread), os.getpid()
    return _pool


async def run_query(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in the query pool, awaited from the event loop."""
    return await asyncio.get_running_loop().run_in_executor(query_pool(), functools.partial(fn, *args))
