"""The live feed: what makes the one map and the command-centre screen live without a click.

One background thread per store URL and server process reads the store every :data:`FEED_EVERY_S` seconds (the
head partition version, open incidents, the worker board, KPI tiles and alarms: :func:`apps.live.live_state`) and
writes it as one small JSON file next to the map component (``frontend/layers/live-<id>.json``, served by Streamlit
with the component's files). Every open map polls that file (``fetch``, no cache) and re-parses only the live layers
whose JSON changed; the view, the other layers and the page are untouched and no Streamlit rerun happens.

Why this and not ``st.fragment(run_every=…)``: a fragment re-runs Python and re-sends the component's arguments
per open browser tab, its timer lives in the browser's main thread (which a software-rendered WebGL frame blocks
for seconds, so refreshes came 1.5–8 s apart), and a click inside a fragment costs a fragment run plus a full
rerun. The feed reads the store once per second for all tabs together, a poll is one small HTTP GET, and a click
is one ordinary rerun. Same code, same store, same access rules (the live layers are district-wide on every page).

Files (JSON): the small head ``live-<id>.json`` = ``{"at": ISO time (CST), "seq": n, "version": head version,
"layers_ref": "layers/live-<id>-<rev>.json", "legends": [...], "hud": {"kpis", "alarms", "updated", "alarm_hours"},
"status": str, "error": str | None}``, rewritten every tick, and ``live-<id>-<rev>.json`` = ``{id: layer JSON}``,
written only when the live layers change (``rev`` = a hash of them), so a poll moves ≈ 3 KB, not ≈ 150–230 KB.
"""

from __future__ import annotations

import atexit
import datetime as dt
import hashlib
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import streamlit as st

import twin
from apps import live, records, state
from apps.components.deckmap import FRONTEND
from layers import changes as change_layers
from twin.encoding import dumps
from twin.incidents.catalogue import load_catalogue
from twin.incidents.lifecycle import OPEN_STATES
from twin.incidents.store import IncidentStore
from twin.live import events as live_events
from twin.partition import versions
from twin.services import counts_by_grid, run_services
from twin.store.sql import Store, open_store

__all__ = ["FEED_EVERY_S", "CHANGE_ZOOM_RANGES", "LiveFeed", "live_feed", "live_placeholders", "services_due_layer",
           "start_feed", "stop_feeds"]

#: seconds between two reads of the store (and the browser's polls)
FEED_EVERY_S = 1.0
#: zoom ranges of the record-changes layers (counts per hexagon zoomed out, dots zoomed in)
CHANGE_ZOOM_RANGES = change_layers.ZOOM_RANGES


