"""Benchmark: re-partition the default twin's 451 grids into 478 — twin.rebalance vs spopt AZP and GerryChain ReCom.

Run: ``.venv/bin/python benchmarks/rebalance.py [--grids 478] [--skip-baseline] [--no-write] [--twin PATH]``

Every method gets the same start: the same allocation of grids to communities
(:func:`twin.partition.rebalance.allocate_grids`) and the same split/merge labels inside each community
(:func:`twin.partition.rebalance._start.community_start`, same seeds); they differ in how cells are then moved.
Grids never cross community borders, so the baselines run per community on that community's cell graph.

* ``twin.rebalance`` — annealed boundary-cell search (single moves and swaps) on balance, compactness (cut edges)
  and disruption, then a per-community polish of the worst deviations (:mod:`twin.partition.rebalance`).
* ``spopt AZP (balance objective)`` — spopt ``AZP`` with ``initial_labels`` and a custom ``ObjectiveFunction`` =
  Σ squared relative deviation of region workload from the community ideal, on a libpysal W of the community's
  H3 cell adjacency. A district-wide run does not finish in 10 minutes on this 2-core machine, so it runs for
  ``--baseline-seconds`` (communities that gain grids first, then the others, smallest first) and is compared on
  the communities it reached.
* ``GerryChain ReCom`` — ``gerrychain.proposals.recom`` (spanning-tree recombination of two adjacent grids) with
  population = workload, ``pop_target`` = the community ideal and ``epsilon`` = ``--tolerance`` (the same
  population tolerance twin.rebalance is given), ``--recom-steps`` steps per grid of every multi-grid community
  (the step budget), keeping the best state the chain visits (smallest max |deviation|, then Σ d²): ReCom used
  as an optimiser, on every community, so it is compared district-wide. ReCom can only recombine two grids whose
  joint workload is within 2 ε of two ideals, so where the chain from the shared start cannot bring every grid
  within ε (a split start is far off), it also runs from a fresh ε-balanced plan (``recursive_tree_part``) with
  the same budget and keeps the better (``reseeded``; ``stuck`` counts chains that found no recombination).
* ``spopt AZP (default objective)`` — the library as documented (homogeneity, not balance); O(n²) per region in
  Python, so it runs on ``--subset`` small communities only.

Figures: CV of grid workload, max |deviation| from the community-level ideal, mean Polsby–Popper (EPSG:4547
polygons), share of residents whose grid changed, runtime (s), and on a twin with blocks the clear-boundaries share
(grid boundary on street/water edges, :func:`twin.partition.edges.clear_share`). twin.rebalance runs twice, same
seed: with its street preference (``--through-block``, default on) and without it (``through_block=1``, reported
as ``no_street_preference``). Each baseline is also reported with twin.rebalance's
figures on the same communities (``ours_same``). The last line printed is one JSON object: ``grids, cv, max_dev,
moved_share, seconds, polsby_popper, validate_ok`` (twin.rebalance, district-wide; seconds include preparation),
the best baseline (lowest max |deviation|, then CV): ``baseline, baseline_cv, baseline_max_dev,
baseline_polsby_popper, baseline_moved_share, cv_same_communities, max_dev_same_communities``, every baseline in
``baselines``, ``checks`` (the issue-16 rule, each part) and ``dominates``. The same object (plus the run time and
load average) is written to ``docs/rebalance_baselines.json`` for the app (:func:`twin.partition.rebalance.latest_baselines`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import time
import warnings
from functools import partial

import numpy as np
import pandas as pd

MAX_SECONDS = 60.0
MIN_POLSBY_POPPER = 0.42
MAX_MOVED = 0.10


def _metrics(t, p, base, res, seconds: float | None, communities: set | None = None) -> dict:
    from twin.partition.balance import grid_polygons
    from twin.partition.edges import cell_blocks, clear_share
    from twin.partition.rebalance import community_deviation

    d = community_deviation(p)
    polys = grid_polygons(t, p)
    moved = p.grid_code != base.grid_code
    codes, adj, blocks = p.grid_code, p.adjacency, cell_blocks(t)
    if communities is not None:  # figures over the grids and residents of these communities only
        d = d[d["community_code"].isin(communities)]
        polys = polys[polys["community_code"].isin(communities)]
        inside = np.isin(p.community, list(communities))
        moved, res = moved[inside], res[inside]
        codes, adj = codes[inside], adj[inside][:, inside]
        blocks = None if blocks is None else blocks[inside]
    clear = clear_share(codes, adj, blocks)
    w = d["workload"].to_numpy()
    return {"grids": int(len(d)), "cv": round(float(w.std() / w.mean()), 5),
            "max_dev": round(float(d["deviation"].abs().max()), 5),
            "over_10pct": int((d["deviation"].abs() > 0.10).sum()),
            "polsby_popper": round(float(polys["polsby_popper"].mean()), 4),
            "moved_share": round(float(res[moved].sum() / res.sum()), 5),
            "clear_boundaries": None if clear is None else round(clear, 4),
            "seconds": None if seconds is None else round(seconds, 2)}


def _starts(base, n_grids: int, res: np.ndarray, seed: int):
    """Per community (sorted codes): cells, grid count, start codes and labels — the start every method shares."""
    from twin.partition.rebalance import allocate_grids
    from twin.partition.rebalance._start import community_start

    comm_w = pd.Series(base.weight).groupby(base.community).sum()
    target = allocate_grids(comm_w, n_grids)
    for ci, c in enumerate(comm_w.index):
        idx = np.flatnonzero(base.community == c)
        k = int(target[c])
        codes, lab = community_start(base, idx, str(c), k, res, seed=seed + ci)
        yield c, idx, k, float(comm_w[c]) / k, codes, lab


def _assemble(base, parts: list) -> object:
    from twin.partition.model import validate_partition

    codes_out = base.grid_code.copy()
    rows = []
    town = base.grids.drop_duplicates("community_code").set_index("community_code")["town_code"]
    for c, idx, codes, lab in parts:
        codes_out[idx] = np.asarray(codes, dtype=object)[lab]
        rows += [{"grid_code": g, "grid_name": g, "community_code": c, "town_code": town[c]} for g in codes]
    p = base.with_assignment(codes_out, pd.DataFrame(rows))
    validate_partition(p, action="baseline result")
    return p


def _azp(base, n_grids: int, res, *, balance_objective: bool, communities: list, seconds: float = float("inf"),
         seed: int = 0):
    """AZP per community, in the order of ``communities``, until ``seconds`` run out; communities not reached keep
    the split/merge start. Returns (partition, communities run by AZP)."""
    import geopandas as gpd
    from libpysal.weights import WSP
    from spopt.region import AZP
    from spopt.region.objective_function import ObjectiveFunction

    class BalanceObjective(ObjectiveFunction):
        """Σ_g ((L_g − I) / I)² over regions, with an O(1)-ish update."""

        def __init__(self, ideal: float) -> None:
            self.ideal = ideal
            super().__init__()

        def __call__(self, labels, attr):
            loads = pd.Series(attr[:, 0]).groupby(labels).sum().to_numpy()
            return float((((loads - self.ideal) / self.ideal) ** 2).sum())

        def update(self, moving_area, recipient_region, labels, attr):
            a = labels[moving_area]
            wi = attr[moving_area, 0]
            la = attr[labels == a, 0].sum()
            lb = attr[labels == recipient_region, 0].sum()
            i = self.ideal
            return ((la - wi - i) ** 2 + (lb + wi - i) ** 2 - (la - i) ** 2 - (lb - i) ** 2) / (i * i)

    starts = {c: (idx, k, ideal, codes, lab) for c, idx, k, ideal, codes, lab in _starts(base, n_grids, res, seed)}
    deadline = time.perf_counter() + seconds
    done: list[str] = []
    for c in communities:
        if time.perf_counter() >= deadline:
            break
        idx, k, ideal, codes, lab = starts[c]
        done.append(c)
        w = WSP(base.adjacency[idx][:, idx].astype(float).tocsr()).to_W(silence_warnings=True)
        gdf = gpd.GeoDataFrame({"workload": base.weight[idx]},
                               geometry=gpd.points_from_xy(base.xy[idx, 0], base.xy[idx, 1]))
        kwargs = {"objective_func": BalanceObjective(ideal)} if balance_objective else {}
        model = AZP(gdf, w, ["workload"], n_clusters=k, initial_labels=lab, random_state=seed, **kwargs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.solve()
        new = np.searchsorted(np.unique(model.labels_), model.labels_)
        if len(np.unique(new)) != k:
            raise RuntimeError(f"AZP returned {len(np.unique(new))} regions for community {c}, expected {k}")
        starts[c] = (idx, k, ideal, _match_codes(codes, new, base.grid_code[idx]), new)
    return _assemble(base, [(c, v[0], v[3], v[4]) for c, v in starts.items()]), done


def _recom(base, n_grids: int, res, *, steps_per_grid: int, epsilon: float, seed: int = 0):
    """GerryChain ReCom per multi-grid community, ``steps_per_grid × k`` steps, best visited state kept. ReCom with
    ``epsilon`` can only recombine two grids whose joint workload is within 2 ε of two ideals, so where the chain
    from the shared start cannot get every grid within ε, it also runs from a fresh ε-balanced plan
    (``recursive_tree_part``) with the same budget, and the better of the two is kept.
    Returns (partition, multi-grid communities, total steps, stuck chains, reseeded communities)."""
    import networkx as nx
    from gerrychain import Graph, MarkovChain, Partition
    from gerrychain.accept import always_accept
    from gerrychain.partition.initial_partition_generators import recursive_tree_part
    from gerrychain.proposals import recom
    from gerrychain.tree import bipartition_tree
    from gerrychain.updaters import Tally

    parts, done = [], []
    counts = {"steps": 0, "stuck": 0, "reseeded": 0}
    for ci, (c, idx, k, ideal, codes, lab) in enumerate(_starts(base, n_grids, res, seed)):
        if k > 1:
            done.append(c)
            sub = base.adjacency[idx][:, idx].tocoo()
            g = nx.Graph()
            g.add_nodes_from((i, {"workload": float(x)}) for i, x in enumerate(base.weight[idx]))
            g.add_edges_from((int(a), int(b)) for a, b in zip(sub.row, sub.col) if a < b)
            graph = Graph.from_networkx(g)
            tree_fn = partial(bipartition_tree, max_attempts=200, allow_pair_reselection=True)

            def run(assignment: dict, rng: random.Random, graph=graph, ideal=ideal, k=k, tree_fn=tree_fn, n=len(idx)):
                state = Partition(graph, assignment, updaters={"population": Tally("workload", alias="population")})
                proposal = partial(recom, pop_col="workload", pop_target=ideal, epsilon=epsilon, node_repeats=2,
                                   bipartition_tree_fn=tree_fn)
                chain = iter(MarkovChain(proposal, [], always_accept, state, total_steps=steps_per_grid * k, rng=rng))

                def score(st) -> tuple[float, float]:
                    d = np.array(list(st["population"].values())) / ideal - 1
                    return float(np.abs(d).max()), float((d * d).sum())

                best, best_score = state, score(state)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    while True:
                        try:
                            st = next(chain)
                        except StopIteration:
                            break
                        except Exception:  # no balanced recombination reachable: the chain cannot go on
                            counts["stuck"] += 1
                            break
                        counts["steps"] += 1
                        sc = score(st)
                        if sc < best_score:
                            best, best_score = st, sc
                a = best.assignment.to_dict() if hasattr(best.assignment, "to_dict") else dict(best.assignment)
                return np.array([int(a[i]) for i in range(n)], dtype=np.int64), best_score

            rng = random.Random(seed * 1000 + ci)
            lab, sc = run({i: int(x) for i, x in enumerate(lab)}, rng)
            if sc[0] > epsilon:
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        fresh = recursive_tree_part(graph, range(k), ideal, "workload", epsilon, node_repeats=1,
                                                    bipartition_tree_fn=partial(bipartition_tree, max_attempts=5000),
                                                    rng=rng)
                    lab2, sc2 = run({i: int(fresh[i]) for i in range(len(idx))}, rng)
                    counts["reseeded"] += 1
                    if sc2 < sc:
                        lab = lab2
                except Exception:  # no ε-balanced plan found either: keep the chain's best
                    pass
            codes = _match_codes(codes, lab, base.grid_code[idx])
        parts.append((c, idx, codes, lab))
    return _assemble(base, parts), done, counts


def _match_codes(codes: list[str], lab: np.ndarray, old: np.ndarray) -> list[str]:
    """Reassign the region codes so that each region keeps the old grid code most of its cells had (greedy)."""
    k = len(codes)
    score = np.zeros((k, k))
    pos = {c: i for i, c in enumerate(codes)}
    for r, o in zip(lab.tolist(), old.tolist()):
        if o in pos:
            score[r, pos[o]] += 1
    out: list[str | None] = [None] * k
    used: set[int] = set()
    for flat in np.argsort(-score, axis=None):
        r, j = divmod(int(flat), k)
        if out[r] is None and j not in used:
            out[r] = codes[j]
            used.add(j)
    return [c if c is not None else codes[i] for i, c in enumerate(out)]


def main() -> None:
    from twin.partition.rebalance import DEFAULT_THROUGH_BLOCK, DEFAULT_TOLERANCE

    ap = argparse.ArgumentParser()
    ap.add_argument("--grids", type=int, default=478)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                    help="population tolerance: twin.rebalance's hinge and ReCom's epsilon")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--skip-azp", action="store_true")
    ap.add_argument("--skip-recom", action="store_true")
    ap.add_argument("--subset", type=int, default=1, help="communities for the slow default-objective AZP run")
    ap.add_argument("--baseline-seconds", type=float, default=240.0,
                    help="time budget of the balance-objective AZP (communities that gain grids first)")
    ap.add_argument("--recom-steps", type=int, default=5, help="ReCom steps per grid of each community")
    ap.add_argument("--out", default=None, help="JSON file for the app (default docs/rebalance_baselines.json)")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--twin", default=None, help="twin directory (default: the default twin)")
    ap.add_argument("--through-block", type=float, default=DEFAULT_THROUGH_BLOCK,
                    help="street preference: cost of a cut edge through a block relative to one along a street")
    args = ap.parse_args()

    import twin
    from twin.encoding import dumps
    from twin.io import write_json
    from twin.partition.model import partition_from_twin
    from twin.partition.rebalance import BASELINES_PATH, rebalance
    from twin.partition.versions import twin_with_partition
    from twin.partition.workload import cell_counts

    t = twin.load(args.twin) if args.twin else twin.load()
    t0 = time.perf_counter()
    base = partition_from_twin(t)
    res = cell_counts(t)["residents"].to_numpy()
    prep = time.perf_counter() - t0
    print(f"twin loaded; partition + cell workload + adjacency prepared in {prep:.1f} s", flush=True)
    before = _metrics(t, base, base, res, 0.0)
    print(f"{f'current ({base.n_grids})':<36}{json.dumps(before)}", flush=True)

    plain = None
    if t.blocks is not None:  # the same run without the street preference, for comparison
        t0 = time.perf_counter()
        r1 = rebalance(t, args.grids, partition=base, tolerance=args.tolerance, seed=args.seed, polygons=False,
                       through_block=1.0)
        plain = _metrics(t, r1.partition, base, res, time.perf_counter() - t0 + prep)
        plain["validate_ok"] = twin.validate(twin_with_partition(t, r1.partition)).ok
        print(f"{'twin.rebalance, no street pref.':<36}{json.dumps(plain)}", flush=True)
    t0 = time.perf_counter()
    r = rebalance(t, args.grids, partition=base, tolerance=args.tolerance, seed=args.seed, polygons=False,
                  through_block=args.through_block)
    ours_s = time.perf_counter() - t0 + prep
    ours = _metrics(t, r.partition, base, res, ours_s)
    ok = twin.validate(twin_with_partition(t, r.partition)).ok
    name = f"twin.rebalance, through_block={args.through_block:g}" if plain else "twin.rebalance"
    print(f"{name:<36}{json.dumps(ours)}  validate ok={ok}  {r.log[-1]}", flush=True)

    baselines: dict[str, dict] = {}

    def add(name: str, m: dict, comms: set | None) -> None:
        m["ours_same"] = _metrics(t, r.partition, base, res, None, communities=comms)
        m["communities"] = len(comms) if comms is not None else int(len(set(base.community)))
        baselines[name] = m
        print(f"{name:<36}{json.dumps({k: v for k, v in m.items() if k != 'ours_same'})}", flush=True)
        print(f"{'  twin.rebalance, same communities':<36}{json.dumps(m['ours_same'])}", flush=True)

    alloc = r.allocation.set_index("community_code")
    multi = alloc[alloc["grids_after"] > 1]
    if not args.skip_baseline and not args.skip_recom:
        t0 = time.perf_counter()
        p, done, counts = _recom(base, args.grids, res, steps_per_grid=args.recom_steps, epsilon=args.tolerance,
                                 seed=args.seed)
        m = _metrics(t, p, base, res, time.perf_counter() - t0)
        m.update({**counts, "epsilon": args.tolerance, "steps_per_grid": args.recom_steps})
        add("GerryChain ReCom (district)", m, None)
    if not args.skip_baseline and not args.skip_azp:
        gaining = multi[multi["grids_after"] > multi["grids_before"]].index.tolist()
        others = [c for c in multi.sort_values("workload").index if c not in set(gaining)]
        t0 = time.perf_counter()
        p, done = _azp(base, args.grids, res, balance_objective=True, communities=gaining + others,
                       seconds=args.baseline_seconds, seed=args.seed)
        add(f"spopt AZP (balance objective), {len(done)} communities",
            _metrics(t, p, base, res, time.perf_counter() - t0, communities=set(done)), set(done))
        small = multi.loc[gaining].sort_values("workload").index[: args.subset].tolist()
        t0 = time.perf_counter()
        p, _ = _azp(base, args.grids, res, balance_objective=False, communities=small, seed=args.seed)
        add(f"spopt AZP (default objective), {len(small)} communities",
            _metrics(t, p, base, res, time.perf_counter() - t0, communities=set(small)), set(small))

    out = {"grids": ours["grids"], "cv": ours["cv"], "max_dev": ours["max_dev"], "moved_share": ours["moved_share"],
           "seconds": ours["seconds"], "polsby_popper": ours["polsby_popper"], "validate_ok": ok,
           "tolerance": args.tolerance, "seed": args.seed, "multi_grid_communities": len(multi),
           "clear_boundaries": ours["clear_boundaries"], "clear_boundaries_before": before["clear_boundaries"],
           "through_block": args.through_block if plain else None, "no_street_preference": plain}
    if baselines:
        name, b = min(baselines.items(), key=lambda kv: (kv[1]["max_dev"], kv[1]["cv"]))
        checks = {
            "max_dev_le_every_baseline": all(v["ours_same"]["max_dev"] <= v["max_dev"] for v in baselines.values()),
            "cv_le_every_baseline": all(v["ours_same"]["cv"] <= v["cv"] for v in baselines.values()),
            "district_max_dev_le_best": ours["max_dev"] <= b["max_dev"],
            "polsby_popper_ge_0.42": ours["polsby_popper"] >= MIN_POLSBY_POPPER,
            "moved_le_10pct": ours["moved_share"] <= MAX_MOVED,
            "validate_ok": bool(ok), "seconds_le_60": ours["seconds"] <= MAX_SECONDS,
        }
        out.update({"baseline": name, "baseline_cv": b["cv"], "baseline_max_dev": b["max_dev"],
                    "baseline_polsby_popper": b["polsby_popper"], "baseline_moved_share": b["moved_share"],
                    "baseline_communities": b["communities"], "cv_same_communities": b["ours_same"]["cv"],
                    "max_dev_same_communities": b["ours_same"]["max_dev"], "checks": checks,
                    "dominates": all(checks.values()), "baselines": baselines})
    if not args.no_write:
        record = {"run_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                  "load_average": [round(x, 2) for x in os.getloadavg()], "ours": ours, **out}
        write_json(record, args.out or BASELINES_PATH)
    print(dumps(out).decode())


if __name__ == "__main__":
    main()
