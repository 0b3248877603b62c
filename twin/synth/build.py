"""Build a twin: real district geography + synthetic (or user-supplied) population, buildings and partition.

The pipeline (each step seeded from ``seed``; same seed → same files, byte for byte):

1. cells: H3 res-11 cells overlapping the real district boundary;
2. population: a GeoTIFF (synthetic, or ``population_raster``) → persons per cell (sum preserved);
3. buildings (synthetic, or ``buildings_path``) → persons per building → households, dwellings, residents;
4. businesses; 5. towns → communities (NBS codes) → grids, all as sets of cells;
6. workers and cameras; 7. polygons, files and manifest (written atomically).
"""

from __future__ import annotations

import datetime as dt
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from twin.cells import PARTITION_RES, cells_adjacency, cells_to_latlng, geometry_to_cells
from twin.crs import lnglat_to_xy
from twin.errors import IngestError
from twin.geography import DISTRICT_CODE, district_boundary, nbs_communities, nbs_towns, town_seats
from twin.io import default_twin_dir, read_json, read_table, sha256_file, write_json, write_table
from twin.model import AS_OF, ages_on
from twin.partition.polygons import short_name, units_to_polygons
from twin.partition.regions import allocate_counts, bisect_labels, power_assign, repair_contiguity
from twin.partition.workload import workload
from twin.synth.assets import generate_cameras, generate_workers
from twin.synth.buildings import FLOOR_HEIGHT_M, layout_buildings
from twin.synth.businesses import generate_businesses
from twin.synth.population import land_use_intensity, largest_remainder, raster_to_cells, synthesize_population_raster
from twin.synth.residents import generate_residents

__all__ = ["build_twin", "GENERATOR_VERSION", "DEFAULTS"]

GENERATOR_VERSION = "1.0.0"
DEFAULTS = {
    "seed": 20231,
    "residents": 1_330_000,
    "businesses": 290_000,
    "grids": 451,
    "workers": 648,
    "cameras": 18_000,
}


