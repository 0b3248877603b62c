"""Towns, communities and grids as unions of blocks: the fabric's pieces, and unit polygons built from faces.

A *piece* is the set of cells whose centres lie in one face (split into its connected parts over edge-sharing
cells, so a piece is always one connected piece of cells). Faces larger than ``max_face_m2`` (e.g. farm land
between sparse OSM roads) are not kept whole: each of their cells is a piece of its own, so the regionalisation
always has enough pieces. Units built from pieces are unions of whole blocks, still stored as H3 cells; their
polygons are unions of faces (edges on street centre lines or water), and of hexagon ∩ face for split faces.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import scipy.sparse as sp
import shapely
from scipy.spatial import cKDTree

from twin.cells import cell_boundaries
from twin.crs import METRIC_CRS, lnglat_to_xy, to_storage
from twin.partition.regions import label_components, repair_contiguity

__all__ = ["fabric_pieces", "aggregate_pieces", "majority_by_piece", "face_units", "split_face_pieces",
           "fabric_unit_polygons"]


def fabric_pieces(cell_face: np.ndarray, adjacency: sp.csr_matrix, face_area_m2: np.ndarray, *,
                  max_face_m2: float) -> np.ndarray:
    """Piece index (0…P-1) per cell: connected cells of one face; every cell of a face > ``max_face_m2`` alone."""
    n = len(cell_face)
    big = face_area_m2[cell_face] > max_face_m2
    key = np.where(big, len(face_area_m2) + np.arange(n), cell_face)
    _, comp = label_components(np.unique(key, return_inverse=True)[1], adjacency)
    return np.unique(comp, return_inverse=True)[1]


def aggregate_pieces(piece: np.ndarray, xy: np.ndarray, adjacency: sp.csr_matrix
                     ) -> tuple[np.ndarray, sp.csr_matrix, np.ndarray]:
    """Per piece: mean cell centre (EPSG:4547), adjacency (pieces with edge-sharing cells) and number of cells."""
    n_cells, n = len(piece), int(piece.max()) + 1
    inc = sp.csr_matrix((np.ones(n_cells), (np.arange(n_cells), piece)), shape=(n_cells, n))
    size = np.bincount(piece, minlength=n).astype(float)
    pxy = np.column_stack([np.bincount(piece, weights=xy[:, 0], minlength=n) / size,
                           np.bincount(piece, weights=xy[:, 1], minlength=n) / size])
    adj = (inc.T @ adjacency.astype(np.float64) @ inc).tocsr()
    adj.setdiag(0)
    adj.eliminate_zeros()
    return pxy, (adj > 0).tocsr(), size


def majority_by_piece(piece: np.ndarray, labels: np.ndarray, adjacency: sp.csr_matrix) -> np.ndarray:
    """The most common of ``labels`` (ints, per cell) in each piece, then made contiguous over ``adjacency``."""
    n, k = int(piece.max()) + 1, int(labels.max()) + 1
    counts = sp.csr_matrix((np.ones(len(piece)), (piece, labels)), shape=(n, k)).toarray()
    return repair_contiguity(np.argmax(counts, axis=1), adjacency)


def face_units(faces: np.ndarray, cell_face: np.ndarray, unit_of_cell: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """The unit (int) of each face: the most common among its cells, or the nearest cell's for a face with none."""
    n, k = len(faces), int(unit_of_cell.max()) + 1
    counts = sp.csr_matrix((np.ones(len(cell_face)), (cell_face, unit_of_cell)), shape=(n, k))
    out = np.asarray(counts.argmax(axis=1)).ravel()
    empty = np.asarray(counts.sum(axis=1)).ravel() == 0
    if empty.any():
        pos = shapely.get_coordinates(shapely.point_on_surface(faces[empty]))
        out[empty] = unit_of_cell[cKDTree(xy).query(pos)[1]]
    return out


