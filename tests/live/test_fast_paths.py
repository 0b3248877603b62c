"""The live twin's fast paths equal the plain computations: prefix sums shifted from the base's (instead of a full
cumsum) and persons' grid/community/town codes looked up per grid (instead of per person)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tests.live.conftest import KW
from twin.live import changes as ch
from twin.live.state import LiveTwin
from twin.query._delta import BuildingDelta, apply_building_delta, building_point_positions
from twin.query._index import point_index


def test_shifted_prefix_sums_equal_a_full_cumsum(small_twin) -> None:  # noqa: ANN001
    base = point_index(small_twin)
    pos = building_point_positions(base)
    rng = np.random.default_rng(3)
    recs = np.flatnonzero(pos >= 0)
    changed = np.sort(rng.choice(recs, size=min(25, len(recs)), replace=False))
    feats = rng.integers(0, 9, size=(len(changed), base.feats.shape[1])).astype(base.feats.dtype)
    e = np.empty(0, dtype=np.int64)
    delta = BuildingDelta(changed, feats, e, None, np.empty(0), np.empty(0), e, e, np.empty((0, feats.shape[1])))
    idx = apply_building_delta(base, delta, positions=pos)
    assert idx is not None and idx.points is base.points
    want = np.zeros_like(idx.cum)
    np.cumsum(idx.feats, axis=0, dtype=want.dtype, out=want[1:])
    assert np.array_equal(idx.cum, want) and not np.array_equal(idx.cum, base.cum)
    assert np.array_equal(idx.totals, idx.feats.sum(axis=0))


def test_persons_on_codes_equal_a_per_person_lookup(live: LiveTwin) -> None:
    t = live.t
    g = t.grids.astype(str).set_index("grid_code")
    bgrid = t.buildings.set_index("building_id")["grid_code"].astype(str)
    com = g["community_code"].reindex(bgrid.to_numpy()).set_axis(bgrid.index)
    home = com.loc[int(t.persons.loc[t.persons["person_id"] == 0, "building_id"].iloc[0])]
    far = int(t.dwellings.loc[com.reindex(t.dwellings["building_id"]).to_numpy() != home, "dwelling_id"].iloc[0])
    live.apply([ch.PersonMoves(person_id=0, dwelling_id=far, **KW), ch.PersonDies(person_id=1, **KW)])
    got = live.persons_on(KW["effective_date"])
    fr = live.frames_on(KW["effective_date"])
    b = fr.buildings.set_index("building_id")["grid_code"].astype(str)
    grid = b.reindex(fr.persons["building_id"].to_numpy()).to_numpy(dtype=object)
    pd.testing.assert_frame_equal(got[["grid_code", "community_code", "town_code"]], pd.DataFrame({
        "grid_code": grid, "community_code": g["community_code"].reindex(grid).to_numpy(dtype=object),
        "town_code": g["town_code"].reindex(grid).to_numpy(dtype=object)}), check_dtype=False)
    far_building = int(t.dwellings.set_index("dwelling_id").loc[far, "building_id"])
    assert got.set_index("person_id").loc[0, "community_code"] == g.loc[bgrid.loc[far_building], "community_code"]
    assert 1 not in set(got["person_id"])
    got["extra"] = 1  # a copy: the cached state is not changed
    assert "extra" not in live.persons_on(KW["effective_date"]).columns