class _Progress:
    def __init__(self, enabled: bool) -> None:
        self.t0 = time.perf_counter()
        self.enabled = enabled

    def __call__(self, msg: str) -> None:
        if self.enabled:
            print(f"[{time.perf_counter() - self.t0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def build_twin(
    out: str | Path | None = None,
    *,
    seed: int = DEFAULTS["seed"],
    scale: float = 1.0,
    population_raster: str | Path | None = None,
    buildings_path: str | Path | None = None,
    grids_path: str | Path | None = None,
    n_grids: int = DEFAULTS["grids"],
    progress: bool | Callable[[str], None] = True,
    from_gcj02: bool = False,
) -> Path:
    """Build a twin into ``out`` (default :func:`twin.io.default_twin_dir`) and return its path.

    ``scale`` multiplies residents and businesses (e.g. 10 for a 13.3 M-resident stress twin). Real data
    replaces the synthetic piece: ``population_raster`` (GeoTIFF of persons per pixel, any CRS),
    ``buildings_path`` (footprints: GeoJSON/GPKG/GeoParquet), ``grids_path`` (grid polygons → cells).
    """
    from twin.ingest import vectors as ingest  # local: ingest imports build helpers too

    log: Callable[[str], None] = progress if callable(progress) else _Progress(bool(progress))
    for label, given in (("population raster", population_raster), ("buildings", buildings_path),
                         ("grids", grids_path)):
        if given is not None and not Path(given).is_file():
            raise IngestError(f"{given}: {label} file not found.")
    out = Path(out) if out is not None else default_twin_dir()
    work = out.parent / f".{out.name}.building"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    district = district_boundary()
    seeds = np.random.SeedSequence(seed).generate_state(12)

    log("cells: H3 res 11 over the district")
    cells = geometry_to_cells(district, PARTITION_RES, contain="overlap")
    lat, lng = cells_to_latlng(cells)
    x, y = lnglat_to_xy(lng, lat)
    xy = np.column_stack([x, y])
    adjacency = cells_adjacency(cells)

    sources: dict[str, str] = {}
    if population_raster is None:
        log("population: synthetic GeoTIFF (0.001° ≈ 100 m pixels)")
        raster_path = work / "population.tif"
        synthesize_population_raster(
            district, seed=int(seeds[0]), total=DEFAULTS["residents"] * scale, path=raster_path
        )
        sources["population"] = "synthetic"
    else:
        raster_path = work / "population.tif"
        shutil.copyfile(population_raster, raster_path)
        sources["population"] = f"user raster {Path(population_raster).name}"
    log("population: raster → cells (sum preserved)")
    r2c = raster_to_cells(raster_path, cells, res=PARTITION_RES, district=district)
    target = int(round(DEFAULTS["residents"] * scale)) if population_raster is None else int(round(r2c.inside_total))
    persons_cell = largest_remainder(r2c.counts, target)

    ind, com = land_use_intensity(lng, lat)
    if buildings_path is None:
        log("buildings: synthetic footprints")
        buildings = layout_buildings(cells, persons_cell, ind, com, district, seed=int(seeds[1]))
        buildings["source"] = "synthetic"
        sources["buildings"] = "synthetic"
    else:
        log(f"buildings: reading {buildings_path}")
        buildings = ingest.read_buildings(buildings_path, district, cells, from_gcj02=from_gcj02)
        buildings["source"] = f"user:{Path(buildings_path).name}"
        for note in buildings.attrs.get("notes", []):
            log(f"buildings: {note}")
        sources["buildings"] = f"user file {Path(buildings_path).name}"

    log("residents: persons per building, households, dwellings")
    ppb = _persons_per_building(buildings, persons_cell, xy, cells)
    persons, dwellings, dw_per_b = generate_residents(ppb, seed=int(seeds[2]))
    buildings["building_id"] = np.arange(len(buildings), dtype=np.int32)
    _set_floors(buildings, dw_per_b, seed=int(seeds[3]), keep_user=buildings_path is not None)
    buildings["residents"] = ppb.astype(np.int32)

    log("businesses")
    businesses = generate_businesses(buildings, int(round(DEFAULTS["businesses"] * scale)), seed=int(seeds[4]))
    buildings["businesses"] = np.bincount(businesses["building_id"], minlength=len(buildings)).astype(np.int32)

    # per-cell counts for regionalisation and cameras
    b_cell = buildings["cell_idx"].to_numpy()
    res_cell = np.bincount(b_cell, weights=buildings["residents"], minlength=len(cells))
    biz_cell = np.bincount(b_cell, weights=buildings["businesses"], minlength=len(cells))
    dw_cell = np.bincount(b_cell, weights=buildings["dwellings"], minlength=len(cells))
    age = ages_on(persons["birth_date"].to_numpy(), AS_OF)
    key = (persons["disabled"] | persons["low_income"] | persons["pregnant"]).to_numpy() | (age >= 80)
    key_b = np.bincount(persons["building_id"][key], minlength=len(buildings))
    key_cell = np.bincount(b_cell, weights=key_b, minlength=len(cells))
    cell_work = workload({"residents": res_cell, "dwellings": dw_cell, "businesses": biz_cell,
                          "key_persons": key_cell})

    log("towns: around the approximate seats, sized by area share")
    towns_meta = nbs_towns().merge(town_seats()[["town_code", "lon", "lat", "approx_area_km2"]], on="town_code")
    sx, sy = lnglat_to_xy(towns_meta["lon"].to_numpy(), towns_meta["lat"].to_numpy())
    town_lab = power_assign(xy, np.column_stack([sx, sy]), towns_meta["approx_area_km2"].to_numpy())
    town_lab = repair_contiguity(town_lab, adjacency)
    town_code = towns_meta["town_code"].to_numpy()[town_lab]

    log("communities: NBS list, sized by population")
    comm_meta = nbs_communities()
    comm_code = np.empty(len(cells), dtype=object)
    mean_res = res_cell.mean()
    for t in towns_meta["town_code"]:
        idx = np.flatnonzero(town_code == t)
        members = comm_meta[comm_meta["town_code"] == t]
        k = len(members)
        lab = bisect_labels(xy[idx], res_cell[idx] + 0.5 * mean_res, k, seed=int(seeds[7]) + int(t))
        sub_adj = adjacency[idx][:, idx]
        lab = repair_contiguity(lab, sub_adj)
        comm_code[idx] = _name_regions(lab, res_cell[idx], members, k)

    if grids_path is not None:
        log(f"grids: reading {grids_path}")
        grid_code, grids_meta = ingest.read_grids(grids_path, district, cells, comm_code, from_gcj02=from_gcj02)
        sources["grids"] = f"user file {Path(grids_path).name}"
    else:
        log(f"grids: {n_grids} grids of comparable workload inside the communities")
        grid_code, grids_meta = _make_grids(cells, xy, adjacency, comm_code, cell_work, comm_meta, n_grids,
                                             seed=int(seeds[8]))
        sources["grids"] = "synthetic"

    log("polygons: towns, communities, grids (clipped to the district)")
    comm_of_grid = dict(zip(grids_meta["grid_code"], grids_meta["community_code"]))
    comm_code = np.array([comm_of_grid[g] for g in grid_code], dtype=object)  # communities = unions of grids
    town_of_comm = dict(zip(comm_meta["community_code"], comm_meta["town_code"]))
    town_code = np.array([town_of_comm[c] for c in comm_code], dtype=object)
    towns = units_to_polygons(cells, town_code, district, name="town_code").merge(
        nbs_towns(), on="town_code")
    communities = units_to_polygons(cells, comm_code, district, name="community_code").merge(
        comm_meta, on="community_code")
    communities["short_name"] = communities["community_name"].map(short_name)
    grids = units_to_polygons(cells, grid_code, district, name="grid_code").merge(
        grids_meta, on="grid_code")
    grids["town_code"] = grids["community_code"].map(town_of_comm)
    for g in (towns, communities):
        g["synthetic"] = True
    grids["synthetic"] = grids_path is None

    log("workers and cameras")
    buildings["grid_code"] = grid_code[b_cell]
    grid_idx = {g: i for i, g in enumerate(grids["grid_code"])}
    gi = np.array([grid_idx[g] for g in grid_code])
    grid_work = np.bincount(gi, weights=cell_work, minlength=len(grids))
    workers = generate_workers(grids["grid_code"].to_numpy(), grid_work, buildings, DEFAULTS["workers"],
                               seed=int(seeds[5]))
    missing = workers["lng"].isna()
    if missing.any():
        cent = grids.set_index("grid_code").geometry.representative_point()
        workers.loc[missing, "lng"] = workers.loc[missing, "grid_code"].map(cent.x)
        workers.loc[missing, "lat"] = workers.loc[missing, "grid_code"].map(cent.y)
    cameras = generate_cameras(cells, res_cell + 2 * biz_cell + 5, DEFAULTS["cameras"], seed=int(seeds[6]))

    log("writing files")
    cells_df = pd.DataFrame({"cell": cells, "lng": lng, "lat": lat, "pop_raster": r2c.counts,
                             "grid_code": grid_code.astype(str)})
    buildings = buildings.drop(columns=["cell_idx", "grid_code"])
    cols = ["building_id", "use", "floors", "height_m", "footprint_m2", "dwellings", "residents", "businesses",
            "cell", "lng", "lat", "source", "geometry"]
    buildings = gpd.GeoDataFrame(buildings[cols], geometry="geometry", crs=buildings.crs)
    frames: dict[str, pd.DataFrame] = {
        "cells": cells_df,
        "towns": towns,
        "communities": communities,
        "grids": grids,
        "buildings": buildings,
        "dwellings": dwellings,
        "persons": persons,
        "businesses": businesses,
        "workers": workers,
        "cameras": cameras,
    }
    files: dict[str, dict[str, object]] = {}
    for name, df in frames.items():
        p = write_table(df, work / f"{name}.parquet")
        files[p.name] = {"sha256": sha256_file(p), "bytes": p.stat().st_size, "rows": len(df)}
    files["population.tif"] = {"sha256": sha256_file(raster_path), "bytes": raster_path.stat().st_size}
    manifest = {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "scale": scale,
        "as_of": AS_OF.isoformat(),
        "district_code": DISTRICT_CODE,
        "h3_res": PARTITION_RES,
        "synthetic": {"people": True, "businesses": True, "dwellings": True, "workers": True, "cameras": True,
                      "towns": True, "communities": True, "grids": grids_path is None,
                      "buildings": buildings_path is None, "population": population_raster is None},
        "sources": sources,
        "counts": {
            "cells": len(cells), "towns": len(towns), "communities": len(communities), "grids": len(grids),
            "buildings": len(buildings), "dwellings": len(dwellings), "residents": len(persons),
            "businesses": len(businesses), "workers": len(workers), "cameras": len(cameras),
        },
        "population_raster": {"raster_total": r2c.raster_total, "inside_total": r2c.inside_total,
                              "outside_total": r2c.outside_total},
        "files": files,
    }
    write_json(manifest, work / "manifest.json")
    _swap_into_place(work, out, log)
    log(f"done: {out}")
    return out


