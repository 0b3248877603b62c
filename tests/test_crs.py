import geopandas as gpd
import numpy as np
import pytest
import shapely

from twin.crs import (
    METRIC_CRS,
    STORAGE_CRS,
    area_km2,
    gcj02_to_wgs84,
    geometry_to_metric,
    geometry_to_storage,
    lnglat_to_xy,
    to_metric,
    wgs84_to_gcj02,
    xy_to_lnglat,
)
from twin.errors import CRSError


def test_100m_square_round_trip_keeps_its_area():
    x0, y0 = lnglat_to_xy(np.array([113.1]), np.array([23.02]))
    sq = shapely.box(x0[0], y0[0], x0[0] + 100, y0[0] + 100)
    wgs = geometry_to_storage(sq)
    assert 112 < wgs.bounds[0] < 114 and 22 < wgs.bounds[1] < 24  # lng/lat order, not swapped
    back = geometry_to_metric(wgs)
    assert back.area == pytest.approx(10_000, rel=1e-3)
    assert area_km2(wgs) == pytest.approx(0.01, rel=1e-3)


def test_metric_axis_order_is_easting_northing():
    x, y = lnglat_to_xy(np.array([114.0]), np.array([23.0]))  # central meridian of EPSG:4547
    assert x[0] == pytest.approx(500_000, abs=1)  # false easting, no zone prefix in 4547
    assert 2_500_000 < y[0] < 2_600_000
    lng, lat = xy_to_lnglat(x, y)
    assert lng[0] == pytest.approx(114.0) and lat[0] == pytest.approx(23.0)


def test_naive_frames_are_refused():
    g = gpd.GeoSeries([shapely.Point(113, 23)])
    with pytest.raises(CRSError, match="no CRS"):
        to_metric(g)


def test_frames_reproject():
    g = gpd.GeoSeries([shapely.Point(113.1, 23.0)], crs=STORAGE_CRS)
    assert to_metric(g).crs.to_string() == METRIC_CRS


def test_gcj02_inverse_is_exact_and_offset_is_about_600m_here():
    lng, lat = np.array([113.1, 113.0]), np.array([23.02, 22.95])
    glng, glat = wgs84_to_gcj02(lng, lat)
    x0, y0 = lnglat_to_xy(lng, lat)
    x1, y1 = lnglat_to_xy(glng, glat)
    shift = np.hypot(x1 - x0, y1 - y0)
    assert np.all((shift > 400) & (shift < 800))
    blng, blat = gcj02_to_wgs84(glng, glat)
    assert np.max(np.abs(blng - lng)) < 1e-8 and np.max(np.abs(blat - lat)) < 1e-8
