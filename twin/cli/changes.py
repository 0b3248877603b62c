"""``twin changes apply FILE.json``: commit one change set to the live twin; ``twin changes list``: the log."""

from __future__ import annotations

import argparse
import datetime as dt
import os
from pathlib import Path
from typing import Any

from twin.encoding import dumps, loads
from twin.errors import ValidationError

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("changes", help="the live twin: apply a change set, list changes")
    csub = p.add_subparsers(dest="changes_command", required=True)

    def common(q: argparse.ArgumentParser) -> argparse.ArgumentParser:
        q.add_argument("--twin", type=Path, default=None, help="twin directory (default: data/generated/default)")
        q.add_argument("--db", default=None, help="store URL (default: $TWIN_DATABASE_URL or <twin>/state.sqlite)")
        q.add_argument("--json", dest="json_errors", action="store_true", help="print JSON")
        return q

    a = common(csub.add_parser("apply", help="validate and commit FILE.json as ONE change set (all or nothing)"))
    a.add_argument("file", type=Path, help='JSON: a list of changes, or {"changes": [...], "reason": "..."}; each '
                                          'change {"kind": "person.dies", "person_id": 7, "effective_date": ...}')
    a.add_argument("--author", default=os.environ.get("USER") or "cli",
                   help="who makes the changes (default $USER; a change's own author wins)")
    a.add_argument("--reason", default="", help="reason for changes that give none")
    a.set_defaults(func=_apply)
    ls = common(csub.add_parser("list", help="committed changes effective in a date range"))
    ls.add_argument("--start", default=None, help="ISO date (default: 30 days ago)")
    ls.add_argument("--end", default=None, help="ISO date (default: today)")
    ls.set_defaults(func=_list)


def _live(args: argparse.Namespace) -> Any:
    import twin
    from twin.live.state import LiveTwin
    from twin.store.sql import open_store

    t = twin.load(args.twin)
    return LiveTwin(t, open_store(args.db, twin_root=t.root))


def _apply(args: argparse.Namespace) -> int:
    from twin.live.changes import change_from_dict

    try:
        doc = loads(Path(args.file).read_bytes())
    except (OSError, ValueError) as e:
        raise ValidationError(f"{args.file}: not a readable JSON file ({e}).") from e
    items = doc.get("changes") if isinstance(doc, dict) else doc
    reason = (doc.get("reason") if isinstance(doc, dict) else None) or args.reason
    if not isinstance(items, list) or not items:
        raise ValidationError(f"{args.file}: give a non-empty list of changes (or an object with 'changes').")
    changes = [change_from_dict({"author": args.author, **({"reason": reason} if reason else {}), **d}
                                if isinstance(d, dict) else d, where=f"{args.file}: changes[{i}]")
               for i, d in enumerate(items)]
    res = _live(args).apply(changes, role="cli")
    out = {"set_id": res.set_id, "seqs": list(res.seqs), "created": [list(c) for c in res.created],
           "audit_seq": res.audit_seq}
    print(dumps(out).decode() if args.json_errors else
          f"committed change set {res.set_id}: {len(changes)} changes (seq {res.seqs[0]}–{res.seqs[-1]})"
          + "".join(f"\n  created {', '.join(c)}" for c in res.created if c))
    return 0


def _list(args: argparse.Namespace) -> int:
    end = dt.date.fromisoformat(args.end) if args.end else dt.date.today()
    start = dt.date.fromisoformat(args.start) if args.start else end - dt.timedelta(days=30)
    e = _live(args).events_between(start, end)
    print(e.to_json(orient="records", date_format="iso") if args.json_errors else e.to_string(index=False))
    return 0
