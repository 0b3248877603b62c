"""The synthetic population surface and the rounding the generators share."""

import numpy as np
import pytest
import shapely

from twin.geography import district_boundary
from twin.synth.population import land_use_intensity, largest_remainder, synthesize_population_raster
from twin.testing import small_extent


def test_largest_remainder_exact():
    v = np.array([0.4, 0.4, 0.2, 3.0])
    out = largest_remainder(v, 10)
    assert out.sum() == 10 and (out >= 0).all()


def test_largest_remainder_of_nothing_is_zero():
    assert largest_remainder(np.zeros(3), 5).tolist() == [0, 0, 0]


def test_synthetic_raster_is_calibrated_and_empty_outside():
    area = shapely.intersection(district_boundary(), small_extent())
    arr, transform = synthesize_population_raster(area, seed=1, total=5000.0)
    assert arr.sum() == pytest.approx(5000.0) and (arr >= 0).all()
    assert arr[0].sum() == 0 and arr[:, 0].sum() == 0  # the padding ring lies outside the area
    assert transform.a == pytest.approx(0.001)


def test_land_use_intensities_are_in_unit_range():
    ind, com = land_use_intensity(np.array([113.035, 113.115, 113.0]), np.array([23.040, 23.032, 22.95]))
    assert ((ind >= 0) & (ind <= 1) & (com >= 0) & (com <= 1)).all()
    assert ind[0] > 0.9 and com[1] > 0.9  # at an industrial and a commercial focus
