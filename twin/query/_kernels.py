"""Compiled (numba) inner loops of the area query: rasterise a polygon onto the point index's bins, and sum the
covered points' counts per column, per grid and per touched cell.

Pure functions over arrays (no twin objects): :mod:`twin.query._index` calls them. Coordinates are WGS84 degrees
(lng = x, lat = y); the bins are the regular lng/lat raster of :class:`twin.query._index.PointIndex` (origin
``x0``, ``y0``, ``dx`` × ``dy`` degrees, ``nx`` × ``ny`` bins, bin id ``row * nx + col``). Compiled on first use
and cached on disk by numba (``cache=True``): compiling takes ≈ 15–20 s once per install or source change
(``make`` runs :func:`warm_up`), loading them later well under a second.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["classify_bins", "sum_covered", "cover_and_sum", "warm_up"]


@numba.njit(cache=True, nogil=True)
def classify_bins(edges: np.ndarray, bounds: tuple[float, float, float, float],  # noqa: PLR0913, PLR0912, PLR0915, C901
                  x0: float, y0: float, dx: float, dy: float, nx: int, ny: int, bin_start: np.ndarray,
                  x: np.ndarray, y: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rasterise a polygon's boundary onto the bins and classify every point of the index against it.

    Parameters
    ----------
    edges
        (n_edges, 4) float64 x1, y1, x2, y2 of every ring edge of the polygon (degrees).
    bounds
        The polygon's (minx, miny, maxx, maxy).
    bin_start
        (nx·ny + 1) offsets: the points of bin ``b`` are ``bin_start[b]:bin_start[b + 1]`` (points sorted by bin).
    x, y
        The points' lng/lat (degrees), in bin order.
    eps
        Margin in degrees: a bin that no edge comes within ``eps`` of is wholly inside or wholly outside, and a
        point farther than ``eps`` from every edge is classified by crossing parity here.

    Returns
    -------
    (run_starts, run_stops, inside, unsure)
        Point-index runs ``[start, stop)`` wholly inside (merged where contiguous); the ascending indices of the
        points in cut bins found inside; and those within ``eps`` of an edge, left for an exact (robust) test.

    Cut bins are every bin an edge comes within ``eps`` of (the edge clipped to each row strip widened by
    ``eps``, widened by ``eps`` along the row), merged per row into column intervals. A run of bins between two
    intervals of a row is wholly inside iff an odd number of the boundary's crossings of the row's centre line
    (half-open rule ``lo <= y < hi``) lie left of it. The window is the bounding box widened by ``eps``; its
    columns are not clamped to the raster (so its first and last columns lie outside the polygon), its rows are
    (rows are independent). A point in a cut bin is tested against its interval's edges only
    (:func:`_test_points`); rounding there is ~1e-13°, far below ``eps``. The work grows with the boundary's length in bins and the points in cut bins, not with
    the area.
    """
    minx, miny, maxx, maxy = bounds
    c0 = math.floor((minx - eps - x0) / dx)
    c1 = math.floor((maxx + eps - x0) / dx)
    r0 = max(math.floor((miny - eps - y0) / dy), 0)
    r1 = min(math.floor((maxy + eps - y0) / dy), ny - 1)
    if c1 < 0 or c0 > nx - 1 or r1 < r0:
        e = np.empty(0, dtype=np.int64)
        return e, e.copy(), e.copy(), e.copy()
    nr, nc = r1 - r0 + 1, c1 - c0 + 1
    ox, oy = x0 + c0 * dx, y0 + r0 * dy
    # the edges in bin units of the window (u = column, v = row, from its first bin's corner)
    uv = np.empty_like(edges)
    for i in range(edges.shape[0]):
        uv[i, 0], uv[i, 2] = (edges[i, 0] - ox) / dx, (edges[i, 2] - ox) / dx
        uv[i, 1], uv[i, 3] = (edges[i, 1] - oy) / dy, (edges[i, 3] - oy) / dy
    row_off, pair_edge, klo, khi, kx = _row_pairs(uv, nr, nc, eps / dx, eps / dy)

    starts = np.empty(len(klo) + 1, dtype=np.int64)  # wholly-inside point runs
    stops = np.empty(len(klo) + 1, dtype=np.int64)
    cstarts = np.empty(len(klo), dtype=np.int64)  # points in cut bins: runs, and the row of each
    cstops = np.empty(len(klo), dtype=np.int64)
    cpair_lo = np.empty(len(klo), dtype=np.int64)  # and the interval's pairs, and whether left of it is inside
    cpair_hi = np.empty(len(klo), dtype=np.int64)
    cleft = np.empty(len(klo), dtype=np.bool_)
    xk = np.empty(len(klo), dtype=np.int64)
    n_runs = n_cruns = n_cand = 0
    for j in range(nr):
        lo, hi = row_off[j], row_off[j + 1]
        if lo == hi:
            continue
        base = (r0 + j) * nx
        nx_ = 0  # the row's crossings
        for m in range(lo, hi):
            if kx[m] >= 0:
                xk[nx_] = kx[m]
                nx_ += 1
        _sort_small(xk[:nx_])
        q = 0
        parity = 0  # of the crossings left of the current gap: the gap is inside iff odd
        left_inside = False  # the gap before the current interval (the window's first column is outside)
        m = lo
        while m < hi:  # merge the row's cut intervals (sorted by start); emit each and the gap after it
            a, b = klo[m], khi[m]
            m0 = m
            m += 1
            while m < hi and klo[m] <= b + 1:
                b = max(b, khi[m])
                m += 1
            g0, g1 = max(c0 + a, 0), min(c0 + b + 1, nx)
            if g1 > g0 and bin_start[base + g1] > bin_start[base + g0]:
                cstarts[n_cruns], cstops[n_cruns] = bin_start[base + g0], bin_start[base + g1]
                cpair_lo[n_cruns], cpair_hi[n_cruns], cleft[n_cruns] = m0, m, left_inside
                n_cand += cstops[n_cruns] - cstarts[n_cruns]
                n_cruns += 1
            if m == hi:
                break
            while q < nx_ and xk[q] <= b + 1:  # crossings left of the gap b + 1 .. klo[m] - 1
                parity ^= 1
                q += 1
            g0, g1 = max(c0 + b + 1, 0), min(c0 + klo[m], nx)
            left_inside = parity == 1
            if parity and g1 > g0:
                s, e = bin_start[base + g0], bin_start[base + g1]
                if e > s:
                    if n_runs > 0 and stops[n_runs - 1] == s:
                        stops[n_runs - 1] = e
                    else:
                        starts[n_runs], stops[n_runs] = s, e
                        n_runs += 1
    inside, unsure = _test_points(cstarts[:n_cruns], cstops[:n_cruns], cpair_lo, cpair_hi, cleft, n_cand, pair_edge,
                                  edges, x, y, eps)
    return starts[:n_runs].copy(), stops[:n_runs].copy(), inside, unsure


