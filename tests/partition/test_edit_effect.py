"""twin.partition.balance.edit_effect (balance before → after of an edit) and twin.partition.model.neighbour_grids."""

from __future__ import annotations

import numpy as np
import pytest

from twin.errors import NotFoundError, PartitionError
from twin.partition import edits
from twin.partition.balance import balance_report, edit_effect
from twin.partition.model import Partition, neighbour_grids, partition_from_twin


@pytest.fixture(scope="module")
def p0(default_twin) -> Partition:
    return partition_from_twin(default_twin)


def test_split_effect_matches_the_balance_report(default_twin, p0):
    g = str(p0.grids["grid_code"].iloc[7])
    p1 = edits.split_grid(p0, g, k=2)
    eff = edit_effect(default_twin, p0, p1)
    rows = eff.grids.set_index("grid_code")
    added = rows.index[rows["status"] == "added"].tolist()
    assert len(added) == 1 and rows.loc[g, "status"] == "changed"
    # the two parts carry the old grid's workload
    assert rows.loc[[g, *added], "workload_after"].sum() == pytest.approx(rows.loc[g, "workload_before"])
    after = balance_report(default_twin, p1, polygons=False).table.set_index("grid_code")
    for code in rows.index:
        assert rows.loc[code, "deviation_after"] == pytest.approx(after.loc[code, "deviation"])
    # the community gained a grid, so the other grids' ideal moved and they are listed too
    comm = str(p0.grid_row(g)["community_code"])
    n_comm = int((p0.grids["community_code"] == comm).sum())
    assert len(rows) == n_comm + 1
    assert (rows["status"] == "ideal changed").sum() == n_comm - 1
    c = eff.communities.set_index("community_code").loc[comm]
    assert (c["grids_before"], c["grids_after"]) == (n_comm, n_comm + 1)
    assert eff.summary["grids_after"] == eff.summary["grids_before"] + 1
    assert eff.summary["cells_moved"] == int((p0.grid_code != p1.grid_code).sum()) > 0
    assert set(eff.shapes["grid_code"]) == {g, *added}
    assert (eff.shapes["area_km2"] > 0).all() and (eff.shapes["polsby_popper"].between(0, 1)).all()


def test_merge_effect_lists_the_removed_grid(default_twin, p0):
    g = str(p0.grids["grid_code"].iloc[7])
    comm = str(p0.grid_row(g)["community_code"])
    other = next(c for c in neighbour_grids(p0, g) if str(p0.grid_row(c)["community_code"]) == comm)
    p1 = edits.merge_grids(p0, [g, other])
    rows = edit_effect(default_twin, p0, p1).grids.set_index("grid_code")
    assert rows.loc[other, "status"] == "removed" and np.isnan(rows.loc[other, "workload_after"])
    assert rows.loc[g, "workload_after"] == pytest.approx(rows.loc[g, "workload_before"]
                                                         + rows.loc[other, "workload_before"])


def test_no_edit_no_effect_and_other_cells_rejected(default_twin, p0):
    eff = edit_effect(default_twin, p0, p0)
    assert eff.grids.empty and eff.summary["cells_moved"] == 0
    assert eff.summary["cv_before"] == eff.summary["cv_after"]
    small = Partition.from_arrays(p0.cells[:10], p0.grid_code[:10], p0.grids)
    with pytest.raises(PartitionError, match="same cells"):
        edit_effect(default_twin, p0, small)


def test_neighbour_grids_is_symmetric_and_edge_based(p0):
    codes = p0.grids["grid_code"].astype(str).tolist()[:40]
    for g in codes:
        nb = neighbour_grids(p0, g)
        assert g not in nb and nb
        for h in nb:
            assert g in neighbour_grids(p0, h)
    with pytest.raises(NotFoundError):
        neighbour_grids(p0, "nope")
