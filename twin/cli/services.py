"""``twin services …``: run the no-application services (无感服务) for a month, export work lists, move statuses."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from twin.encoding import dumps

if TYPE_CHECKING:
    from twin.access.roles import Role
    from twin.model import Twin
    from twin.store.sql import Store

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    svc = sub.add_parser("services", help="no-application services (无感服务): run a month, work lists, statuses")
    ssub = svc.add_subparsers(dest="services_command", required=True)

    def common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--twin", type=Path, default=None, help="twin directory (default: data/generated/default)")
        p.add_argument("--db", default=None, help="store URL (default: $TWIN_DATABASE_URL or <twin>/state.sqlite)")
        p.add_argument("--community", default=None,
                       help="act as this community's user (sees and changes only its records)")
        p.add_argument("--user", default=f"cli:{getpass.getuser()}", help="who acts (recorded in the audit)")
        p.add_argument("--json", dest="json_errors", action="store_true", help="print JSON")
        return p

    r = common(ssub.add_parser("run", help="who qualifies in a month or date range; per-service counts"))
    when = r.add_mutually_exclusive_group(required=True)
    when.add_argument("--month", help="a month like 2026-12")
    when.add_argument("--range", dest="period", help="a date range like 2026-12-01..2026-12-15 (inclusive)")
    r.add_argument("--service", action="append", default=None, help="only this service (repeatable)")
    r.add_argument("--snapshot", action="store_true",
                   help="read the frozen snapshot instead of the live state (snapshot + committed changes)")
    r.add_argument("--out", type=Path, default=None, help="write the work list to FILE.csv or FILE.xlsx")
    r.add_argument("--identify", action="store_true", help="record the listed persons as 'identified'")
    r.set_defaults(func=_run)

    a = common(ssub.add_parser("status", help="move one person's status: notified | delivered | declined"))
    a.add_argument("service")
    a.add_argument("person_id", type=int)
    a.add_argument("qualifying_date", help="ISO date, as on the work list")
    a.add_argument("to", choices=["notified", "delivered", "declined"])
    a.add_argument("--note", default="")
    a.add_argument("--expected-version", type=int, default=None)
    a.set_defaults(func=_status)


def _context(args: argparse.Namespace) -> tuple[Twin, Store, Role]:
    from twin.access.audit import use_audit_dir
    from twin.access.roles import make_role
    from twin.io import default_twin_dir
    from twin.model import load
    from twin.store.sql import open_store

    t = load(args.twin or default_twin_dir())
    store = open_store(args.db, twin_root=t.root)
    if store.dialect == "postgresql":
        use_audit_dir(store, t.root)
    role = (make_role("community", [args.community], user=args.user) if args.community
            else make_role("district", user=args.user))
    return t, store, role


def _run(args: argparse.Namespace) -> int:
    from twin.errors import ValidationError
    from twin.io import atomic_write
    from twin.services import LiveView, ServiceStatusStore, run_services, snapshot_view, work_list
    from twin.services.config import default_services, select_services
    from twin.services.worklists import export_work_list

    out_fmt = None
    if args.out is not None:
        out_fmt = args.out.suffix.lower().lstrip(".")
        if out_fmt not in ("csv", "xlsx"):
            raise ValidationError(f"--out {args.out}: write a .csv or .xlsx file.")
    t, store, role = _context(args)
    services = select_services(default_services(), args.service)
    view: LiveView
    if args.snapshot:
        view = snapshot_view(t)
    else:
        from twin.live.state import LiveTwin

        view = LiveTwin(t, store)
    run = run_services(view, args.month or args.period, services=services)
    work = work_list(run, t, store=store, role=role)
    counts = work.groupby("service").size().to_dict()
    new = ServiceStatusStore(store).identify(work, role=role, t=t) if args.identify else None
    if out_fmt is not None:
        data = export_work_list(work, out_fmt)
        atomic_write(args.out, lambda p: p.write_bytes(data))
    if args.json_errors:
        print(dumps({"period": str(run.period), "counts": {s.name: int(counts.get(s.name, 0)) for s in services},
                     "rows": len(work), "identified": new, "out": str(args.out) if args.out else None}).decode())
        return 0
    source = "snapshot" if args.snapshot else "live state"
    scope = f"community {args.community}" if args.community else "district"
    print(f"no-application services, {run.period} ({source}, {scope}; names on the list are SYNTHETIC)")
    width = max(len(s.name) for s in services)
    for s in services:
        print(f"  {s.name:<{width}}  {int(counts.get(s.name, 0)):>6}  {s.title}")
    print(f"  {'total':<{width}}  {len(work):>6}")
    if new is not None:
        print(f"identified {new} new (already recorded: {len(work) - new})")
    if args.out is not None:
        print(f"work list → {args.out}", file=sys.stderr)
    return 0


def _status(args: argparse.Namespace) -> int:
    from twin.services import ServiceStatusStore

    t, store, role = _context(args)
    rec = ServiceStatusStore(store).advance(args.service, args.person_id, args.qualifying_date, args.to, t=t,
                                            role=role, note=args.note, expected_version=args.expected_version)
    if args.json_errors:
        print(dumps({"key": rec.key, "status": rec.status, "version": rec.version, "by": rec.updated_by,
                     "at": rec.updated_at}).decode())
    else:
        print(f"{rec.key}: {rec.status} (version {rec.version}, by {rec.updated_by} at {rec.updated_at})")
    return 0
