"""The city fabric: streets, water, parks, faces and blocks (synthetic and deterministic by seed, or OSM's).

:func:`make_fabric` builds it in EPSG:4547 metres from the area and the population surface already spread over the
H3 cells; :mod:`twin.synth.build` writes ``streets.parquet``, ``water.parquet`` and ``blocks.parquet`` (WGS84).
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.geometry.base import BaseGeometry

from twin.crs import METRIC_CRS, lnglat_to_xy, to_metric
from twin.ingest.osm import STREET_WIDTH_M
from twin.synth.fabric.blocks import (
    FACE_CLASSES,
    LAND_USES,
    cells_to_faces,
    classify_faces,
    cut_blocks,
    polygonize_faces,
)
from twin.synth.fabric.streets import LANE_WIDTH_M, local_streets, main_roads
from twin.synth.fabric.water import fish_ponds, park_lakes, river_channel
from twin.synth.population import _CENTRES, _PARKS

__all__ = ["Fabric", "make_fabric", "LAND_USES", "FACE_CLASSES"]



@dataclass(frozen=True)
class Fabric:
    """The fabric in EPSG:4547: ``faces`` tile the area (edges on street centre lines / water / the boundary),
    ``cell_face`` is the face of each cell centre, ``land_use`` one per face, ``blocks`` the buildable parts."""

    streets: gpd.GeoDataFrame
    water: gpd.GeoDataFrame
    faces: np.ndarray
    land_use: np.ndarray
    cell_face: np.ndarray
    blocks: gpd.GeoDataFrame
    source: dict[str, str]


def centre_intensity(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """How central a point (EPSG:4547) is, 0…1: the strongest of the population surface's city centres."""
    out = np.zeros_like(x, dtype=float)
    for lo, la, peak, s in _CENTRES:
        cx, cy = lnglat_to_xy(np.array([lo]), np.array([la]))
        out = np.maximum(out, (peak / 52000.0) * np.exp(-((x - cx[0]) ** 2 + (y - cy[0]) ** 2) / (2 * s * s)))
    return out


