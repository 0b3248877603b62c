"""Load test of the HTTP service: concurrent clients doing a realistic mix, latency percentiles, errors.

Starts ``twin serve`` itself on a free 127.0.0.1 port with a throwaway SQLite store in a temp directory (or targets
``--url`` with ``--key``), creates one user per role, then runs ``--clients`` concurrent httpx clients for
``--duration`` seconds (bounded also by ``--max-requests``). Each client loops over a weighted mix: area summaries
(random ≈ 0.1–1 km² polygons around random buildings, 60 %), grid dossiers (20 %), hierarchy reads (10 %), records
pages (8 %) and — from one district editor — a few grid edits (boundary cells moved back and forth, ≈ 2 %). Only
loopback traffic. Prints per-endpoint p50/p95/p99 (ms), throughput and errors; the last line is one JSON object
with keys ``p50_ms``, ``p95_ms``, ``p99_ms`` (area summaries), ``rps`` (all requests), ``errors``, ``clients``.

    .venv/bin/python benchmarks/load.py --clients 16 --duration 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def _fixtures(seed: int) -> dict:
    """Random areas, grid codes and one reversible edit (a boundary cell and its two grids)."""
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
    return {"areas": areas, "grids": t.grids["grid_code"].astype(str).tolist(), "move": move}


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default=None, help="target a running service instead of starting one")
    ap.add_argument("--keys", default=None, help="with --url: JSON file {role: key} for the five roles")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of load (after a 2 s warm-up)")
    ap.add_argument("--max-requests", type=int, default=20_000)
    ap.add_argument("--workers", type=int, default=1, help="uvicorn worker processes of the started service")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--edit-share", type=float, default=0.1,
                    help="share of the district editor's (client 0) requests that are grid edits (0 = no edits)")
    ap.add_argument("--think-ms", type=float, default=0.0,
                    help="pause of each client between requests (0 = closed loop, the worst case)")
    args = ap.parse_args(argv)
    if not 1 <= args.clients <= 256:
        ap.error("--clients must be 1…256")

    import httpx

    fx = _fixtures(args.seed)
    proc = None
    tmp = tempfile.TemporaryDirectory(prefix="twin-load-")
    try:
        if args.url:
            if not args.keys:
                ap.error("--url needs --keys (a JSON file mapping the five roles to API keys)")
            base = args.url.rstrip("/")
            keys = json.loads(Path(args.keys).read_text())
        else:
            db = str(Path(tmp.name) / "state.sqlite")
            keys = _users(db)
            port = _free_port()
            base = f"http://127.0.0.1:{port}"
            proc = subprocess.Popen([sys.executable, "-m", "twin.cli", "serve", "--host", "127.0.0.1", "--port",
                                     str(port), "--database-url", db, "--workers", str(args.workers)],
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
        head = httpx.get(f"{base}/versions", headers={"Authorization": f"Bearer {keys['district']}"},
                         timeout=60).json()["head"]
        state: dict = {"head": head, "at": fx["move"][1] if fx["move"] else None, "errors": {},
                       "think_s": args.think_ms / 1000.0, "edit_share": args.edit_share}
        asyncio.run(_run(base, keys, fx, args.clients, 2.0, 500, state))  # warm-up (not counted)
        state["errors"] = ERRORS
        results, wall = asyncio.run(_run(base, keys, fx, args.clients, args.duration, args.max_requests, state))
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

    errors = sum(1 for _, _, s in results if s >= 400)
    print(f"{len(results)} requests in {wall:.1f} s from {args.clients} clients: {len(results) / wall:.1f} req/s, "
          f"{errors} errors")
    for kind in ("area_summary", "dossier", "hierarchy", "records", "edit"):
        xs = [ms for k, ms, _ in results if k == kind]
        if xs:
            bad = sum(1 for k, _, s in results if k == kind and s >= 400)
            print(f"  {kind:13s} n={len(xs):6d}  p50 {_pct(xs, 50):7.1f} ms  p95 {_pct(xs, 95):7.1f} ms  "
                  f"p99 {_pct(xs, 99):7.1f} ms  errors {bad}")
    for kind, msg in ERRORS.items():
        print(f"  first {kind} error: {msg}")
    area = [ms for k, ms, _ in results if k == "area_summary"]
    print(json.dumps({"p50_ms": round(_pct(area, 50), 1), "p95_ms": round(_pct(area, 95), 1),
                      "p99_ms": round(_pct(area, 99), 1), "rps": round(len(results) / wall, 1), "errors": errors,
                      "clients": args.clients, "workers": args.workers, "think_ms": args.think_ms}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
