"""Faces, land use and blocks of the city fabric (EPSG:4547 metres).

*Faces* are the polygons between street centre lines, water edges and the area boundary (the noded lines
polygonised): they tile the area, so towns, communities and grids built as unions of faces have edges that run
along streets or water. *Blocks* are what is left of the land once the streets (buffered by half their width) and
the water are taken out; several block parts may share a face.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from twin.crs import METRIC_CRS

__all__ = ["FACE_CLASSES", "polygonize_faces", "cells_to_faces", "classify_faces", "cut_blocks", "LAND_USES"]

FACE_CLASSES = ("expressway", "arterial", "collector", "local")
"""Street classes that divide the land into faces (OSM ``service`` ways and paths do not; they are cut out of
the blocks they cross)."""

LAND_USES = ("old_town", "towers", "village", "housing", "commercial", "industrial", "public", "park", "farm",
             "vacant", "water")
"""Face land use: old-town mid-rise slabs, tower estates, village houses (城中村), low housing, commercial,
industrial sheds, schools/public sites, parks, farm land (fish ponds), vacant land, water."""

# persons per area of a face relative to the area's mean (so a small test twin with few persons classifies alike)
_OLD_TOWN_DENSITY = 1.9
_DENSE = 1.05
_MEDIUM = 0.3


def polygonize_faces(lines: np.ndarray, area_m: BaseGeometry, water_m: BaseGeometry | None = None) -> np.ndarray:
    """Faces (Polygons) of the noded ``lines`` + the boundaries of ``area_m`` and ``water_m``, inside ``area_m``."""
    edges = [*lines, area_m.boundary]
    if water_m is not None and not water_m.is_empty:
        edges.append(water_m.boundary)
    noded = shapely.union_all(np.asarray(edges, dtype=object))
    faces = shapely.get_parts(shapely.polygonize(shapely.get_parts(noded)))
    shapely.prepare(area_m)
    keep = shapely.contains_properly(area_m, shapely.point_on_surface(faces)) & (shapely.area(faces) > 1.0)
    return faces[keep]


def cells_to_faces(faces: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Index of the face containing each cell centre (``xy``, EPSG:4547); the nearest face when none does."""
    tree = shapely.STRtree(faces)
    pts = shapely.points(xy)
    out = np.full(len(xy), -1, dtype=np.int64)
    hit = tree.query(pts, predicate="within")
    out[hit[0]] = hit[1]
    miss = np.flatnonzero(out < 0)
    if len(miss):
        near = tree.query_nearest(pts[miss], return_distance=False, all_matches=False)
        out[miss[near[0]]] = near[1]
    return out


def classify_faces(faces: np.ndarray, cell_face: np.ndarray, persons: np.ndarray, industrial: np.ndarray,
                   commercial: np.ndarray, centre: np.ndarray, is_water: np.ndarray, is_park: np.ndarray,
                   rng: np.random.Generator) -> np.ndarray:
    """A land use (:data:`LAND_USES`) per face from the cells it holds: persons per area (relative to the mean),
    the industrial, commercial and city-centre intensities (0…1, per cell), and the water and park masks."""
    n = len(faces)
    ncell = np.bincount(cell_face, minlength=n)
    pop = np.bincount(cell_face, weights=persons, minlength=n)
    mean = lambda v: np.bincount(cell_face, weights=v, minlength=n) / np.maximum(ncell, 1)  # noqa: E731
    ind, com, cen = mean(industrial), mean(commercial), mean(centre)
    area = shapely.area(faces)
    dens = pop / np.maximum(area, 500.0) / (persons.sum() / max(area.sum(), 1.0))
    u = rng.random(n)
    use = np.full(n, "vacant", dtype=object)
    empty = pop == 0
    use[empty & (u < 0.5)] = "farm"
    use[empty & (ind > 0.25) & (u < 0.85)] = "industrial"
    use[empty & (ind <= 0.25) & (com > 0.35) & (u < 0.7)] = "commercial"
    use[empty & (ind <= 0.25) & (u > 0.93)] = "public"
    lived = ~empty
    use[lived] = "housing"
    use[lived & (dens >= _MEDIUM)] = np.where(u[lived & (dens >= _MEDIUM)] < 0.45, "towers", "village")
    dense = lived & (dens >= _DENSE)
    use[dense] = np.where(cen[dense] > 0.35, np.where(u[dense] < 0.3, "towers", "old_town"),
                          np.where(u[dense] < 0.25, "towers", "village"))
    use[lived & (dens >= _OLD_TOWN_DENSITY) & (cen > 0.5) & (u < 0.75)] = "old_town"
    use[lived & (rng.random(n) < 0.035)] = "public"  # schools, clinics, offices among the homes
    use[lived & (com > 0.5) & (rng.random(n) < 0.25)] = "commercial"
    use[is_park] = "park"
    use[is_water] = "water"
    return use.astype(str)


