"""Work lists: scoped by twin.access, audited, with synthetic names, grid workers, statuses; counts per grid."""

from __future__ import annotations

import io

import numpy as np
import openpyxl
import pytest

from twin.access import audit
from twin.access.policy import AccessPolicy
from twin.access.roles import ANALYST, DISTRICT, make_role
from twin.errors import PermissionDenied
from twin.services import ServiceStatusStore, counts_by_grid, run_services, snapshot_view, synthetic_name, work_list
from twin.services.worklists import export_work_list, work_lists_by_community


@pytest.fixture(scope="module")
def run(small_twin):
    r = run_services(snapshot_view(small_twin), "2026-01..2026-12-31")  # a year: enough people in every community
    assert r.rows["community_code"].nunique() >= 2
    return r


def test_synthetic_names_are_deterministic_and_varied():
    names = [synthetic_name(i) for i in range(2000)]
    assert names == [synthetic_name(i) for i in range(2000)]
    assert len(set(names)) > 1000 and all(2 <= len(n) <= 3 for n in names)


def test_district_sees_every_row_with_worker_and_name(any_store, run, small_twin):
    work = work_list(run, small_twin, store=any_store)
    assert len(work) == len(run.rows)
    assert (work["synthetic_name"] == [synthetic_name(p) for p in work["person_id"]]).all()
    workers = small_twin.workers.set_index("worker_id")
    assert (workers.loc[work["worker_id"], "grid_code"].to_numpy() == work["grid_code"].to_numpy()).all()
    assert (workers.loc[work["worker_id"], "name"].to_numpy() == work["worker_name"].to_numpy()).all()
    assert set(work["status"]) == {""}  # not identified yet
    lists = work_lists_by_community(work)
    assert sum(len(f) for f in lists.values()) == len(work) and all(
        (f["community_code"] == c).all() for c, f in lists.items())
    e = list(audit.entries(any_store))[-1]
    assert (e.endpoint, e.user_name, e.counts) == ("services.work_list", DISTRICT.user, {"persons": len(work)})


def test_community_user_sees_only_its_community_and_statuses(any_store, run, small_twin):
    code = run.rows["community_code"].value_counts().index[0]
    role = make_role("community", [code], user="wang.community")
    ServiceStatusStore(any_store).identify(run.rows)
    work = work_list(run, small_twin, store=any_store, role=role)
    assert len(work) == int((run.rows["community_code"] == code).sum()) > 0
    assert set(work["community_code"]) == {code} and set(work["status"]) == {"identified"}
    other = sorted(set(run.rows["community_code"]) - {code})[0]
    with pytest.raises(PermissionDenied, match=f"community {other}"):
        work_list(run, small_twin, store=any_store, role=role, community=other)
    with pytest.raises(PermissionDenied, match="may not see individual records"):
        work_list(run, small_twin, store=any_store, role=ANALYST)
    assert list(audit.entries(any_store))[-1].user_name == "wang.community"


def test_counts_by_grid_exact_in_scope_published_outside(run, small_twin):
    exact = counts_by_grid(run, small_twin)
    assert len(exact) == len(small_twin.grids) and exact["in_scope"].all()
    assert int(exact.drop(columns="in_scope").sum().sum()) == len(run.rows)
    assert exact["elderly_70"].sum() == run.counts()["elderly_70"]
    code = small_twin.grids["community_code"].iloc[0]
    scoped = counts_by_grid(run, small_twin, role=make_role("community", [code]), policy=AccessPolicy(k=5))
    inside = scoped["in_scope"].to_numpy()
    assert inside.any() and not inside.all()
    cols = [s.name for s in run.services]
    assert scoped.loc[inside, cols].equals(exact.loc[inside, cols])
    outside = scoped.loc[~inside, cols].to_numpy(dtype=float, na_value=np.nan)
    raw = exact.loc[~inside, cols].to_numpy(dtype=float)
    assert np.isnan(outside[(raw > 0) & (raw < 5)]).all()  # small counts suppressed, never shown
    shown = outside[~np.isnan(outside)]
    assert (shown % 5 == 0).all()
    analyst = counts_by_grid(run, small_twin, role=ANALYST)  # sees no records: every grid published
    assert not analyst["in_scope"].any()
    vals = analyst[cols].to_numpy(dtype=float, na_value=np.nan)
    assert (vals[~np.isnan(vals)] % 5 == 0).all() and np.isnan(vals).any()


def test_export_csv_and_xlsx(any_store, run, small_twin):
    work = work_list(run, small_twin, store=any_store)
    csv = export_work_list(work, "csv")
    assert csv.startswith(b"\xef\xbb\xbf") and b"synthetic_name" in csv.splitlines()[0]
    assert synthetic_name(int(work["person_id"].iloc[0])).encode() in csv
    wb = openpyxl.load_workbook(io.BytesIO(export_work_list(work, "xlsx")))
    assert wb.sheetnames == ["work list", "about"] and "SYNTHETIC" in wb["about"]["A1"].value
    ws = wb["work list"]
    assert ws.max_row == len(work) + 1 and ws["D2"].value == int(work["person_id"].iloc[0])
