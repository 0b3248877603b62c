"""The two background threads of a service process, each holding its ``Twins`` (:mod:`twin.service._twins`) only while
working (a weak reference otherwise), so that a process which drops its twins (tests make many apps) ends them:

* ``twin version builder`` (:func:`build_loop`): builds the versions queued by ``Twins.request_build``;
* ``twin live views`` (:func:`live_loop`): derives the live views of committed record changes.
"""

from __future__ import annotations

import queue
import threading
import weakref
from typing import Any

from twin.crs import warm_transformers

__all__ = ["build_loop", "live_loop"]


def build_loop(ref: weakref.ReferenceType[Any], q: queue.Queue[int]) -> None:
    """The builder thread: build what is queued; ends when its ``Twins`` is gone (the thread holds it only
    while building). Its transformers are made first, not in the first edit's build."""
    warm_transformers()
    while True:
        try:
            first = q.get(timeout=2.0)
        except queue.Empty:
            if ref() is None:
                return
            continue
        twins = ref()
        if twins is None:
            return
        twins._build_next(first)
        del twins


def live_loop(ref: weakref.ReferenceType[Any], wake: threading.Event) -> None:
    """The live-view thread: derive on each wake-up or poll; ends when its ``Twins`` is gone (the thread holds
    it only while deriving)."""
    while True:
        twins = ref()
        if twins is None:
            return
        poll = twins.live_poll_s
        try:
            twins._derive_views()
        except Exception:  # noqa: BLE001 - keep answering from the last views; retried on the next poll
            pass
        del twins
        wake.wait(poll)
        wake.clear()
