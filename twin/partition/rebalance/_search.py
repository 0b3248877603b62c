"""The boundary-cell search of the re-partition: simulated annealing, then greedy descent, compiled with numba.

State: a label (grid index) per cell; every grid lives in one community and has that community's ``ideal``
workload. A move hands one cell to an edge-neighbouring grid of the same community. Its cost change is

``Δ [ Σ_g f(d_g) ] + β · Δ cut_edges + γ · Δ (residents moved / ideal)``, with ``d_g = L_g / I_g − 1`` and
``f(d) = d² + H · max(0, |d| − tol)²``,

so balance comes first (squared deviation, and a steep hinge beyond ``tol``), compactness second (cell edges
shared by two grids, i.e. the total boundary length) and disruption third (residents leaving the grid they were in).

A cell may move only when the cells of its own grid around it form one arc of its hexagonal ring (a "simple
point"): the grid then stays one piece without a graph search, and the receiving grid grows by an adjacent cell.
No grid is emptied; cells of frozen (locked) grids never move and never receive cells.

Everything is deterministic for a seed: the annealing draws from numba's generator seeded in the kernel, the
descent sweeps cells in a fixed order.
"""

from __future__ import annotations

import time

import numba
import numpy as np
import scipy.sparse as sp

__all__ = ["ring_slots", "SearchProblem", "search", "polish", "refine"]


def ring_slots(adjacency: sp.csr_matrix, xy: np.ndarray) -> np.ndarray:
    """Each cell's edge neighbours in six angular slots around it (-1 = none), consecutive slots adjacent to
    each other (the hexagonal ring). ``xy`` are cell centres in EPSG:4547 metres."""
    adj = adjacency.tocsr()
    n = adj.shape[0]
    slots = np.full((n, 6), -1, dtype=np.int64)
    deg = np.diff(adj.indptr)
    rows = np.repeat(np.arange(n), deg)
    cols = adj.indices.astype(np.int64)
    if len(cols) == 0:
        return slots
    d = xy[cols] - xy[rows]
    ang = np.degrees(np.arctan2(d[:, 1], d[:, 0]))
    first = np.zeros(n)
    has = deg > 0
    first[has] = ang[adj.indptr[:-1][has]]
    s = np.round((ang - first[rows]) / 60.0).astype(np.int64) % 6
    slots[rows, s] = cols
    return slots


class SearchProblem:
    """Arrays of one search (all cells of the district; aligned, see the module docstring).

    ``lab`` label per cell, ``comm`` community index per cell, ``w`` workload per cell, ``move_cost`` γ × residents /
    ideal per cell, ``orig`` the label of the grid the cell was in before (-1: a grid that no longer exists),
    ``ideal`` per grid, ``frozen`` per grid (locked), ``slots`` from :func:`ring_slots`, ``movable`` per cell
    (optional: cells that may move at all, e.g. those of communities with several grids), ``edge_cost`` per cell and
    slot (optional, default 1: the cost of cutting that edge in units of β, e.g. higher through a block than along a
    street).
    """

    def __init__(self, *, lab: np.ndarray, comm: np.ndarray, w: np.ndarray, move_cost: np.ndarray,
                 orig: np.ndarray, ideal: np.ndarray, frozen: np.ndarray, slots: np.ndarray,
                 movable: np.ndarray | None = None, edge_cost: np.ndarray | None = None) -> None:
        self.lab = np.ascontiguousarray(lab, dtype=np.int64)
        self.comm = np.ascontiguousarray(comm, dtype=np.int64)
        self.w = np.ascontiguousarray(w, dtype=np.float64)
        self.move_cost = np.ascontiguousarray(move_cost, dtype=np.float64)
        self.orig = np.ascontiguousarray(orig, dtype=np.int64)
        self.ideal = np.ascontiguousarray(np.maximum(ideal, 1e-9), dtype=np.float64)
        self.frozen = np.ascontiguousarray(frozen, dtype=np.bool_)
        self.slots = np.ascontiguousarray(slots, dtype=np.int64)
        self.edge_cost = np.ascontiguousarray(np.ones(self.slots.shape) if edge_cost is None else edge_cost,
                                              dtype=np.float64)
        if self.edge_cost.shape != self.slots.shape:
            raise ValueError(f"edge_cost has shape {self.edge_cost.shape}; the slots have {self.slots.shape}.")
        g = len(self.ideal)
        self.load = np.bincount(self.lab, weights=self.w, minlength=g).astype(np.float64)
        self.size = np.bincount(self.lab, minlength=g).astype(np.int64)
        ok = ~self.frozen[self.lab]
        if movable is not None:
            ok &= np.asarray(movable, dtype=bool)
        self.cand = np.flatnonzero(ok).astype(np.int64)


