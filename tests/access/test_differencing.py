"""Differencing attacks (issue 11): for every role that does not see everything, a bounded, deterministic attacker
tries pairs of published numbers — an area and the same area minus a 20 m hole around one building, two
overlapping lassos, versions N and N+1 of a partition (dossiers, exports, the version diff), overlays at res r
and r+1 and across categories, inside/outside breakdowns, exports against dossiers, worker counts — and the test
asserts that no difference of two published numbers equals the true (brute-force) count, 1 … k−1, of a record
set outside the caller's record scope. Incident linking never links to (or reveals) another unit's incident."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from shapely.geometry import Point, box

import twin
from twin.access.policy import AccessPolicy, worker_summary
from twin.access.roles import DISTRICT, Role, make_role
from twin.cells import cells_to_parent
from twin.errors import PartitionError
from twin.incidents.catalogue import load_catalogue
from twin.incidents.store import IncidentStore, board_for, report_incident
from twin.model import COUNT_KEYS, ages_on
from twin.partition import versions
from twin.partition.edits import move_cells
from twin.partition.export import grids_frame
from twin.partition.model import neighbour_grids, partition_from_twin
from twin.query.dossier import grid_dossier
from twin.query.overlays import overlay
from twin.query.summary import summarize_area
from twin.store.sql import Store

K = 5
POLICY = AccessPolicy(k=K)
ROLE_NAMES = ("town", "community", "grid_worker", "analyst")
M_PER_DEG = 111_000.0
KEYS = [k for k in COUNT_KEYS if k not in ("cameras", "workers")]


@pytest.fixture(scope="module")
def t(default_twin: twin.Twin) -> twin.Twin:
    return default_twin


@pytest.fixture(scope="module")
def roles(t: twin.Twin) -> dict[str, Role]:
    g = t.grids.iloc[0]
    return {"town": make_role("town", [str(g["town_code"])]),
            "community": make_role("community", [str(g["community_code"])]),
            "grid_worker": make_role("grid_worker", [str(g["grid_code"])]),
            "analyst": make_role("analyst")}


def _scope(t: twin.Twin, role: Role) -> set[str]:
    if not role.can_see_records:
        return set()
    col = {"town": "town_code", "community": "community_code", "grid": "grid_code"}[role.scope_level]
    g = t.grids
    return set(g.loc[g[col].astype(str).isin(role.scope_codes), "grid_code"].astype(str))


class Attacker:
    """Counts the differences tried and fails on the first that reveals a small outside count."""

    def __init__(self) -> None:
        self.tried = 0
        self.small = 0

    def check(self, a: int | None, b: int | None, truth: int, what: str) -> None:
        """``a − b`` published; ``truth``: the exact count of the record set it would reveal (outside scope)."""
        if a is None or b is None:
            return
        self.tried += 1
        if 0 < truth < K:
            self.small += 1
            assert a - b != truth, f"{what}: {a} − {b} reveals the outside count {truth}"


def _outside_part(s: Any, key: str) -> int | None:
    """The outside part of a published total (total − the caller's exact inside rows)."""
    v = s.totals[key]
    if v is None:
        return None
    inside = int(s.by_grid[key].sum()) if len(s.by_grid) else 0
    return v - inside


def _small_buildings(t: twin.Twin, outside: set[str], n: int, seed: int) -> np.ndarray:
    """Positions of ``n`` buildings outside the scope holding 1 … K−1 residents (deterministic)."""
    b = t.buildings
    ok = ((b["residents"] > 0) & (b["residents"] < K)).to_numpy() & b["grid_code"].astype(str).isin(outside).to_numpy()
    pool = np.flatnonzero(ok)
    return np.random.default_rng(seed).choice(pool, size=min(n, len(pool)), replace=False)


@pytest.mark.parametrize("name", ROLE_NAMES)
def test_area_minus_a_hole_and_overlapping_lassos(t: twin.Twin, roles: dict[str, Role], name: str) -> None:
    """A vs A minus a 20 m hole around one small building (A = its grid, its grid's dossier, a lasso around
    it), and two overlapping lassos (inclusion–exclusion): no published difference is a small outside count."""
    role = roles[name]
    outside = set(t.grids["grid_code"].astype(str)) - _scope(t, role)
    atk = Attacker()
    for i in _small_buildings(t, outside, 12, seed=1):
        b = t.buildings.iloc[int(i)]
        x, y, code = float(b["lng"]), float(b["lat"]), str(b["grid_code"])
        hole = Point(x, y).buffer(20 / M_PER_DEG)
        grid_geom = t.grid(code).geometry
        lasso = box(x - 0.004, y - 0.004, x + 0.004, y + 0.004)
        dossier = grid_dossier(t, code, role=role, policy=POLICY)
        for a_geom in (grid_geom, lasso):
            big = summarize_area(t, a_geom, role=role, policy=POLICY)
            small = summarize_area(t, a_geom.difference(hole), role=role, policy=POLICY)
            truth_big = summarize_area(t, a_geom)
            truth_small = summarize_area(t, a_geom.difference(hole))
            for k in KEYS:
                truth = int(truth_big.totals[k]) - int(truth_small.totals[k])  # records in the hole (outside)
                atk.check(big.totals[k], small.totals[k], truth, f"{name} totals.{k} A − (A − hole)")
                atk.check(_outside_part(big, k), _outside_part(small, k), truth, f"{name} outside.{k}")
                if a_geom is grid_geom:
                    atk.check(dossier["counts"].get(k), small.totals[k], truth, f"{name} dossier − (grid − hole)")
            for use, v in big.buildings_by_use.items():
                truth = int(truth_big.buildings_by_use[use]) - int(truth_small.buildings_by_use[use])
                atk.check(v, small.buildings_by_use[use], truth, f"{name} buildings_by_use.{use}")
        # two overlapping lassos whose intersection is a small box around the building
        l1 = box(x - 0.003, y - 0.003, x + 0.0002, y + 0.0002)
        l2 = box(x - 0.0002, y - 0.0002, x + 0.003, y + 0.003)
        s1, s2 = (summarize_area(t, g, role=role, policy=POLICY) for g in (l1, l2))
        su = summarize_area(t, l1.union(l2), role=role, policy=POLICY)
        ti = summarize_area(t, l1.intersection(l2))
        for k in KEYS:
            a = None if s1.totals[k] is None or s2.totals[k] is None else s1.totals[k] + s2.totals[k]
            atk.check(a, su.totals[k], int(ti.totals[k]), f"{name} lasso inclusion–exclusion {k}")
    assert atk.tried > 500 and atk.small > 20, (atk.tried, atk.small)


def test_inside_outside_breakdowns(t: twin.Twin, roles: dict[str, Role]) -> None:
    """An area partly outside the scope: a breakdown (uses, credit colours, every total) minus the caller's
    own exact rows never gives the outside part when that part is small."""
    atk = Attacker()
    for name in ("town", "community", "grid_worker"):
        role = roles[name]
        mine = _scope(t, role)
        geom = t.grids.loc[t.grids["grid_code"].astype(str).isin(mine)].geometry.union_all()
        for d in (0.0005, 0.001, 0.002, 0.004):
            area = geom.buffer(d)
            s = summarize_area(t, area, role=role, policy=POLICY)
            full = summarize_area(t, area)
            inside = full.by_grid[full.by_grid["grid_code"].astype(str).isin(mine)]
            for k in KEYS:
                truth = int(full.totals[k]) - int(inside[k].sum())
                atk.check(s.totals[k], int(inside[k].sum()), truth, f"{name} totals.{k} − inside")
            ac = full.area_counts()
            ins = np.isin(ac.grid_codes, sorted(mine))
            part_in = dict(zip(ac.keys, ac.values[ins].sum(axis=0).tolist()))
            for nm, prefix in (("buildings_by_use", "use_"), ("businesses_by_credit", "credit_")):
                for p, v in getattr(s, nm).items():
                    truth = int(getattr(full, nm)[p]) - part_in[prefix + p]
                    atk.check(v, part_in[prefix + p], truth, f"{name} {nm}.{p} − inside")
    assert atk.tried > 100


def _per_building(t: twin.Twin) -> dict[str, np.ndarray]:
    """Residents, 80+ and pregnant per building (rows of ``t.buildings``), by brute force over persons."""
    p = t.persons
    pos = pd.Index(t.buildings["building_id"].to_numpy()).get_indexer(p["building_id"].to_numpy())
    age = ages_on(p["birth_date"].to_numpy(), t.as_of)
    n = len(t.buildings)
    return {"residents": np.bincount(pos, minlength=n), "elderly_80": np.bincount(pos[age >= 80], minlength=n),
            "pregnant": np.bincount(pos[p["pregnant"].to_numpy()], minlength=n)}


def _one_building_edit(t: twin.Twin, outside: set[str]) -> tuple[Any, str, str, int]:
    """A partition with one small building's cell moved between two grids (same community) outside every
    scoped role's scope: (partition, from grid, to grid, building position)."""
    p = partition_from_twin(t)
    b = t.buildings
    per_cell = b.groupby("cell").size()
    lone = set(per_cell.index[per_cell.to_numpy() == 1])
    for i in _small_buildings(t, outside, 5000, seed=3):  # the fabric keeps most buildings off grid edges
        cell, code = int(b["cell"].iloc[int(i)]), str(b["grid_code"].iloc[int(i)])
        if cell not in lone:
            continue
        com = str(t.grid(code)["community_code"])
        for other in neighbour_grids(p, code):
            if str(t.grid(other)["community_code"]) != com or other not in outside:
                continue
            try:
                return move_cells(p, [cell], other), code, other, int(i)
            except PartitionError:
                continue
    raise AssertionError("no movable one-building cell found")


def test_versions_n_and_n_plus_1(t: twin.Twin, roles: dict[str, Role], tmp_path: Path) -> None:
    """An edit moves one small building between two outside grids: the two versions' dossiers, exports, areas
    and the diff never give its residents (or any of its counts)."""
    outside = set(t.grids["grid_code"].astype(str)) - set().union(*(_scope(t, r) for r in roles.values()))
    p1, g_from, g_to, i = _one_building_edit(t, outside)
    store = Store(tmp_path / "state.sqlite")
    versions.ensure_base(store, t)
    v2 = versions.commit(store, p1, base_version=1, author="test", reason="move one building")
    tn, tn1 = versions.checkout(t, 1, store=store), versions.checkout(t, v2, store=store)
    exact_n, exact_n1 = grid_dossier(tn, g_from)["counts"], grid_dossier(tn1, g_from)["counts"]
    moved = {k: exact_n[k] - exact_n1[k] for k in exact_n}  # the moved building's counts (district view)
    moved["residents"] = int(t.buildings["residents"].iloc[i])
    p0 = versions.load_partition(store, t, 1)
    atk = Attacker()
    for name, role in roles.items():
        d = versions.diff_versions(store, t, 1, v2, role=role, policy=POLICY)
        atk.check(d.residents_moved, 0, int(moved["residents"]), f"{name} diff residents_moved")
        atk.check(d.buildings_moved, 0, 1, f"{name} diff buildings_moved")
        exports = name == "analyst"  # each export builds 451 polygons twice: one role suffices here
        if exports:
            ea = grids_frame(t, p0, role=role, policy=POLICY).set_index("grid_code")
            eb = grids_frame(t, p1, role=role, policy=POLICY).set_index("grid_code")
        for g in (g_from, g_to):
            da = grid_dossier(tn, g, role=role, policy=POLICY)["counts"]
            db = grid_dossier(tn1, g, role=role, policy=POLICY)["counts"]
            for k in moved:
                if k in da:
                    atk.check(da[k], db[k], abs(int(moved[k])), f"{name} dossier {g} v1 − v2 {k}")
                    atk.check(db[k], da[k], abs(int(moved[k])), f"{name} dossier {g} v2 − v1 {k}")
            for c in ("residents", "dwellings", "businesses") if exports else ():
                va, vb = ea.loc[g, c], eb.loc[g, c]
                va = None if pd.isna(va) else int(va)
                vb = None if pd.isna(vb) else int(vb)
                atk.check(va, vb, int(moved[c]), f"{name} export {g} {c}")
                atk.check(vb, va, int(moved[c]), f"{name} export {g} {c}")
            area = t.grid(g).geometry
            sa = summarize_area(tn, area, role=role, policy=POLICY).totals
            sb = summarize_area(tn1, area, role=role, policy=POLICY).totals
            for k in KEYS:
                if k in moved:
                    atk.check(sa[k], sb[k], int(moved[k]), f"{name} area at v1 − v2 {k}")
    district = versions.diff_versions(store, t, 1, v2)  # the district still sees the diff exactly
    assert district.residents_moved == int(moved["residents"]) and 0 < district.residents_moved < K
    assert atk.tried > 50 and atk.small > 10, (atk.tried, atk.small)
    store.close()


@pytest.mark.parametrize("name", ROLE_NAMES)
def test_overlays_two_resolutions_and_two_categories(t: twin.Twin, roles: dict[str, Role], name: str) -> None:
    """res 9 minus its published res-10 children, res 8 minus its res-9 children, residents minus a key
    population of the same cell: never a small out-of-scope count."""
    role = roles[name]
    atk = Attacker()
    per_building = _per_building(t)
    closed = ~t.buildings["grid_code"].astype(str).isin(_scope(t, role)).to_numpy()

    def closed_truth(cat: str, r: int) -> pd.Series:
        """Records of ``cat`` outside the record scope per res-``r`` cell (brute force over buildings)."""
        par = cells_to_parent(t.buildings["cell"].to_numpy()[closed], r)
        return pd.Series(per_building[cat][closed]).groupby(par).sum()

    truth_r = {r: closed_truth("residents", r) for r in (8, 9, 10)}
    for cat in ("residents", "elderly_80", "pregnant"):
        pubs = {r: overlay(t, cat, res=r, role=role, policy=POLICY).set_index("cell") for r in (8, 9, 10)}
        truths = {r: closed_truth(cat, r).reindex(pubs[r].index, fill_value=0) for r in (8, 9, 10)}
        for r in (9, 10):
            child, parent = pubs[r], pubs[r - 1]
            par = cells_to_parent(child.index.to_numpy(), r - 1)
            frame = pd.DataFrame({"parent": par, "pub": child["count"].to_numpy(dtype=float),
                                  "truth": truths[r].loc[child.index].to_numpy()})
            for pc, grp in frame.groupby("parent"):
                shown = grp["pub"].notna().to_numpy()
                if not shown.any() or pd.isna(parent.loc[pc, "count"]):
                    continue
                hidden_truth = int(grp.loc[~shown, "truth"].sum())
                atk.check(int(parent.loc[pc, "count"]), int(grp.loc[shown, "pub"].sum()), hidden_truth,
                          f"{name} {cat} res {r - 1} − published res-{r} children")
        if cat != "residents":
            res_pub = overlay(t, "residents", res=9, role=role, policy=POLICY).set_index("cell")["count"]
            both = res_pub.notna() & pubs[9]["count"].notna()
            for c in res_pub.index[both.to_numpy()]:
                atk.check(int(res_pub.loc[c]), int(pubs[9].loc[c, "count"]),
                          int(truth_r[9].get(c, 0)) - int(truths[9].loc[c]), f"{name} residents − {cat}")
    assert atk.tried > 1000, atk.tried


def test_exports_match_dossiers_and_workers_are_not_exact(t: twin.Twin, roles: dict[str, Role]) -> None:
    """Exports and dossiers answer outside grids from the same published units; worker counts per outside grid
    are never an exact 1 … k−1."""
    p = partition_from_twin(t)
    board = t.workers.assign(grid_code=t.workers["grid_code"].astype(str), status=t.workers["status"].astype(str))
    codes = list(t.grids["grid_code"].astype(str).to_numpy()[::23])
    atk = Attacker()
    for name in ("community", "analyst"):  # exports build 451 polygons each: two roles (scoped, none)
        role = roles[name]
        ex = grids_frame(t, p, role=role, policy=POLICY).set_index("grid_code")
        for code in codes:
            d = grid_dossier(t, code, role=role, policy=POLICY)
            row = ex.loc[code]
            if d["in_scope"]:
                assert bool(row["in_scope"]) and int(row["residents"]) == d["counts"]["residents"]
                continue
            for c in ("residents", "dwellings", "businesses"):
                v = None if pd.isna(row[c]) else int(row[c])
                assert v == d["counts"][c], (name, code, c)
            w = board[board["grid_code"] == code]
            s = worker_summary(w, role, t, POLICY, grid_code=code)
            for status in ("online", "offline"):
                n = int((w["status"] == status).sum())
                assert s[status] is None, (name, code, status)  # one outside grid: never published
                atk.check(s[status], 0, n, f"{name} workers {code} {status}")
                atk.small += 0 < n < K
    assert atk.small > 10, atk.small
    whole = worker_summary(board, roles["analyst"], t, POLICY)  # the whole district: towns, rounded
    assert all(v is not None and v % K == 0 for v in whole.values())
    assert abs(sum(whole.values()) - len(board)) <= 2 * len(t.towns) * (K // 2)


def test_incident_linking_stays_in_scope(t: twin.Twin, tmp_path: Path) -> None:
    """A report near an open incident of another community becomes a new case (no link, no id revealed);
    near one of its own community it is linked."""
    cat = load_catalogue()
    code = str(cat["code"].iloc[0])
    cells = t.cells
    g = t.grids.set_index("grid_code")
    com = cells["grid_code"].astype(str).map(g["community_code"].astype(str)).to_numpy()
    # two cells of different communities ≤ 60 m apart
    xy = cells[["lng", "lat"]].to_numpy()
    order = np.argsort(com, kind="stable")
    first = order[0]
    other = np.flatnonzero(com != com[first])
    far = None
    for i in range(0, len(cells), 97):
        near = other[np.hypot(*(xy[other] - xy[i]).T) * M_PER_DEG < 60] if com[i] == com[first] else []
        if len(near):
            far = (i, int(near[0]))
            break
    assert far is not None
    a, b = far
    istore = IncidentStore(Store(tmp_path / "inc.sqlite"))
    role_b = make_role("community", [str(com[b])], user="b")
    role_a = make_role("community", [str(com[a])], user="a")
    at = "2024-05-01T10:00:00"
    first_inc, linked = report_incident(istore, t, cat, actor="b", role=role_b, auto_dispatch=False, category=code,
                                        lng=float(xy[b, 0]), lat=float(xy[b, 1]), reported_at=at)
    assert not linked
    second, linked = report_incident(istore, t, cat, actor="a", role=role_a, auto_dispatch=False, category=code,
                                     lng=float(xy[a, 0]), lat=float(xy[a, 1]), reported_at="2024-05-01T10:05:00")
    assert not linked and second.id != first_inc.id  # another community's incident is not linked
    again, linked = report_incident(istore, t, cat, actor="a", role=role_a, auto_dispatch=False, category=code,
                                    lng=float(xy[a, 0]), lat=float(xy[a, 1]), reported_at="2024-05-01T10:06:00")
    assert linked and again.id == second.id  # its own is
    district, linked = report_incident(istore, t, cat, actor="d", role=DISTRICT, auto_dispatch=False,
                                       category=code, lng=float(xy[b, 0]), lat=float(xy[b, 1]),
                                       reported_at="2024-05-01T10:07:00")
    assert linked
    assert board_for(istore, t) is not None