@dataclass
class LiveFeed:
    """A running feed: ``ref`` is the file's path relative to the component (what the browser fetches)."""

    url: str
    path: Path
    ref: str
    base: twin.Twin
    residents: int
    key_persons: int
    latest: dict[str, Any] = field(default_factory=dict)
    seq: int = 0
    _memo: dict[str, Any] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _sig: tuple | None = None
    _store: Store | None = None
    _istore: IncidentStore | None = None
    _rev: str | None = None
    _old_revs: list[str] = field(default_factory=list)

    def tick(self) -> dict[str, Any]:
        """Read the store once and write the feed file; returns what was written. Errors are written too (the
        maps say the feed is failing) and never stop the thread."""
        t0 = time.perf_counter()
        now = live.now_cst()
        try:
            payload = self._read(now)
        except (twin.TwinError, OSError, ValueError) as e:  # e.g. a locked or unreachable store: say so, go on
            payload = dict(self.latest, error=f"live feed: {e}")
        finally:
            if self._store is not None:  # a fresh connection each tick: no read snapshot can outlive a tick
                self._store.close()
        self.seq += 1
        payload.update(at=now.isoformat(), seq=self.seq)
        layers = payload.get("layers") or {}
        rev = hashlib.sha1(dumps(layers, sort_keys=True)).hexdigest()[:12]
        rev_path = self.path.with_name(f"{self.path.stem}-{rev}.json")
        if rev != self._rev or not rev_path.exists():  # the layers' own file, written only when they change
            _write_atomic(rev_path, dumps(layers))
            self._old_revs = [r for r in self._old_revs if r != rev] + [rev]
            for old in self._old_revs[:-3]:  # keep the last three: a browser may still fetch one a poll behind
                self.path.with_name(f"{self.path.stem}-{old}.json").unlink(missing_ok=True)
            self._old_revs = self._old_revs[-3:]
            self._rev = rev
        head = {k: v for k, v in payload.items() if k != "layers"}
        head["layers_ref"] = f"{self.ref.rsplit('.', 1)[0]}-{rev}.json"
        _write_atomic(self.path, dumps(head))
        self.latest = payload
        if os.environ.get("TWIN_APP_TIMING"):
            print(f"[feed] {time.time() * 1000:.0f} tick {1000 * (time.perf_counter() - t0):.0f} ms "
                  f"({payload.get('n_open')} open)", file=sys.stderr, flush=True)
        return payload

    def _changes(self, store: Store, vid: int | None, now: dt.datetime) -> tuple:
        """A cheap signature of everything the live layers show (two small indexed queries, the head version, the
        minute): when it is the same as at the last tick, the tick only refreshes the times."""
        marks = ", ".join("?" for _ in OPEN_STATES)
        inc = store.query(f"SELECT COUNT(*), SUM(version), MAX(id) FROM incidents WHERE state IN ({marks})",
                          tuple(OPEN_STATES))
        workers = store.query("SELECT COUNT(*), SUM(version), MAX(updated_at) FROM worker_status")
        return (tuple(inc[0]), tuple(workers[0]), live_events.head_seq(store), vid, now.strftime("%Y-%m-%dT%H:%M"))

    def _change_layers(self, store: Store, now: dt.datetime) -> tuple[list[tuple[str, str]], list[dict[str, Any]]]:
        """The record-changes layers (:mod:`layers.changes`): events of change sets committed in the last
        :data:`layers.changes.WINDOW_DAYS` days, at their building's point."""
        since = (now - dt.timedelta(days=change_layers.WINDOW_DAYS)).astimezone(dt.UTC).isoformat()
        sets = {int(r[0]): (str(r[1]), str(r[2])) for r in
                store.query("SELECT id, committed_at, role FROM live_sets WHERE committed_at >= ?", (since,))}
        if not sets:
            return [], []
        first = store.query("SELECT MIN(seq) FROM live_events WHERE set_id >= ?", (min(sets),))[0][0]
        evs = live_events.read_events(store, since_seq=int(first or 1) - 1)
        b = self.base
        pts = change_layers.change_points(evs, sets, {"persons": b.persons, "businesses": b.businesses,
                                                     "dwellings": b.dwellings, "buildings": b.buildings})
        return change_layers.change_layers(pts, now), [change_layers.change_legend(pts)]

    def _read(self, now: dt.datetime) -> dict[str, Any]:
        if self._store is None:
            self._store = open_store(self.url)
            self._istore = IncidentStore(self._store)  # creates the incident tables of a new store
        store, istore = self._store, self._istore
        try:
            vid: int | None = versions.head_version(store)
        except twin.NotFoundError:
            vid = None
        sig = self._changes(store, vid, now)
        if sig == self._sig and self.latest and not self.latest.get("error"):
            hud = dict(self.latest["hud"], updated=f"{now:%H:%M:%S}")
            return dict(self.latest, hud=hud, status=self.latest["status"].replace(
                self.latest["hud"]["updated"], hud["updated"], 1))
        t = self.base if vid in (None, versions.BASE_VERSION) else versions.checkout(self.base, vid, store=store)
        cat = self._memo.setdefault("catalogue", load_catalogue())
        snap = live.live_state(istore, t, now=now, residents=self.residents, key_persons=self.key_persons, cat=cat)
        layers, _, legends = live.live_layers(snap, cat=cat, memo=self._memo)
        ch_layers, ch_legends = self._change_layers(store, now)
        layers, legends = [*layers, *ch_layers], [*legends, *ch_legends]
        n_late = int(snap.open["overdue"].sum()) if len(snap.open) else 0
        self._sig = sig
        return {"version": vid, "layers": dict(layers), "legends": legends, "n_open": len(snap.open),
                "hud": {"kpis": snap.kpis, "alarms": snap.alarms, "updated": f"{now:%H:%M:%S}",
                        "alarm_hours": live.ALARM_HOURS},
                "status": f"● live {now:%H:%M:%S} · {len(snap.open):,} open incidents ({n_late:,} overdue) · "
                          f"{snap.workers_online}/{len(snap.board)} workers online",
                "error": None}

    def run(self) -> None:
        """The thread's loop: a tick every :data:`FEED_EVERY_S` seconds until stopped."""
        while not self._stop.wait(max(0.05, FEED_EVERY_S - (time.monotonic() % FEED_EVERY_S))):
            try:
                self.tick()
            except Exception as e:  # noqa: BLE001 — the feed must outlive any one bad read; it says what failed
                print(f"[feed] tick failed: {e!r}", file=sys.stderr, flush=True)

    def stop(self) -> None:
        self._stop.set()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def _remove_files(stem: Path) -> None:
    """Remove a feed's files when the server stops (they are recreated at the next start)."""
    for f in stem.parent.glob(stem.name + "*"):
        f.unlink(missing_ok=True)


