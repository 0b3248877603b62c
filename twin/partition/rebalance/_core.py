"""``rebalance`` and ``rebalance_partition``: allocation → split/merge start → annealed boundary-cell search."""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from dataclasses import replace

import numpy as np
import pandas as pd

from twin.errors import PartitionError, ValidationError
from twin.model import Twin
from twin.partition.balance import grid_polygons
from twin.partition.edges import blocks_for_cells, clear_share, slot_clear
from twin.partition.model import Partition, grid_name_for, partition_from_twin, validate_partition
from twin.partition.rebalance._allocate import allocate_with_targets
from twin.partition.rebalance._search import SearchProblem, polish, refine, ring_slots, search
from twin.partition.rebalance._start import community_start
from twin.partition.rebalance.result import RebalanceResult, community_deviation, summarize_partition
from twin.partition.workload import COUNT_COLUMNS, DEFAULT_WEIGHTS, cell_counts, cell_workload, check_weights

__all__ = ["DEFAULT_BETA", "DEFAULT_GAMMA", "DEFAULT_TOLERANCE", "DEFAULT_HINGE", "DEFAULT_STEPS_PER_CELL",
           "DEFAULT_THROUGH_BLOCK", "rebalance", "rebalance_partition"]

DEFAULT_BETA = 5e-4  # cost of one more cut edge (cell side shared by two grids), in squared-deviation units
DEFAULT_GAMMA = 0.1  # cost of moving one ideal grid's worth of workload in residents away from their grid
DEFAULT_TOLERANCE = 0.05  # deviations beyond ±5 % of the community ideal are penalised DEFAULT_HINGE × harder
DEFAULT_HINGE = 30.0
DEFAULT_THROUGH_BLOCK = 3.0  # a cut edge through a block costs this many times one along a street or water edge
DEFAULT_STEPS_PER_CELL = 300.0  # annealing proposals per movable cell
_T_START = 4.0  # annealing temperature at the start and the end, in units of β (one cut edge)
_T_END = 0.05
DEFAULT_POLISH_ABOVE = 0.01  # communities whose worst grid is further off than this get a focused second search
_POLISH_HINGE = 1000.0
_POLISH_STEPS = 2000.0
_POLISH_RESTARTS = 5
_POLISH_T_START = 1.0
_REFINE_SQ = 100.0  # the last pass weighs squared deviations this much more (tightens the spread: lower CV)
_REFINE_STEPS = 150.0
_REFINE_BETA = 2.0  # … while each cut edge costs this much more than in the search (keeps the shapes)