def _swap_into_place(work: Path, out: Path, log: Callable[[str], None]) -> None:
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


def _persons_per_building(buildings: gpd.GeoDataFrame, persons_cell: np.ndarray, xy: np.ndarray,
                          cells: np.ndarray) -> np.ndarray:
    """Split each cell's persons over its residential/mixed buildings by footprint; persons of cells with no
    such building move to the nearest cell that has one (totals preserved)."""
    use = buildings["use"].to_numpy().astype(str)
    homes = np.isin(use, ["residential", "mixed"])
    b_cell = buildings["cell_idx"].to_numpy()
    has_home = np.zeros(len(cells), dtype=bool)
    has_home[b_cell[homes]] = True
    pc = persons_cell.astype(np.int64).copy()
    stranded = np.flatnonzero((pc > 0) & ~has_home)
    if len(stranded):
        targets = np.flatnonzero(has_home)
        if len(targets) == 0:
            raise ValueError("no residential building in the district: cannot house any resident")
        _, nearest = cKDTree(xy[targets]).query(xy[stranded])
        np.add.at(pc, targets[nearest], pc[stranded])
        pc[stranded] = 0
    w = np.where(homes, buildings["footprint_m2"].to_numpy(dtype=float), 0.0)
    cell_w = np.bincount(b_cell, weights=w, minlength=len(cells))
    share = np.divide(w, cell_w[b_cell], out=np.zeros_like(w), where=cell_w[b_cell] > 0)
    scaled = share * pc[b_cell]
    base = np.floor(scaled).astype(np.int64)
    short = pc - np.bincount(b_cell, weights=base, minlength=len(cells)).astype(np.int64)
    rem = np.where(homes, scaled - base, -1.0)
    order = np.lexsort((-rem, b_cell))
    rank = np.arange(len(order)) - np.searchsorted(b_cell[order], b_cell[order], side="left")
    plus = rank < short[b_cell[order]]
    base[order[plus]] += 1
    assert int(base.sum()) == int(persons_cell.sum()), "persons lost while splitting cells over buildings"
    return base