_PIECE_VERTICES = 6


def _short_pieces(lines: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut LineStrings into consecutive pieces of ``k`` segments (sharing end vertices); returns (pieces, line)."""
    xy, line = shapely.get_coordinates(lines, return_index=True)
    start = np.searchsorted(line, line, side="left")
    pos = np.arange(len(line)) - start
    piece = pos // k
    joint = (pos % k == 0) & (pos > 0)  # a piece's last vertex is the next one's first
    xy2 = np.concatenate([xy, xy[joint]])
    line2 = np.concatenate([line, line[joint]])
    piece2 = np.concatenate([piece, piece[joint] - 1])
    pos2 = np.concatenate([pos, pos[joint]])
    order = np.lexsort((pos2, piece2, line2))
    key = line2[order] * (int(piece2.max()) + 2) + piece2[order]
    _, gid, counts = np.unique(key, return_inverse=True, return_counts=True)
    ok = counts[gid] >= 2
    _, gid_ok = np.unique(gid[ok], return_inverse=True)
    geoms = shapely.linestrings(xy2[order][ok], indices=gid_ok)
    first = np.unique(gid_ok, return_index=True)[1]
    return geoms, line2[order][ok][first]


def cut_blocks(faces: np.ndarray, land_use: np.ndarray, streets: gpd.GeoDataFrame, minor_half_m: np.ndarray
               ) -> gpd.GeoDataFrame:
    """Blocks: each land face shrunk by ``minor_half_m`` (half the width of its minor streets, per face) less the
    wider streets that touch it (each buffered by half its ``width_m``). Water faces give no block.

    Returns one row per block part (EPSG:4547): ``block_id``, ``face``, ``land_use``, ``area_m2``, geometry.
    """
    land = np.flatnonzero(land_use != "water")
    geoms = shapely.buffer(faces[land], -minor_half_m[land], quad_segs=2, join_style="mitre")
    half = streets["width_m"].to_numpy(dtype=float) / 2.0
    wide = (half > float(np.min(minor_half_m)) + 1e-9) | ~streets["class"].isin(FACE_CLASSES).to_numpy()
    # buffer short pieces, not whole roads: a 20 km arterial's buffer would make every face's difference slow
    pieces, owner = _short_pieces(streets.geometry.to_numpy()[wide], _PIECE_VERTICES)
    bufs = shapely.buffer(pieces, half[wide][owner], quad_segs=2)
    pair_face, pair_buf = shapely.STRtree(bufs).query(geoms, predicate="intersects")
    order = np.lexsort((pair_buf, pair_face))
    pair_face, pair_buf = pair_face[order], pair_buf[order]
    rank = np.arange(len(pair_face)) - np.searchsorted(pair_face, pair_face, side="left")
    for r in range(int(rank.max()) + 1 if len(rank) else 0):  # one vectorised difference per round (measured
        sel = rank == r                                         # faster than a row-wise union_all, then one)
        geoms[pair_face[sel]] = shapely.difference(geoms[pair_face[sel]], bufs[pair_buf[sel]])
    parts, parts_idx = shapely.get_parts(geoms, return_index=True)
    keep = shapely.area(parts) > 20.0
    parts, face_of = parts[keep], land[parts_idx[keep]]
    order = np.lexsort((shapely.get_coordinates(shapely.centroid(parts))[:, 0], face_of))
    parts, face_of = parts[order], face_of[order]
    gdf = gpd.GeoDataFrame({"block_id": np.arange(len(parts), dtype=np.int32), "face": face_of.astype(np.int32),
                            "land_use": land_use[face_of]}, geometry=parts, crs=METRIC_CRS)
    gdf["area_m2"] = shapely.area(parts).astype(np.float32)
    return gdf