def search(prob: SearchProblem, *, beta: float, tolerance: float, hinge: float, steps_per_cell: float,
           t_start: float, t_end: float, seed: int, deadline: float, chunks: int = 20) -> dict[str, float]:
    """Anneal then descend ``prob.lab`` in place. The annealing runs in ``chunks``, each making
    ``steps_per_cell / chunks`` proposals per cell then on a grid boundary (the temperature falls geometrically
    from ``t_start`` to ``t_end``); the wall clock is checked
    between chunks and sweeps only, so the result depends on time only when ``deadline`` is hit. Returns
    counters (proposals, accepted moves, descent moves, whether the deadline cut the search short)."""
    n_steps = 0
    accepted = 0
    stopped = False
    if steps_per_cell > 0 and len(prob.cand) and t_start > 0:
        ratio = (t_end / t_start) if t_end > 0 else 1e-6
        for c in range(chunks):
            if time.perf_counter() > deadline:
                stopped = True
                break
            a, n = _anneal_chunk(prob, prob.cand, steps_per_cell / chunks, t_start * ratio ** (c / chunks),
                                 t_start * ratio ** ((c + 1) / chunks), beta, tolerance, hinge, seed * 1_000_003 + c)
            accepted += a
            n_steps += n
    moves = 0
    for _ in range(500):
        m = _descend(prob.slots, prob.edge_cost, prob.comm, prob.lab, prob.w, prob.move_cost, prob.orig, prob.ideal,
                     prob.frozen,
                     prob.cand, prob.load, prob.size, beta, tolerance, hinge, 1.0)
        moves += m
        if m == 0:
            break
        if time.perf_counter() > deadline:
            stopped = True
            break
    return {"proposals": float(n_steps), "accepted": float(accepted), "descent_moves": float(moves),
            "deadline_hit": float(stopped)}


def _anneal_chunk(prob: SearchProblem, cells: np.ndarray, steps_per_cell: float, t_a: float, t_b: float,
                  beta: float, tolerance: float, hinge: float, seed: int, sq: float = 1.0) -> tuple[int, int]:
    """Anneal over the current boundary cells among ``cells`` (``steps_per_cell`` proposals per boundary cell)."""
    border = _boundary(prob.slots, prob.comm, prob.lab, prob.frozen, cells)
    n = int(steps_per_cell * len(border))
    if n == 0:
        return 0, 0
    a = _anneal(prob.slots, prob.edge_cost, prob.comm, prob.lab, prob.w, prob.move_cost, prob.orig, prob.ideal,
                prob.frozen, border,
                prob.load, prob.size, beta, tolerance, hinge, sq, t_a, t_b, n, seed % 4_294_967_291)
    return int(a), n


def refine(prob: SearchProblem, *, sq: float, tolerance: float, hinge: float, beta: float, steps_per_cell: float,
           t_start: float, t_end: float, seed: int, deadline: float, chunks: int = 5) -> dict[str, float]:
    """A last, balance-heavy pass over every boundary cell: squared deviations weigh ``sq`` × more (so the spread of
    workloads inside each community shrinks further, which lowers the CV), while the steep hinge at ``tolerance``
    keeps every grid within the worst deviation the polish reached. Low-temperature annealing, then descent."""
    accepted = 0
    stopped = False
    ratio = t_end / t_start
    for c in range(chunks):
        if time.perf_counter() > deadline:
            stopped = True
            break
        a, _ = _anneal_chunk(prob, prob.cand, steps_per_cell / chunks, t_start * ratio ** (c / chunks),
                             t_start * ratio ** ((c + 1) / chunks), beta, tolerance, hinge,
                             seed * 1_000_033 + 17 * c + 5, sq)
        accepted += a
    for _ in range(200):
        m = _descend(prob.slots, prob.edge_cost, prob.comm, prob.lab, prob.w, prob.move_cost, prob.orig, prob.ideal,
                     prob.frozen,
                     prob.cand, prob.load, prob.size, beta, tolerance, hinge, sq)
        accepted += m
        if m == 0 or time.perf_counter() > deadline:
            break
    return {"refine_moves": float(accepted), "deadline_hit": float(stopped)}


def _community_max_dev(prob: SearchProblem, grids: np.ndarray) -> float:
    return float(np.abs(prob.load[grids] / prob.ideal[grids] - 1.0).max())


