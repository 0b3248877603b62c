"""``twin incidents …`` (the closed loop) and ``twin inspections plan`` (credit-based inspection plans)."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twin.encoding import dumps

if TYPE_CHECKING:
    import pandas as pd

    from twin.incidents.lifecycle import Incident
    from twin.incidents.store import IncidentStore
    from twin.model import Twin

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    inc = sub.add_parser("incidents", help="grid incidents: seed, report, dispatch, transition, list, stats, import")
    isub = inc.add_subparsers(dest="incidents_command", required=True)

    def common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--twin", type=Path, default=None, help="twin directory (default: data/generated/default)")
        p.add_argument("--db", default=None, help="store URL (default: $TWIN_DATABASE_URL or <twin>/state.sqlite)")
        p.add_argument("--catalogue", type=Path, default=None, help="item-type catalogue CSV (default: shipped)")
        p.add_argument("--actor", default=os.environ.get("USER") or "cli", help="who acts (recorded in the audit)")
        p.add_argument("--json", dest="json_errors", action="store_true", help="print JSON")
        return p

    s = common(isub.add_parser("seed", help="write a seeded SYNTHETIC incident history (replaces the previous one)"))
    s.add_argument("--n", type=int, default=30_000)
    s.add_argument("--months", type=int, default=12)
    s.add_argument("--end", default=None, help="end of the history, ISO date (default: today)")
    s.add_argument("--seed", type=int, default=None)
    s.add_argument("--if-empty", action="store_true", help="do nothing when the store already holds incidents")
    s.set_defaults(func=_seed)

    r = common(isub.add_parser("report", help="report one incident (linked if a near-duplicate is open)"))
    r.add_argument("--category", required=True)
    r.add_argument("--lng", type=float, required=True, help="WGS84 longitude")
    r.add_argument("--lat", type=float, required=True, help="WGS84 latitude")
    r.add_argument("--at", default=None, help="report time, ISO (default: now, CST)")
    r.add_argument("--channel", default="grid_worker")
    r.add_argument("--severity", type=int, default=1, help="1 trivial, 2 small, 3 big, 4 hard")
    r.add_argument("--reporter", default="")
    r.add_argument("--description", default="")
    r.add_argument("--answered-at-once", action="store_true")
    r.add_argument("--no-dispatch", action="store_true", help="store as reported, do not dispatch")
    r.set_defaults(func=_report)

    d = common(isub.add_parser("dispatch", help="dispatch, re-assign (--to-worker) or escalate (--escalate)"))
    d.add_argument("id", type=int)
    d.add_argument("--level", default=None, help="force the handling level (grid/community/town/district)")
    d.add_argument("--to-worker", default=None, help="re-assign to this worker id (needs --reason)")
    d.add_argument("--escalate", action="store_true", help="escalate one level (or --level) (needs --reason)")
    d.add_argument("--reason", default="")
    d.add_argument("--at", default=None)
    d.set_defaults(func=_dispatch)

    tr = common(isub.add_parser("transition", help="start | resolve | follow_up | reopen (or the target state)"))
    tr.add_argument("id", type=int)
    tr.add_argument("action")
    tr.add_argument("--satisfaction", type=int, default=None, help="1–5, for follow_up")
    tr.add_argument("--reason", default="")
    tr.add_argument("--at", default=None)
    tr.add_argument("--expected-version", type=int, default=None)
    tr.set_defaults(func=_transition)

    ls = common(isub.add_parser("list", help="the incident queue"))
    ls.add_argument("--state", action="append", default=None)
    ls.add_argument("--grid", action="append", default=None)
    ls.add_argument("--category", action="append", default=None)
    ls.add_argument("--overdue", action="store_true")
    ls.add_argument("--open", action="store_true", help="only open incidents")
    ls.add_argument("--now", default=None, help="time for the overdue flag (default: now)")
    ls.add_argument("--limit", type=int, default=20)
    ls.set_defaults(func=_list)

    st = common(isub.add_parser("stats", help="closure, on-time, handling time, satisfaction, immediate answers"))
    st.add_argument("--by", default="district", choices=["grid", "community", "town", "district"])
    st.add_argument("--period", default=None, help="pandas period alias: M, W, D, Q, Y")
    st.add_argument("--since", default=None)
    st.add_argument("--until", default=None)
    st.add_argument("--now", default=None)
    st.set_defaults(func=_stats)

    im = common(isub.add_parser("import", help="import incidents from CSV/GeoJSON (all rows validated first)"))
    im.add_argument("file", type=Path)
    im.add_argument("--dispatch", action="store_true", help="dispatch each new incident at its report time")
    im.set_defaults(func=_import)

    c = common(isub.add_parser("categories", help="list the item-type catalogue"))
    c.set_defaults(func=_categories)

    _register_inspections(sub)


def _register_inspections(sub: argparse._SubParsersAction) -> None:
    ins = sub.add_parser("inspections", help="credit-based business inspection plans")
    insub = ins.add_subparsers(dest="inspections_command", required=True)
    p = insub.add_parser("plan", help="monthly plan per grid worker as CSV")
    p.add_argument("--month", required=True, help="e.g. 2026-11")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--twin", type=Path, default=None)
    p.add_argument("--green", type=int, default=1)
    p.add_argument("--yellow", type=int, default=2)
    p.add_argument("--red", type=int, default=4)
    p.add_argument("--holiday", action="append", default=[], help="ISO date without inspections (repeatable)")
    p.set_defaults(func=_plan)


def _stores(args: argparse.Namespace) -> tuple[IncidentStore, pd.DataFrame]:
    """The incident store (``--db``, default next to the twin) and the catalogue."""
    from twin.incidents.catalogue import load_catalogue
    from twin.incidents.store import IncidentStore
    from twin.io import default_twin_dir
    from twin.store.sql import open_store

    istore = IncidentStore(open_store(args.db, twin_root=args.twin or default_twin_dir()))
    return istore, load_catalogue(args.catalogue)


def _ctx(args: argparse.Namespace) -> tuple[Twin, IncidentStore, pd.DataFrame]:
    """The twin, the incident store and the catalogue."""
    from twin.io import default_twin_dir
    from twin.model import load

    return load(args.twin or default_twin_dir()), *_stores(args)


def _now(value: str | None) -> dt.datetime:
    from twin.incidents.lifecycle import CST, as_time

    return as_time(value) if value else dt.datetime.now(CST).replace(microsecond=0)


def _print_json(obj: object) -> None:
    print(dumps(obj).decode())


def _show(inc: Incident, args: argparse.Namespace, extra: dict[str, Any] | None = None) -> None:
    from dataclasses import asdict

    d = {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in asdict(inc).items()}
    d.update(extra or {})
    if args.json_errors:
        _print_json(d)
    else:
        print(f"incident {d['id']} [{d['state']}] {d['category']} level={d['level'] or '-'} "
              f"handler={d['handler_code'] or '-'} assignee={d['assignee'] or '-'} deadline={d['deadline'] or '-'} "
              f"v{d['version']}" + "".join(f" {k}={v}" for k, v in (extra or {}).items()))


def _seed(args: argparse.Namespace) -> int:
    import time

    from twin.incidents.synth import seed_incidents

    t, istore, cat = _ctx(args)
    if args.if_empty and istore.count() > 0:
        print(f"{istore.count()} incidents already in {istore.store.url}; not seeding")
        return 0
    t0 = time.perf_counter()
    n = seed_incidents(istore, t, cat, n=args.n, end=args.end, months=args.months, seed=args.seed)
    print(f"wrote {n} SYNTHETIC incidents to {istore.store.url} in {time.perf_counter() - t0:.1f} s")
    return 0


def _report(args: argparse.Namespace) -> int:
    from twin.incidents.store import report_incident

    t, istore, cat = _ctx(args)
    at = _now(args.at)
    inc, linked = report_incident(
        istore, t, cat, actor=args.actor, auto_dispatch=not args.no_dispatch, now=at, category=args.category,
        lng=args.lng, lat=args.lat, reported_at=at, channel=args.channel, severity=args.severity,
        reporter=args.reporter, description=args.description, answered_at_once=args.answered_at_once,
    )
    _show(inc, args, {"linked": linked})
    return 0


def _dispatch(args: argparse.Namespace) -> int:
    from twin.incidents.store import dispatch_incident, escalate_incident, reassign_incident

    t, istore, cat = _ctx(args)
    at = _now(args.at)
    if args.to_worker:
        inc = reassign_incident(istore, t, args.id, args.to_worker, actor=args.actor, now=at, reason=args.reason)
    elif args.escalate:
        inc = escalate_incident(istore, cat, args.id, actor=args.actor, now=at, reason=args.reason,
                                to_level=args.level)
    else:
        inc = dispatch_incident(istore, t, cat, args.id, actor=args.actor, now=at, level=args.level)
    _show(inc, args)
    return 0


def _transition(args: argparse.Namespace) -> int:
    from twin.incidents.store import act_on_incident

    istore, cat = _stores(args)
    inc = act_on_incident(istore, args.id, args.action, actor=args.actor, now=_now(args.at), reason=args.reason,
                          satisfaction=args.satisfaction, catalogue=cat, expected_version=args.expected_version)
    _show(inc, args)
    return 0


def _list(args: argparse.Namespace) -> int:
    from twin.incidents.lifecycle import OPEN_STATES, overdue_mask

    istore, _ = _stores(args)
    states = args.state or (list(OPEN_STATES) if args.open or args.overdue else None)
    df = istore.frame(states=states, grid_codes=args.grid, categories=args.category)
    df["overdue"] = overdue_mask(df, _now(args.now))
    if args.overdue:
        df = df[df["overdue"]]
    cols = ["id", "state", "category", "severity", "channel", "reported_at", "grid_code", "level", "assignee",
            "deadline", "overdue"]
    view = df.sort_values("reported_at", ascending=False)[cols].head(args.limit)
    if args.json_errors:
        _print_json(view.to_dict(orient="records"))
    else:
        print(f"{len(df)} incident(s); newest {min(args.limit, len(df))}:")
        print(view.to_string(index=False))
    return 0


def _stats(args: argparse.Namespace) -> int:
    from twin.incidents.stats import incident_stats

    istore, _ = _stores(args)
    df = istore.frame(since=args.since, until=args.until)
    out = incident_stats(df, by=args.by, period=args.period, now=_now(args.now))
    if args.json_errors:
        _print_json(out.reset_index().astype({"period": str} if args.period else {}).to_dict(orient="records"))
    else:
        print(out.round(4).to_string())
    return 0


def _import(args: argparse.Namespace) -> int:
    from twin.incidents.ingest import import_incidents

    t, istore, cat = _ctx(args)
    res = import_incidents(istore, t, cat, args.file, actor=args.actor, auto_dispatch=args.dispatch)
    print(dumps(res).decode() if args.json_errors else f"{args.file}: {res['rows']} rows, {res['new']} new incidents, "
                                                   f"{res['linked']} linked to open near-duplicates")
    return 0


def _categories(args: argparse.Namespace) -> int:
    from twin.incidents.catalogue import load_catalogue

    cat = load_catalogue(args.catalogue)
    cols = ["code", "name_zh", "group", "level", "time_limit_h"]
    if args.json_errors:
        _print_json(cat[cols].to_dict(orient="records"))
    else:
        print(cat[cols].to_string(index=False))
    return 0


def _plan(args: argparse.Namespace) -> int:
    from twin.incidents.inspections import inspection_plan, plan_summary, write_plan_csv
    from twin.model import load

    t = load(args.twin)
    plan = inspection_plan(t, args.month, frequency={"green": args.green, "yellow": args.yellow, "red": args.red},
                           holidays=args.holiday)
    write_plan_csv(plan, args.out)
    s = plan_summary(plan)
    print(f"{args.out}: {len(plan)} visits to {plan['business_id'].nunique()} businesses by {len(s)} workers "
          f"over {plan['date'].nunique()} working days; visits per worker-day {s['min_per_day'].min()}–"
          f"{s['max_per_day'].max()}", file=sys.stdout)
    return 0
