"""The query routes read the live records: after ``POST /changes`` (a birth, a death, a move across grid lines, a
new building with a dwelling) ``/area/summary``, ``/area/records``, a grid dossier and an overlay answer exactly what
a twin rebuilt from the live frames answers, within a bounded wait; every answer names the change head it reflects
(``X-Twin-Changes``); a commit by another process (a separate interpreter on the same store) becomes visible; a
partition version's live view keeps that version's grids."""

from __future__ import annotations

import dataclasses
import datetime as dt
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from shapely.geometry import box, mapping

import twin
from twin.access import auth
from twin.access.roles import DISTRICT
from twin.live.state import LiveTwin
from twin.model import Twin
from twin.query.dossier import grid_dossier
from twin.service.app import create_app
from twin.store.sql import Store

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette warns that its TestClient will move to httpx2
    from fastapi.testclient import TestClient

TODAY = dt.date.today().isoformat()  # the live views are the state today
WAIT_S = 20.0  # generous for a loaded CI machine; the benchmark measures the real latency


@pytest.fixture()
def env(small_twin: Twin, tmp_path: Path):  # noqa: ANN201
    url = str(tmp_path / "state.sqlite")
    st = Store(url)
    key = auth.add_user(st, "admin", "district")
    app = create_app(database_url=url, twin=small_twin, warm=False)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield {"c": c, "h": {"Authorization": f"Bearer {key}"}, "url": url, "t": small_twin, "app": app}
    st.close()


def _summary(env, area, **params):  # noqa: ANN001, ANN202
    r = env["c"].post("/area/summary", headers=env["h"], json=area, params=params)
    assert r.status_code == 200, r.text
    return r


