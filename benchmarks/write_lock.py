"""A write transaction's wait beside busy writers: the store's write lock vs SQLite's own busy back-off.

Two processes append audit entries through their group-commit writers as fast as they can (the audit trail of two
``twin serve`` workers under load) while this process times one small write transaction every 50 ms (an edit, an
incident report). Run twice in the same invocation: with the store's ``flock`` write lock (:mod:`twin.store._write_lock`)
and with it replaced by nothing (SQLite's ``BEGIN IMMEDIATE`` + busy timeout alone, the obvious way).

    .venv/bin/python benchmarks/write_lock.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def _plain() -> None:
    import twin.store.sql as sql

    sql.write_lock = lambda path: contextlib.nullcontext()  # type: ignore[assignment]


def _hammer(db: str, stop_at: float, plain: bool) -> None:
    if plain:
        _plain()
    from twin.access import audit
    from twin.store.sql import Store

    st = Store(db)

    def loop() -> None:
        while time.time() < stop_at:
            for f in [audit.submit(st, user="bench", role="district", endpoint="/area/summary", method="POST")
                      for _ in range(8)]:
                f.result()

    ths = [threading.Thread(target=loop) for _ in range(4)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()


def run(seconds: float, plain: bool) -> dict:
    from twin.access import audit
    from twin.store.sql import Store

    d = tempfile.mkdtemp(prefix="twin-wlock-")
    db = str(Path(d) / "s.sqlite")
    st = Store(db)
    audit.submit(st, user="bench", role="district", endpoint="/setup").result()
    stop_at = time.time() + seconds + 2
    ctx = mp.get_context("spawn")
    ps = [ctx.Process(target=_hammer, args=(db, stop_at, plain)) for _ in range(2)]
    for p in ps:
        p.start()
    time.sleep(2)
    h0 = audit.head_seq(st)
    if plain:
        import twin.store.sql as sql
        saved, sql.write_lock = sql.write_lock, lambda path: contextlib.nullcontext()  # type: ignore[assignment]
    ms: list[float] = []
    t_end = time.time() + seconds - 1
    with st.transaction() as tx:
        tx.execute("CREATE TABLE IF NOT EXISTS bench_tx (a INTEGER)")
    while time.time() < t_end:
        t0 = time.perf_counter()
        with st.transaction() as tx:
            tx.execute("INSERT INTO bench_tx VALUES (1)")
        ms.append((time.perf_counter() - t0) * 1000)
        time.sleep(0.05)
    entries_per_s = (audit.head_seq(st) - h0) / max(1e-9, seconds - 1)
    if plain:
        sql.write_lock = saved
    for p in ps:
        p.join()
    return {"n": len(ms), "p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)), "max_ms": max(ms), "audit_entries_per_s": entries_per_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    rows = {"store write lock": run(args.seconds, plain=False), "SQLite busy back-off": run(args.seconds, plain=True)}
    print(f"{'path':22s} {'n':>4s} {'p50 ms':>8s} {'p90 ms':>8s} {'p99 ms':>8s} {'max ms':>8s} {'audit/s':>8s}")
    for k, r in rows.items():
        print(f"{k:22s} {r['n']:4d} {r['p50_ms']:8.1f} {r['p90_ms']:8.1f} {r['p99_ms']:8.1f} {r['max_ms']:8.1f} "
              f"{r['audit_entries_per_s']:8.0f}")
    print(json.dumps({"lock": rows["store write lock"], "busy": rows["SQLite busy back-off"], "load": load}))


if __name__ == "__main__":
    main()