_running: list[tuple[LiveFeed, threading.Thread]] = []
_running_lock = threading.Lock()


def start_feed(feed: LiveFeed) -> threading.Thread:
    """Start ``feed``'s thread (a tick every :data:`FEED_EVERY_S` seconds) until :func:`stop_feeds`."""
    th = threading.Thread(target=feed.run, name=f"twin-live-feed-{feed.path.name}", daemon=True)
    with _running_lock:
        _running.append((feed, th))
    th.start()
    return th


def stop_feeds(timeout_s: float = 10.0) -> int:
    """Stop every feed thread this process started and wait for each (a tick under way ends first), then remove
    their files and forget the cached feeds (the next :func:`live_feed` call starts a new one); returns how many
    were stopped.

    Registered with :mod:`atexit`, so it runs while the interpreter is still whole. A feed thread left ticking
    into interpreter shutdown runs pandas (Arrow-backed strings: pyarrow's C++ code) while Python finalizes, when
    a daemon thread that wants the GIL back is ended mid-call: the likely cause of a test process that aborted at
    exit (``terminate called without an active exception``) after every test had passed.
    """
    with _running_lock:
        running, _running[:] = list(_running), []
    for feed, _ in running:
        feed.stop()
    for feed, th in running:
        th.join(timeout_s)
        _remove_files(feed.path.with_suffix(""))
    live_feed.clear()
    return len(running)


@st.cache_resource(show_spinner=False)
def live_feed(url: str) -> LiveFeed:
    """The feed of store ``url`` (started once per server process; the first tick runs here, so the file exists
    before any map asks for it)."""
    base = state.get_twin()
    table = state.grid_table(base, state.twin_key(base))
    name = "live-" + hashlib.sha1(url.encode()).hexdigest()[:12] + ".json"
    folder = FRONTEND / "layers"
    folder.mkdir(exist_ok=True)
    feed = LiveFeed(url=url, path=folder / name, ref=f"layers/{name}", base=base,
                    residents=int(base.manifest["counts"]["residents"]), key_persons=int(table["key_persons"].sum()))
    feed.tick()
    start_feed(feed)
    return feed


atexit.register(stop_feeds)


def live_placeholders(*, incidents: bool = True, workers: bool = True, changes: bool = False) -> list[tuple[str, str]]:
    """Live layers in a map's layer list: ``(id, "@live")``, filled in the browser from the feed (record changes:
    :data:`layers.changes.LAYER_IDS`, zoom ranges :data:`layers.changes.ZOOM_RANGES`)."""
    ids = (change_layers.LAYER_IDS if changes else ()) + \
        (live.LIVE_LAYER_IDS["workers"] if workers else ()) + (live.LIVE_LAYER_IDS["incidents"] if incidents else ())
    return [(i, "@live") for i in ids]


@st.cache_resource(show_spinner="Counting the services due this month per grid …", max_entries=8)
def _services_due(_t: twin.Twin, url: str, key: str, role_name: str, month: str, seq: int
                  ) -> tuple[tuple[str, str], dict]:
    """The services-due choropleth, once per (twin version, store, role, month, change head ``seq``): a run of
    the no-application services costs seconds."""
    run = run_services(records.live_twin(url), month)
    return change_layers.services_due_layer(_t.grids, counts_by_grid(run, _t, role=state.ROLES[role_name]), month)


def services_due_layer(t: twin.Twin, url: str, role: Any, *, month: str | None = None) -> tuple[tuple[str, str], dict]:
    """Grids coloured by persons due a no-application service in ``month`` (default: this month, CST), as
    :func:`twin.services.counts_by_grid` counts them for ``role`` (suppressed outside its scope)."""
    month = month or f"{live.now_cst():%Y-%m}"
    role_name = next(k for k, r in state.ROLES.items() if r == role)
    seq = records.live_twin(url).refresh()
    return _services_due(t, url, state.twin_key(t), role_name, month, seq)
