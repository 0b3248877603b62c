"""``twin serve``, ``twin users add|list|key|revoke``, ``twin audit verify|checkpoint|tail``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from twin.encoding import dumps

if TYPE_CHECKING:
    from twin.store.sql import Store

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("serve", help="start the HTTP service (FastAPI + uvicorn; OpenAPI docs at /docs)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--twin", type=Path, default=None, help="twin directory (default: data/generated/default)")
    s.add_argument("--database-url", default=None,
                   help="postgresql://… or a SQLite path (default: $TWIN_DATABASE_URL or <twin>/state.sqlite)")
    s.add_argument("--outside", choices=("aggregate", "deny"), default="aggregate",
                   help="queries reaching outside the caller's scope: suppressed aggregates (default) or 403")
    s.add_argument("--k", type=int, default=5, help="smallest count published outside a caller's scope")
    s.add_argument("--workers", type=int, default=None,
                   help="uvicorn worker processes, each loading the twin and answering from it (default: the "
                        "number of CPU cores; 1 serves from this process)")
    s.add_argument("--no-builder", action="store_true",
                   help="no version builder process: each worker builds each new partition version in full")
    s.set_defaults(func=_serve)

    u = sub.add_parser("users", help="service users and API keys")
    usub = u.add_subparsers(dest="users_command", required=True)
    a = usub.add_parser("add", help="create a user and print their API key (shown once)")
    a.add_argument("name")
    a.add_argument("--role", required=True, choices=("district", "town", "community", "grid_worker", "analyst"))
    a.add_argument("--scope", default="", help="comma-separated town/community/grid codes the user owns")
    a.add_argument("--no-edit", action="store_true", help="no editor right even for town/community roles")
    _store_args(a)
    a.set_defaults(func=_users_add)
    ls = usub.add_parser("list", help="list users (JSON)")
    _store_args(ls)
    ls.set_defaults(func=_users_list)
    k = usub.add_parser("key", help="issue another API key for a user")
    k.add_argument("name")
    _store_args(k)
    k.set_defaults(func=_users_key)
    r = usub.add_parser("revoke", help="revoke every key of a user")
    r.add_argument("name")
    _store_args(r)
    r.set_defaults(func=_users_revoke)

    au = sub.add_parser("audit", help="the tamper-evident audit log")
    asub = au.add_subparsers(dest="audit_command", required=True)
    v = asub.add_parser("verify", help="check the keyed hash chain, the head, the checkpoints and the footprints; "
                                       "exit 1 and name the first broken entry")
    _store_args(v)
    v.set_defaults(func=_audit_verify)
    cp = asub.add_parser("checkpoint", help="write a signed checkpoint of the head to audit_checkpoints.jsonl")
    _store_args(cp)
    cp.set_defaults(func=_audit_checkpoint)
    tl = asub.add_parser("tail", help="print the last entries as JSON lines")
    tl.add_argument("-n", type=int, default=20)
    _store_args(tl)
    tl.set_defaults(func=_audit_tail)


def _store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--twin", type=Path, default=None, help="twin directory (its state.sqlite is the default store)")
    p.add_argument("--database-url", default=None, help="postgresql://… or a SQLite path")
    p.add_argument("--audit-dir", type=Path, default=None,
                   help="where the audit key and checkpoints are (default: $TWIN_AUDIT_DIR, else the SQLite "
                        "database's directory, else the twin directory)")


def _store(args: argparse.Namespace) -> Store:
    from twin.access.audit import use_audit_dir
    from twin.store.sql import open_store

    store = open_store(args.database_url, twin_root=args.twin)
    if args.audit_dir is not None:
        use_audit_dir(store, args.audit_dir)
    elif store.dialect == "postgresql" and args.twin is not None:
        use_audit_dir(store, args.twin)
    return store


def _serve(args: argparse.Namespace) -> int:
    import shutil

    from twin.service import build_process

    workers = args.workers if args.workers is not None else max(1, len(os.sched_getaffinity(0)))
    if workers < 1:
        raise SystemExit("--workers must be at least 1")
    if args.no_builder:
        return _run_server(args, workers, None)
    parts_dir = build_process.make_parts_dir()  # mode 0700; removes those of servers killed outright
    builder = build_process.start(args.twin, args.database_url, parts_dir)
    try:
        return _run_server(args, workers, parts_dir)
    finally:
        builder.terminate()
        try:
            builder.wait(timeout=10)
        except Exception:  # noqa: BLE001 - it ends with this process anyway (it watches its parent)
            builder.kill()
        shutil.rmtree(parts_dir, ignore_errors=True)


def _run_server(args: argparse.Namespace, workers: int, parts_dir: Path | None) -> int:
    import uvicorn  # the server stack is optional: imported only by ``twin serve``

    from twin.access.policy import AccessPolicy
    from twin.service.app import create_app

    policy = AccessPolicy(outside=args.outside, k=args.k)
    # uvicorn picks uvloop and httptools (uvicorn[standard]) when installed: loop="auto", http="auto"; no access log
    # (every request is in the audit chain already)
    if workers > 1:  # uvicorn needs an import string for several workers: pass settings by environment
        if args.twin is not None:
            os.environ["TWIN_HOME"] = str(args.twin)
        if args.database_url:
            os.environ["TWIN_DATABASE_URL"] = args.database_url
        os.environ["TWIN_OUTSIDE_POLICY"] = args.outside
        os.environ["TWIN_K"] = str(args.k)
        os.environ["TWIN_PARTS_DIR"] = str(parts_dir) if parts_dir is not None else ""
        from twin.service import supervisor

        config = uvicorn.Config("twin.service.app:app_from_env", factory=True, host=args.host, port=args.port,
                                workers=workers, log_level="warning", access_log=False, timeout_keep_alive=30,
                                backlog=4096)
        return supervisor.serve(config, workers)  # one SO_REUSEPORT socket per worker: the kernel spreads connections
    app = create_app(args.twin, args.database_url, policy=policy, freeze_gc=True, parts_dir=parts_dir)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False, timeout_keep_alive=30, backlog=4096)
    return 0


def _users_add(args: argparse.Namespace) -> int:
    from twin.access.auth import add_user

    codes = [c for c in args.scope.split(",") if c.strip()]
    if codes:
        _check_codes(args, codes)
    store = _store(args)
    key = add_user(store, args.name, args.role, codes, can_edit=False if args.no_edit else None)
    _log_admin(store, "users add", f"{args.name} role={args.role} scope={','.join(codes)}")
    print(key)
    return 0


def _log_admin(store: Store, action: str, detail: str) -> None:
    """Administrative actions are audited too, under the operating-system user who ran them."""
    import getpass

    from twin.access.audit import append

    append(store, user=f"cli:{getpass.getuser()}", role="admin", endpoint=f"cli {action}", method="CLI",
           detail=detail)


def _check_codes(args: argparse.Namespace, codes: list[str]) -> None:
    """Scope codes must name existing units of the right level (checked against the twin when it is built)."""
    from twin.errors import ValidationError
    from twin.io import default_twin_dir

    root = args.twin or default_twin_dir()
    if not (Path(root) / "manifest.json").exists():
        return
    from twin.model import load

    t = load(root)
    col = {"town": ("towns", "town_code"), "community": ("communities", "community_code"),
           "grid_worker": ("grids", "grid_code")}.get(args.role)
    if col is None:
        raise ValidationError(f"role {args.role!r} takes no scope codes; drop --scope.")
    known = set(getattr(t, col[0])[col[1]].astype(str))
    bad = [c for c in codes if c not in known]
    if bad:
        raise ValidationError(f"unknown {col[1]} {bad} for role {args.role}; e.g. {sorted(known)[:3]}.")


def _users_list(args: argparse.Namespace) -> int:
    from twin.access.auth import list_users

    for u in list_users(_store(args)):
        print(dumps(u.to_dict()).decode())
    return 0


def _users_key(args: argparse.Namespace) -> int:
    from twin.access.auth import issue_key

    store = _store(args)
    key = issue_key(store, args.name)
    _log_admin(store, "users key", args.name)
    print(key)
    return 0


def _users_revoke(args: argparse.Namespace) -> int:
    from twin.access.auth import revoke_keys

    store = _store(args)
    n = revoke_keys(store, args.name)
    _log_admin(store, "users revoke", f"{args.name}: {n} key(s)")
    print(f"revoked {n} key(s) of {args.name}")
    return 0


def _audit_verify(args: argparse.Namespace) -> int:
    from twin.access.audit import verify

    rep = verify(_store(args))
    print(rep.to_text())
    return 0 if rep.ok else 1


def _audit_checkpoint(args: argparse.Namespace) -> int:
    from twin.access._audit_key import CHECKPOINT_FILE, audit_dir
    from twin.access.audit import checkpoint

    store = _store(args)
    cp = checkpoint(store)
    if cp is None:
        print("audit log is empty: nothing to checkpoint.")
    else:
        print(f"checkpoint: seq {cp.seq} hash {cp.hash[:16]}… → {audit_dir(store) / CHECKPOINT_FILE}")
    return 0


def _audit_tail(args: argparse.Namespace) -> int:
    from twin.access.audit import entries, head_seq

    store = _store(args)
    for e in entries(store, since_seq=max(0, head_seq(store) - args.n)):
        print(dumps(e.to_dict()).decode())
    return 0
