"""``twin query --area FILE.geojson`` and ``twin overlay CATEGORY --res 9``: JSON on stdout.

Bad input prints a JSON error object ``{"error": "<ExceptionClass>", "message": "..."}`` on stdout (and the
message on stderr) and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from twin.access.policy import MAX_PAGE_SIZE
from twin.encoding import dumps

if TYPE_CHECKING:
    from twin.access.roles import Role

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    q = sub.add_parser("query", help="summarize what lies inside a drawn area (GeoJSON file, WGS84) as JSON")
    q.add_argument("--area", type=Path, required=True, help="GeoJSON file: Polygon/MultiPolygon/Feature/Collection")
    q.add_argument("--twin", type=Path, default=None, help="twin directory (default: data/generated/default)")
    q.add_argument("--role", default="district", help="district, town, community, grid_worker or analyst")
    q.add_argument("--scope", nargs="*", default=[], help="town/community/grid codes the role owns")
    q.add_argument("--k", type=int, default=None, help="suppression threshold (default 5)")
    q.add_argument("--by", default="grid", choices=["grid", "community", "town", "none"])
    q.add_argument("--density", action="store_true", help="also per-cell key-population densities")
    q.add_argument("--from-gcj02", action="store_true", help="the area's coordinates are GCJ-02 (Amap)")
    q.add_argument("--records", choices=["persons", "buildings", "businesses"], default=None,
                   help="print one page of record ids instead of the summary")
    q.add_argument("--page", type=int, default=0)
    q.add_argument("--page-size", type=int, default=MAX_PAGE_SIZE)
    q.set_defaults(func=_query, json_errors=True)

    o = sub.add_parser("overlay", help="per-H3-cell counts of a key population (res 8-10) as JSON records")
    o.add_argument("category", help="residents, dwellings, businesses, disabled, low_income, pregnant, "
                                    "elderly_70, elderly_80")
    o.add_argument("--res", type=int, default=9)
    o.add_argument("--twin", type=Path, default=None)
    o.add_argument("--role", default="district")
    o.add_argument("--scope", nargs="*", default=[])
    o.add_argument("--k", type=int, default=None)
    o.set_defaults(func=_overlay, json_errors=True)


def _role(args: argparse.Namespace) -> Role:
    from twin.access.roles import DEFAULT_K, make_role

    return make_role(args.role, tuple(args.scope), k=args.k if args.k is not None else DEFAULT_K)


def _read_area(path: Path) -> dict[str, Any]:
    from twin.errors import ValidationError
    from twin.io import read_json

    try:
        return read_json(path)
    except FileNotFoundError as e:
        raise ValidationError(f"area file {str(path)!r} does not exist.") from e
    except (OSError, UnicodeDecodeError) as e:
        raise ValidationError(f"cannot read area file {str(path)!r}: {e}.") from e
    except json.JSONDecodeError as e:
        raise ValidationError(f"malformed GeoJSON in {str(path)!r}: {e.msg} at line {e.lineno} column "
                              f"{e.colno}.") from e


def _query(args: argparse.Namespace) -> int:
    from twin.model import load
    from twin.query.records import records_in_area
    from twin.query.summary import summarize_area

    area = _read_area(args.area)
    role = _role(args)
    t = load(args.twin)
    if args.records:
        page = records_in_area(t, area, args.records, role=role, page=args.page, page_size=args.page_size,
                               from_gcj02=args.from_gcj02)
        print(dumps(page.to_dict()).decode())
        return 0
    s = summarize_area(t, area, role=role, by=None if args.by == "none" else args.by, density=args.density,
                       from_gcj02=args.from_gcj02)
    print(dumps(s.to_dict()).decode())
    return 0


def _overlay(args: argparse.Namespace) -> int:
    from twin.model import load
    from twin.query.overlays import overlay

    role = _role(args)
    df = overlay(load(args.twin), args.category, res=args.res, role=role, k=args.k)
    cells = pd.DataFrame({"cell": [format(int(c), "x") for c in df["cell"].to_numpy()], "count": df["count"].array,
                          "density_km2": df["density_km2"].array, "suppressed": df["suppressed"].to_numpy(dtype=bool)})
    print(dumps({"category": args.category, "res": args.res, "cells": cells.to_dict("records")}).decode())
    return 0