def _hexagons_m(cells: np.ndarray) -> np.ndarray:
    """The cells' hexagons (EPSG:4547); res-11 cells here are hexagons (no pentagon lies in Guangdong)."""
    if len(cells) == 0:
        return np.empty(0, dtype=object)
    ring = np.asarray(cell_boundaries(cells), dtype=float)  # (n, 6, 2) lng, lat
    x, y = lnglat_to_xy(ring[..., 0].ravel(), ring[..., 1].ravel())
    xy = np.stack([x.reshape(ring.shape[:2]), y.reshape(ring.shape[:2])], axis=2)
    return shapely.polygons(np.concatenate([xy, xy[:, :1]], axis=1))


def split_face_pieces(faces: np.ndarray, split: np.ndarray, cells: np.ndarray, xy: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Hexagon ∩ face for every ``split`` face and every cell hexagon meeting it: (pieces, cell index), EPSG:4547.
    Together they cover the split faces exactly (each cell's hexagon lies in the set of cells)."""
    big = np.flatnonzero(split)
    if len(big) == 0:
        return np.empty(0, dtype=object), np.empty(0, dtype=np.int64)
    near = np.unique(shapely.STRtree(shapely.points(xy)).query(shapely.buffer(faces[big], 40.0))[1])
    hexes = _hexagons_m(cells[near])
    pairs = shapely.STRtree(hexes).query(faces[big], predicate="intersects")
    pieces = shapely.intersection(hexes[pairs[1]], faces[big][pairs[0]])
    ok = shapely.area(pieces) > 0.01
    return pieces[ok], near[pairs[1][ok]]


def fabric_unit_polygons(faces: np.ndarray, split: np.ndarray, pieces: tuple[np.ndarray, np.ndarray],
                         cells: np.ndarray, unit_of_cell: np.ndarray, face_unit: np.ndarray, codes: np.ndarray,
                         name: str) -> gpd.GeoDataFrame:
    """One polygon per unit (WGS84; ``area_km2`` measured in EPSG:4547, ``n_cells``): the union of its faces, and
    of the ``pieces`` (:func:`split_face_pieces`) of its cells in the ``split`` faces.

    ``unit_of_cell`` and ``face_unit`` (:func:`face_units`) are ints into ``codes``; ``faces`` are EPSG:4547 and
    tile the area, so the units tile it too. A unit left with no face and no piece (its cells all in faces owned
    by others) gets its cells' hexagons, clipped to the area.
    """
    owner_f = face_unit[~split]
    geoms_f = faces[~split]
    hex_geoms: list[object] = list(pieces[0])
    hex_owner: list[int] = list(unit_of_cell[pieces[1]])
    lost = np.setdiff1d(np.unique(unit_of_cell), np.concatenate([owner_f, np.asarray(hex_owner, dtype=np.int64)]))
    if len(lost):
        area = shapely.coverage_union_all(faces)
        for u in lost:
            hexes = _hexagons_m(cells[unit_of_cell == u])
            hex_geoms.append(shapely.intersection(shapely.union_all(hexes), area))
            hex_owner.append(int(u))
    rows = []
    hex_owner_a = np.asarray(hex_owner, dtype=np.int64)
    hex_geoms_a = np.asarray(hex_geoms, dtype=object)
    order = np.argsort(owner_f, kind="stable")
    bounds = np.searchsorted(owner_f[order], np.arange(len(codes) + 1))
    for u in range(len(codes)):
        mine = geoms_f[order[bounds[u]:bounds[u + 1]]]
        extra = hex_geoms_a[hex_owner_a == u] if len(hex_owner_a) else hex_geoms_a
        if len(mine) == 0 and len(extra) == 0:
            continue
        g = shapely.coverage_union_all(mine) if len(mine) else shapely.Polygon()
        if len(extra):
            g = shapely.union_all(np.append(extra, g))
        rows.append((codes[u], shapely.make_valid(g)))
    gdf = gpd.GeoDataFrame({name: [r[0] for r in rows]}, geometry=[r[1] for r in rows], crs=METRIC_CRS)
    gdf["area_km2"] = gdf.geometry.area.to_numpy() / 1e6
    n_cells = pd.Series(np.bincount(unit_of_cell, minlength=len(codes)), index=codes)
    gdf["n_cells"] = n_cells.reindex(gdf[name]).to_numpy().astype(np.int32)
    gdf = to_storage(gdf)
    return gdf[[name, "n_cells", "geometry", "area_km2"]].sort_values(name).reset_index(drop=True)