def _set_floors(buildings: gpd.GeoDataFrame, dw_per_b: np.ndarray, *, seed: int, keep_user: bool) -> None:
    rng = np.random.default_rng(seed)
    n = len(buildings)
    use = buildings["use"].to_numpy().astype(str)
    fp = buildings["footprint_m2"].to_numpy(dtype=float)
    big = fp > 300
    upf = np.where(big, np.clip(np.round(fp / 110), 2, 8), np.where(fp > 120, 2, 1))
    floors = np.ceil(dw_per_b / upf)
    floors = np.where(big, np.clip(floors, 6, 45), np.clip(floors, 2, 9))
    floors = np.where(use == "commercial", rng.integers(2, 24, n), floors)
    floors = np.where(use == "industrial", rng.integers(1, 4, n), floors)
    floors = np.where(use == "public", rng.integers(2, 7, n), floors)
    floor_h = np.where(use == "industrial", 6.0, FLOOR_HEIGHT_M)
    if keep_user and "floors" in buildings:
        given = buildings["floors"].to_numpy(dtype=float)
        floors = np.where(np.isfinite(given) & (given > 0), given, floors)
    buildings["floors"] = floors.astype(np.int16)
    buildings["height_m"] = (floors * floor_h + rng.uniform(0.5, 2.0, n)).astype(np.float32)
    if keep_user and "height_m_user" in buildings:
        given_h = buildings["height_m_user"].to_numpy(dtype=float)
        buildings["height_m"] = np.where(np.isfinite(given_h), given_h, buildings["height_m"]).astype(np.float32)
        buildings.drop(columns=["height_m_user"], inplace=True)
    buildings["dwellings"] = dw_per_b.astype(np.int32)


