"""OSM streets and water (no OSM buildings) replace the synthetic fabric: blocks, units and synthetic buildings
follow the OSM streets; a sparse OSM network still yields every grid (large faces are split into cells)."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

import twin
from twin.crs import lnglat_to_xy, to_metric, xy_to_lnglat
from twin.partition.validate import clear_boundary_share
from twin.synth.build import build_twin
from twin.testing import SMALL_CENTRE, SMALL_COMMUNITIES, SMALL_GRIDS, SMALL_TOTALS, small_extent

osmium = pytest.importorskip("osmium")
from osmium.osm.mutable import Node, Way  # noqa: E402


def _write(path, lines):
    """A PBF of ways given as ([(x, y) metres from the small twin's centre, EPSG:4547], tags)."""
    w = osmium.SimpleWriter(str(path))
    cx, cy = (float(v[0]) for v in lnglat_to_xy(np.array([SMALL_CENTRE[0]]), np.array([SMALL_CENTRE[1]])))
    nid = 0
    for wid, (pts, tags) in enumerate(lines, start=1):
        lng, lat = xy_to_lnglat(np.array([p[0] + cx for p in pts]), np.array([p[1] + cy for p in pts]))
        ids = []
        for x, y in zip(lng, lat):
            nid += 1
            w.add_node(Node(id=nid, location=(float(x), float(y)), tags={}))
            ids.append(nid)
        w.add_way(Way(id=wid, nodes=ids, tags=tags))
    w.close()
    return path


def _grid_city(path, spacing):
    ways = []
    for k in np.arange(-1000, 1001, spacing):
        cls = "primary" if k % 600 == 0 else "residential"
        ways.append(([(-1000, k), (1000, k)], {"highway": cls}))
        ways.append(([(k, -1000), (k, 1000)], {"highway": cls}))
    ways.append(([(-1000, 430), (1000, 470)], {"waterway": "river"}))
    return _write(path, ways)


def _build(tmp_path, pbf):
    return twin.load(build_twin(tmp_path / "t", seed=7, n_grids=SMALL_GRIDS, progress=False, extent=small_extent(),
                                communities=list(SMALL_COMMUNITIES), totals=SMALL_TOTALS, osm=pbf))


def test_osm_streets_make_the_blocks_and_the_boundaries(tmp_path):
    t = _build(tmp_path, _grid_city(tmp_path / "grid.osm.pbf", 150))
    m = t.manifest
    assert m["sources"]["streets"] == m["sources"]["water"] == m["sources"]["blocks"] == "osm"
    assert m["sources"]["buildings"] == "synthetic" and not m["synthetic"]["streets"]
    assert "osm_id" in t.streets.columns and not t.blocks["synthetic"].any()
    assert twin.validate(t).ok
    # synthetic buildings stand in the OSM blocks, off the OSM streets and the river
    bm = to_metric(t.buildings).geometry.to_numpy()
    inside = shapely.STRtree(t.blocks.geometry.to_numpy()).query(t.buildings.geometry.to_numpy(), predicate="within")
    assert len(np.unique(inside[0])) == len(t.buildings)
    s = to_metric(t.streets)
    bufs = shapely.buffer(s.geometry.to_numpy(), s["width_m"].to_numpy(dtype=float) / 2 - 0.01)
    assert shapely.STRtree(bufs).query(bm, predicate="intersects").shape[1] == 0
    assert shapely.STRtree(to_metric(t.water).geometry.to_numpy()).query(bm, predicate="intersects").shape[1] == 0
    grids = t.cells["grid_code"].to_numpy().astype(str)
    assert clear_boundary_share(t, grids) >= 0.9
    assert t.manifest["counts"]["residents"] == SMALL_TOTALS["residents"]


def test_sparse_osm_streets_still_give_every_grid(tmp_path):
    """Two roads only: the faces are too large to keep whole, so their cells are divided one by one."""
    pbf = _write(tmp_path / "sparse.osm.pbf", [([(-1000, 0), (1000, 0)], {"highway": "primary"}),
                                               ([(0, -1000), (0, 1000)], {"highway": "secondary"})])
    t = _build(tmp_path, pbf)
    assert len(t.grids) == SMALL_GRIDS and twin.validate(t).ok
    assert t.manifest["fabric"]["counts"]["split_faces"] >= 1
