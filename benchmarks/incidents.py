"""Incident closed loop and the incident queue/statistics at 30,000 and 300,000 cases (run:
``.venv/bin/python benchmarks/incidents.py [--sizes 30000,300000] [--reps 40] [--postgres]``).

For each size a SYNTHETIC history (:func:`twin.incidents.synth.synthesize_incidents`, seeded) is stored in a
throwaway store (SQLite in a temporary directory, or a loopback PostgreSQL cluster with ``--postgres``; the
default twin's own store is never touched), then, in the same run:

* ``GET /incidents`` (first page, default filters) and ``GET /incidents/stats`` (default: district) through the
  service app in-process (auth, audit entry, JSON included), as a district user and as a community user;
* the same answers by the previous path — a pandas frame of every scoped case per request
  (``scoped_frame`` + ``incident_stats`` / ``frame_rows``) — and by the SQL path (``twin.incidents.queries``)
  as plain function calls, so the two differ only in how they read the store.

Also (30,000 only): storing the history, one report → dispatch → start → resolve → follow-up round trip, and a
monthly inspection plan. Prints a table per size and a last JSON line with ``incidents_p95_ms`` (the worse of list
and stats over HTTP at the largest size), ``incidents_p95_ms_30k`` and ``incidents_p95_ms_300k``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import twin
from twin.access import auth
from twin.access.audit import use_audit_dir
from twin.access.roles import DISTRICT, make_role
from twin.incidents.catalogue import load_catalogue
from twin.incidents.inspections import inspection_plan
from twin.incidents.lifecycle import overdue_mask
from twin.incidents.queries import ListFilter, list_page, stats_rows
from twin.incidents.stats import incident_stats
from twin.incidents.store import IncidentStore, act_on_incident, report_incident
from twin.incidents.synth import synthesize_incidents
from twin.service._incident_json import frame_rows, stored_rows
from twin.service._incident_scope import now as cst_now
from twin.service._incident_scope import scoped_frame
from twin.service.app import create_app
from twin.store.sql import Store

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


def _pcts(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)), "n": len(ms)}


def _time(fn: Callable[[], Any], reps: int) -> list[float]:
    fn()  # warm (caches, first connection)
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _old_list(istore: IncidentStore, t: twin.Twin, role: Any) -> list[dict[str, Any]]:
    """The queue as the service answered it before: every scoped case in a frame, sorted, one page cut."""
    df = scoped_frame(istore, role, t)
    late = overdue_mask(df, cst_now())
    order = np.lexsort((-df["id"].to_numpy(), -df["reported_at"].astype("int64").to_numpy()))
    return frame_rows(df.iloc[order[:100]], role, late[order[:100]])


def _old_stats(istore: IncidentStore, t: twin.Twin, role: Any) -> Any:
    return incident_stats(scoped_frame(istore, role, t))


def _store_url(tmp: Path, pg: Any) -> str:
    if pg is None:
        return str(tmp / "state.sqlite")
    import psycopg

    name = f"bench{int(time.time() * 1000) % 10**9}"
    with psycopg.connect(pg.url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    return pg.url.rsplit("/", 1)[0] + "/" + name


def bench_size(t: twin.Twin, cat: Any, n: int, reps: int, pg: Any = None) -> dict[str, Any]:
    """All timings for one history size (ms)."""
    res: dict[str, Any] = {"n": n}
    with tempfile.TemporaryDirectory() as d:
        url = _store_url(Path(d), pg)
        st = Store(url)
        use_audit_dir(st, Path(d) / "audit")
        istore = IncidentStore(st)
        t0 = time.perf_counter()
        inc, tr = synthesize_incidents(t, cat, n=n, end="2026-11-01")
        res["synthesize_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        istore.add_many(inc, tr)
        res["store_s"] = time.perf_counter() - t0
        comm = str(t.grids["community_code"].astype(str).value_counts().index[0])
        roles = {"district": DISTRICT, "community": make_role("community", [comm], user="bench")}
        keys = {"district": auth.add_user(st, "bench-d", "district"),
                "community": auth.add_user(st, "bench-c", "community", [comm])}
        app = create_app(database_url=url, twin=t, warm=False)
        old_reps = max(3, reps // 10) if n > 100_000 else max(5, reps // 4)
        with TestClient(app) as c:
            for who, key in keys.items():
                h = {"Authorization": f"Bearer {key}"}
                for what, path in (("list", "/incidents"), ("stats", "/incidents/stats")):
                    def get(path: str = path, h: dict[str, str] = h) -> None:
                        r = c.get(path, headers=h)
                        assert r.status_code == 200, r.text
                    res[f"http_{what}_{who}"] = _pcts(_time(get, reps))
        for who, role in roles.items():
            res[f"sql_list_{who}"] = _pcts(_time(lambda r=role: stored_rows(*_page(istore, t, r, ListFilter())), reps))
            res[f"sql_stats_{who}"] = _pcts(_time(lambda r=role: stats_rows(istore, t, r), reps))
            res[f"old_list_{who}"] = _pcts(_time(lambda r=role: _old_list(istore, t, r), old_reps))
            res[f"old_stats_{who}"] = _pcts(_time(lambda r=role: _old_stats(istore, t, r), old_reps))
        new = stored_rows(*_page(istore, t, DISTRICT, ListFilter()))
        res["same_first_page"] = json.dumps(new, default=str) == json.dumps(_old_list(istore, t, DISTRICT),
                                                                            default=str)
        res["same_stats"] = _same_stats(stats_rows(istore, t, DISTRICT)[0], _old_stats(istore, t, DISTRICT))
        if n <= 30_000:
            res.update(_closed_loop(istore, t, cat))
        st.close()
    return res


def _page(istore: IncidentStore, t: twin.Twin, role: Any, f: ListFilter) -> tuple[list, Any, list]:
    rows, late, _, _ = list_page(istore, t, role, f, now=cst_now())
    return rows, role, late


def _same_stats(rows: list[dict[str, Any]], old: Any) -> bool:
    exp = old.iloc[0]
    return all(abs(float(rows[0][c]) - float(exp[c])) <= 1e-9 * max(1.0, abs(float(exp[c])))
               for c in ("n", "closed", "closure_rate", "on_time_rate", "median_handling_h", "mean_satisfaction"))


def _closed_loop(istore: IncidentStore, t: twin.Twin, cat: Any) -> dict[str, float]:
    loop = []
    for i in range(20):
        t0 = time.perf_counter()
        at = f"2026-11-02T{8 + i // 4:02d}:{(i % 4) * 15:02d}:00"
        b = t.buildings.iloc[1234 + 4000 * i]
        inc1, _ = report_incident(istore, t, cat, actor="bench", category="order_noise", lng=b["lng"],
                                  lat=b["lat"], reported_at=at, channel="hotline_12345")
        for action, kw in (("start", {}), ("resolve", {}), ("follow_up", {"satisfaction": 5})):
            inc1 = act_on_incident(istore, inc1.id, action, actor="bench", now=at, **kw)
        loop.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    plan = inspection_plan(t, "2026-11")
    return {"closed_loop_median_s": statistics.median(loop), "inspection_plan_s": time.perf_counter() - t0,
            "inspection_visits": len(plan)}


def _print(res: dict[str, Any]) -> None:
    print(f"\n== {res['n']:,} synthetic incidents: synthesize {res['synthesize_s']:.1f} s, store "
          f"{res['store_s']:.1f} s (aggregates maintained in the same transaction)")
    print(f"{'request (ms)':<34}{'p50':>9}{'p95':>9}   {'previous pandas path p50':>24}{'p95':>9}{'speed-up':>10}")
    for who in ("district", "community"):
        for what in ("list", "stats"):
            h, s, o = res[f"http_{what}_{who}"], res[f"sql_{what}_{who}"], res[f"old_{what}_{who}"]
            print(f"{'GET /incidents' + ('/stats' if what == 'stats' else '') + f' ({who}, HTTP)':<34}"
                  f"{h['p50']:9.1f}{h['p95']:9.1f}")
            print(f"{'  same answer, SQL path (function)':<34}{s['p50']:9.1f}{s['p95']:9.1f}   {o['p50']:24.1f}"
                  f"{o['p95']:9.1f}{o['p50'] / max(s['p50'], 1e-6):9.0f}x")
    print(f"first page identical to the pandas path: {res['same_first_page']}; district stats identical: "
          f"{res['same_stats']}")
    if "closed_loop_median_s" in res:
        print(f"report+dispatch+start+resolve+follow_up median {res['closed_loop_median_s'] * 1000:.0f} ms; "
              f"inspection plan {res['inspection_plan_s']:.2f} s ({res['inspection_visits']:,} visits)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="30000,300000")
    ap.add_argument("--reps", type=int, default=40)
    ap.add_argument("--postgres", action="store_true", help="a throwaway loopback PostgreSQL instead of SQLite")
    args = ap.parse_args()
    t = twin.load()
    cat = load_catalogue()
    pg = None
    if args.postgres:
        from twin.store.pg import LocalCluster

        pg = LocalCluster().start()
    out: dict[str, Any] = {"backend": "postgresql" if pg else "sqlite", "load_avg": round(os.getloadavg()[0], 2)}
    try:
        for n in (int(s) for s in args.sizes.split(",")):
            res = bench_size(t, cat, n, args.reps, pg)
            _print(res)
            p95 = max(res[f"http_{w}_district"]["p95"] for w in ("list", "stats"))
            tag = f"{n // 1000}k"
            out[f"incidents_p95_ms_{tag}"] = round(p95, 1)
            out[f"incidents_list_p95_ms_{tag}"] = round(res["http_list_district"]["p95"], 1)
            out[f"incidents_stats_p95_ms_{tag}"] = round(res["http_stats_district"]["p95"], 1)
            out[f"pandas_p95_ms_{tag}"] = round(max(res[f"old_{w}_district"]["p95"] for w in ("list", "stats")), 1)
            out[f"same_answers_{tag}"] = bool(res["same_first_page"] and res["same_stats"])
            out[f"load_avg_after_{tag}"] = round(os.getloadavg()[0], 2)
            out["incidents_p95_ms"] = round(p95, 1)
    finally:
        if pg is not None:
            pg.stop()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
