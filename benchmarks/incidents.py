"""Timing of the incident closed loop on the default twin (run: .venv/bin/python benchmarks/incidents.py).

Prints wall-clock seconds for: synthesising and storing the 12-month synthetic history (30,000 incidents), reading
it back, statistics, one report → dispatch → start → resolve → follow-up round trip, and a monthly inspection plan.
Uses a throwaway SQLite store in a temporary directory (the default twin's own store is not touched).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import twin
from twin.incidents.catalogue import load_catalogue
from twin.incidents.inspections import inspection_plan
from twin.incidents.stats import incident_stats, incidents_per_grid
from twin.incidents.store import IncidentStore, act_on_incident, report_incident
from twin.incidents.synth import synthesize_incidents
from twin.store.sql import Store


def _clock(label: str, fn, *args, **kw):
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    print(f"{label:<52} {time.perf_counter() - t0:7.3f} s")
    return out


def main() -> None:
    t = twin.load()
    cat = load_catalogue()
    with tempfile.TemporaryDirectory() as d:
        istore = IncidentStore(Store(Path(d) / "state.sqlite"))
        inc, tr = _clock("synthesize 30,000 incidents (12 months)", synthesize_incidents, t, cat, n=30_000,
                         end="2026-11-01")
        _clock(f"store them + {len(tr):,} audit records (one transaction)", istore.add_many, inc, tr)
        frame = _clock("read all back as a frame", istore.frame)
        s = _clock("statistics by grid × month", incident_stats, frame, by="grid", period="M", now="2026-11-01")
        _clock("incidents_per_grid (workload hook), one month", incidents_per_grid, istore, t, "2026-10")
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
        print(f"{'report+dispatch+start+resolve+follow_up (median of 20)':<52} {statistics.median(loop):7.3f} s")
        print(f"  ({len(s):,} grid-month rows; district closure "
              f"{incident_stats(frame).iloc[0]['closure_rate']:.4f})")
    plan = _clock("inspection plan for 290,000 businesses, one month", inspection_plan, t, "2026-11")
    print(f"  ({len(plan):,} visits)")


if __name__ == "__main__":
    main()