def rebalance(twin: Twin, n_grids: int = 478, *, partition: Partition | None = None,
              weights: Mapping[str, float] | None = None, incidents: pd.DataFrame | None = None,
              residents: np.ndarray | None = None, locked: Collection[str] = (),
              targets: Mapping[str, int] | None = None, beta: float = DEFAULT_BETA, gamma: float = DEFAULT_GAMMA,
              tolerance: float = DEFAULT_TOLERANCE, hinge: float = DEFAULT_HINGE,
              steps_per_cell: float = DEFAULT_STEPS_PER_CELL, time_budget_s: float = 40.0,
              polish_above: float | None = DEFAULT_POLISH_ABOVE, seed: int = 0,
              through_block: float = DEFAULT_THROUGH_BLOCK, polygons: bool = True) -> RebalanceResult:
    """Propose a partition of ``twin`` into exactly ``n_grids`` grids (method: :mod:`twin.partition.rebalance`).

    Parameters
    ----------
    partition : Partition, optional
        The partition to start from (default: the twin's own, :func:`twin.partition.model.partition_from_twin`).
    weights : mapping, optional
        The workload: measure → weight over ``residents``, ``dwellings``, ``businesses``, ``key_persons`` and
        ``incidents``; measures left out keep :data:`twin.partition.workload.DEFAULT_WEIGHTS` (1, 0.5, 2, 5, 0),
        so ``{"dwellings": 0, "incidents": 3}`` drops dwellings and counts incidents. The weights used are in
        ``result.weights`` and each measure's count per grid in ``result.grids``.
    incidents : pd.DataFrame, optional
        Incidents to count (a ``cell`` column or ``lng``/``lat`` in WGS84), e.g. the last 12 months from the
        incident store; they count only with a non-zero ``incidents`` weight.
    residents : np.ndarray, optional
        Residents per cell for the disruption measure (default: the twin's residents).
    locked : collection of str
        Grid codes that must not change (cells, code, name). Their community keeps at least as many grids.
    targets : mapping, optional
        Number of grids per community code and/or per town code; the rest of ``n_grids`` is allocated by workload
        over the other communities. With targets for every town, ``n_grids`` must equal their sum.
    beta, gamma : float
        Compactness (cost per cut cell edge) and disruption (cost per ideal grid's worth of residents moved), both in
        units of squared relative deviation; raise ``gamma`` to move fewer residents at some cost in balance.
    tolerance, hinge : float
        Deviation from the community ideal (fraction) beyond which imbalance costs ``hinge`` × more.
    steps_per_cell : float
        Annealing proposals per movable cell (more = better balance and compactness, slower; 0 = descent only).
    time_budget_s : float
        Wall-clock cap of the search (seconds); the result depends only on ``seed`` unless the cap is hit
        (``result.params["deadline_hit"]``).
    through_block : float
        Street preference (界线清晰): a cut edge through a block (both cells in one block of ``twin.blocks``) costs
        ``through_block`` × β, one along a street or water edge β (:mod:`twin.partition.edges`); 1 = no preference.
        Off for a twin without blocks. ``result.after["clear_boundaries"]`` is the share of the proposal's
        boundary on street/water edges.
    polygons : bool
        Measure mean Polsby–Popper before and after (EPSG:4547 grid polygons, ≈ 1–2 s).
    """
    check_weights(weights)
    used = {**DEFAULT_WEIGHTS, **(weights or {})}
    base = partition if partition is not None else partition_from_twin(twin)
    if weights or incidents is not None or partition is None:
        base = replace(base, weight=cell_workload(twin, weights=weights, incidents=incidents), meta={})
    counts = cell_counts(twin, incidents=incidents)
    res = counts["residents"].to_numpy() if residents is None else np.asarray(residents, float)
    out = rebalance_partition(base, n_grids, residents=res, locked=locked, targets=targets, beta=beta,
                              gamma=gamma, tolerance=tolerance, hinge=hinge, steps_per_cell=steps_per_cell,
                              time_budget_s=time_budget_s, polish_above=polish_above, seed=seed,
                              cell_block=blocks_for_cells(twin, base.cells), through_block=through_block)
    out.weights = {k: float(used[k]) for k in COUNT_COLUMNS}
    if out.grids is not None:
        lab, codes = out.partition.labels()
        ok = lab >= 0
        order = pd.Index(codes).get_indexer(out.grids["grid_code"])
        for k in COUNT_COLUMNS:
            if used[k]:
                per = np.bincount(lab[ok], weights=counts[k].to_numpy()[ok], minlength=len(codes))
                out.grids.insert(out.grids.columns.get_loc("workload"), k, per[order])
    if polygons:
        t0 = time.perf_counter()
        out.before["polsby_popper"] = float(grid_polygons(twin, base)["polsby_popper"].mean())
        out.after["polsby_popper"] = float(grid_polygons(twin, out.partition)["polsby_popper"].mean())
        out.seconds += time.perf_counter() - t0
    return out


