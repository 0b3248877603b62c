"""Automatic re-partition: ``rebalance(t, n_grids=478)`` proposes grids of balanced workload, nested in the
communities, contiguous, compact and close to the current grids.

Method (grids never cross community borders):

1. **Allocation** (:func:`allocate_grids`). The district's ``n_grids`` are shared out over the communities by
   workload, at least one each, so that grid workloads vary least when every grid gets its community ideal
   (Huntington–Hill priority). Per-community or per-town ``targets`` fix those counts; locked grids raise a
   community's minimum. The community-level ideal is the community's workload divided by its grids.
2. **Split / merge** (per community). A community that gains grids shares its new count over its unlocked grids by
   workload and splits those that get more than one (recursive bisection by workload,
   :func:`twin.partition.regions.bisect_labels`, then contiguity repair); the part with most of the old grid's
   residents keeps its code, new parts get the next free codes. A community that loses grids merges its lightest
   unlocked grid into its lightest unlocked neighbour until the count is right.
3. **Search** (whole district at once, :mod:`twin.partition.rebalance._search`, compiled). Boundary cells move to an
   adjacent grid of the same community under
   ``Σ_g [d_g² + H · max(0, |d_g| − tol)²] + β · cut_edges + γ · residents moved away from their grid / I``
   (``d_g = L_g / I − 1``): simulated annealing (``steps_per_cell`` proposals per movable cell, temperature
   falling from 4 β to β / 20, seeded; half the proposals are swaps of two cells between two grids, which trade
   workload in small net amounts even where cells are heavy) and then greedy descent to a local minimum. A cell
   moves only if the cells of its grid around it form one arc (the grid stays one piece); no grid is emptied;
   locked grids are frozen.
4. **Polish** (per community, worst first). A community whose worst grid is more than ``polish_above`` (1 %) off
   its ideal is annealed again on its own with a steep hinge just below that deviation; the result is kept only
   when its worst deviation fell, and this repeats while it helps.
5. **Refine** (whole district). A last low-temperature pass with squared deviations weighed 100 × more and cut edges
   2 × more, and a steep hinge at the worst deviation the polish reached: the spread inside each community (and so
   the CV, whose floor is set by the allocation) shrinks further without any grid getting worse than that.

Balance first (squared deviations, steep beyond ``tol``), compactness second (β per cut edge: shorter boundaries),
disruption third (γ: residents keep their grid).

**Street preference** (界线清晰, on for a twin with blocks): a cut edge between two cells of the same block
(:mod:`twin.partition.edges`) costs ``through_block`` × β (default :data:`DEFAULT_THROUGH_BLOCK`), one on a street or
water edge β, so boundaries follow streets and rivers; the annealing then starts ``through_block`` × hotter so cuts
through blocks can still be crossed early. ``result.after["clear_boundaries"]`` is the proposal's share of boundary
on street/water edges (next to Polsby–Popper). Same seed and inputs → same partition (unless the time budget
cuts the search short, which ``result.params["deadline_hit"]`` reports).
"""

from twin.partition.rebalance._allocate import allocate_grids, allocate_with_targets
from twin.partition.rebalance._core import (
    DEFAULT_BETA,
    DEFAULT_GAMMA,
    DEFAULT_HINGE,
    DEFAULT_STEPS_PER_CELL,
    DEFAULT_THROUGH_BLOCK,
    DEFAULT_TOLERANCE,
    rebalance,
    rebalance_partition,
)
from twin.partition.rebalance.result import (
    BASELINES_PATH,
    RebalanceResult,
    community_deviation,
    latest_baselines,
    summarize_partition,
)

__all__ = [
    "DEFAULT_BETA",
    "DEFAULT_GAMMA",
    "DEFAULT_TOLERANCE",
    "DEFAULT_HINGE",
    "DEFAULT_STEPS_PER_CELL",
    "DEFAULT_THROUGH_BLOCK",
    "BASELINES_PATH",
    "RebalanceResult",
    "rebalance",
    "rebalance_partition",
    "allocate_grids",
    "allocate_with_targets",
    "community_deviation",
    "summarize_partition",
    "latest_baselines",
]
