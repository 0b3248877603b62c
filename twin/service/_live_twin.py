"""The live twin one service process reads and writes records through, and service runs cached per change head.

One :class:`twin.live.state.LiveTwin` per app: the one the app's :class:`twin.service._twins.Twins` derives the
query routes' live views from (:meth:`Twins.live_twin`), so a commit here wakes that derivation at once; it
catches up with change sets committed by other processes on every read. A service run (:func:`run_for`) is cached
per (period, newest change seq): a new change set makes the next call run again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from fastapi import Request

from twin.live.state import LiveTwin
from twin.service._state import service
from twin.services import ServiceRun, parse_period, run_services

__all__ = ["live_twin", "run_for"]

_LOCK = threading.Lock()
_KEEP_RUNS = 8


def live_twin(request: Request) -> LiveTwin:
    """The app's :class:`LiveTwin` (made once, over the base twin and the service's store; shared with the query
    routes' live views)."""
    app_state = request.app.state
    lt: LiveTwin | None = getattr(app_state, "services_live_twin", None)
    if lt is None:
        with _LOCK:
            lt = getattr(app_state, "services_live_twin", None)
            if lt is None:
                lt = service(request).twins.live_twin()
                app_state.services_runs = OrderedDict()
                app_state.services_live_twin = lt
    return lt


def run_for(request: Request, month: str) -> tuple[ServiceRun, int]:
    """The services run for ``month`` (``2026-12`` or ``2026-12-01..2026-12-15``) over the live state, and the
    change seq it reflects; cached until the next committed change set."""
    lt = live_twin(request)
    period = parse_period(month)
    seq = lt.refresh()
    runs: OrderedDict[tuple[str, int], ServiceRun] = request.app.state.services_runs
    key = (str(period), seq)
    with _LOCK:
        hit = runs.get(key)
    if hit is not None:
        return hit, seq
    run = run_services(lt, period)
    with _LOCK:
        runs[key] = run
        while len(runs) > _KEEP_RUNS:
            runs.popitem(last=False)
    return run, seq