def _wait_for(env, seq: int, area) -> object:  # noqa: ANN001
    """Poll the summary until its answer names change head ``seq`` (or later)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        r = _summary(env, area)
        if int(r.headers["x-twin-changes"]) >= seq:
            return r
        assert time.monotonic() < deadline, f"change {seq} not visible after {WAIT_S} s (at {r.headers})"
        time.sleep(0.05)


def _rebuilt(env) -> Twin:  # noqa: ANN001
    """The oracle: a fresh LiveTwin on the same store, its state today with indexes built from scratch."""
    lt = LiveTwin(env["t"], Store(env["url"]))
    try:
        return dataclasses.replace(lt.twin_on(), cache={})
    finally:
        lt.store.close()


def _commit(env) -> tuple[list[int], int, str]:  # noqa: ANN001
    """Birth, death, a move into a new building in another grid; returns (seqs, moved person, new building's grid)."""
    t = env["t"]
    c = t.cells.iloc[len(t.cells) // 2]
    foot = mapping(box(c.lng - 0.00005, c.lat - 0.00005, c.lng + 0.00005, c.lat + 0.00005))
    r = env["c"].post("/changes", headers=env["h"], json={"reason": "test", "changes": [
        {"kind": "building.added", "footprint": foot, "use": "residential", "floors": 6, "effective_date": TODAY},
        {"kind": "dwelling.added", "building_id": len(t.buildings), "effective_date": TODAY}]})
    assert r.status_code == 201, r.text
    new_grid = str(t.grid_of_cells([int(c.cell)])[0])
    bgrid = t.buildings.set_index("building_id")["grid_code"].astype(str)
    p = t.persons.assign(grid=bgrid.reindex(t.persons["building_id"]).to_numpy())
    mover = int(p.loc[p["grid"] != new_grid, "person_id"].iloc[3])
    dies = int(p.loc[p["grid"] != new_grid, "person_id"].iloc[10])
    r2 = env["c"].post("/changes", headers=env["h"], json={"reason": "test", "changes": [
        {"kind": "person.moves", "person_id": mover, "dwelling_id": len(t.dwellings), "effective_date": TODAY},
        {"kind": "person.born", "dwelling_id": 0, "sex": "F", "effective_date": TODAY},
        {"kind": "person.dies", "person_id": dies, "effective_date": TODAY}]})
    assert r2.status_code == 201, r2.text
    return r.json()["seqs"] + r2.json()["seqs"], mover, new_grid


def test_routes_read_committed_changes_exactly(env) -> None:  # noqa: ANN001
    t = env["t"]
    district = mapping(t.district)
    before = _summary(env, district)
    assert before.headers["x-twin-changes"] == "0"
    seqs, mover, new_grid = _commit(env)
    after = _wait_for(env, seqs[-1], district).json()
    fresh = _rebuilt(env)
    want = twin.summarize_area(fresh, t.district, role=DISTRICT, by="grid")
    assert after["totals"]["residents"] == want.totals["residents"] == len(t.persons)  # +1 born −1 died
    for k in ("buildings", "dwellings", "residents", "businesses"):
        assert after["totals"][k] == want.totals[k], k
    assert after["totals"]["buildings"] == len(t.buildings) + 1
    # records: the mover is found in the new building's small area, as in the rebuilt twin
    c = t.cells.iloc[len(t.cells) // 2]
    small = box(c.lng - 0.0003, c.lat - 0.0003, c.lng + 0.0003, c.lat + 0.0003)
    r = env["c"].post("/area/records", headers=env["h"], json=mapping(small), params={"page_size": 1000})
    assert r.status_code == 200, r.text
    ids = sorted(int(x["person_id"]) for x in r.json()["records"])
    assert mover in ids and ids == sorted(twin.records_in_area(fresh, small, "persons").ids)
    assert int(r.headers["x-twin-changes"]) >= seqs[-1]
    # the new building's grid dossier counts the mover
    r = env["c"].get(f"/grids/{new_grid}", headers=env["h"])
    assert r.status_code == 200, r.text
    assert r.json()["counts"]["residents"] == grid_dossier(fresh, new_grid)["counts"]["residents"]
    assert r.json()["counts"]["residents"] == grid_dossier(t, new_grid)["counts"]["residents"] + 1
    # an overlay: per-cell residents equal the rebuilt twin's
    r = env["c"].get("/overlays/residents", headers=env["h"], params={"res": 9})
    assert r.status_code == 200, r.text
    got = {x["cell"]: x["count"] for x in r.json()["cells"]}
    ov = twin.overlay(fresh, "residents", res=9)
    exp = {format(int(cell), "x"): int(n) for cell, n in zip(ov["cell"], ov["count"]) if n}
    assert got == exp


def test_a_commit_by_another_process_becomes_visible(env) -> None:  # noqa: ANN001
    t = env["t"]
    district = mapping(t.district)
    assert _summary(env, district).headers["x-twin-changes"] == "0"
    code = ("import datetime as dt, sys, twin\n"
            "from twin.live.state import LiveTwin\nfrom twin.live import changes as ch\n"
            "from twin.store.sql import Store\nfrom twin.access.audit import use_audit_dir\n"
            "s = Store(sys.argv[2]); use_audit_dir(s, sys.argv[3])\n"
            "lt = LiveTwin(twin.load(sys.argv[1]), s)\n"
            "r = lt.apply([ch.PersonDies(person_id=5, effective_date=dt.date.today(), author='x', reason='t')])\n"
            "print(r.seqs[-1])\n")
    out = subprocess.run([sys.executable, "-c", code, str(t.root), env["url"], str(Path(env["url"]).parent / "a2")],
                         capture_output=True, text=True, timeout=120, check=True)
    seq = int(out.stdout.strip().splitlines()[-1])
    got = _wait_for(env, seq, district).json()
    assert got["totals"]["residents"] == len(t.persons) - 1


def test_a_partition_version_live_view_keeps_its_grids(env) -> None:  # noqa: ANN001
    t = env["t"]
    seqs, mover, new_grid = _commit(env)
    twins = env["app"].state.svc.twins
    _wait_for(env, seqs[-1], mapping(t.district))
    from twin.partition.edits import split_grid
    from twin.partition.model import partition_from_twin
    from twin.partition.versions import commit, twin_with_partition

    p = split_grid(partition_from_twin(t), new_grid, k=2)  # the new building's grid split in two
    vid = commit(twins.store, p, base_version=1, author="test", reason="split")
    ct = twin_with_partition(t, p, version=vid)
    other = str(ct.grid_of_cells([int(t.cells.iloc[len(t.cells) // 2].cell)])[0])  # the new building's grid now
    assert other in set(ct.grids["grid_code"].astype(str)) - set(t.grids["grid_code"].astype(str)) | {new_grid}
    r = env["c"].get(f"/grids/{other}", headers=env["h"], params={"version": str(vid)})
    assert r.status_code == 200, r.text
    assert int(r.headers["x-twin-version"]) == vid
    fresh = _rebuilt(env)
    pt = twin_with_partition(fresh, p, version=vid)
    want = grid_dossier(dataclasses.replace(pt, cache={}), other)["counts"]["residents"]
    deadline = time.monotonic() + WAIT_S
    while int(r.headers["x-twin-changes"]) < seqs[-1]:  # the version's live view is derived in the background
        assert time.monotonic() < deadline
        time.sleep(0.05)
        r = env["c"].get(f"/grids/{other}", headers=env["h"], params={"version": str(vid)})
    assert r.json()["counts"]["residents"] == want == grid_dossier(ct, other)["counts"]["residents"] + 1  # the mover
