"""raster → cells: sum preserved, any CRS, bad rasters named (the district's own cells; no twin needed)."""

import numpy as np
import pytest
import rasterio.transform

from twin.cells import PARTITION_RES, geometry_to_cells
from twin.crs import lnglat_to_xy
from twin.errors import CRSError, IngestError, OutsideDistrictError
from twin.geography import district_boundary
from twin.ingest.raster import raster_to_cells
from twin.io import write_raster


@pytest.fixture(scope="module")
def district():
    return district_boundary()


@pytest.fixture(scope="module")
def cells(district):
    return geometry_to_cells(district, PARTITION_RES, contain="overlap")


def test_worldpop_like_raster_larger_than_district(tmp_path, cells, district):
    # 3 arc-second pixels over a box larger than the district: part of the people live in Nanhai/Shunde
    transform = rasterio.transform.from_origin(112.95, 23.08, 1 / 1200, 1 / 1200)
    arr = np.random.default_rng(0).uniform(0, 50, (200, 260))
    path = write_raster(arr, transform, "EPSG:4326", tmp_path / "wp.tif")
    r = raster_to_cells(path, cells, res=PARTITION_RES, district=district)
    assert r.raster_total == pytest.approx(arr.astype(np.float32).sum(), rel=1e-6)
    assert r.inside_total + r.outside_total == pytest.approx(r.raster_total, rel=1e-9)
    assert r.counts.sum() == pytest.approx(r.inside_total, rel=1e-12)
    assert 0.2 < r.inside_total / r.raster_total < 0.8


def test_projected_raster_inside_district_keeps_everything(tmp_path, cells, district):
    x0, y0 = lnglat_to_xy(np.array([113.10]), np.array([23.03]))
    transform = rasterio.transform.from_origin(x0[0], y0[0], 100.0, 100.0)
    arr = np.full((10, 10), 7.0)
    arr[3, 3] = np.nan
    path = write_raster(arr, transform, "EPSG:4547", tmp_path / "metric.tif")
    r = raster_to_cells(path, cells, res=PARTITION_RES, district=district)
    assert r.raster_total == pytest.approx(99 * 7.0)  # NaN pixel counts 0
    assert r.inside_total == pytest.approx(99 * 7.0)
    # 1 km² of 700 people over res-11 cells (≈ 2,150 m²): ≈ 465 cells touched
    assert 400 < (r.counts > 0).sum() < 560


def test_raster_without_crs_is_refused(tmp_path, cells):
    import rasterio

    p = tmp_path / "nocrs.tif"
    with rasterio.open(p, "w", driver="GTiff", height=2, width=2, count=1, dtype="float32",
                       transform=rasterio.transform.from_origin(113.1, 23.03, 0.001, 0.001)) as dst:
        dst.write(np.ones((1, 2, 2), dtype=np.float32))
    with pytest.raises(CRSError, match="nocrs.tif.*no CRS"):
        raster_to_cells(p, cells, res=PARTITION_RES)


def test_raster_elsewhere_is_refused(tmp_path, cells, district):
    transform = rasterio.transform.from_origin(116.3, 39.9, 0.001, 0.001)  # Beijing
    path = write_raster(np.ones((5, 5)), transform, "EPSG:4326", tmp_path / "beijing.tif")
    with pytest.raises(OutsideDistrictError, match="beijing.tif"):
        raster_to_cells(path, cells, res=PARTITION_RES, district=district)


def test_unreadable_raster_is_named(tmp_path, cells):
    p = tmp_path / "broken.tif"
    p.write_bytes(b"not a tiff")
    with pytest.raises(IngestError, match="broken.tif"):
        raster_to_cells(p, cells, res=PARTITION_RES)

