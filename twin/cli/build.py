"""``twin build``, ``twin validate``, ``twin info``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser("build", help="build a twin (synthetic people on the real district; real data optional)")
    b.add_argument("--out", type=Path, default=None, help="twin directory (default: data/generated/default)")
    b.add_argument("--seed", type=int, default=None)
    b.add_argument("--scale", type=float, default=1.0, help="multiply residents and businesses (stress tests)")
    b.add_argument("--grids-count", type=int, default=None, help="number of synthetic grids (default 451)")
    b.add_argument("--population-raster", type=Path, default=None, help="GeoTIFF of persons per pixel")
    b.add_argument("--buildings", type=Path, default=None, help="building footprints (GeoJSON/GPKG/GeoParquet)")
    b.add_argument("--grids", type=Path, default=None, help="grid polygons (GeoJSON/GPKG/GeoParquet)")
    b.add_argument("--osm", type=Path, default=None, metavar="FILE.osm.pbf",
                   help="OpenStreetMap extract: its buildings, streets and water replace the synthetic ones")
    b.add_argument("--from-gcj02", action="store_true", help="input vectors are GCJ-02 (Amap): convert to WGS84")
    b.add_argument("--if-missing", action="store_true", help="do nothing if a twin is already built there")
    b.add_argument("--quiet", action="store_true")
    b.set_defaults(func=_build)

    v = sub.add_parser("validate", help="check partition, nesting, contiguity and coverage; exit 1 on problems")
    v.add_argument("--twin", type=Path, default=None)
    v.set_defaults(func=_validate)

    i = sub.add_parser("info", help="print the manifest (counts, seed, sources) as JSON")
    i.add_argument("--twin", type=Path, default=None)
    i.set_defaults(func=_info)


def _build(args: argparse.Namespace) -> int:
    from twin.io import default_twin_dir
    from twin.synth.build import DEFAULTS, build_twin

    out = args.out or default_twin_dir()
    if args.if_missing and (out / "manifest.json").exists():
        print(f"twin already built at {out}")
        return 0
    build_twin(
        out,
        seed=args.seed if args.seed is not None else DEFAULTS["seed"],
        scale=args.scale,
        population_raster=args.population_raster,
        buildings_path=args.buildings,
        grids_path=args.grids,
        n_grids=args.grids_count or DEFAULTS["grids"],
        progress=not args.quiet,
        from_gcj02=args.from_gcj02,
        osm=args.osm,
    )
    return 0


def _validate(args: argparse.Namespace) -> int:
    from twin.model import load
    from twin.partition.validate import validate

    rep = validate(load(args.twin))
    print(rep.to_text())
    return 0 if rep.ok else 1


def _info(args: argparse.Namespace) -> int:
    from twin.model import load

    m = load(args.twin).manifest
    print(json.dumps({k: m[k] for k in m if k != "files"}, ensure_ascii=False, indent=2))
    return 0