def _name_regions(lab: np.ndarray, res: np.ndarray, members: pd.DataFrame, k: int) -> np.ndarray:
    """Give region labels real NBS codes: urban communities (社区) to the densest regions, villages to the rest."""
    n_cells = np.bincount(lab, minlength=k)
    dens = np.bincount(lab, weights=res, minlength=k) / np.maximum(n_cells, 1)
    by_density = np.argsort(-dens, kind="stable")
    ordered = pd.concat([members[members["kind"] == "community"], members[members["kind"] == "village"]])
    codes = np.empty(k, dtype=object)
    codes[by_density] = ordered["community_code"].to_numpy()
    return codes[lab]


def _make_grids(cells, xy, adjacency, comm_code, cell_work, comm_meta, n_grids, *, seed: int):
    comm_list = comm_meta["community_code"].to_numpy()
    comm_work = np.array([cell_work[comm_code == c].sum() for c in comm_list])
    per_comm = allocate_counts(comm_work, n_grids, minimum=1)
    grid_code = np.empty(len(cells), dtype=object)
    rows = []
    mean_w = cell_work.mean()
    for c, k, name in zip(comm_list, per_comm, comm_meta["community_name"]):
        idx = np.flatnonzero(comm_code == c)
        lab = bisect_labels(xy[idx], cell_work[idx] + 0.05 * mean_w, int(k), seed=seed + int(c))
        lab = repair_contiguity(lab, adjacency[idx][:, idx])
        # renumber labels 1..k west→east / north→south by their centroid for readable codes
        uniq = np.unique(lab)
        cen = np.array([xy[idx][lab == u].mean(axis=0) for u in uniq])
        order = np.lexsort((cen[:, 0], -cen[:, 1]))
        seq = np.empty(len(uniq), dtype=np.int64)
        seq[order] = np.arange(1, len(uniq) + 1)
        remap = dict(zip(uniq.tolist(), seq.tolist()))
        codes = np.array([f"{c}{remap[v]:03d}" for v in lab], dtype=object)
        grid_code[idx] = codes
        for s in sorted(set(remap.values())):
            rows.append({"grid_code": f"{c}{s:03d}", "grid_name": f"{short_name(name)}第{s}网格",
                         "community_code": c})
    return grid_code, pd.DataFrame(rows)
