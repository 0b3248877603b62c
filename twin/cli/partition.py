"""``twin grids balance|versions|diff|export|import|move|split|merge|redraw|undo`` and ``twin rebalance``.

Edits start from ``--base`` (default: the head version), are validated, and are committed as a new version with
``--author`` and ``--reason``; a concurrent commit makes them fail with a conflict naming the head version.
Drawn geometry (``--area``, ``--line``, ``--polygon``) is a GeoJSON geometry string or a vector file, in WGS84.
Every edit goes through the one edit dispatch, :func:`twin.partition.edit_ops.apply_edit`.

Imports of the core are deferred to the command that needs them, so that ``twin --help`` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twin.encoding import dumps, loads

if TYPE_CHECKING:
    from shapely.geometry.base import BaseGeometry

    from twin.model import Twin
    from twin.partition.edit_ops import EditOp
    from twin.store.sql import Store

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser("grids", help="grid balance, versions, diff, export/import and boundary edits")
    gs = g.add_subparsers(dest="grids_command", required=True)

    def common(p: argparse.ArgumentParser, *, edit: bool = False) -> argparse.ArgumentParser:
        p.add_argument("--twin", type=Path, default=None, help="twin directory (default: data/generated/default)")
        p.add_argument("--store", default=None, help="store URL (default: $TWIN_DATABASE_URL or <twin>/state.sqlite)")
        p.add_argument("--json", action="store_true", dest="json_out", help="print JSON")
        if edit:
            p.add_argument("--base", default="head", help="version the edit starts from (default: head)")
            p.add_argument("--author", required=True)
            p.add_argument("--reason", required=True)
        return p

    b = common(gs.add_parser("balance", help="balance report of a version"))
    b.add_argument("--version", default="head")
    b.add_argument("--threshold", type=float, default=0.10, help="flag grids beyond ± this fraction (0.10)")
    b.add_argument("--top", type=int, default=15)
    b.set_defaults(func=_balance)

    common(gs.add_parser("versions", help="list partition versions")).set_defaults(func=_versions)

    d = common(gs.add_parser("diff", help="what changed between two versions"))
    d.add_argument("a")
    d.add_argument("b", nargs="?", default="head")
    d.set_defaults(func=_diff)

    e = common(gs.add_parser("export", help="write a version as GeoJSON / GeoPackage / GeoParquet"))
    e.add_argument("--version", default="head")
    e.add_argument("--out", type=Path, required=True, help="output file (.geojson, .gpkg or .parquet)")
    e.set_defaults(func=_export)

    i = common(gs.add_parser("import", help="read a grid layer (polygons → cells); report gaps and overlaps"))
    i.add_argument("path", type=Path)
    i.add_argument("--from-gcj02", action="store_true")
    i.add_argument("--fill-gaps", action="store_true", help="give gap cells to the adjacent grid")
    i.add_argument("--commit", action="store_true", help="commit the imported partition as a new version")
    i.add_argument("--base", default="head")
    i.add_argument("--author", default=None)
    i.add_argument("--reason", default=None)
    i.set_defaults(func=_import)

    m = common(gs.add_parser("move", help="move cells or a drawn area to an adjacent grid"), edit=True)
    m.add_argument("--to", required=True, help="receiving grid code")
    m.add_argument("--cells", default=None, help="comma-separated H3 cells (hex)")
    m.add_argument("--area", default=None, help="drawn area: GeoJSON geometry or vector file (WGS84)")
    m.set_defaults(func=_move)

    s = common(gs.add_parser("split", help="split a grid (k balanced parts or along a drawn line)"), edit=True)
    s.add_argument("grid")
    s.add_argument("--k", type=int, default=2)
    s.add_argument("--line", default=None, help="GeoJSON LineString or vector file (WGS84)")
    s.set_defaults(func=_split)

    g2 = common(gs.add_parser("merge", help="merge adjacent grids of one community"), edit=True)
    g2.add_argument("grids", nargs="+")
    g2.add_argument("--into", default=None)
    g2.set_defaults(func=_merge)

    r = common(gs.add_parser("redraw", help="redraw a grid from a drawn polygon"), edit=True)
    r.add_argument("grid")
    r.add_argument("--polygon", required=True, help="GeoJSON Polygon or vector file (WGS84)")
    r.add_argument("--clip", action="store_true", help="keep only the grid's community inside the polygon")
    r.set_defaults(func=_redraw)

    u = common(gs.add_parser("undo", help="new version equal to the head's parent (or --to VERSION)"))
    u.add_argument("--author", required=True)
    u.add_argument("--to", default=None, help="roll back to this version instead of the parent")
    u.add_argument("--base", default=None)
    u.add_argument("--reason", default=None)
    u.set_defaults(func=_undo)

    _register_rebalance(sub)


def _register_rebalance(sub: argparse._SubParsersAction) -> None:
    rb = sub.add_parser("rebalance", help="propose a balanced partition with exactly --grids grids")
    rb.add_argument("--grids", type=int, default=478)
    rb.add_argument("--twin", type=Path, default=None)
    rb.add_argument("--store", default=None)
    rb.add_argument("--base", default="head", help="version to start from (default: head)")
    rb.add_argument("--lock", action="append", default=[], metavar="GRID[,GRID…]",
                    help="grid codes that must not change (repeatable)")
    rb.add_argument("--target", action="append", default=[], metavar="CODE=N",
                    help="number of grids of a community or a town (repeatable), e.g. 440604010001=3")
    rb.add_argument("--workload", default=None, metavar="MEASURE=W,…",
                    help="the workload: chosen measures and weights (others count 0), from residents, dwellings, "
                         "businesses, key_persons, incidents; default residents=1,dwellings=0.5,businesses=2,"
                         "key_persons=5")
    rb.add_argument("--incident-months", type=int, default=12,
                    help="count the incidents reported in the last N months (when the workload weights incidents)")
    rb.add_argument("--disruption", type=float, default=None,
                    help="weight of residents moved against balance (default twin.partition.rebalance.DEFAULT_GAMMA)")
    rb.add_argument("--seed", type=int, default=0)
    rb.add_argument("--seconds", type=float, default=40.0, help="time budget of the search")
    rb.add_argument("--commit", action="store_true")
    rb.add_argument("--author", default="twin rebalance")
    rb.add_argument("--reason", default=None)
    rb.add_argument("--json", action="store_true", dest="json_out")
    rb.set_defaults(func=_rebalance)


# -- helpers ---------------------------------------------------------------------------------------------------
def _ctx(args: argparse.Namespace) -> tuple[Twin, Store]:
    from twin.model import load
    from twin.partition.versions import ensure_base
    from twin.store.sql import open_store

    t = load(args.twin)
    st = open_store(args.store, twin_root=t.root)
    ensure_base(st, t)
    return t, st


def _geometry(text: str) -> BaseGeometry:
    """A GeoJSON geometry/Feature/FeatureCollection string or a vector file → one WGS84 geometry."""
    import shapely
    from shapely.geometry import shape

    from twin.errors import ValidationError

    s = text.strip()
    if s.startswith("{"):
        try:
            obj = loads(s)
        except ValueError as e:
            raise ValidationError(f"not valid GeoJSON: {e}") from e
        if obj.get("type") == "Feature":
            obj = obj["geometry"]
        if obj.get("type") == "FeatureCollection":
            return shapely.union_all([shape(f["geometry"]) for f in obj["features"]])
        return shape(obj)
    from twin.crs import STORAGE_CRS
    from twin.io import read_vector

    gdf = read_vector(s)
    if gdf.crs is not None:
        gdf = gdf.to_crs(STORAGE_CRS)
    return shapely.union_all(gdf.geometry.values)


def _print(args: argparse.Namespace, obj: Any, text: str) -> None:
    print(dumps(obj).decode() if args.json_out else text)


def _edit(args: argparse.Namespace, op: EditOp) -> int:
    """Apply ``op`` to the ``--base`` version and commit the result."""
    from twin.partition.edit_ops import apply_edit
    from twin.partition.versions import commit, load_partition, resolve_version

    t, st = _ctx(args)
    base = resolve_version(st, args.base)
    res = apply_edit(load_partition(st, t, base), op)
    new = res.partition
    vid = commit(st, new, base_version=base, author=args.author, reason=args.reason)
    _print(args, {"version": vid, "parent": base, "cells_moved": res.cells_moved, "grids": new.n_grids},
           f"committed version {vid} (parent {base}): {res.cells_moved} cell(s) changed grid, {new.n_grids} grids")
    return 0


# -- commands --------------------------------------------------------------------------------------------------
def _balance(args: argparse.Namespace) -> int:
    from twin.partition.balance import balance_report
    from twin.partition.versions import load_partition

    t, st = _ctx(args)
    rep = balance_report(t, load_partition(st, t, args.version), threshold=args.threshold)
    if args.json_out:
        print(dumps({"summary": rep.summary, "problems": rep.problems,
                     "grids": rep.table.to_dict(orient="records")}).decode())
    else:
        print(rep.to_text(top=args.top))
    return 0


def _versions(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from twin.partition.versions import list_versions

    _, st = _ctx(args)
    vs = list_versions(st)
    _print(args, [asdict(v) for v in vs], "\n".join(
        f"{'*' if v.is_head else ' '} {v.version:>4}  parent {str(v.parent):>4}  {v.n_grids:>4} grids  "
        f"{v.created_at}  {v.author}: {v.reason}" for v in vs))
    return 0


def _diff(args: argparse.Namespace) -> int:
    from twin.partition.versions import diff_versions

    t, st = _ctx(args)
    d = diff_versions(st, t, args.a, args.b)
    _print(args, d.to_dict(), d.to_text())
    return 0


def _export(args: argparse.Namespace) -> int:
    from twin.partition.export import export_grids
    from twin.partition.versions import load_partition

    t, st = _ctx(args)
    p = load_partition(st, t, args.version)
    out = export_grids(t, p, args.out, version=p.meta.get("version"))
    _print(args, {"path": str(out), "grids": p.n_grids, "version": p.meta.get("version")},
           f"wrote {p.n_grids} grids of version {p.meta.get('version')} to {out}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from twin.errors import ValidationError
    from twin.ingest.grids import import_grids
    from twin.partition.versions import commit, resolve_version

    t, st = _ctx(args)
    res = import_grids(t, args.path, from_gcj02=args.from_gcj02, fill_gaps=args.fill_gaps)
    out: dict[str, Any] = {"grids": res.partition.n_grids, "problems": res.problems, "notes": res.notes,
                           "overlaps": res.overlaps.to_dict(orient="records"),
                           "gaps": res.gaps.to_dict(orient="records")}
    text = res.to_text()
    if args.commit:
        if not args.author:
            raise ValidationError("--commit needs --author.")
        vid = commit(st, res.partition, base_version=resolve_version(st, args.base), author=args.author,
                     reason=args.reason or f"import {args.path.name}")
        out["version"] = vid
        text += f"\ncommitted version {vid}"
    _print(args, out, text)
    return 0 if res.ok else 1


def _move(args: argparse.Namespace) -> int:
    from twin.errors import ValidationError
    from twin.partition.edit_ops import EditOp

    if bool(args.cells) == bool(args.area):
        raise ValidationError("give exactly one of --cells or --area.")
    if args.cells:
        try:
            cells = [int(c, 16) for c in args.cells.split(",") if c.strip()]
        except ValueError as e:
            raise ValidationError(f"--cells must be H3 cell ids in hex (e.g. '8b4117...'): {e}") from e
        return _edit(args, EditOp("move_cells", cells=cells, to_grid=args.to))
    return _edit(args, EditOp("move_area", geometry=_geometry(args.area), to_grid=args.to))


def _split(args: argparse.Namespace) -> int:
    from twin.partition.edit_ops import EditOp

    line = _geometry(args.line) if args.line else None
    return _edit(args, EditOp("split_grid", grid_code=args.grid, k=args.k, geometry=line))


def _merge(args: argparse.Namespace) -> int:
    from twin.partition.edit_ops import EditOp

    return _edit(args, EditOp("merge_grids", grid_codes=args.grids, into=args.into))


def _redraw(args: argparse.Namespace) -> int:
    from twin.partition.edit_ops import EditOp

    return _edit(args, EditOp("redraw_grid", grid_code=args.grid, geometry=_geometry(args.polygon), clip=args.clip))


def _undo(args: argparse.Namespace) -> int:
    from twin.partition.versions import rollback, undo

    t, st = _ctx(args)
    if args.to:
        vid = rollback(st, t, args.to, author=args.author, base_version=args.base, reason=args.reason)
    else:
        vid = undo(st, t, author=args.author, base_version=args.base, reason=args.reason)
    _print(args, {"version": vid}, f"committed version {vid}")
    return 0


def _rebalance(args: argparse.Namespace) -> int:
    import pandas as pd

    from twin.incidents.store import IncidentStore
    from twin.partition.rebalance import DEFAULT_GAMMA, rebalance
    from twin.partition.versions import commit, load_partition, resolve_version

    t, st = _ctx(args)
    base = resolve_version(st, args.base)
    weights = _workload_weights(args.workload)
    incidents = None
    if weights and weights.get("incidents", 0) > 0:
        since = pd.Timestamp.now(tz="Asia/Shanghai") - pd.DateOffset(months=args.incident_months)
        incidents = IncidentStore(st).frame(since=since.to_pydatetime())[["lng", "lat"]]
    locked = [g.strip() for item in args.lock for g in item.split(",") if g.strip()]
    res = rebalance(t, args.grids, partition=load_partition(st, t, base), weights=weights, incidents=incidents,
                    locked=locked, targets=_targets(args.target),
                    gamma=DEFAULT_GAMMA if args.disruption is None else args.disruption, seed=args.seed,
                    time_budget_s=args.seconds)
    out = res.to_dict()
    text = res.to_text()
    if incidents is not None:
        out["incidents_counted"] = len(incidents)
        text += f"\nincidents counted (last {args.incident_months} months): {len(incidents)}"
    if args.commit:
        vid = commit(st, res.partition, base_version=base, author=args.author,
                     reason=args.reason or f"rebalance to {args.grids} grids")
        out["version"] = vid
        text += f"\ncommitted version {vid} (parent {base})"
    _print(args, out, text)
    return 0


def _workload_weights(text: str | None) -> dict[str, float] | None:
    """``residents=1,incidents=3`` → every measure's weight, the ones not named 0 (None: the default workload)."""
    from twin.errors import ValidationError
    from twin.partition.workload import DEFAULT_WEIGHTS

    if not text:
        return None
    out = dict.fromkeys(DEFAULT_WEIGHTS, 0.0)
    for part in text.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        if name not in out:
            raise ValidationError(f"--workload: unknown measure {name!r}; choose from {sorted(out)}.")
        try:
            out[name] = float(value) if sep else 1.0
        except ValueError as e:
            raise ValidationError(f"--workload: weight of {name} must be a number, got {value!r}.") from e
    return out


def _targets(items: list[str]) -> dict[str, int]:
    from twin.errors import ValidationError

    out: dict[str, int] = {}
    for item in items:
        code, sep, n = item.partition("=")
        if not sep or not n.strip().isdigit():
            raise ValidationError(f"--target takes CODE=N (a community or town code and a count); got {item!r}.")
        out[code.strip()] = int(n)
    return out
