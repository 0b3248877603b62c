"""Live-twin benchmark: queries on the base index and after 10k / 100k applied changes, change throughput, visibility
latency commit → query, compaction time, and exactness against a from-scratch rebuild.

Usage::

    .venv/bin/python benchmarks/live.py [--twin DIR] [--changes 100000] [--batch 1000] [--repeat 100]

Runs on a copy-free view of the default twin with a fresh SQLite store in a temporary directory (the twin's own
``state.sqlite`` is never touched). The changes are a deterministic mix (seed 1): residents moving anywhere in the
district (across grid and community lines), deaths, births, moves out and in, key-population flags, business
credit colours and moves, new buildings with dwellings. They are applied through the Python API
(:meth:`twin.live.state.LiveTwin.apply`) in change sets of ``--batch`` changes, each one SQLite transaction with
its audit entry and feed row; ``changes_per_s_api`` is changes / wall time of those calls.

Lasso timings: the ≈4 km² 40-vertex lasso and the ≈0.5 km² star of ``benchmarks/lasso.py``, on three views (base,
after 10k, after 100k changes) timed in interleaved rounds so machine drift hits all alike. ``visible_ms`` is the
time from ``apply`` returning to a summary that includes the change (the view is derived on demand: frames on the
date + index delta), over ``--visible`` single-change commits. ``compaction_s`` is one explicit
:meth:`LiveTwin.compact` after one more commit: deriving the state from the old base (frames on the date + index
delta over all changes so far) and adopting it as the new base. ``exact`` is true when every timed area's totals,
per-grid table, and the district's overlay equal a twin rebuilt from the live frames with a fresh index.
``visible_http_ms``: the same through the service: ``POST /changes`` returned → the first ``POST /area/summary``
naming the change (``X-Twin-Changes``), the app deriving its live views in the background.
``changes_per_s_http``: the same mix as ``POST /changes`` bodies of ``--batch`` changes through the service app
in process (FastAPI + the audit middleware + API-key auth, via Starlette's TestClient: no network; the app's own
LiveTwin, which first catches up with the changes already committed), ``--http-sets`` sets.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry import box, mapping

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import twin  # noqa: E402
from benchmarks.lasso import _time_interleaved, areas  # noqa: E402
from twin.access.audit import use_audit_dir  # noqa: E402
from twin.live import changes as ch  # noqa: E402
from twin.live.state import LiveTwin  # noqa: E402
from twin.store.sql import Store  # noqa: E402


def _load() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


class _Mix:
    """A deterministic stream of valid changes against the live world (ids drawn from what exists now)."""

    def __init__(self, live: LiveTwin, eff: dt.date, seed: int = 1) -> None:
        self.live, self.eff, self.rng = live, eff, np.random.default_rng(seed)
        self.kw = {"effective_date": eff, "author": "benchmark", "reason": "synthetic load"}
        t = live.t
        self.cells = t.cells[["lng", "lat"]].to_numpy()
        self.n_dw = len(t.dwellings)
        self.n_biz = len(t.businesses)
        self.n_b = len(t.buildings)
        self.alive = list(self.rng.permutation(len(t.persons)))  # persons not yet removed, popped at random
        self.flags: dict[tuple[int, str], bool] = {}  # values set by changes drawn but maybe not applied yet
        self.biz: dict[int, tuple[int, str]] = {}  # business → (building, credit) after the changes drawn
        self.district = t.district

    def _pid(self, remove: bool = False) -> int:
        """A person alive now (``remove``: who leaves with this change; swap-and-pop keeps it O(1))."""
        w = self.live.world
        while True:
            i = len(self.alive) - 1 - int(self.rng.integers(0, min(1000, len(self.alive))))
            pid = int(self.alive[i])
            alive = w.row("persons", pid) is not None
            if not alive or remove:
                self.alive[i] = self.alive[-1]
                self.alive.pop()
            if alive:
                return pid

    def _did(self) -> int:
        w = self.live.world
        while True:
            did = int(self.rng.integers(0, self.n_dw))
            if w.row("dwellings", did) is not None:
                return did

    def next(self) -> ch.Change:  # noqa: PLR0911
        r = float(self.rng.random())
        kw, w = self.kw, self.live.world
        if r < 0.35:
            return ch.PersonMoves(person_id=self._pid(), dwelling_id=self._did(), **kw)
        if r < 0.45:
            return ch.PersonDies(person_id=self._pid(remove=True), **kw)
        if r < 0.50:
            return ch.PersonMovesOut(person_id=self._pid(remove=True), **kw)
        if r < 0.60:
            return ch.PersonBorn(dwelling_id=self._did(), sex="F" if r < 0.55 else "M", **kw)
        if r < 0.68:
            return ch.PersonMovesIn(dwelling_id=self._did(), sex="M", birth_date=dt.date(1990, 1, 1), **kw)
        if r < 0.80:
            pid = self._pid()
            flag = "disabled" if r < 0.74 else "low_income"
            now = self.flags.get((pid, flag), bool(w.row("persons", pid)[flag]))
            self.flags[(pid, flag)] = not now
            return ch.PersonFlagChanged(person_id=pid, flag=flag, value=not now, **kw)
        bid = int(self.rng.integers(0, self.n_biz))
        row = w.row("businesses", bid)
        where, credit = self.biz.get(bid, (int(row["building_id"]), str(row["credit"])))
        if r < 0.90:
            credit = "red" if credit != "red" else "yellow"
            self.biz[bid] = (where, credit)
            return ch.BusinessCreditChanged(business_id=bid, credit=credit, **kw)
        if r < 0.97:
            to = int(self.rng.integers(0, self.n_b))
            if to == where:
                return self.next()
            self.biz[bid] = (to, credit)
            return ch.BusinessMoves(business_id=bid, building_id=to, **kw)
        while True:
            x, y = self.cells[int(self.rng.integers(0, len(self.cells)))]
            h = 0.00003
            foot = box(x - h, y - h, x + h, y + h)
            if self.district.covers(foot):
                return ch.BuildingAdded(footprint=mapping(foot), use="residential", floors=4, **kw)


def _apply(live: LiveTwin, mix: _Mix, n: int, batch: int) -> tuple[int, float]:
    """Apply ``n`` changes in sets of ``batch``; a set refused by a rule (the mix drew a business moving to its own
    building, a building touching the boundary …) is drawn again. Returns (changes applied, seconds in apply)."""
    done, spent = 0, 0.0
    while done < n:
        cs = [mix.next() for _ in range(min(batch, n - done))]
        t0 = time.perf_counter()
        try:
            live.apply(cs)
        except twin.TwinError:
            ok = []
            for c in cs:  # drop the refused ones, keep the rest of the set
                try:
                    live.apply([c])
                    ok.append(c)
                except twin.TwinError:
                    pass
            spent += time.perf_counter() - t0
            done += len(ok)
            continue
        spent += time.perf_counter() - t0
        done += len(cs)
    return done, spent


def _http(t: twin.Twin, store: Store, live: LiveTwin, mix: _Mix, batch: int, sets: int, probe: Any,
          dwell: np.ndarray, visible: int) -> tuple[float, list[float], bool]:
    """Changes/s through ``POST /changes`` of the service app (in process, see the module docstring), then the
    visibility through HTTP: seconds from ``POST /changes`` (one birth in ``probe``) returning to the first
    ``POST /area/summary`` answer naming that change (``X-Twin-Changes``), polled every 5 ms, and whether each
    such answer counts the birth."""
    import warnings

    from twin.access import auth
    from twin.live.changes import change_to_dict
    from twin.service.app import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    key = auth.add_user(store, "bench", "district")
    head = {"Authorization": f"Bearer {key}"}
    app = create_app(database_url=store.url, twin=t, warm=False)
    spent, done = 0.0, 0
    with TestClient(app) as c:
        def body(n: int) -> dict[str, Any]:
            live.refresh()
            out = []
            for _ in range(n):
                d = change_to_dict(mix.next())
                d.pop("author")
                out.append(d)
            return {"changes": out, "reason": "synthetic load"}

        r = c.post("/changes", headers=head, json=body(1))  # the app's LiveTwin catches up (not timed)
        assert r.status_code == 201, r.text
        for _ in range(sets):
            b = body(batch)
            t0 = time.perf_counter()
            r = c.post("/changes", headers=head, json=b)
            spent += time.perf_counter() - t0
            if r.status_code == 201:
                done += len(b["changes"])
            else:
                print(f"POST /changes refused a set: {r.status_code} {r.text[:200]}")
        area = mapping(probe)

        def summary() -> tuple[int, int]:
            r = c.post("/area/summary", headers=head, json=area)
            return int(r.headers["x-twin-changes"]), int(r.json()["totals"]["residents"])

        seq = int(r.json()["seqs"][-1])
        while summary()[0] < seq:  # the live view of the sets above
            time.sleep(0.01)
        lat, exact = [], True
        before = summary()[1]
        for i in range(visible):
            ch_ = {"kind": "person.born", "dwelling_id": int(dwell[i % len(dwell)]), "sex": "F",
                   "effective_date": mix.eff.isoformat()}
            r = c.post("/changes", headers=head, json={"changes": [ch_], "reason": "visibility"})
            t0 = time.perf_counter()
            seq = int(r.json()["seqs"][-1])
            while True:
                got_seq, residents = summary()
                if got_seq >= seq:
                    break
                time.sleep(0.005)
            lat.append(time.perf_counter() - t0)
            exact = exact and residents == before + i + 1
    return (done / spent if spent else 0.0), lat, exact


def _same(view: twin.Twin, area: Any) -> bool:
    fresh = dataclasses.replace(view, cache={})
    a = twin.summarize_area(view, area, by="grid")
    b = twin.summarize_area(fresh, area, by="grid")
    return a.totals == b.totals and a.by_grid.equals(b.by_grid)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--twin", type=Path, default=None)
    ap.add_argument("--changes", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=100)
    ap.add_argument("--visible", type=int, default=30)
    ap.add_argument("--http-sets", type=int, default=5, help="change sets of --batch sent through POST /changes")
    args = ap.parse_args(argv)
    load_start = _load()
    t = twin.load(args.twin)
    tmp = Path(tempfile.mkdtemp(prefix="twin-live-bench-"))
    store = Store(tmp / "state.sqlite")
    use_audit_dir(store, tmp / "audit")
    t0 = time.perf_counter()
    live = LiveTwin(t, store, compact_after=10**9)  # compaction measured explicitly below
    init_s = time.perf_counter() - t0
    day = dt.date.today()
    t0 = time.perf_counter()
    base = live.twin_on(day)
    twin.summarize_area(base, t.district, by=None)
    base_s = time.perf_counter() - t0
    mix = _Mix(live, day)

    print(f"init {init_s:.1f} s, base {base_s:.1f} s; applying changes …", flush=True)
    first = min(10_000, args.changes)
    n1, s1 = _apply(live, mix, first, args.batch)
    t0 = time.perf_counter()
    v10 = live.twin_on(day)
    derive10_s = time.perf_counter() - t0
    n2, s2 = _apply(live, mix, args.changes - first, args.batch)
    t0 = time.perf_counter()
    v100 = live.twin_on(day)
    derive100_s = time.perf_counter() - t0
    rate = (n1 + n2) / (s1 + s2)

    ar = areas(t)
    timed = {k: ar[k] for k in ("lasso_4km2", "star_0.5km2") if ar[k].intersects(t.district)}
    if "lasso_4km2" not in timed:  # a small test twin: its first community instead
        timed = {"lasso_4km2": t.communities.geometry.iloc[0]}
    res = {}
    for name, area in timed.items():
        res[name] = _time_interleaved({
            "base": lambda a=area: twin.summarize_area(base, a),
            "after_10k": lambda a=area: twin.summarize_area(v10, a),
            "after_100k": lambda a=area: twin.summarize_area(v100, a),
        }, {"base": args.repeat, "after_10k": args.repeat, "after_100k": args.repeat}, warmup=3)

    exact = all(_same(v, a) for v in (v10, v100) for a in (*timed.values(), t.district))
    exact = exact and twin.overlay(v100, "residents").equals(twin.overlay(dataclasses.replace(v100, cache={}),
                                                                           "residents"))

    live.apply([mix.next()])  # one more commit, so compaction derives the state from the old base first
    t0 = time.perf_counter()
    live.compact(day)
    compaction_s = time.perf_counter() - t0

    probe = timed["lasso_4km2"]
    inside = t.buildings.loc[shapely.intersects_xy(probe, t.buildings["lng"], t.buildings["lat"])]
    dwell = t.dwellings.loc[t.dwellings["building_id"].isin(inside["building_id"]), "dwelling_id"].to_numpy()
    before = twin.summarize_area(live.twin_on(day), probe, by=None).totals["residents"]
    lat = []
    for i in range(args.visible):
        live.apply([ch.PersonBorn(dwelling_id=int(dwell[i % len(dwell)]), sex="F", **mix.kw)])
        t0 = time.perf_counter()
        got = twin.summarize_area(live.twin_on(day), probe, by=None).totals["residents"]
        lat.append(time.perf_counter() - t0)
        exact = exact and got == before + i + 1
    http_rate, http_lat, http_exact = (_http(t, store, live, mix, args.batch, args.http_sets, probe, dwell,
                                             args.visible) if args.http_sets else (None, [], True))
    exact = exact and http_exact
    load_end = _load()

    print(f"twin: {t}  store: {store.url}")
    print(f"LiveTwin init {init_s:.2f} s; first view + base index {base_s:.2f} s; "
          f"view after {n1:,} changes derived in {derive10_s * 1e3:.0f} ms, after {n1 + n2:,} in "
          f"{derive100_s * 1e3:.0f} ms")
    print(f"changes through the Python API: {n1 + n2:,} in {s1 + s2:.1f} s = {rate:,.0f} changes/s "
          f"(sets of {args.batch}, SQLite WAL)")
    if http_rate is not None:
        print(f"changes through POST /changes (in-process app, sets of {args.batch}): {http_rate:,.0f} changes/s")
    print(f"{'area':<14}{'base p50':>10}{'p95':>8}{'10k p50':>10}{'p95':>8}{'100k p50':>10}{'p95':>8}  ms")
    for name, r in res.items():
        print(f"{name:<14}{r['base']['p50']:>10.2f}{r['base']['p95']:>8.2f}{r['after_10k']['p50']:>10.2f}"
              f"{r['after_10k']['p95']:>8.2f}{r['after_100k']['p50']:>10.2f}{r['after_100k']['p95']:>8.2f}")
    print(f"visibility commit → query (derive view + summary), {len(lat)} commits: p50 "
          f"{np.percentile(lat, 50) * 1e3:.0f} ms, p99 {np.percentile(lat, 99) * 1e3:.0f} ms")
    if http_lat:
        print(f"visibility through HTTP: POST /changes returned → first POST /area/summary naming it "
              f"(X-Twin-Changes; live view derived in the background), {len(http_lat)} commits: p50 "
              f"{np.percentile(http_lat, 50) * 1e3:.0f} ms, p99 {np.percentile(http_lat, 99) * 1e3:.0f} ms")
    print(f"compaction {compaction_s:.2f} s; exact: {exact}; load average: start {load_start}, end {load_end}")
    r4 = res["lasso_4km2"]
    summary = {
        "p50_ms_base": round(r4["base"]["p50"], 3),
        "p50_ms_after_10k": round(r4["after_10k"]["p50"], 3),
        "p50_ms_after_100k": round(r4["after_100k"]["p50"], 3),
        "changes_per_s_api": round(rate),
        "changes_per_s_http": None if http_rate is None else round(http_rate),
        "visible_ms_p99": round(float(np.percentile(lat, 99)) * 1e3, 1),
        "visible_ms_p50": round(float(np.percentile(lat, 50)) * 1e3, 1),
        "visible_http_ms_p50": round(float(np.percentile(http_lat, 50)) * 1e3, 1) if http_lat else None,
        "visible_http_ms_p99": round(float(np.percentile(http_lat, 99)) * 1e3, 1) if http_lat else None,
        "derive_ms_after_100k": round(derive100_s * 1e3, 1),
        "compaction_s": round(compaction_s, 3),
        "changes_applied": n1 + n2,
        "exact": bool(exact),
        "loadavg_start": load_start,
        "loadavg_end": load_end,
    }
    print(json.dumps(summary))
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
