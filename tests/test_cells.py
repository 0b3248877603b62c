import numpy as np
import pytest
import shapely

from twin.cells import (
    PARTITION_RES,
    cell_edge_m,
    cells_adjacency,
    cells_to_geometry,
    cells_to_latlng,
    geometry_to_cells,
    latlng_to_cells,
)
from twin.crs import area_km2
from twin.errors import ValidationError


def test_cover_modes_nest():
    box = shapely.box(113.10, 23.02, 113.11, 23.03)
    full = geometry_to_cells(box, PARTITION_RES, contain="full")
    center = geometry_to_cells(box, PARTITION_RES, contain="center")
    overlap = geometry_to_cells(box, PARTITION_RES, contain="overlap")
    assert set(full) <= set(center) <= set(overlap)
    assert len(full) > 100
    assert area_km2(cells_to_geometry(overlap)) >= area_km2(box) >= area_km2(cells_to_geometry(full))


def test_points_land_in_their_cells():
    lat, lng = np.array([23.021, 23.0]), np.array([113.1, 113.05])
    cells = latlng_to_cells(lat, lng, PARTITION_RES)
    clat, clng = cells_to_latlng(cells)
    assert np.all(np.hypot(clat - lat, clng - lng) < 0.0005)  # centre within ~50 m (edge ≈ 28 m)
    assert cell_edge_m(PARTITION_RES) == pytest.approx(28, rel=0.2)


def test_adjacency_is_symmetric_with_six_neighbours_inside():
    box = shapely.box(113.10, 23.02, 113.105, 23.025)
    cells = geometry_to_cells(box, PARTITION_RES, contain="center")
    adj = cells_adjacency(cells)
    assert (adj != adj.T).nnz == 0
    deg = np.asarray(adj.sum(axis=1)).ravel()
    assert deg.max() == 6 and deg.min() >= 1


def test_non_polygon_is_refused():
    with pytest.raises(ValidationError, match="LineString"):
        geometry_to_cells(shapely.LineString([(113, 23), (113.1, 23.1)]), 9)
