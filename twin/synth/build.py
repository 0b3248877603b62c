"""Build a twin: real district geography + synthetic (or user-supplied) population, buildings and partition.

The pipeline (each step seeded from ``seed``; same seed → same files, byte for byte):

1. cells: H3 res-11 cells overlapping the real district boundary (or a smaller ``extent`` inside it);
2. population: a GeoTIFF (synthetic, or ``population_raster``) → persons per cell (sum preserved);
3. buildings (synthetic, or ``buildings_path``) → persons per building → households, dwellings, residents;
   (synthetic footprints are packed inside the blocks of the city fabric: :mod:`twin.synth.fabric`);
4. businesses; 5. towns → communities (NBS codes) → grids, unions of the fabric's blocks stored as sets of cells;
6. workers and cameras; 7. polygons, files and manifest (written atomically).

A small twin for tests (:func:`twin.testing.small_twin`) is the same pipeline with an ``extent``, a few
``communities`` and small ``totals``.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import scipy.sparse as sp
import shapely
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry

from twin.cells import PARTITION_RES, cells_adjacency, cells_to_latlng, geometry_to_cells
from twin.crs import area_km2, geometry_to_metric, lnglat_to_xy
from twin.errors import IngestError, OutsideDistrictError, ValidationError
from twin.geography import DISTRICT_CODE, EXTENT_FILE, district_boundary
from twin.ingest import vectors as ingest
from twin.ingest.osm import OSM_ATTRIBUTION, read_osm
from twin.ingest.raster import RasterToCells, raster_to_cells
from twin.io import default_twin_dir, sha256_file, write_json, write_table
from twin.model import AS_OF, ages_on
from twin.partition.workload import workload
from twin.synth._output import fabric_summary, fabric_tables, file_entry, swap_into_place, write_tables
from twin.synth.assets import generate_cameras, generate_workers
from twin.synth.buildings import layout_buildings, set_floors
from twin.synth.businesses import generate_businesses
from twin.synth.fabric import Fabric, make_fabric
from twin.synth.hierarchy import FabricUnits, fabric_polygons, fabric_units, unit_lists, unit_polygons
from twin.synth.population import land_use_intensity, largest_remainder, synthesize_population_raster
from twin.synth.residents import generate_residents, persons_per_building

__all__ = ["build_twin", "GENERATOR_VERSION", "DEFAULTS"]

GENERATOR_VERSION = "1.1.0"  # 1.1: city fabric (streets, water, blocks); buildings in blocks; units = blocks
DEFAULTS = {
    "seed": 20231,
    "residents": 1_330_000,
    "businesses": 290_000,
    "grids": 451,
    "workers": 648,
    "cameras": 18_000,
}
_TOTAL_KEYS = ("residents", "businesses", "workers", "cameras")
_BUILDING_COLUMNS = ["building_id", "use", "floors", "height_m", "footprint_m2", "dwellings", "residents",
                     "businesses", "cell", "lng", "lat", "source", "geometry"]


class _Progress:
    def __init__(self, enabled: bool) -> None:
        self.t0 = time.perf_counter()
        self.enabled = enabled

    def __call__(self, msg: str) -> None:
        if self.enabled:
            print(f"[{time.perf_counter() - self.t0:6.1f}s] {msg}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class _Inputs:
    """What the caller asked for, checked."""

    seed: int
    scale: float
    totals: dict[str, int]
    raster_total: float  # persons the synthetic raster is calibrated to (unrounded for a scaled default twin)
    n_grids: int
    population_raster: Path | None
    buildings_path: Path | None
    grids_path: Path | None
    from_gcj02: bool
    extent: BaseGeometry | None
    communities: list[str] | None
    osm_path: Path | None = None


@dataclass(frozen=True)
class _Site:
    """The area built (the district or an extent inside it) and its cells (sorted ``uint64``, res 11)."""

    area: BaseGeometry
    cells: np.ndarray
    lng: np.ndarray
    lat: np.ndarray
    xy: np.ndarray  # cell centres, EPSG:4547 metres
    adjacency: sp.csr_matrix


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
    extent: BaseGeometry | None = None,
    communities: Sequence[str] | None = None,
    totals: Mapping[str, int] | None = None,
    osm: str | Path | None = None,
) -> Path:
    """Build a twin into ``out`` (default :func:`twin.io.default_twin_dir`) and return its path.

    Parameters
    ----------
    scale : multiplies residents and businesses (e.g. 10 for a 13.3 M-resident stress twin).
    population_raster, buildings_path, grids_path : real data replacing the synthetic piece: a GeoTIFF of persons
        per pixel (any CRS), footprints (GeoJSON/GPKG/GeoParquet), grid polygons (→ cells).
    extent : build only this WGS84 (Multi)Polygon, clipped to the district (e.g. a small twin for tests); the
        twin's district is then this area (``extent.geojson`` in the twin directory).
    communities : NBS community codes to divide the area into (default all 147; their towns follow).
    totals : exact counts replacing the defaults: ``residents``, ``businesses``, ``workers``, ``cameras``
        (``scale`` is not applied to the ones given).
    osm : an OpenStreetMap ``.osm.pbf`` extract (:func:`twin.ingest.osm.read_osm`): its buildings replace the
        synthetic ones (unless ``buildings_path`` is given), its streets and water are written as
        ``streets.parquet`` / ``water.parquet``; the manifest records the file and the ODbL attribution.
    """
    log: Callable[[str], None] = progress if callable(progress) else _Progress(bool(progress))
    opts = _check_inputs(seed, scale, totals, n_grids, population_raster, buildings_path, grids_path, from_gcj02,
                         extent, communities, osm)
    towns_meta, comm_meta = unit_lists(opts.communities)
    out = Path(out) if out is not None else default_twin_dir()
    work = out.parent / f".{out.name}.building"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    seeds = [int(s) for s in np.random.SeedSequence(seed).generate_state(12)]

    site = _site(opts.extent, log)
    osm_buildings, osm_frames, osm_meta = _read_osm(site, opts, work, log)  # before the heavy steps: a bad
    user_buildings = _read_user_buildings(site, opts, log) or osm_buildings  # file fails fast
    raster_path, r2c, persons_cell, sources = _population(site, opts, work, seeds[0], log)
    log("fabric: streets, water, parks, faces and blocks")
    ind, com = land_use_intensity(site.lng, site.lat)
    fabric = make_fabric(geometry_to_metric(site.area), site.xy, persons_cell, ind, com, seed=seeds[9],
                         streets=osm_frames.get("streets"), water=osm_frames.get("water"))
    buildings, sources["buildings"] = _buildings(site, user_buildings, fabric, seeds[1], log)
    persons, dwellings, businesses = _people(site, opts, buildings, persons_cell, seeds, log)
    res_cell, biz_cell, cell_work = _cell_counts(site, buildings, persons)

    log("towns, communities, grids: unions of blocks (pieces of the fabric)")
    units = fabric_units(site.xy, site.adjacency, fabric, towns_meta, comm_meta, res_cell, cell_work,
                         n_grids=opts.n_grids, seeds=(seeds[7], seeds[8]))
    grid_code, grids_meta, sources["grids"] = _grids(site, opts, units, cell_work, comm_meta, seeds[8], log)
    log("polygons: towns, communities, grids (unions of faces, clipped to the district)")
    if opts.grids_path is None:
        towns, communities_gdf, grids = fabric_polygons(site.cells, site.xy, grid_code, grids_meta, comm_meta,
                                                        fabric, units)
    else:
        towns, communities_gdf, grids = unit_polygons(site.cells, grid_code, grids_meta, comm_meta, site.area,
                                                      synthetic_grids=False)

    log("workers and cameras")
    buildings["grid_code"] = grid_code[buildings["cell_idx"].to_numpy()]
    workers = _workers(grids, grid_code, cell_work, buildings, opts.totals["workers"], seeds[5])
    cameras = generate_cameras(site.cells, res_cell + 2 * biz_cell + 5, opts.totals["cameras"], seed=seeds[6])

    log("writing files")
    cells_df = pd.DataFrame({"cell": site.cells, "lng": site.lng, "lat": site.lat, "pop_raster": r2c.counts,
                             "grid_code": grid_code.astype(str)})
    buildings = gpd.GeoDataFrame(buildings[_BUILDING_COLUMNS], geometry="geometry", crs=buildings.crs)
    frames: dict[str, pd.DataFrame] = {
        "cells": cells_df, "towns": towns, "communities": communities_gdf, "grids": grids,
        "buildings": buildings, "dwellings": dwellings, "persons": persons, "businesses": businesses,
        "workers": workers, "cameras": cameras,
    }
    fabric_frames = fabric_tables(fabric, osm_frames)
    files = write_tables({**frames, **fabric_frames}, work)
    files["population.tif"] = file_entry(raster_path)
    if opts.extent is not None:
        files[EXTENT_FILE] = file_entry(write_json(mapping(site.area), work / EXTENT_FILE))
    manifest = _manifest(opts, {**sources, **fabric.source, "blocks": _blocks_source(fabric)}, frames, r2c, files)
    manifest["fabric"] = fabric_summary(fabric, fabric_frames, units)
    if osm_meta:
        manifest["osm"] = osm_meta
    if opts.extent is not None:
        manifest["extent"] = {"area_km2": round(area_km2(site.area), 6),
                              "communities": sorted(comm_meta["community_code"])}
    write_json(manifest, work / "manifest.json")
    swap_into_place(work, out, log)
    log(f"done: {out}")
    return out


def _check_inputs(seed: int, scale: float, totals: Mapping[str, int] | None, n_grids: int,
                  population_raster: str | Path | None, buildings_path: str | Path | None,
                  grids_path: str | Path | None, from_gcj02: bool, extent: BaseGeometry | None,
                  communities: Sequence[str] | None, osm: str | Path | None = None) -> _Inputs:
    for label, given in (("population raster", population_raster), ("buildings", buildings_path),
                         ("grids", grids_path), ("OpenStreetMap", osm)):
        if given is not None and not Path(given).is_file():
            raise IngestError(f"{given}: {label} file not found.")
    unknown = sorted(set(totals or {}) - set(_TOTAL_KEYS))
    if unknown:
        raise ValidationError(f"unknown totals {unknown}; give any of {list(_TOTAL_KEYS)}.")
    counts = {k: int(round(DEFAULTS[k] * scale)) if k in ("residents", "businesses") else DEFAULTS[k]
              for k in _TOTAL_KEYS}
    counts.update({k: int(v) for k, v in (totals or {}).items()})
    bad = {k: v for k, v in counts.items() if v < 0 or (k in ("workers", "cameras") and v < 1)}
    if bad:
        raise ValidationError(f"totals must be positive (workers and cameras at least 1): {bad}.")
    raster_total = float(counts["residents"]) if "residents" in (totals or {}) else DEFAULTS["residents"] * scale
    return _Inputs(seed=seed, scale=scale, totals=counts, raster_total=raster_total, n_grids=n_grids,
                   population_raster=Path(population_raster) if population_raster is not None else None,
                   buildings_path=Path(buildings_path) if buildings_path is not None else None,
                   grids_path=Path(grids_path) if grids_path is not None else None, from_gcj02=from_gcj02,
                   extent=extent, communities=list(communities) if communities is not None else None,
                   osm_path=Path(osm) if osm is not None else None)


def _site(extent: BaseGeometry | None, log: Callable[[str], None]) -> _Site:
    """The area to build (the district, or ``extent`` clipped to it) and its res-11 cells with adjacency."""
    district = district_boundary()
    area = district
    if extent is not None:
        area = shapely.make_valid(shapely.intersection(district, extent))
        if area.is_empty or area.area == 0:
            raise OutsideDistrictError(f"the extent {tuple(round(v, 4) for v in extent.bounds)} (WGS84) does not "
                                       f"overlap the district {tuple(round(v, 4) for v in district.bounds)}.")
    log("cells: H3 res 11 over the district" if extent is None else "cells: H3 res 11 over the extent")
    cells = geometry_to_cells(area, PARTITION_RES, contain="overlap")
    lat, lng = cells_to_latlng(cells)
    x, y = lnglat_to_xy(lng, lat)
    return _Site(area=area, cells=cells, lng=lng, lat=lat, xy=np.column_stack([x, y]),
                 adjacency=cells_adjacency(cells))


def _population(site: _Site, opts: _Inputs, work: Path, seed: int, log: Callable[[str], None]
                ) -> tuple[Path, RasterToCells, np.ndarray, dict[str, str]]:
    """The population raster (synthetic or the user's) → persons per cell; returns the sources noted so far."""
    raster_path = work / "population.tif"
    if opts.population_raster is None:
        log("population: synthetic GeoTIFF (0.001° ≈ 100 m pixels)")
        synthesize_population_raster(site.area, seed=seed, total=opts.raster_total, path=raster_path)
        source = "synthetic"
    else:
        shutil.copyfile(opts.population_raster, raster_path)
        source = f"user raster {opts.population_raster.name}"
    log("population: raster → cells (sum preserved)")
    r2c = raster_to_cells(raster_path, site.cells, res=PARTITION_RES, district=site.area)
    target = opts.totals["residents"] if opts.population_raster is None else int(round(r2c.inside_total))
    return raster_path, r2c, largest_remainder(r2c.counts, target), {"population": source}


def _read_user_buildings(site: _Site, opts: _Inputs, log: Callable[[str], None]) -> tuple[gpd.GeoDataFrame, str] | None:
    """The user's footprints with ``cell_idx`` and their source, or None for synthetic buildings."""
    if opts.buildings_path is None:
        return None
    log(f"buildings: reading {opts.buildings_path}")
    buildings = ingest.read_buildings(opts.buildings_path, site.area, site.cells, from_gcj02=opts.from_gcj02)
    buildings["source"] = f"user:{opts.buildings_path.name}"
    for note in buildings.attrs.get("notes", []):
        log(f"buildings: {note}")
    return buildings, f"user file {opts.buildings_path.name}"


def _read_osm(site: _Site, opts: _Inputs, work: Path, log: Callable[[str], None]
              ) -> tuple[tuple[gpd.GeoDataFrame, str] | None, dict[str, pd.DataFrame], dict[str, object]]:
    """An OpenStreetMap extract: (its buildings through the footprint ingestion path, or None; the ``streets`` and
    ``water`` tables it has; the manifest's ``osm`` entry). Nothing at all without ``opts.osm_path``."""
    if opts.osm_path is None:
        return None, {}, {}
    log(f"osm: reading {opts.osm_path} (streets, water, buildings)")
    fabric = read_osm(opts.osm_path, district=site.area)
    for note in fabric.notes:
        log(f"osm: {note}")
    frames = {name: df for name, df in (("streets", fabric.streets), ("water", fabric.water)) if len(df)}
    meta: dict[str, object] = {"file": opts.osm_path.name, "sha256": sha256_file(opts.osm_path),
                               "attribution": OSM_ATTRIBUTION, "notes": fabric.notes,
                               "counts": {"streets": len(fabric.streets), "water": len(fabric.water),
                                          "buildings": len(fabric.buildings)}}
    if len(fabric.buildings) == 0 or opts.buildings_path is not None:
        if opts.buildings_path is not None and len(fabric.buildings):
            log(f"osm: buildings from {opts.buildings_path.name} take precedence over the OSM footprints")
        meta["buildings_used"] = False
        return None, frames, meta
    tmp = write_table(fabric.buildings[["use", "floors", "height_m", "geometry"]], work / ".osm_buildings.parquet")
    try:  # the same checks and allocation as --buildings (floors and heights from OSM tags are kept)
        buildings = ingest.read_buildings(tmp, site.area, site.cells)
    finally:
        tmp.unlink()
    buildings["source"] = "osm"
    meta["buildings_used"] = True
    return (buildings, "osm"), frames, meta


def _buildings(site: _Site, user: tuple[gpd.GeoDataFrame, str] | None, fabric: Fabric, seed: int,
               log: Callable[[str], None]) -> tuple[gpd.GeoDataFrame, str]:
    """Footprints with ``cell_idx`` (the user's, else synthetic ones packed in the blocks) and their source."""
    if user is not None:
        return user
    log("buildings: synthetic footprints in the blocks")
    buildings = layout_buildings(fabric.blocks, site.cells, seed=seed)
    buildings["source"] = "synthetic"
    return buildings, "synthetic"


def _people(site: _Site, opts: _Inputs, buildings: gpd.GeoDataFrame, persons_cell: np.ndarray, seeds: list[int],
            log: Callable[[str], None]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Residents, dwellings and businesses; sets the buildings' floors, heights and counts in place."""
    log("residents: persons per building, households, dwellings")
    ppb = persons_per_building(buildings, persons_cell, site.xy)
    persons, dwellings, dw_per_b = generate_residents(ppb, seed=seeds[2])
    buildings["building_id"] = np.arange(len(buildings), dtype=np.int32)
    set_floors(buildings, dw_per_b, seed=seeds[3], keep_user=bool((buildings["source"] != "synthetic").any()))
    buildings["residents"] = ppb.astype(np.int32)
    log("businesses")
    businesses = generate_businesses(buildings, opts.totals["businesses"], seed=seeds[4])
    buildings["businesses"] = np.bincount(businesses["building_id"], minlength=len(buildings)).astype(np.int32)
    return persons, dwellings, businesses


def _cell_counts(site: _Site, buildings: pd.DataFrame, persons: pd.DataFrame
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per cell: residents, businesses and workload (for regionalisation and cameras)."""
    n = len(site.cells)
    b_cell = buildings["cell_idx"].to_numpy()
    res_cell = np.bincount(b_cell, weights=buildings["residents"], minlength=n)
    biz_cell = np.bincount(b_cell, weights=buildings["businesses"], minlength=n)
    dw_cell = np.bincount(b_cell, weights=buildings["dwellings"], minlength=n)
    age = ages_on(persons["birth_date"].to_numpy(), AS_OF)
    key = (persons["disabled"] | persons["low_income"] | persons["pregnant"]).to_numpy() | (age >= 80)
    key_b = np.bincount(persons["building_id"][key], minlength=len(buildings))
    key_cell = np.bincount(b_cell, weights=key_b, minlength=n)
    cell_work = workload({"residents": res_cell, "dwellings": dw_cell, "businesses": biz_cell,
                          "key_persons": key_cell})
    return res_cell, biz_cell, cell_work


def _grids(site: _Site, opts: _Inputs, units: FabricUnits, cell_work: np.ndarray, comm_meta: pd.DataFrame,
           seed: int, log: Callable[[str], None]) -> tuple[np.ndarray, pd.DataFrame, str]:
    """Grid code per cell and the grid table, from the user's grid layer or synthetic (unions of the fabric's
    pieces); and their source."""
    comm_code = units.comm_code[units.piece]
    if opts.grids_path is not None:
        log(f"grids: reading {opts.grids_path}")
        grid_code, grids_meta = ingest.read_grids(opts.grids_path, site.area, site.cells, comm_code,
                                                  from_gcj02=opts.from_gcj02)
        return grid_code, grids_meta, f"user file {opts.grids_path.name}"
    log(f"grids: {opts.n_grids} grids of comparable workload inside the communities")
    return units.grid_code[units.piece], units.grids_meta, "synthetic"


def _workers(grids: gpd.GeoDataFrame, grid_code: np.ndarray, cell_work: np.ndarray, buildings: pd.DataFrame,
             total: int, seed: int) -> pd.DataFrame:
    """Grid workers by grid workload; a worker of a grid without buildings stands at the grid's inner point."""
    grid_idx = {g: i for i, g in enumerate(grids["grid_code"])}
    gi = np.array([grid_idx[g] for g in grid_code])
    grid_work = np.bincount(gi, weights=cell_work, minlength=len(grids))
    workers = generate_workers(grids["grid_code"].to_numpy(), grid_work, buildings, total, seed=seed)
    missing = workers["lng"].isna()
    if missing.any():
        cent = grids.set_index("grid_code").geometry.representative_point()
        workers.loc[missing, "lng"] = workers.loc[missing, "grid_code"].map(cent.x)
        workers.loc[missing, "lat"] = workers.loc[missing, "grid_code"].map(cent.y)
    return workers


def _blocks_source(fabric: Fabric) -> str:
    """Where the blocks come from: the streets and water that cut them."""
    kinds = set(fabric.source.values())
    return "synthetic" if kinds == {"synthetic"} else "osm" if kinds == {"osm"} else "osm + synthetic"


def _manifest(opts: _Inputs, sources: dict[str, str], frames: Mapping[str, pd.DataFrame], r2c: RasterToCells,
              files: dict[str, dict[str, object]]) -> dict[str, object]:
    counts = {name: len(frames[name]) for name in ("cells", "towns", "communities", "grids", "buildings",
                                                   "dwellings", "businesses", "workers", "cameras")}
    counts["residents"] = len(frames["persons"])
    return {
        "generator_version": GENERATOR_VERSION,
        "seed": opts.seed,
        "scale": opts.scale,
        "as_of": AS_OF.isoformat(),
        "district_code": DISTRICT_CODE,
        "h3_res": PARTITION_RES,
        "synthetic": {"people": True, "businesses": True, "dwellings": True, "workers": True, "cameras": True,
                      "towns": True, "communities": True, "grids": opts.grids_path is None,
                      "buildings": sources["buildings"] == "synthetic", "population": opts.population_raster is None,
                      **{k: sources.get(k) == "synthetic" for k in ("streets", "water", "blocks")}},
        "sources": sources,
        "counts": counts,
        "population_raster": {"raster_total": r2c.raster_total, "inside_total": r2c.inside_total,
                              "outside_total": r2c.outside_total},
        "files": files,
    }
