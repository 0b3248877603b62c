import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.cells import cells_adjacency, cells_to_latlng, geometry_to_cells
from twin.crs import lnglat_to_xy
from twin.partition.regions import allocate_counts, bisect_labels, label_components, power_assign, repair_contiguity


@pytest.fixture(scope="module")
def patch():
    cells = geometry_to_cells(shapely.box(113.08, 23.00, 113.10, 23.02), 11, contain="center")
    lat, lng = cells_to_latlng(cells)
    x, y = lnglat_to_xy(lng, lat)
    return cells, np.column_stack([x, y]), cells_adjacency(cells)


@given(st.lists(st.floats(0, 1000), min_size=1, max_size=30), st.integers(0, 500))
@settings(max_examples=200, deadline=None)
def test_allocate_counts_is_exact_with_minimum(weights, extra):
    w = np.array(weights) + 1e-6
    total = len(w) + extra
    out = allocate_counts(w, total, minimum=1)
    assert out.sum() == total and out.min() >= 1


def test_bisection_balances_weight(patch):
    _, xy, _ = patch
    w = np.random.default_rng(1).uniform(0, 10, len(xy))
    lab = bisect_labels(xy, w, 7, seed=3)
    sums = np.bincount(lab, weights=w)
    assert len(sums) == 7
    assert sums.max() / sums.min() < 1.1


def test_repair_makes_every_label_one_piece(patch):
    _, xy, adj = patch
    rng = np.random.default_rng(0)
    lab = rng.integers(0, 5, len(xy))  # salt-and-pepper: many pieces
    fixed = repair_contiguity(lab, adj)
    ncomp, _ = label_components(fixed, adj)
    assert ncomp == len(np.unique(fixed))


def test_power_assign_matches_shares(patch):
    _, xy, _ = patch
    seeds = xy[[0, len(xy) // 2, -1]]
    lab = power_assign(xy, seeds, np.array([0.2, 0.3, 0.5]))
    got = np.bincount(lab, minlength=3) / len(xy)
    assert np.allclose(got, [0.2, 0.3, 0.5], atol=0.01)
