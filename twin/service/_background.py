"""The two background threads of a service process, each holding its ``Twins`` (:mod:`twin.service._twins`) only while
working (a weak reference otherwise), so that a process which drops its twins (tests make many apps) ends them;
``Twins.close`` (:func:`stop`, at the service's shutdown) ends them too:

* ``twin version builder`` (:func:`build_loop`): builds the versions queued by ``Twins.request_build``;
* ``twin live views`` (:func:`live_loop`): derives the live views of committed record changes.
"""

from __future__ import annotations

import queue
import threading
import weakref
from typing import Any

from twin.crs import warm_transformers

__all__ = ["build_loop", "live_loop", "stop"]

#: queued to wake the builder thread when its ``Twins`` closes
_STOP = -(2**62)


def build_loop(ref: weakref.ReferenceType[Any], q: queue.Queue[int]) -> None:
    """The builder thread: build what is queued; ends when its ``Twins`` is gone (the thread holds it only
    while building). Its transformers are made first, not in the first edit's build."""
    warm_transformers()
    while True:
        try:
            first = q.get(timeout=2.0)
        except queue.Empty:
            twins = ref()
            if twins is None or twins.closed:
                return
            del twins
            continue
        twins = ref()
        if twins is None or twins.closed or first == _STOP:
            return
        twins._build_next(first)
        del twins


def live_loop(ref: weakref.ReferenceType[Any], wake: threading.Event) -> None:
    """The live-view thread: derive on each wake-up or poll; ends when its ``Twins`` is gone (the thread holds
    it only while deriving)."""
    while True:
        twins = ref()
        if twins is None or twins.closed:
            return
        poll = twins.live_poll_s
        try:
            twins._derive_views()
        except Exception:  # noqa: BLE001 - keep answering from the last views; retried on the next poll
            pass
        del twins
        wake.wait(poll)
        wake.clear()


def stop(twins: Any, timeout_s: float) -> None:
    """Mark ``twins`` closed, wake its builder and live-view threads and wait for them to end (up to ``timeout_s``
    seconds each; a build or a derivation under way ends first), so that neither is still in pandas' or pyarrow's
    C++ code when the interpreter finalizes."""
    with twins._lock:
        twins.closed = True
        threads = [th for th in (twins._builder, twins._deriver) if th is not None]
    twins._queue.put(_STOP)
    twins._wake.set()
    for th in threads:
        th.join(timeout_s)
