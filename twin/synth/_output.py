"""Writing a built twin: its tables (with the city fabric's), the manifest (sha256 of every file) and the atomic
swap into place."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shapely

from twin.crs import to_storage
from twin.io import read_json, read_table, sha256_file, write_table

__all__ = ["write_tables", "file_entry", "swap_into_place", "fabric_tables", "fabric_summary"]


def fabric_tables(fabric: Any, osm_frames: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """``streets`` (LineStrings: ``class``, ``width_m``, ``synthetic``), ``water`` (Polygons: ``kind``,
    ``synthetic``) and ``blocks`` (Polygons: ``block_id``, ``land_use``, ``area_m2``, ``synthetic``) in WGS84.
    OpenStreetMap's own tables (with names and ids) are written as read when they replaced the synthetic ones."""
    out: dict[str, pd.DataFrame] = {}
    for name, frame in (("streets", fabric.streets), ("water", fabric.water)):
        if name in osm_frames:
            out[name] = osm_frames[name]
            continue
        g = to_storage(frame).reset_index(drop=True)
        g["synthetic"] = True
        out[name] = g
    blocks = to_storage(fabric.blocks[["block_id", "land_use", "area_m2", "geometry"]]).reset_index(drop=True)
    blocks["synthetic"] = fabric.source["streets"] == "synthetic"
    out["blocks"] = blocks
    return out


def fabric_summary(fabric: Any, tables: Mapping[str, pd.DataFrame], units: Any) -> dict[str, object]:
    """The manifest's ``fabric`` entry: sources, counts, street length by class (km, EPSG:4547), land use."""
    streets = fabric.streets
    km = (streets.length.groupby(streets["class"]).sum() / 1000).round(1)
    return {
        "sources": dict(fabric.source),
        "counts": {k: len(v) for k, v in tables.items()} | {"faces": len(fabric.faces),
                                                            "pieces": int(units.n_pieces),
                                                            "split_faces": int(np.sum(units.split))},
        "street_km": {str(k): float(v) for k, v in km.items()},
        "blocks_by_land_use": {str(k): int(v) for k, v in fabric.blocks["land_use"].value_counts().items()},
        "water_km2": round(float(shapely.area(fabric.water.geometry.to_numpy()).sum()) / 1e6, 3),
    }


def write_tables(frames: Mapping[str, pd.DataFrame], work: Path) -> dict[str, dict[str, object]]:
    """Write each frame as ``<name>.parquet`` into ``work``; returns the manifest's file entries (sha256, size, rows)."""
    files: dict[str, dict[str, object]] = {}
    for name, df in frames.items():
        p = write_table(df, work / f"{name}.parquet")
        files[p.name] = {**file_entry(p), "rows": len(df)}
    return files


def file_entry(path: Path) -> dict[str, object]:
    """A manifest entry for a written file: sha256 and size in bytes."""
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def swap_into_place(work: Path, out: Path, log: Callable[[str], None]) -> None:
    """Replace the twin at ``out`` by ``work`` (renames only; the old twin is gone only after the new one is in).

    Mutable state that lives next to the twin (``state.sqlite`` with partition versions, incidents, audit log,
    users; anything else the build did not write) is never deleted: it moves into the new twin when the cells are
    unchanged (the same H3 cells), else it is archived beside it and the log says where.
    """
    old = out.parent / f".{out.name}.old"
    if old.exists():
        shutil.rmtree(old)
    if out.exists():
        out.rename(old)
    work.rename(out)
    if not old.exists():
        return
    built = set(read_json(out / "manifest.json")["files"]) | {"manifest.json"}
    extra = [p for p in old.iterdir() if p.name not in built]
    if extra:
        same_cells = (old / "cells.parquet").exists() and np.array_equal(
            read_table(old / "cells.parquet", columns=["cell"])["cell"].to_numpy(),
            read_table(out / "cells.parquet", columns=["cell"])["cell"].to_numpy())
        if same_cells:
            for p in extra:
                p.rename(out / p.name)
        else:
            stamp = dt.datetime.now().strftime("%Y%m%dT%H%M%S")
            archive = out.parent / f"{out.name}.state-{stamp}"
            archive.mkdir()
            for p in extra:
                p.rename(archive / p.name)
            log(f"the cells changed: the old twin's state ({', '.join(p.name for p in extra)}) is archived in {archive}")
    shutil.rmtree(old)
