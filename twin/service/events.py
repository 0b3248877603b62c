"""``GET /events``: a Server-Sent Events push feed for screens, filtered by the caller's scope.

Writers append events to the store's ``feed`` table inside their own transactions (:func:`twin.store.feed.publish`),
so an event exists iff its change committed. One poller per process (:class:`FeedHub`) reads new rows every
``interval_s`` (0.1 s) and fans them out to the process's subscribers; each subscriber gets only what its role
may see (:func:`event_visible`):

* a district user everything; a town/community user events of its towns/communities; a grid worker its grids —
  by the unit codes stored on the event, else by the event's grid in the current partition
  (:func:`twin.access.scope.record_scope`);
* ``incident.*`` events without units (a case not located yet) reach district scopes only; events without units of
  other kinds (``version.ready``) reach everyone;
* roles that read aggregates only (analysts) get no ``worker.status`` and no ``record.changed`` (individual
  records); incident payloads carry no personal fields for anyone.

Each event is ``id: <seq>``, ``event: <kind>``, ``data: {"seq", "ts", "kind", "payload", "grid_code", …}``.
Resume with the ``Last-Event-ID`` header (browsers send it on reconnect) or ``?since=<seq>``: the missed events in
scope are replayed from the store first, in order. A comment line is sent as a heartbeat every ``heartbeat_s``.
A subscriber that falls more than :data:`QUEUE_SIZE` events behind is disconnected; it reconnects and resumes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Header, Query, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from twin.access.roles import Role
from twin.access.scope import record_scope
from twin.encoding import dumps
from twin.errors import ValidationError
from twin.model import Twin
from twin.service._state import service
from twin.service.deps import Audited
from twin.store.feed import KINDS, FeedEvent, head_seq, read_since
from twin.store.sql import Store

__all__ = ["router", "FeedHub", "event_visible", "hub_for", "QUEUE_SIZE"]

router = APIRouter(tags=["events"])

QUEUE_SIZE = 10_000
_LEVEL_COL = {"grid": "grid_code", "community": "community_code", "town": "town_code"}
_RECORD_KINDS = ("worker.status", "record.changed")  # individual records: not for aggregate-only roles
_READ_BATCH = 1000


def event_visible(role: Role, ev: FeedEvent, t: Twin) -> bool:
    """Whether ``role`` may receive ``ev`` (rules in the module docstring)."""
    if ev.kind in _RECORD_KINDS and not role.can_see_records:
        return False
    if role.scope_level == "district":
        return True
    units = ev.scope()
    if not units:
        return not ev.kind.startswith("incident.")
    code = units.get(_LEVEL_COL[role.scope_level])
    if code is not None:
        return code in role.scope_codes
    grid = units.get("grid_code")
    return grid is not None and grid in record_scope(role, t)


@dataclass(eq=False)
class _Subscriber:
    role: Role
    kinds: frozenset[str] | None
    queue: asyncio.Queue[FeedEvent] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    dropped: bool = False


class FeedHub:
    """One feed poller for a process: reads new ``feed`` rows and hands each subscriber the events in its scope.

    The poller runs while there are subscribers (started by the first, stopped after the last leaves).
    """

    def __init__(self, store: Store, twin_now: Any, *, interval_s: float = 0.1) -> None:
        self.store = store
        self.twin_now = twin_now  # () -> the current Twin (for grid → unit lookups)
        self.interval_s = interval_s
        self.subscribers: set[_Subscriber] = set()
        self.head: int | None = None
        self._task: asyncio.Task[None] | None = None

    def subscribe(self, role: Role, kinds: frozenset[str] | None) -> _Subscriber:
        sub = _Subscriber(role, kinds)
        self.subscribers.add(sub)
        if self._task is None or self._task.done() or self._task.get_loop() is not asyncio.get_running_loop():
            self._task = asyncio.get_running_loop().create_task(self._run())
        return sub

    def unsubscribe(self, sub: _Subscriber) -> None:
        self.subscribers.discard(sub)

    async def _run(self) -> None:
        if self.head is None:
            self.head = await anyio.to_thread.run_sync(head_seq, self.store)
        while self.subscribers:
            events = await anyio.to_thread.run_sync(read_since, self.store, self.head, _READ_BATCH)
            if events:
                t = await anyio.to_thread.run_sync(self.twin_now)
                self.fan_out(events, t)
                self.head = events[-1].seq
            if len(events) < _READ_BATCH:
                await asyncio.sleep(self.interval_s)

    def fan_out(self, events: list[FeedEvent], t: Twin) -> None:
        """Queue each event for every subscriber that may see it (dropping subscribers that fell too far behind)."""
        for sub in list(self.subscribers):
            for ev in events:
                if (sub.kinds is None or ev.kind in sub.kinds) and event_visible(sub.role, ev, t):
                    try:
                        sub.queue.put_nowait(ev)
                    except asyncio.QueueFull:
                        sub.dropped = True
                        self.subscribers.discard(sub)
                        break


def hub_for(request: Request) -> FeedHub:
    """The app's (process's) feed hub, made on first use."""
    hub: FeedHub | None = getattr(request.app.state, "feed_hub", None)
    if hub is None:
        svc = service(request)
        hub = request.app.state.feed_hub = FeedHub(svc.store, lambda: svc.twins.at(None)[0])
    return hub


def _sse(ev: FeedEvent) -> ServerSentEvent:
    body = {"seq": ev.seq, "ts": ev.ts, "kind": ev.kind, "payload": ev.payload, **ev.scope()}
    return ServerSentEvent(data=dumps(body).decode(), event=ev.kind, id=str(ev.seq))


@router.get("/events", summary="Server-Sent Events: incidents, worker status, versions, record changes (scoped)",
            responses={200: {"content": {"text/event-stream": {}}}})
async def events(request: Request, a: Audited,
                 last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=20)] = None,
                 since: Annotated[int | None, Query(ge=0, description="resume after this seq (like Last-Event-ID)")]
                 = None,
                 kind: Annotated[list[str] | None, Query(max_length=10, description=f"only these kinds: {KINDS}")]
                 = None,
                 heartbeat_s: Annotated[float, Query(ge=0.2, le=300)] = 15.0) -> EventSourceResponse:
    """A stream of committed changes in your scope, oldest first; without ``Last-Event-ID``/``since`` it starts
    at the newest event (only what happens from now on). Kinds: ``incident.created``, ``incident.updated``,
    ``worker.status``, ``version.ready``, ``record.changed``."""
    svc = service(request)
    if last_event_id is not None:
        if not last_event_id.strip().isdigit():
            raise ValidationError(f"Last-Event-ID {last_event_id!r} is not an event id (a seq number).")
        since = int(last_event_id)
    hub = hub_for(request)
    sub = hub.subscribe(a.role, None if not kind else frozenset(kind))
    try:
        start = since if since is not None else await anyio.to_thread.run_sync(head_seq, svc.store)
    except BaseException:
        hub.unsubscribe(sub)
        raise
    a.detail = f"events after seq {start}" + (f" kinds {sorted(kind)}" if kind else "")

    async def stream() -> AsyncIterator[ServerSentEvent]:
        last = start
        try:
            while True:  # replay what was missed, from the store, in scope
                missed = await anyio.to_thread.run_sync(read_since, svc.store, last, _READ_BATCH)
                if missed:
                    t = await anyio.to_thread.run_sync(hub.twin_now)
                for ev in missed:
                    if (sub.kinds is None or ev.kind in sub.kinds) and event_visible(sub.role, ev, t):
                        yield _sse(ev)
                    last = ev.seq
                if len(missed) < _READ_BATCH:
                    break
            while not sub.dropped or not sub.queue.empty():
                ev = await sub.queue.get()
                if ev.seq > last:
                    last = ev.seq
                    yield _sse(ev)
        finally:
            hub.unsubscribe(sub)

    return EventSourceResponse(stream(), ping=heartbeat_s, headers={"Cache-Control": "no-store",
                                                                   "X-Accel-Buffering": "no"})