def rebalance_partition(p: Partition, n_grids: int, *, residents: np.ndarray | None = None,
                        locked: Collection[str] = (), targets: Mapping[str, int] | None = None,
                        beta: float = DEFAULT_BETA, gamma: float = DEFAULT_GAMMA,
                        tolerance: float = DEFAULT_TOLERANCE, hinge: float = DEFAULT_HINGE,
                        steps_per_cell: float = DEFAULT_STEPS_PER_CELL, time_budget_s: float = 40.0,
                        polish_above: float | None = DEFAULT_POLISH_ABOVE, seed: int = 0,
                        cell_block: np.ndarray | None = None,
                        through_block: float = DEFAULT_THROUGH_BLOCK) -> RebalanceResult:
    """:func:`rebalance` on a bare :class:`Partition` (workload = ``p.weight``; residents per cell optional;
    ``cell_block`` a block label per cell, :func:`twin.partition.edges.cell_blocks`, turns the street preference
    ``through_block`` on)."""
    t0 = time.perf_counter()
    deadline = t0 + time_budget_s
    validate_partition(p, action="rebalance")
    n_grids = int(n_grids)
    if n_grids > len(p.cells):
        raise ValidationError(f"{n_grids} grids is more than the {len(p.cells)} cells.")
    for name, v in (("beta", beta), ("gamma", gamma), ("tolerance", tolerance), ("steps_per_cell", steps_per_cell)):
        if not np.isfinite(v) or v < 0:
            raise ValidationError(f"{name} must be a finite number ≥ 0; got {v}.")
    if not np.isfinite(through_block) or through_block < 1:
        raise ValidationError(f"through_block is the cost of a cut through a block relative to one along a street "
                              f"(≥ 1; 1 = no street preference); got {through_block}.")
    if cell_block is not None and len(cell_block) != len(p.cells):
        raise ValidationError(f"cell_block has {len(cell_block)} labels for {len(p.cells)} cells; give one per cell.")
    res = np.ones(len(p.cells)) if residents is None else np.asarray(residents, float)
    locked_set = set(map(str, locked))
    unknown = sorted(locked_set - set(p.grids["grid_code"]))
    if unknown:
        raise ValidationError(f"locked grid code(s) {unknown[:5]} are not grids of the partition.")
    w = p.weight
    comm_codes = pd.Index(sorted(set(p.community.tolist())))
    comm_w = pd.Series(w).groupby(p.community).sum().reindex(comm_codes)
    gt = p.grids.drop_duplicates("community_code").set_index("community_code")["town_code"]
    town_of = gt.reindex(comm_codes).fillna("").astype(str)
    current = p.grids.groupby("community_code").size().reindex(comm_codes, fill_value=0)
    minimum, targets_used = _lock_minimum(p, comm_codes, locked_set, dict(targets or {}), current)
    k_target = allocate_with_targets(comm_w, town_of, n_grids, targets=targets_used, minimum=minimum)

    # split/merge start per community, then one search over the whole district
    comm_idx = pd.Index(comm_codes).get_indexer(p.community)
    order = np.argsort(comm_idx, kind="stable")
    bounds = np.searchsorted(comm_idx[order], np.arange(len(comm_codes) + 1))
    codes: list[str] = []
    lab = np.empty(len(p.cells), dtype=np.int64)
    rows = []
    for ci, c in enumerate(comm_codes):
        idx = np.sort(order[bounds[ci]:bounds[ci + 1]])
        grid_rows = p.grids[p.grids["community_code"] == c]
        local_codes, local_lab = community_start(p, idx, str(c), int(k_target[c]), res, seed=seed + ci,
                                                 locked=locked_set)
        lab[idx] = local_lab + len(codes)
        codes += local_codes
        named = dict(zip(grid_rows["grid_code"], grid_rows["grid_name"]))
        rows += [{"grid_code": g, "grid_name": named.get(g) or grid_name_for(p.grids, str(c), g),
                  "community_code": c, "town_code": town_of[c]} for g in local_codes]
    grid_comm = np.array([pd.Index(comm_codes).get_loc(r["community_code"]) for r in rows], dtype=np.int64)
    ideal = (comm_w.to_numpy() / k_target.reindex(comm_codes).to_numpy())[grid_comm]
    pos = {g: i for i, g in enumerate(codes)}
    orig = np.array([pos.get(g, -1) for g in p.grid_code.tolist()], dtype=np.int64)
    frozen = np.array([g in locked_set for g in codes], dtype=bool)
    multi = (k_target.reindex(comm_codes).to_numpy() > 1)[comm_idx]
    slots = ring_slots(p.adjacency, p.xy)
    edge_cost = np.where(slot_clear(slots, cell_block), 1.0, through_block) if cell_block is not None else None
    heat = through_block if edge_cost is not None else 1.0  # start hot enough to cut through a block
    prob = SearchProblem(lab=lab, comm=comm_idx, w=w, move_cost=gamma * res / ideal[lab], orig=orig, ideal=ideal,
                         frozen=frozen, slots=slots, movable=multi, edge_cost=edge_cost)
    t_search = time.perf_counter()
    stats = search(prob, beta=beta, tolerance=tolerance, hinge=hinge, steps_per_cell=steps_per_cell,
                   t_start=_T_START * beta * heat, t_end=_T_END * beta, seed=seed, deadline=deadline)
    stats["search_s"] = time.perf_counter() - t_search
    if polish_above is not None and not stats["deadline_hit"]:
        ps = polish(prob, above=polish_above, beta=beta, hinge=_POLISH_HINGE, steps_per_cell=_POLISH_STEPS,
                    restarts=_POLISH_RESTARTS, t_start=_POLISH_T_START * beta * heat, t_end=_T_END * beta, seed=seed,
                    deadline=deadline)
        stats["deadline_hit"] = ps.pop("deadline_hit")
        stats.update(ps)
    if _REFINE_SQ > 0 and not stats["deadline_hit"]:
        worst = float(np.abs(prob.load / prob.ideal - 1)[~frozen].max()) if (~frozen).any() else 0.0
        rs = refine(prob, sq=_REFINE_SQ, tolerance=max(worst, polish_above or 0.0), hinge=_POLISH_HINGE,
                    beta=beta * _REFINE_BETA,
                    steps_per_cell=_REFINE_STEPS, t_start=_T_END * 4 * beta, t_end=_T_END * beta, seed=seed,
                    deadline=deadline)
        stats["deadline_hit"] = rs.pop("deadline_hit")
        stats.update(rs)
    stats["polish_s"] = time.perf_counter() - t_search - stats["search_s"]

    new_codes = np.asarray(codes, dtype=object)[prob.lab]
    out = p.with_assignment(new_codes, pd.DataFrame(rows))
    validate_partition(out, action="rebalance result")
    if out.n_grids != n_grids:
        raise PartitionError(f"rebalance produced {out.n_grids} grids instead of {n_grids}.")
    changed = p.grid_code[orig >= 0] != new_codes[orig >= 0]
    if (frozen[orig[orig >= 0]] & changed).any():
        raise PartitionError("rebalance changed a locked grid (a bug: locked grids are frozen in the search).")
    moved = out.grid_code != p.grid_code
    allocation = pd.DataFrame({"community_code": comm_codes, "town_code": town_of.to_numpy(),
                               "workload": comm_w.to_numpy(), "grids_before": current.to_numpy(),
                               "grids_after": k_target.reindex(comm_codes).to_numpy(),
                               "target": [str(c) in targets_used or town_of[c] in targets_used for c in comm_codes],
                               "locked": [int(n) for n in _locked_per_comm(p, comm_codes, locked_set)]})
    table = community_deviation(out)
    lab_out, codes_out = out.labels()
    table.insert(2, "locked", table["grid_code"].isin(locked_set).to_numpy())
    table.insert(3, "n_cells", np.bincount(lab_out, minlength=len(codes_out))[
        pd.Index(codes_out).get_indexer(table["grid_code"])])
    seconds = time.perf_counter() - t0
    log = [f"communities gaining grids {int((allocation.grids_after > allocation.grids_before).sum())}, "
           f"losing {int((allocation.grids_after < allocation.grids_before).sum())}; search: "
           f"{int(stats['accepted'])} annealing moves of {int(stats['proposals'])} proposals, "
           f"{int(stats['descent_moves'])} descent moves, "
           f"{int(stats.get('polish_improved', 0))} of {int(stats.get('polish_attempts', 0))} polish runs kept "
           f"(search {stats['search_s']:.1f} s, polish {stats['polish_s']:.1f} s)" + ("; stopped at the time budget" if
                                                             stats["deadline_hit"] else "")]
    params = {"beta": beta, "gamma": gamma, "tolerance": tolerance, "hinge": hinge,
              "steps_per_cell": steps_per_cell, "seed": seed, "deadline_hit": bool(stats["deadline_hit"]),
              "through_block": through_block if cell_block is not None else None}
    before, after = summarize_partition(p), summarize_partition(out)
    if cell_block is not None:
        for fig, part in ((before, p), (after, out)):
            share = clear_share(part.grid_code, p.adjacency, cell_block)
            if share is not None:
                fig["clear_boundaries"] = share
    return RebalanceResult(partition=out, allocation=allocation, before=before, after=after,
                           moved_share=float(res[moved].sum() / max(res.sum(), 1e-9)),
                           residents_moved=int(round(res[moved].sum())), seconds=seconds, log=log, grids=table,
                           locked=sorted(locked_set), targets={str(k): int(v) for k, v in (targets or {}).items()},
                           params=params)


