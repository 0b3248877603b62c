"""Automatic re-partition (twin.partition.rebalance): 451 → 478 on the default twin, allocation, merges."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

import twin
from twin.errors import ValidationError
from twin.partition.model import check_partition, partition_from_twin
from twin.partition.rebalance import allocate_grids, community_deviation, rebalance
from twin.partition.versions import twin_with_partition


@pytest.fixture(scope="module")
def t() -> twin.Twin:
    return twin.load()


@pytest.fixture(scope="module")
def result(t: twin.Twin):
    return rebalance(t, 478, time_budget_s=40)


def test_rebalance_gives_exactly_478_valid_grids(t: twin.Twin, result) -> None:
    p = result.partition
    assert p.n_grids == 478 and len(set(p.grid_code)) == 478
    assert check_partition(p) == []
    rep = twin.validate(twin_with_partition(t, p))
    assert rep.ok, rep.problems


def test_rebalance_balances_within_communities(t: twin.Twin, result) -> None:
    d = community_deviation(result.partition)
    assert d["deviation"].abs().max() <= 0.10
    assert result.after["max_dev"] == pytest.approx(d["deviation"].abs().max())
    assert result.after["cv"] < result.before["cv"]
    # the allocation follows workload: heavier communities never get fewer grids per unit of workload
    alloc = result.allocation
    assert alloc["grids_after"].sum() == 478 and (alloc["grids_after"] >= 1).all()
    counts = d.groupby("community_code").size()
    assert (counts.reindex(alloc["community_code"]).to_numpy() == alloc["grids_after"].to_numpy()).all()


def test_rebalance_keeps_most_residents_in_their_grid(t: twin.Twin, result) -> None:
    base = partition_from_twin(t)
    moved = result.partition.grid_code != base.grid_code
    from twin.partition.workload import cell_counts

    res = cell_counts(t)["residents"].to_numpy()
    assert result.moved_share == pytest.approx(res[moved].sum() / res.sum())
    assert 0 < result.moved_share < 0.15
    # communities whose grid count did not change and were balanced keep their grids' codes
    kept = set(base.grids["grid_code"]) & set(result.partition.grids["grid_code"])
    assert len(kept) >= 440


def test_rebalance_to_fewer_grids_merges(t: twin.Twin) -> None:
    r = rebalance(t, 420, time_budget_s=5)
    assert r.partition.n_grids == 420
    assert check_partition(r.partition) == []
    assert (r.allocation["grids_after"] < r.allocation["grids_before"]).any()
    with pytest.raises(ValidationError, match="cannot cover 147 communities"):
        rebalance(t, 100)


def _variance(weights: np.ndarray, k: np.ndarray) -> float:
    loads = np.repeat(weights / k, k)
    return float(((loads - loads.mean()) ** 2).sum())


@pytest.mark.parametrize("weights,total", [([10.0, 3.0, 7.0], 7), ([5.0, 5.0, 1.0, 9.0], 9), ([2.0, 8.0], 6)])
def test_allocation_minimises_variance(weights: list[float], total: int) -> None:
    w = np.asarray(weights)
    got = allocate_grids(pd.Series(w, index=[f"c{i}" for i in range(len(w))]), total).to_numpy()
    assert got.sum() == total and (got >= 1).all()
    best = min(_variance(w, np.array(k)) for k in itertools.product(range(1, total + 1), repeat=len(w))
               if sum(k) == total)
    assert _variance(w, got) == pytest.approx(best)