def polish(prob: SearchProblem, *, above: float, beta: float, hinge: float, steps_per_cell: float, restarts: int,
           t_start: float, t_end: float, seed: int, deadline: float) -> dict[str, float]:
    """Lower the largest deviation community by community: for each community whose worst grid is more than
    ``above`` off its ideal (worst first), re-anneal its cells with the hinge just below that worst deviation and
    keep the result when the worst deviation fell (else restore); repeat while it helps, up to ``restarts`` seeds
    per attempt. Deterministic for a seed unless ``deadline`` is hit."""
    grid_comm = np.full(len(prob.ideal), -1, dtype=np.int64)
    grid_comm[prob.lab[prob.cand]] = prob.comm[prob.cand]
    order = np.argsort(prob.comm[prob.cand], kind="stable")
    cells = prob.cand[order]
    comms, starts = np.unique(prob.comm[cells], return_index=True)
    ends = np.append(starts[1:], len(cells))
    worst = []
    for ci, c in enumerate(comms.tolist()):
        grids = np.flatnonzero((grid_comm == c) & ~prob.frozen)
        if len(grids) > 1:
            worst.append((-_community_max_dev(prob, grids), ci, c, grids))
    worst.sort()
    improved = attempts = 0
    stopped = False
    for neg, ci, c, grids in worst:
        if -neg <= above:
            break
        cc = np.ascontiguousarray(cells[starts[ci]:ends[ci]])
        cur = -neg
        for _round in range(20):
            saved = (prob.lab[cc].copy(), prob.load.copy(), prob.size.copy())
            goal = cur * 0.85
            ok = False
            for r in range(restarts):
                attempts += 1
                if time.perf_counter() > deadline:
                    stopped = True
                    break
                ratio = t_end / t_start
                for q in range(4):
                    _anneal_chunk(prob, cc, steps_per_cell / 4, t_start * ratio ** (q / 4),
                                  t_start * ratio ** ((q + 1) / 4), beta, goal, hinge,
                                  seed * 7919 + int(c) * 101 + _round * 11 + r * 3 + q * 1_000_003)
                for _ in range(100):
                    if _descend(prob.slots, prob.edge_cost, prob.comm, prob.lab, prob.w, prob.move_cost, prob.orig,
                                prob.ideal,
                                prob.frozen, cc, prob.load, prob.size, beta, goal, hinge, 1.0) == 0:
                        break
                new = _community_max_dev(prob, grids)
                if new < cur - 1e-9:
                    cur, ok = new, True
                    improved += 1
                    break
                prob.lab[cc] = saved[0]
                prob.load[:] = saved[1]
                prob.size[:] = saved[2]
            if not ok or stopped or cur <= above:
                break
        if stopped:
            break
    return {"polish_attempts": float(attempts), "polish_improved": float(improved), "deadline_hit": float(stopped)}


@numba.njit(cache=True, nogil=True)
def _boundary(slots: np.ndarray, comm: np.ndarray, lab: np.ndarray, frozen: np.ndarray,
              cells: np.ndarray) -> np.ndarray:
    """The cells among ``cells`` with an edge neighbour of the same community in another, unfrozen grid."""
    out = np.empty(len(cells), dtype=np.int64)
    m = 0
    for t in range(len(cells)):
        i = cells[t]
        for k in range(6):
            j = slots[i, k]
            if j >= 0 and lab[j] != lab[i] and comm[j] == comm[i] and not frozen[lab[j]]:
                out[m] = i
                m += 1
                break
    return out[:m]


@numba.njit(cache=True, nogil=True)
def _f(load: float, ideal: float, tol: float, hinge: float, sq: float) -> float:
    """``sq · d² + hinge · max(0, |d| − tol)²`` for a grid of workload ``load``."""
    d = load / ideal - 1.0
    over = abs(d) - tol
    if over > 0:
        return sq * d * d + hinge * over * over
    return sq * d * d


@numba.njit(cache=True, nogil=True)
def _ring(slots: np.ndarray, ecost: np.ndarray, lab: np.ndarray, i: int, a: int,
          b: int) -> tuple[int, int, int, float, float]:
    """(cells of grid a around i, cells of grid b around i, number of arcs of grid a in the ring, summed edge cost
    of i's edges to grid a, … to grid b)."""
    n_a = 0
    n_b = 0
    runs = 0
    c_a = 0.0
    c_b = 0.0
    prev = slots[i, 5]
    prev_a = prev >= 0 and lab[prev] == a
    for k in range(6):
        j = slots[i, k]
        is_a = j >= 0 and lab[j] == a
        if is_a:
            n_a += 1
            c_a += ecost[i, k]
            if not prev_a:
                runs += 1
        elif j >= 0 and lab[j] == b:
            n_b += 1
            c_b += ecost[i, k]
        prev_a = is_a
    if n_a == 6:
        runs = 1
    return n_a, n_b, runs, c_a, c_b