def _locked_per_comm(p: Partition, comm_codes: pd.Index, locked: set[str]) -> np.ndarray:
    g = p.grids[p.grids["grid_code"].isin(locked)].groupby("community_code").size()
    return g.reindex(comm_codes, fill_value=0).to_numpy()


def _lock_minimum(p: Partition, comm_codes: pd.Index, locked: set[str], targets: dict[str, int],
                  current: pd.Series) -> tuple[pd.Series, dict[str, int]]:
    """Minimum grids per community under the locks (one per locked grid, plus one when it has unlocked cells), and
    the targets with fully locked communities pinned to their current count."""
    n_locked = pd.Series(_locked_per_comm(p, comm_codes, locked), index=comm_codes)
    if not locked:
        return pd.Series(1, index=comm_codes, dtype=np.int64), targets
    in_locked = np.isin(p.grid_code, np.asarray(sorted(locked), dtype=object))
    free_cells = pd.Series(~in_locked).groupby(p.community).sum().reindex(comm_codes, fill_value=0)
    minimum = (n_locked + (free_cells > 0).astype(np.int64)).clip(lower=1)
    out = dict(targets)
    for c in comm_codes[(free_cells == 0).to_numpy()]:
        k = int(current[c])
        if str(c) in out and int(out[str(c)]) != k:
            raise ValidationError(f"community {c}: all its {k} grids are locked, so its target must be {k}; "
                                  f"got {out[str(c)]}.")
        out[str(c)] = k
    return minimum.astype(np.int64), out
