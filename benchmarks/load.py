"""Load test of the HTTP service: wrk for fixed bodies, a Python mixed workload, edits while reading, incidents, SSE.

Starts ``twin serve`` (``--workers``, default the cores) on a free 127.0.0.1 port with a throwaway SQLite store in a
temp directory holding ``--incidents`` synthetic incidents (or targets ``--url`` with ``--keys``), creates one user
per role, then (loopback only; every phase bounded in time):

1. **wrk** (a C load generator: the client does not eat the server's CPU) POSTs one 60-vertex ≈ 1 km² lasso to
   ``/area/summary`` as a district user at 1, 16, 64 and 256 connections (``--wrk-seconds`` each) and prints a
   table: req/s, p50/p90/p99 from ``wrk --latency``, errors (socket errors + non-2xx) and the load average.
2. **edits while reading**: wrk at 64 connections while one district editor commits one edit per second (a
   boundary cell moved back and forth) over one kept-alive connection, opened before the first timed edit (under
   this load a new connection waits ≈ 100–150 ms to be accepted and read): edit acknowledgement p50/p99 and the
   summary p99 during edits.
3. **mixed** (the Python mode kept from before): ``--clients`` httpx clients over a weighted mix of area summaries
   (random ≈ 0.1–1 km² polygons, 60 %), grid dossiers (20 %), hierarchy reads (10 %), records pages (8 %) and a
   few edits (≈ 2 %) for ``--duration`` seconds.
4. **incidents**: ``GET /incidents`` and ``GET /incidents/stats`` district-wide, one after the other.
5. **SSE** (when ``/events`` exists): ``--sse-clients`` subscribers; incidents reported one by one; the time from
   sending a report (committed inside that request) to each subscriber receiving its event.

``cpu ms/req`` is the service's CPU time (all its processes) per answered request: on a shared, loaded machine
it says what the service costs when req/s and latencies say mostly how busy the machine was.

The last line is one JSON object with ``rps_64``, ``p99_ms_64``, ``p95_ms`` (mixed, area summaries), ``errors``
(all phases), ``edit_ack_p99_ms``, ``summary_p99_during_edits_ms``, ``incidents_p95_ms``, ``sse_p99_ms`` (null
without ``/events``), the per-connection wrk rows and the load average. The machine may be shared: read the load
average next to every figure.

    .venv/bin/python benchmarks/load.py                 # ≈ 3 min
    .venv/bin/python benchmarks/load.py --wrk-seconds 5 --duration 10 --incidents 0
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CONNECTIONS = (1, 16, 64, 256)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _users(db: str) -> dict[str, str]:
    import twin
    from twin.access import auth
    from twin.store.sql import Store

    t = twin.load()
    g = t.grids.iloc[len(t.grids) // 2]
    st = Store(db)
    return {
        "district": auth.add_user(st, "bench-district", "district"),
        "town": auth.add_user(st, "bench-town", "town", [str(g["town_code"])]),
        "community": auth.add_user(st, "bench-community", "community", [str(g["community_code"])]),
        "grid_worker": auth.add_user(st, "bench-worker", "grid_worker", [str(g["grid_code"])]),
        "analyst": auth.add_user(st, "bench-analyst", "analyst"),
    }


def _seed_incidents(db: str, n: int) -> None:
    """``n`` SYNTHETIC incidents (seeded) in the store, as the incident benchmark stores them."""
    import twin
    from twin.incidents.catalogue import load_catalogue
    from twin.incidents.store import IncidentStore
    from twin.incidents.synth import synthesize_incidents
    from twin.store.sql import Store

    inc, tr = synthesize_incidents(twin.load(), load_catalogue(), n=n, end="2026-11-01")
    IncidentStore(Store(db)).add_many(inc, tr)


def lasso(t, n: int = 60, km2: float = 1.0) -> dict:
    """A regular ``n``-vertex polygon of ``km2`` km² (measured in EPSG:4547) around the median building (WGS84)."""
    from twin.crs import lnglat_to_xy, xy_to_lnglat

    cx, cy = lnglat_to_xy(np.array([t.buildings["lng"].median()]), np.array([t.buildings["lat"].median()]))
    r = math.sqrt(km2 * 1e6 / (0.5 * n * math.sin(2 * math.pi / n)))  # area of a regular n-gon of radius r
    ang = 2 * np.pi * np.arange(n) / n
    lng, lat = xy_to_lnglat(cx[0] + r * np.cos(ang), cy[0] + r * np.sin(ang))
    ring = [[float(a), float(b)] for a, b in zip(lng, lat)]
    return {"type": "Polygon", "coordinates": [ring + [ring[0]]]}


def _fixtures(seed: int) -> dict:
    """Random areas, grid codes, the fixed lasso and one reversible edit (a boundary cell and its two grids)."""
    import twin
    from twin.errors import PartitionError
    from twin.partition import edits
    from twin.partition.model import partition_from_twin

    t = twin.load()
    rng = np.random.default_rng(seed)
    bx, by = t.buildings["lng"].to_numpy(), t.buildings["lat"].to_numpy()
    areas = []
    for i in rng.choice(len(bx), 400, replace=False):
        r = rng.uniform(0.002, 0.006)  # ≈ 200–600 m radius
        n = int(rng.integers(5, 12))
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        q = rng.uniform(0.5, 1.0, n)
        ring = [[float(bx[i] + r * a * np.cos(b)), float(by[i] + r * a * np.sin(b))] for a, b in zip(q, ang)]
        areas.append({"type": "Polygon", "coordinates": [ring + [ring[0]]]})
    p = partition_from_twin(t)
    adj = p.adjacency
    move = None
    for i in rng.permutation(len(p.cells)):
        nb = [j for j in adj.indices[adj.indptr[i]:adj.indptr[i + 1]]
              if p.grid_code[j] != p.grid_code[i] and p.community[j] == p.community[i]]
        if not nb:
            continue
        try:
            edits.move_cells(p, [p.cells[i]], str(p.grid_code[nb[0]]))
        except PartitionError:
            continue
        move = (format(int(p.cells[i]), "x"), str(p.grid_code[i]), str(p.grid_code[nb[0]]))
        break
    points = [(float(pt.x), float(pt.y)) for pt in t.grids["geometry"].representative_point()]
    return {"areas": areas, "grids": t.grids["grid_code"].astype(str).tolist(), "move": move, "lasso": lasso(t),
            "points": points}


# -- wrk -----------------------------------------------------------------------------------------------------
_LUA = """wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
"""
_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise ValueError(f"not a wrk latency: {text!r}")
    return float(m.group(1)) * _UNIT[m.group(2)]


def parse_wrk(out: str) -> dict:
    """Requests/s, latency percentiles (ms) and errors from ``wrk --latency`` output."""
    res: dict = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
                 "requests": int(re.search(r"(\d+) requests in", out).group(1))}
    for q in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{q}%\s+(\S+)", out, re.M)
        res[f"p{q}_ms"] = _ms(m.group(1)) if m else float("nan")
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    sock = [int(x) for x in m.groups()] if m else [0, 0, 0, 0]
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["timeouts"] = sock[3]
    res["errors"] = sum(sock) + (int(m.group(1)) if m else 0)
    return res


def _cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system) used so far by process ``pid`` and its children (the service's workers)."""
    if pid is None:
        return float("nan")
    tick = os.sysconf("SC_CLK_TCK")
    pids = [pid, *map(int, subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split())]
    total = 0.0
    for p in pids:
        try:
            f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(f[11]) + int(f[12])) / tick
    return total