@numba.njit(cache=True, nogil=True)
def _delta(i: int, a: int, b: int, c_a: float, c_b: float, w: np.ndarray, move_cost: np.ndarray, orig: np.ndarray,
           ideal: np.ndarray, load: np.ndarray, beta: float, tol: float, hinge: float, sq: float) -> float:
    wi = w[i]
    ia = ideal[a]
    ib = ideal[b]
    d = (_f(load[a] - wi, ia, tol, hinge, sq) - _f(load[a], ia, tol, hinge, sq)
         + _f(load[b] + wi, ib, tol, hinge, sq) - _f(load[b], ib, tol, hinge, sq))
    d += beta * (c_a - c_b)  # edges to a become cut, edges to b stop being cut
    if orig[i] == a:
        d += move_cost[i]
    elif orig[i] == b:
        d -= move_cost[i]
    return d


@numba.njit(cache=True, nogil=True)
def _apply(i: int, a: int, b: int, lab: np.ndarray, w: np.ndarray, load: np.ndarray, size: np.ndarray) -> None:
    lab[i] = b
    load[a] -= w[i]
    load[b] += w[i]
    size[a] -= 1
    size[b] += 1


@numba.njit(cache=True, nogil=True)
def _anneal(slots, ecost, comm, lab, w, move_cost, orig, ideal, frozen, cand, load, size, beta, tol,  # noqa: ANN001
            hinge,  # noqa: ANN001
            sq, t_a, t_b, n_steps, seed):  # noqa: ANN001
    """Metropolis moves at a geometrically falling temperature. Half the proposals are single-cell moves, half
    swaps (cell i: a → b, then a cell j of b next to i: b → a), which trade workload between two grids in small net
    amounts even when the cells themselves are heavy."""
    np.random.seed(seed)
    nc = len(cand)
    accepted = 0
    log_ratio = np.log(t_b / t_a)
    for step in range(n_steps):
        temp = t_a * np.exp(log_ratio * step / n_steps)
        i = cand[np.random.randint(nc)]
        j = slots[i, np.random.randint(6)]
        if j < 0:
            continue
        a = lab[i]
        b = lab[j]
        if a == b or frozen[b] or comm[j] != comm[i] or size[a] <= 1:
            continue
        n_a, n_b, runs, c_a, c_b = _ring(slots, ecost, lab, i, a, b)
        if runs != 1:
            continue
        dl = _delta(i, a, b, c_a, c_b, w, move_cost, orig, ideal, load, beta, tol, hinge, sq)
        if np.random.random() < 0.5:
            if dl <= 0 or np.random.random() < np.exp(-dl / temp):
                _apply(i, a, b, lab, w, load, size)
                accepted += 1
            continue
        # swap: i goes to b, then a b-cell next to i goes to a
        _apply(i, a, b, lab, w, load, size)
        k0 = np.random.randint(6)
        done = False
        for kk in range(6):
            j2 = slots[i, (k0 + kk) % 6]
            if j2 < 0 or j2 == i or lab[j2] != b or size[b] <= 1:
                continue
            m_b, m_a, runs2, e_b, e_a = _ring(slots, ecost, lab, j2, b, a)
            if runs2 != 1 or m_a == 0:
                continue
            dl2 = dl + _delta(j2, b, a, e_b, e_a, w, move_cost, orig, ideal, load, beta, tol, hinge, sq)
            if dl2 <= 0 or np.random.random() < np.exp(-dl2 / temp):
                _apply(j2, b, a, lab, w, load, size)
                accepted += 1
                done = True
            break
        if not done:
            _apply(i, b, a, lab, w, load, size)
    return accepted


@numba.njit(cache=True, nogil=True)
def _descend(slots, ecost, comm, lab, w, move_cost, orig, ideal, frozen, cand, load, size, beta, tol,  # noqa: ANN001
             hinge,  # noqa: ANN001
             sq):  # noqa: ANN001
    """One sweep over the candidates in order: each cell moves to the neighbouring grid that lowers the cost most."""
    moved = 0
    for t in range(len(cand)):
        i = cand[t]
        a = lab[i]
        if size[a] <= 1:
            continue
        best = -1e-12
        best_b = -1
        best_na = 0
        for k in range(6):
            j = slots[i, k]
            if j < 0:
                continue
            b = lab[j]
            if b == a or frozen[b] or comm[j] != comm[i]:
                continue
            n_a, n_b, runs, c_a, c_b = _ring(slots, ecost, lab, i, a, b)
            if runs != 1:
                break
            dl = _delta(i, a, b, c_a, c_b, w, move_cost, orig, ideal, load, beta, tol, hinge, sq)
            if dl < best:
                best = dl
                best_b = b
                best_na = n_a
        if best_b >= 0 and best_na < 6:
            lab[i] = best_b
            load[a] -= w[i]
            load[best_b] += w[i]
            size[a] -= 1
            size[best_b] += 1
            moved += 1
    return moved
