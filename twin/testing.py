"""A small but complete twin for unit tests (like ``geopandas.testing``): built in seconds by the real pipeline.

>>> from twin.testing import small_twin
>>> t = small_twin(tmp_path)                       # doctest: +SKIP
>>> t.manifest["counts"]["residents"], len(t.grids)  # doctest: +SKIP
(4000, 10)

The small twin is :func:`twin.synth.build.build_twin` restricted to a disc of radius :data:`SMALL_RADIUS_M` around
the Zumiao town seat, divided into the first four communities of 祖庙街道 (real NBS codes, synthetic polygons), with
small totals. It has every table, a manifest and ``extent.geojson`` (the area it covers, its ``district``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from twin.crs import geometry_to_storage, lnglat_to_xy
from twin.model import Twin, load
from twin.synth.build import build_twin

__all__ = ["small_twin", "small_extent", "SMALL_COMMUNITIES", "SMALL_TOTALS", "SMALL_GRIDS", "SMALL_RADIUS_M"]

SMALL_CENTRE = (113.113, 23.030)  # Zumiao town seat (WGS84 lng, lat)
SMALL_RADIUS_M = 900.0
SMALL_COMMUNITIES = ("440604012001", "440604012002", "440604012005", "440604012006")
SMALL_TOTALS = {"residents": 4000, "businesses": 800, "workers": 14, "cameras": 200}
SMALL_GRIDS = 10


def small_extent(centre: tuple[float, float] = SMALL_CENTRE, radius_m: float = SMALL_RADIUS_M) -> BaseGeometry:
    """A WGS84 disc of ``radius_m`` metres (measured in EPSG:4547) around ``centre`` (lng, lat)."""
    x, y = lnglat_to_xy(np.array([centre[0]]), np.array([centre[1]]))
    return geometry_to_storage(shapely.Point(x[0], y[0]).buffer(radius_m, quad_segs=16))


def small_twin(tmp_dir: str | Path, *, seed: int = 7, n_grids: int = SMALL_GRIDS) -> Twin:
    """Build the small twin into ``tmp_dir`` (reused when already built there with this seed) and load it.

    Same seed → same files. The returned twin's ``district`` is its extent, so :func:`twin.validate` checks the
    union of its grids against the area it covers.
    """
    root = Path(tmp_dir)
    manifest = root / "manifest.json"
    if not manifest.exists() or load(root).seed != seed or len(load(root).grids) != n_grids:
        build_twin(root, seed=seed, n_grids=n_grids, progress=False, extent=small_extent(),
                   communities=list(SMALL_COMMUNITIES), totals=SMALL_TOTALS)
    t = load(root)
    return t