@numba.njit(cache=True, nogil=True)
def _row_pairs(uv: np.ndarray, nr: int, nc: int, eu: float,
               ev: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every (edge, row) pair whose row strip, widened by ``ev``, the edge reaches, bucketed by row.

    Returns ``(row_off, pair_edge, klo, khi, kx)``: the pairs of row ``j`` are ``row_off[j]:row_off[j + 1]``,
    sorted by ``klo``; each has its edge, the columns ``klo..khi`` it cuts (the edge clipped to the widened
    strip, widened by ``eu``; clamped to the window) and ``kx``, the first column whose centre lies right of
    where the edge crosses the row's centre line (half-open ``lo <= v < hi``; -1: it does not).
    """
    row_off = np.zeros(nr + 2, dtype=np.int64)
    for i in range(uv.shape[0]):  # pairs per row, as a difference array
        v1, v2 = uv[i, 1], uv[i, 3]
        jlo, jhi = max(math.floor(min(v1, v2) - ev), 0), min(math.floor(max(v1, v2) + ev), nr - 1)
        if jhi >= jlo:
            row_off[jlo + 1] += 1
            row_off[jhi + 2] -= 1
    row_off = np.cumsum(np.cumsum(row_off))[:nr + 1]  # counts per row, then offsets
    n = row_off[nr]
    fill = row_off[:nr].copy()
    pair_edge = np.empty(n, dtype=np.int64)
    klo = np.empty(n, dtype=np.int64)
    khi = np.empty(n, dtype=np.int64)
    kx = np.empty(n, dtype=np.int64)
    for i in range(uv.shape[0]):
        u1, v1, u2, v2 = uv[i, 0], uv[i, 1], uv[i, 2], uv[i, 3]
        du, dv = u2 - u1, v2 - v1
        lo, hi = min(v1, v2), max(v1, v2)
        flat = dv == 0.0
        inv = 0.0 if flat else 1.0 / dv
        for j in range(max(math.floor(lo - ev), 0), min(math.floor(hi + ev), nr - 1) + 1):
            if flat:  # wholly in its strip
                ua, ub = u1, u2
            else:  # the part of the edge inside the widened strip
                ua = u1 + (max(j - ev, lo) - v1) * inv * du
                ub = u1 + (min(j + 1 + ev, hi) - v1) * inv * du
            q = fill[j]
            fill[j] += 1
            pair_edge[q] = i
            klo[q] = min(max(math.floor(min(ua, ub) - eu), 0), nc - 1)
            khi[q] = min(max(math.floor(max(ua, ub) + eu), 0), nc - 1)
            vc = j + 0.5
            kx[q] = min(max(math.floor(u1 + (vc - v1) * (du * inv) + 0.5), 0), nc) if lo <= vc < hi else -1
    for j in range(nr):  # sort each row's pairs by klo: in place by insertion (rows hold few), else argsort
        lo, hi = row_off[j], row_off[j + 1]
        if hi - lo > 32:
            o = _shell_argsort(klo[lo:hi])
            for arr in (pair_edge, klo, khi, kx):
                tmp = arr[lo:hi].copy()
                for q in range(hi - lo):
                    arr[lo + q] = tmp[o[q]]
            continue
        for m in range(lo + 1, hi):
            a, b, c, d = klo[m], khi[m], kx[m], pair_edge[m]
            k = m - 1
            while k >= lo and klo[k] > a:
                klo[k + 1], khi[k + 1], kx[k + 1], pair_edge[k + 1] = klo[k], khi[k], kx[k], pair_edge[k]
                k -= 1
            klo[k + 1], khi[k + 1], kx[k + 1], pair_edge[k + 1] = a, b, c, d
    return row_off, pair_edge, klo, khi, kx


@numba.njit(cache=True, nogil=True)
def _sort_small(a: np.ndarray) -> None:
    """Sort ``a`` in place: insertion sort for the few values a row usually holds, shell sort beyond 32.

    (numba's own np.sort/np.argsort take ≈ 10 s each to compile; these take well under one.)"""
    if len(a) > 32:
        o = _shell_argsort(a)
        tmp = a.copy()
        for q in range(len(a)):
            a[q] = tmp[o[q]]
        return
    for m in range(1, len(a)):
        v = a[m]
        k = m - 1
        while k >= 0 and a[k] > v:
            a[k + 1] = a[k]
            k -= 1
        a[k + 1] = v


@numba.njit(cache=True, nogil=True)
def _shell_argsort(a: np.ndarray) -> np.ndarray:
    """Indices that sort ``a`` ascending (shell sort, Knuth's gaps 1, 4, 13, 40…; not stable)."""
    o = np.arange(len(a))
    gap = 1
    while gap < len(a) // 3:
        gap = 3 * gap + 1
    while gap >= 1:
        for m in range(gap, len(a)):
            v = o[m]
            k = m
            while k >= gap and a[o[k - gap]] > a[v]:
                o[k] = o[k - gap]
                k -= gap
            o[k] = v
        gap //= 3
    return o


@numba.njit(cache=True, nogil=True)
def _test_points(cstarts: np.ndarray, cstops: np.ndarray, cpair_lo: np.ndarray,  # noqa: PLR0913
                 cpair_hi: np.ndarray, cleft: np.ndarray, n_cand: int, pair_edge: np.ndarray, edges: np.ndarray,
                 x: np.ndarray, y: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Test the points of each cut interval ``cstarts[r]:cstops[r]`` against that interval's edges only.

    The bins left of an interval (``cleft[r]``: inside or not) hold no boundary, so a point's status is theirs,
    flipped by each edge crossing its latitude between them and the point; such an edge, and any edge within
    ``eps`` of the point, cut the point's bin and so belong to the interval's pairs
    ``pair_edge[cpair_lo[r]:cpair_hi[r]]``.

    Returns (inside, unsure): the points inside, and those within ``eps`` (degrees) of an edge, whose answer
    floating-point rounding could change (left to an exact predicate).
    """
    inside = np.empty(n_cand, dtype=np.int64)
    unsure = np.empty(n_cand, dtype=np.int64)
    n_in = n_unsure = 0
    eps2 = eps * eps
    for r in range(len(cstarts)):
        for p in range(cstarts[r], cstops[r]):
            px, py = x[p], y[p]
            odd = cleft[r]
            near = False
            for m in range(cpair_lo[r], cpair_hi[r]):
                i = pair_edge[m]
                x1, y1, x2, y2 = edges[i, 0], edges[i, 1], edges[i, 2], edges[i, 3]
                if (px >= min(x1, x2) - eps and px <= max(x1, x2) + eps and py >= min(y1, y2) - eps
                        and py <= max(y1, y2) + eps):  # near the edge's box: measure the distance
                    ex, ey = x2 - x1, y2 - y1
                    ll = ex * ex + ey * ey
                    tt = 0.0 if ll == 0.0 else min(max(((px - x1) * ex + (py - y1) * ey) / ll, 0.0), 1.0)
                    qx, qy = x1 + tt * ex - px, y1 + tt * ey - py
                    if qx * qx + qy * qy <= eps2:
                        near = True
                        break
                if (y1 > py) != (y2 > py) and x1 + (py - y1) * (x2 - x1) / (y2 - y1) < px:  # between them
                    odd = not odd
            if near:
                unsure[n_unsure] = p
                n_unsure += 1
            elif odd:
                inside[n_in] = p
                n_in += 1
    return inside[:n_in].copy(), unsure[:n_unsure].copy()


@numba.njit(cache=True, nogil=True)
def sum_covered(starts: np.ndarray, stops: np.ndarray, edge: np.ndarray, cum: np.ndarray,  # noqa: PLR0913
                feats: np.ndarray, point_grid: np.ndarray, cell_pos: np.ndarray, cell_grid: np.ndarray,
                grid_totals: np.ndarray, grid_community: np.ndarray, n_communities: int, grid_town: np.ndarray,
                n_towns: int, res_col: int, with_grids: bool) -> tuple[np.ndarray, ...]:
    """Sums over the covered points — the runs ``[starts[i], stops[i])`` plus the ``edge`` indices (disjoint) —
    in total, per touched cell and per touched grid, community and town.

    Parameters
    ----------
    cum
        (n + 1, n_columns) prefix sums of ``feats`` (n, n_columns) along the point order.
    point_grid, cell_pos
        Per point: grid index (-1 none) and row of its partition cell (-1 none).
    cell_grid, grid_community, grid_town
        Grid index of each partition cell, community and town index of each grid (-1 none).
    grid_totals
        (n_grids, n_keys) sums over each whole grid of the first ``n_keys`` columns (the ones broken down).
    res_col
        The residents column (for each grid's share of its residents inside).

    Returns
    -------
    (sums, cells, gi, grid_values, share, ci, community_values, ti, town_values)
        Column sums (n_columns,) int64; the partition-cell rows holding a covered point (each once, in the
        order met: numpy sorts faster than numba); the grids of those cells (ascending) — a grid is touched when
        one of its cells is. With ``with_grids``: the grids'
        sums inside ((len(gi), n_keys) int64) and residents inside / all residents (NaN where a grid has none),
        the communities and towns of those grids (ascending) with their summed rows; else those are empty.

    A run is summed from two rows of ``cum`` and split per grid where ``point_grid`` changes along it (points
    are in bin order, so a run crosses few grid borders): the work per covered point is reading its grid and
    cell, not its counts.
    """
    nc = feats.shape[1]
    n_grids, nk = grid_totals.shape
    sums = np.zeros(nc, dtype=np.int64)
    grid_sums = np.zeros((n_grids, nk), dtype=np.int64)
    touched = np.zeros((len(cell_grid) >> 6) + 1, dtype=np.uint64)  # a bit per cell: 8 KB to clear, not 74
    n_in = len(edge)
    for r in range(len(starts)):
        n_in += stops[r] - starts[r]
    cells = np.empty(min(n_in, len(cell_grid)), dtype=np.int64)  # touched cells in the order first met
    m = 0
    for r in range(len(starts)):
        s, e = starts[r], stops[r]
        for c in range(nc):
            sums[c] += cum[e, c] - cum[s, c]
        seg, g0 = s, point_grid[s]
        for p in range(s, e):
            cp = cell_pos[p]
            if cp >= 0 and not touched[cp >> 6] & (np.uint64(1) << np.uint64(cp & 63)):
                touched[cp >> 6] |= np.uint64(1) << np.uint64(cp & 63)
                cells[m] = cp
                m += 1
            g = point_grid[p]
            if g != g0:
                if g0 >= 0:
                    for c in range(nk):
                        grid_sums[g0, c] += cum[p, c] - cum[seg, c]
                seg, g0 = p, g
        if g0 >= 0:
            for c in range(nk):
                grid_sums[g0, c] += cum[e, c] - cum[seg, c]
    for p in edge:  # (the bitset lines are repeated on purpose: a helper, inlined or not, doubled the walk)
        for c in range(nc):
            sums[c] += feats[p, c]
        cp = cell_pos[p]
        if cp >= 0 and not touched[cp >> 6] & (np.uint64(1) << np.uint64(cp & 63)):
            touched[cp >> 6] |= np.uint64(1) << np.uint64(cp & 63)
            cells[m] = cp
            m += 1
        g = point_grid[p]
        if g >= 0:
            for c in range(nk):
                grid_sums[g, c] += feats[p, c]
    grid_hit = np.zeros(n_grids, dtype=np.bool_)  # a grid is touched when one of its cells is
    for k in range(m):
        g = cell_grid[cells[k]]
        if g >= 0:
            grid_hit[g] = True
    gi = np.flatnonzero(grid_hit)
    cells = cells[:m].copy()
    if not with_grids:
        gi0 = gi[:0]
        return sums, cells, gi, grid_sums[:0], np.zeros(0), gi0, grid_sums[:0], gi0, grid_sums[:0]
    return (sums, cells) + _roll_up(gi, grid_sums, grid_totals, grid_community, n_communities, grid_town, n_towns,
                                    res_col)


@numba.njit(cache=True, nogil=True)
def grid_sums_covered(starts: np.ndarray, stops: np.ndarray, edge: np.ndarray, cum: np.ndarray,
                      feats: np.ndarray, point_grid: np.ndarray, n_grids: int) -> np.ndarray:
    """(n_grids, n_columns) int64 sums of EVERY column of ``feats`` over the covered points (runs
    ``[starts[i], stops[i])`` plus the ``edge`` indices) per grid (``point_grid``; -1 = none, dropped).

    Like :func:`sum_covered`'s grid sums (which keep only the broken-down columns): a run is summed from two rows
    of the prefix sums ``cum`` and split where ``point_grid`` changes along it.
    """
    nc = feats.shape[1]
    out = np.zeros((n_grids, nc), dtype=np.int64)
    for r in range(len(starts)):
        s, e = starts[r], stops[r]
        seg, g0 = s, point_grid[s] if e > s else -1
        for p in range(s, e):
            g = point_grid[p]
            if g != g0:
                if g0 >= 0:
                    for c in range(nc):
                        out[g0, c] += cum[p, c] - cum[seg, c]
                seg, g0 = p, g
        if g0 >= 0:
            for c in range(nc):
                out[g0, c] += cum[e, c] - cum[seg, c]
    for p in edge:
        g = point_grid[p]
        if g >= 0:
            for c in range(nc):
                out[g, c] += feats[p, c]
    return out


@numba.njit(cache=True, nogil=True)
def _roll_up(gi: np.ndarray, grid_sums: np.ndarray, grid_totals: np.ndarray,  # noqa: PLR0913
             grid_community: np.ndarray, n_communities: int, grid_town: np.ndarray, n_towns: int,
             res_col: int) -> tuple[np.ndarray, ...]:
    """The touched grids' rows of ``grid_sums`` and residents' shares; their communities' and towns' sums."""
    nk = grid_sums.shape[1]
    grid_values = np.empty((len(gi), nk), dtype=np.int64)
    share = np.empty(len(gi), dtype=np.float64)
    com = np.zeros((n_communities, nk), dtype=np.int64)
    town = np.zeros((n_towns, nk), dtype=np.int64)
    com_hit = np.zeros(n_communities, dtype=np.bool_)
    town_hit = np.zeros(n_towns, dtype=np.bool_)
    for r in range(len(gi)):
        g = gi[r]
        c, w = grid_community[g], grid_town[g]
        for k in range(nk):
            v = grid_sums[g, k]
            grid_values[r, k] = v
            if c >= 0:
                com[c, k] += v
            if w >= 0:
                town[w, k] += v
        if c >= 0:
            com_hit[c] = True
        if w >= 0:
            town_hit[w] = True
        share[r] = grid_sums[g, res_col] / grid_totals[g, res_col] if grid_totals[g, res_col] > 0 else np.nan
    ci = np.flatnonzero(com_hit)
    ti = np.flatnonzero(town_hit)
    return gi, grid_values, share, ci, com[ci], ti, town[ti]


@numba.njit(cache=True, nogil=True)
def cover_and_sum(edges: np.ndarray, bounds: tuple[float, float, float, float], x0: float,  # noqa: PLR0913
                  y0: float, dx: float, dy: float, nx: int, ny: int, bin_start: np.ndarray, x: np.ndarray,
                  y: np.ndarray, eps: float, cum: np.ndarray, feats: np.ndarray, point_grid: np.ndarray,
                  cell_pos: np.ndarray, cell_grid: np.ndarray, grid_totals: np.ndarray, grid_community: np.ndarray,
                  n_communities: int, grid_town: np.ndarray, n_towns: int, res_col: int,
                  with_grids: bool) -> tuple[np.ndarray, ...]:
    """:func:`classify_bins` then :func:`sum_covered` in one call (one dispatch from Python instead of two).

    Returns the four arrays of :func:`classify_bins` followed by the nine of :func:`sum_covered`. The sums count
    the ``inside`` points only: when ``unsure`` is not empty the caller decides those points and sums again.
    """
    starts, stops, inside, unsure = classify_bins(edges, bounds, x0, y0, dx, dy, nx, ny, bin_start, x, y, eps)
    return (starts, stops, inside, unsure) + sum_covered(
        starts, stops, inside, cum, feats, point_grid, cell_pos, cell_grid, grid_totals, grid_community,
        n_communities, grid_town, n_towns, res_col, with_grids)


def warm_up() -> None:
    """Compile the kernels for the dtypes the query indexes use (int32 offsets, prefix sums, cells; int16 or
    int32 grid ids), so that the first area query does not wait for the compiler (≈ 15–20 s once per install
    or source change; afterwards numba loads them from its cache in well under a second)."""
    edges = np.array([[0.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.0, 0.0]])
    bounds = (0.0, 0.0, 1.0, 1.0)
    bin_start = np.zeros(101, dtype=np.int32)
    xy = np.zeros(0)
    i32, i64 = np.zeros(2, dtype=np.int32), np.zeros(0, dtype=np.int64)
    cum, feats = np.zeros((1, 3), dtype=np.int32), np.zeros((0, 3), dtype=np.int32)
    grid_totals = np.zeros((2, 2), dtype=np.int64)
    classify_bins(edges, bounds, 0.0, 0.0, 0.1, 0.1, 10, 10, bin_start, xy, xy, 1e-9)
    for point_grid in (np.zeros(0, dtype=np.int16), np.zeros(0, dtype=np.int32)):
        cover_and_sum(edges, bounds, 0.0, 0.0, 0.1, 0.1, 10, 10, bin_start, xy, xy, 1e-9, cum, feats, point_grid,
                      i32[:0], i32, grid_totals, i32, 2, i32, 2, 0, True)
        sum_covered(i64, i64, i64, cum, feats, point_grid, i32[:0], i32, grid_totals, i32, 2, i32, 2, 0, True)
        grid_sums_covered(i64, i64, i64, cum, feats, point_grid, 2)