def _local_spacing(sb: np.ndarray, cell_sb: np.ndarray, persons: np.ndarray, ind: np.ndarray, cen: np.ndarray,
                   water: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Local-street spacing (m, 0 = none) and the village flag per superblock from the population surface."""
    n = len(sb)
    ncell = np.maximum(np.bincount(cell_sb, minlength=n), 1)
    area = shapely.area(sb)
    dens = np.bincount(cell_sb, weights=persons, minlength=n) / np.maximum(area, 500.0)
    dens /= persons.sum() / max(area.sum(), 1.0)  # relative to the mean density
    ind_m = np.bincount(cell_sb, weights=ind, minlength=n) / ncell
    cen_m = np.bincount(cell_sb, weights=cen, minlength=n) / ncell
    village = (dens >= 0.4) & (cen_m < 0.3) & (ind_m < 0.5)
    spacing = np.select([village, dens >= 1.3, dens >= 0.5, dens >= 0.12, ind_m > 0.3],
                        [55.0, 80.0, 115.0, 170.0, 240.0], 280.0)
    spacing[water] = 0.0
    return spacing, village


def make_fabric(area_m: BaseGeometry, xy: np.ndarray, persons: np.ndarray, industrial: np.ndarray,
                commercial: np.ndarray, *, seed: int, streets: gpd.GeoDataFrame | None = None,
                water: gpd.GeoDataFrame | None = None) -> Fabric:
    """Streets, water, faces, land use and blocks over ``area_m`` (EPSG:4547).

    ``xy`` are the cell centres (EPSG:4547), ``persons`` the persons per cell from the population surface,
    ``industrial`` / ``commercial`` the land-use intensities per cell (0…1). ``streets`` / ``water`` (WGS84, e.g.
    from OpenStreetMap) replace the synthetic ones when given.
    """
    rng = np.random.default_rng(seed)
    cen = centre_intensity(xy[:, 0], xy[:, 1])
    source = {"streets": "synthetic" if streets is None else "osm", "water": "synthetic" if water is None else "osm"}
    if water is None:
        river = river_channel(area_m)
    else:
        river = shapely.make_valid(shapely.union_all(to_metric(water).geometry.to_numpy()))
    if streets is None:
        main = main_roads(area_m, rng)
        sb = polygonize_faces(main.geometry.to_numpy(), area_m, river)
        sb_water = shapely.contains(river, shapely.point_on_surface(sb)) if not river.is_empty else \
            np.zeros(len(sb), bool)
        spacing, village = _local_spacing(sb, cells_to_faces(sb, xy), persons, industrial, cen, sb_water)
        locals_ = local_streets(sb, spacing, village, rng)
        if not river.is_empty and len(locals_):  # no local bridges
            locals_ = locals_.set_geometry(shapely.difference(locals_.geometry.to_numpy(), river))
            locals_ = locals_[~locals_.geometry.is_empty].explode(index_parts=False).reset_index(drop=True)
        street_m = pd.concat([main, locals_], ignore_index=True)
    else:
        street_m = to_metric(streets)[["class", "width_m", "geometry"]].reset_index(drop=True)
    dividing = street_m[street_m["class"].isin(FACE_CLASSES)].geometry.to_numpy()
    faces = polygonize_faces(dividing, area_m, river)
    cell_face = cells_to_faces(faces, xy)
    pos = shapely.point_on_surface(faces)
    is_water = shapely.contains(river, pos) if not river.is_empty else np.zeros(len(faces), bool)
    is_park = np.zeros(len(faces), bool)
    for lo, la, r in _PARKS:
        px, py = lnglat_to_xy(np.array([lo]), np.array([la]))
        is_park |= shapely.dwithin(shapely.Point(px[0], py[0]), pos, r)
    land_use = classify_faces(faces, cell_face, persons, industrial, commercial, cen, is_water, is_park, rng)
    minor_half = np.where(land_use == "village", LANE_WIDTH_M, STREET_WIDTH_M["local"]) / 2.0
    blocks = cut_blocks(faces, land_use, street_m, minor_half)
    # persons of the population surface per block (a face's persons shared over its parts by area): how many
    # homes a block needs (twin.synth.buildings thins the lattice of sparsely lived blocks)
    face_persons = np.bincount(cell_face, weights=persons, minlength=len(faces))
    face_of = blocks["face"].to_numpy()
    part_area = blocks["area_m2"].to_numpy(dtype=float)
    blocks["persons"] = face_persons[face_of] * part_area / np.bincount(face_of, weights=part_area,
                                                                          minlength=len(faces))[face_of]
    water_parts = [("river", g) for g in shapely.get_parts(river) if not g.is_empty and g.area > 0] \
        if water is None else []
    blocks, extra = _ponds_and_lakes(blocks, rng) if water is None else (blocks, [])
    water_m = gpd.GeoDataFrame({"kind": [k for k, _ in water_parts + extra]},
                               geometry=[g for _, g in water_parts + extra], crs=METRIC_CRS)
    if water is not None:
        water_m = to_metric(water)[["kind", "geometry"]].reset_index(drop=True)
    return Fabric(streets=street_m, water=water_m, faces=faces, land_use=land_use, cell_face=cell_face,
                  blocks=blocks, source=source)


def _ponds_and_lakes(blocks: gpd.GeoDataFrame, rng: np.random.Generator
                     ) -> tuple[gpd.GeoDataFrame, list[tuple[str, BaseGeometry]]]:
    """Fish ponds in farm blocks, a lake in large parks; both are cut out of their blocks."""
    geoms = blocks.geometry.to_numpy().copy()
    extra: list[tuple[str, BaseGeometry]] = []
    for use, maker, kind in (("farm", fish_ponds, "fish_pond"), ("park", park_lakes, "lake")):
        idx = np.flatnonzero(blocks["land_use"].to_numpy() == use)
        polys, owner = maker(geoms[idx], rng)
        if len(polys) == 0:
            continue
        extra += [(kind, g) for g in polys]
        order = np.argsort(owner, kind="stable")
        owner, polys = owner[order], polys[order]
        starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
        ends = np.r_[starts[1:], len(owner)]
        for s, e in zip(starts, ends):
            b = idx[owner[s]]
            geoms[b] = shapely.difference(geoms[b], shapely.union_all(polys[s:e]))
    out = blocks.set_geometry(geoms)
    out["area_m2"] = shapely.area(geoms).astype(np.float32)
    return out, extra