def run_wrk(url: str, script: Path, connections: int, seconds: float, server_pid: int | None = None) -> dict:
    """One wrk run; ``cpu_ms`` is the service's CPU time per answered request (robust on a shared machine)."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "--timeout", "10s",
           "-s", str(script), url]
    cpu0 = _cpu_s(server_pid)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    res = parse_wrk(out)
    res.update(connections=connections, load=_load(), cpu_ms=(_cpu_s(server_pid) - cpu0) * 1000 / res["requests"])
    return res


def _row(r: dict) -> str:
    return (f"{r['connections']:5d} {r['rps']:9.1f} {r['p50_ms']:8.1f} {r['p90_ms']:8.1f} {r['p99_ms']:8.1f} "
            f"{r['errors']:6d} {r['timeouts']:8d} {r['cpu_ms']:8.2f}   {r['load']}")


_HEADER = "conns     req/s  p50 ms   p90 ms   p99 ms errors timeouts  cpu ms/req   load (1/5/15 min)"


# -- edits while wrk runs ------------------------------------------------------------------------------------
def _edit_loop(base: str, key: str, fx: dict, head: int, stop: threading.Event, acks: list[float],
               errors: list[str]) -> None:
    import httpx

    cell, a, b = fx["move"]
    at = a
    with httpx.Client(base_url=base, timeout=30) as c:
        c.get("/health")  # the editor's connection is open before the first timed edit (as a browser's would be)
        while not stop.is_set():
            t_next = time.monotonic() + 1.0
            to = b if at == a else a
            t0 = time.perf_counter()
            r = c.post("/edits", json={"op": "move_cells", "base_version": head, "reason": "load test",
                                       "cells": [cell], "to_grid": to}, headers={"Authorization": f"Bearer {key}"})
            acks.append((time.perf_counter() - t0) * 1000)
            if r.status_code == 200:
                head, at = r.json()["version"], to
            else:
                errors.append(f"{r.status_code} {r.text[:200]}")
            stop.wait(max(0.0, t_next - time.monotonic()))


# -- incidents and SSE ---------------------------------------------------------------------------------------
def _incidents(base: str, key: str, n: int) -> dict:
    import httpx

    h = {"Authorization": f"Bearer {key}"}
    out: dict = {"errors": 0}
    with httpx.Client(base_url=base, timeout=60) as c:
        for path in ("/incidents", "/incidents/stats"):
            ms = []
            for _ in range(n):
                t0 = time.perf_counter()
                r = c.get(path, headers=h)
                ms.append((time.perf_counter() - t0) * 1000)
                out["errors"] += r.status_code >= 400
            out[path] = ms
    return out


async def _sse(base: str, key: str, fx: dict, clients: int, events: int) -> dict:
    """Latency (ms) from sending a report to each of ``clients`` subscribers receiving its ``incident.created``
    event, for ``events`` reports: an upper bound of commit → receipt (the commit is inside the request)."""
    import httpx

    h = {"Authorization": f"Bearer {key}"}
    got: dict[int, list[float]] = {}
    ready = asyncio.Semaphore(0)

    async def listen(c: httpx.AsyncClient) -> None:
        async with c.stream("GET", "/events?kind=incident.created&heartbeat_s=1", headers=h) as r:
            ready.release()
            async for line in r.aiter_lines():
                if line.startswith("data:"):
                    try:
                        iid = int(json.loads(line[5:])["payload"]["id"])
                    except (ValueError, TypeError, KeyError):
                        continue
                    got.setdefault(iid, []).append(time.perf_counter())

    acked: dict[int, float] = {}
    errors = 0
    limits = httpx.Limits(max_connections=clients + 4)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as c:
        tasks = [asyncio.create_task(listen(c)) for _ in range(clients)]
        for _ in range(clients):
            await asyncio.wait_for(ready.acquire(), 30)
        await asyncio.sleep(0.5)
        for i in range(events):  # each in another grid: never linked to an earlier report (a new incident)
            lng, lat = fx["points"][(7 * i) % len(fx["points"])]
            t_sent = time.perf_counter()  # the commit happens after this: receipt − sent ≥ commit → receipt
            r = await c.post("/incidents", headers=h, json={"category": "dispute_neighbour", "lng": lng, "lat": lat,
                                                            "description": "SSE benchmark (synthetic)"})
            if r.status_code == 201:
                acked[int(r.json()["incident_id"])] = t_sent
            elif r.status_code != 200:  # 200: linked to an open incident (no new event)
                errors += 1
            await asyncio.sleep(0.3)
        await asyncio.sleep(2.0)
        for tk in tasks:
            tk.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    lat_ms = [(x - acked[i]) * 1000 for i, xs in got.items() if i in acked for x in xs]
    missing = sum(clients - len(got.get(i, [])) for i in acked)
    return {"latencies": lat_ms, "missing": missing, "errors": errors}


async def _client(cid: int, base: str, keys: dict[str, str], fx: dict, stop_at: float, budget: list[int],
                  results: list[tuple[str, float, int]], edit_lock: asyncio.Lock, state: dict) -> None:
    import httpx

    rng = np.random.default_rng(1000 + cid)
    roles = list(keys)
    async with httpx.AsyncClient(base_url=base, timeout=30.0) as c:
        while time.monotonic() < stop_at and budget[0] > 0:
            budget[0] -= 1
            role = roles[cid % len(roles)] if cid else "district"
            h = {"Authorization": f"Bearer {keys[role]}"}
            u = rng.random()
            if cid == 0 and u < state["edit_share"] and fx["move"] is not None:
                kind = "edit"
                async with edit_lock:
                    cell, a, b = fx["move"]
                    to = b if state["at"] == a else a
                    body = {"op": "move_cells", "base_version": state["head"], "reason": "load test",
                            "cells": [cell], "to_grid": to}
                    t0 = time.perf_counter()
                    r = await c.post("/edits", json=body, headers=h)
                    dt = time.perf_counter() - t0
                    if r.status_code == 200:
                        state["head"], state["at"] = r.json()["version"], to
            elif u < 0.6:
                kind = "area_summary"
                t0 = time.perf_counter()
                r = await c.post("/area/summary", json=fx["areas"][int(rng.integers(len(fx["areas"])))], headers=h)
                dt = time.perf_counter() - t0
            elif u < 0.8:
                kind = "dossier"
                t0 = time.perf_counter()
                r = await c.get(f"/grids/{fx['grids'][int(rng.integers(len(fx['grids'])))]}", headers=h)
                dt = time.perf_counter() - t0
            elif u < 0.9:
                kind = "hierarchy"
                t0 = time.perf_counter()
                r = await c.get("/hierarchy/communities", headers=h)
                dt = time.perf_counter() - t0
            else:
                kind = "records"
                rk = keys["community"]
                t0 = time.perf_counter()
                r = await c.post("/area/records?kind=persons&page_size=50",
                                 json=fx["areas"][int(rng.integers(len(fx["areas"])))],
                                 headers={"Authorization": f"Bearer {rk}"})
                dt = time.perf_counter() - t0
            results.append((kind, dt * 1000, r.status_code))
            if state["think_s"]:
                await asyncio.sleep(float(rng.exponential(state["think_s"])))
            if r.status_code >= 400 and kind not in state["errors"]:
                state["errors"][kind] = f"{r.status_code} {r.text[:300]}"


ERRORS: dict[str, str] = {}


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q)) if xs else float("nan")


async def _run(base: str, keys: dict[str, str], fx: dict, clients: int, duration: float, max_requests: int,
               state: dict) -> tuple[list, float]:
    results: list[tuple[str, float, int]] = []
    budget = [max_requests]
    lock = asyncio.Lock()
    t0 = time.monotonic()
    await asyncio.gather(*(_client(i, base, keys, fx, t0 + duration, budget, results, lock, state)
                           for i in range(clients)))
    return results, time.monotonic() - t0


class _Done(Exception):
    """Raised to skip the remaining phases (``--wrk-only``)."""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default=None, help="target a running service instead of starting one")
    ap.add_argument("--keys", default=None, help="with --url: JSON file {role: key} for the five roles")
    ap.add_argument("--workers", type=int, default=None, help="worker processes of the started service (default: "
                                                              "the cores)")
    ap.add_argument("--wrk-seconds", type=float, default=10.0, help="seconds of each wrk run")
    ap.add_argument("--clients", type=int, default=16, help="mixed mode: concurrent Python clients")
    ap.add_argument("--duration", type=float, default=20.0, help="mixed mode: seconds of load (after a 2 s warm-up)")
    ap.add_argument("--max-requests", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--edit-share", type=float, default=0.1,
                    help="mixed mode: share of the district editor's (client 0) requests that are edits")
    ap.add_argument("--think-ms", type=float, default=0.0, help="mixed mode: pause between requests")
    ap.add_argument("--incidents", type=int, default=30_000, help="synthetic incidents in the started store")
    ap.add_argument("--incident-reps", type=int, default=30)
    ap.add_argument("--sse-clients", type=int, default=50)
    ap.add_argument("--sse-events", type=int, default=10)
    ap.add_argument("--wrk-only", action="store_true", help="run only phase 1 (wrk at 1/16/64/256 connections)")
    args = ap.parse_args(argv)
    if not 1 <= args.clients <= 256:
        ap.error("--clients must be 1…256")
    if shutil.which("wrk") is None:
        ap.error("wrk is not installed (scripts/system-deps.sh installs it: apt-get install wrk)")

    import httpx

    fx = _fixtures(args.seed)
    proc = None
    tmp = tempfile.TemporaryDirectory(prefix="twin-load-")
    workers = args.workers or len(os.sched_getaffinity(0))
    out: dict = {"workers": workers}
    all_errors = 0
    try:
        if args.url:
            if not args.keys:
                ap.error("--url needs --keys (a JSON file mapping the five roles to API keys)")
            base = args.url.rstrip("/")
            keys = json.loads(Path(args.keys).read_text())
        else:
            db = str(Path(tmp.name) / "state.sqlite")
            keys = _users(db)
            if args.incidents:
                t0 = time.perf_counter()
                _seed_incidents(db, args.incidents)
                print(f"stored {args.incidents:,} synthetic incidents in {time.perf_counter() - t0:.1f} s")
            port = _free_port()
            base = f"http://127.0.0.1:{port}"
            proc = subprocess.Popen([sys.executable, "-m", "twin.cli", "serve", "--host", "127.0.0.1", "--port",
                                     str(port), "--database-url", db, "--workers", str(workers)],
                                    cwd=ROOT, env={**os.environ}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            deadline = time.monotonic() + 180
            while True:
                try:
                    if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"service did not start: {proc.stderr.read().decode()[-2000:]}")
                time.sleep(0.5)
        pid = proc.pid if proc is not None else None
        hd = {"Authorization": f"Bearer {keys['district']}"}
        head = httpx.get(f"{base}/versions", headers=hd, timeout=60).json()["head"]
        paths = httpx.get(f"{base}/openapi.json", timeout=60).json()["paths"]
        body = json.dumps(fx["lasso"])
        for _ in range(20):  # warm every worker
            httpx.post(f"{base}/area/summary", content=body, headers={**hd, "Content-Type": "application/json"},
                       timeout=60)
        script = Path(tmp.name) / "lasso.lua"
        script.write_text(_LUA.format(body=json.dumps(body), key=keys["district"]))

        # 1. wrk at 1, 16, 64, 256 connections
        print(f"\n== wrk: POST /area/summary, 60-vertex 1 km² lasso, district user, {workers} worker(s), "
              f"{args.wrk_seconds:.0f} s each")
        print(_HEADER)
        rows = []
        for c in CONNECTIONS:
            r = run_wrk(f"{base}/area/summary", script, c, args.wrk_seconds, pid)
            rows.append(r)
            all_errors += r["errors"]
            print(_row(r), flush=True)
        by_c = {r["connections"]: r for r in rows}

        # 2. edits while reading
        edit_rows: dict = {}
        area: list[float] = []
        inc_ms: list[float] = []
        sse: dict | None = None
        if args.wrk_only:
            raise _Done
        if fx["move"] is not None:
            stop, acks, errs = threading.Event(), [], []
            th = threading.Thread(target=_edit_loop, args=(base, keys["district"], fx, head, stop, acks, errs))
            th.start()
            try:
                r = run_wrk(f"{base}/area/summary", script, 64, args.wrk_seconds, pid)
            finally:
                stop.set()
                th.join(60)
            all_errors += r["errors"] + len(errs)
            edit_rows = {"summary": r, "acks": acks, "errors": errs}
            head = httpx.get(f"{base}/versions", headers=hd, timeout=60).json()["head"]
            print(f"\n== one edit per second during wrk at 64 connections ({len(acks)} edits, {len(errs)} errors)")
            print(_HEADER)
            print(_row(r))
            print(f"edit acknowledged: p50 {_pct(acks, 50):.1f} ms, p99 {_pct(acks, 99):.1f} ms   load {_load()}")
            for e in errs[:3]:
                print(f"  edit error: {e}")

        # 3. mixed (Python clients)
        # the edit loop above moved the cell once per committed edit: start from where it left it; the warm-up's
        # edits then carry ``state`` (head and the cell's grid) forward into the timed run
        moved = len(edit_rows.get("acks", [])) - len(edit_rows.get("errors", []))
        at = (fx["move"][1] if moved % 2 == 0 else fx["move"][2]) if fx["move"] is not None else None
        state: dict = {"head": head, "at": at, "errors": {},
                       "think_s": args.think_ms / 1000.0, "edit_share": args.edit_share}
        asyncio.run(_run(base, keys, fx, args.clients, 2.0, 500, state))  # warm-up (not counted)
        state["errors"] = ERRORS
        results, wall = asyncio.run(_run(base, keys, fx, args.clients, args.duration, args.max_requests, state))
        mixed_errors = sum(1 for _, _, s in results if s >= 400)
        all_errors += mixed_errors
        print(f"\n== mixed: {len(results)} requests in {wall:.1f} s from {args.clients} clients: "
              f"{len(results) / wall:.1f} req/s, {mixed_errors} errors   load {_load()}")
        for kind in ("area_summary", "dossier", "hierarchy", "records", "edit"):
            xs = [ms for k, ms, _ in results if k == kind]
            if xs:
                bad = sum(1 for k, _, s in results if k == kind and s >= 400)
                print(f"  {kind:13s} n={len(xs):6d}  p50 {_pct(xs, 50):7.1f} ms  p95 {_pct(xs, 95):7.1f} ms  "
                      f"p99 {_pct(xs, 99):7.1f} ms  errors {bad}")
        for kind, msg in ERRORS.items():
            print(f"  first {kind} error: {msg}")
        area = [ms for k, ms, _ in results if k == "area_summary"]

        # 4. incidents
        if "/incidents" in paths and "/incidents/stats" in paths:
            res = _incidents(base, keys["district"], args.incident_reps)
            all_errors += res["errors"]
            inc_ms = res["/incidents"] + res["/incidents/stats"]
            print(f"\n== incidents ({args.incidents:,} stored), district-wide, sequential   load {_load()}")
            for path in ("/incidents", "/incidents/stats"):
                print(f"  GET {path:17s} p50 {_pct(res[path], 50):7.1f} ms  p95 {_pct(res[path], 95):7.1f} ms")

        # 5. SSE
        if "/events" in paths:
            sse = asyncio.run(_sse(base, keys["district"], fx, args.sse_clients, args.sse_events))
            all_errors += sse["errors"]
            print(f"\n== SSE: {args.sse_clients} subscribers, {args.sse_events} reported incidents: report sent → "
                  f"event received p50 {_pct(sse['latencies'], 50):.1f} ms, p99 {_pct(sse['latencies'], 99):.1f} ms, "
                  f"{sse['missing']} deliveries missing, {sse['errors']} errors   load {_load()}")
        else:
            print("\n== SSE: no /events endpoint: skipped")
    except _Done:
        pass
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stderr.close()
        tmp.cleanup()

    def r1(x: float | None) -> float | None:
        return None if x is None or not math.isfinite(x) else round(x, 1)

    out.update({
        "rps_64": r1(by_c[64]["rps"]), "p99_ms_64": r1(by_c[64]["p99_ms"]), "p95_ms": r1(_pct(area, 95)) if area else None,
        "errors": all_errors, "timeouts_256": by_c[256]["timeouts"],
        "edit_ack_p99_ms": r1(_pct(edit_rows["acks"], 99)) if edit_rows else None,
        "summary_p99_during_edits_ms": r1(edit_rows["summary"]["p99_ms"]) if edit_rows else None,
        "incidents_p95_ms": r1(_pct(inc_ms, 95)) if inc_ms else None,
        "sse_p99_ms": r1(_pct(sse["latencies"], 99)) if sse and sse["latencies"] else None,
        "wrk": {c: {k: r1(v) if isinstance(v, float) else v for k, v in by_c[c].items() if k != "connections"}
                for c in CONNECTIONS},
        "clients": args.clients, "load": _load(),
    })
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
