"""Work lists of a service run: per community, scoped to the caller, audited, exportable; counts per grid for the map.

A work list row: service, qualifying date, a **synthetic display name** (the twin's people have no names: the name
is made up deterministically from the person id and labelled so in its column name ``synthetic_name``), person,
household, dwelling and building ids, grid, community, the grid worker who follows it up (the grid's workers in
``twin.workers`` take the grid's persons in turn: worker ``person_id mod n`` in worker-id order) and, when a store
is given, the person's status.

Scope and privacy are :mod:`twin.access`'s: a role sees the rows of grids in its record scope
(:func:`twin.access.scope.record_scope`); counts per grid outside it are published as the policy publishes any grid
count (:func:`twin.access.policy.publish`: suppressed below ``k``, else rounded to a multiple of ``k``).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from twin.access import audit
from twin.access.policy import DEFAULT_POLICY, AccessPolicy, publish, record_scope, sees_everything
from twin.access.roles import DISTRICT, Role
from twin.errors import PermissionDenied, ValidationError
from twin.live.sheets import frame_to_csv, frame_to_xlsx
from twin.model import Twin
from twin.services.engine import ServiceRun
from twin.services.status import ServiceStatusStore
from twin.store.sql import Store

__all__ = ["WORK_LIST_COLUMNS", "synthetic_name", "work_list", "work_lists_by_community", "counts_by_grid",
           "export_work_list"]

WORK_LIST_COLUMNS = ("service", "qualifying_date", "synthetic_name", "person_id", "household_id", "dwelling_id",
                     "building_id", "grid_code", "community_code", "town_code", "worker_id", "worker_name", "detail")

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高梁郑谢宋唐许韩冯邓曹彭曾肖田董潘袁蔡蒋余杜叶程苏魏吕丁任"
_GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂华建国文斌玉珍志红婷雪梅晨宇浩然嘉欣俊杰子涵梓轩颖诗琪家乐"


def synthetic_name(person_id: int) -> str:
    """A made-up display name for a SYNTHETIC person, the same for the same id (not a real person's name)."""
    h = hashlib.blake2b(f"chancheng-twin:{int(person_id)}".encode(), digest_size=8).digest()
    given = _GIVEN[h[1] % len(_GIVEN)] + (_GIVEN[h[2] % len(_GIVEN)] if h[3] % 3 else "")
    return _SURNAMES[h[0] % len(_SURNAMES)] + given


def _assign_workers(rows: pd.DataFrame, t: Twin) -> tuple[np.ndarray, np.ndarray]:
    w = t.workers.sort_values("worker_id", kind="stable")
    by_grid = {str(g): (f["worker_id"].astype(str).to_numpy(), f["name"].astype(str).to_numpy())
               for g, f in w.groupby(w["grid_code"].astype(str), sort=False)}
    ids, names = [], []
    for grid, pid in zip(rows["grid_code"].astype(str), rows["person_id"].astype(np.int64)):
        hit = by_grid.get(grid)
        if hit is None:
            ids.append("")
            names.append("")
            continue
        i = int(pid) % len(hit[0])
        ids.append(hit[0][i])
        names.append(hit[1][i])
    return np.asarray(ids, dtype=object), np.asarray(names, dtype=object)


def work_list(run: ServiceRun, t: Twin, *, store: Store, role: Role = DISTRICT, community: str | None = None,
              service: str | None = None) -> pd.DataFrame:
    """The rows of ``run`` that ``role`` may see (optionally one community / one service), as a work list.

    Appends one audit entry (who, role, how many rows) to ``store``'s audit chain, and joins each row's status
    when the store holds one (``status`` ``""`` when the list was never identified: see
    :meth:`twin.services.status.ServiceStatusStore.identify`).

    Raises
    ------
    PermissionDenied
        The role may not see individual records (analysts), or ``community`` is outside its scope.
    """
    if not role.can_see_records:
        raise PermissionDenied(f"role {role.name!r} may not see individual records; use counts_by_grid.")
    rows = run.rows
    if not sees_everything(role):
        rows = rows.loc[rows["grid_code"].isin(record_scope(role, t))]
    if community is not None:
        if not sees_everything(role) and not t.grids.loc[t.grids["community_code"].astype(str) == str(community),
                                                         "grid_code"].astype(str).isin(record_scope(role, t)).any():
            raise PermissionDenied(f"user {role.user!r} may not see community {community} (outside "
                                   f"{role.scope_level} {', '.join(role.scope_codes)}).")
        rows = rows.loc[rows["community_code"] == str(community)]
    if service is not None:
        rows = rows.loc[rows["service"] == service]
    out = rows.copy()
    out["synthetic_name"] = [synthetic_name(p) for p in out["person_id"]]
    out["worker_id"], out["worker_name"] = _assign_workers(out, t)
    out = out.loc[:, list(WORK_LIST_COLUMNS)].reset_index(drop=True)
    statuses = ServiceStatusStore(store).frame(t=t, role=role, service=service)
    if len(statuses):
        st = statuses[["service", "person_id", "qualifying_date", "status", "updated_by", "updated_at"]].copy()
        st["person_id"] = st["person_id"].astype("int64")
        st["qualifying_date"] = pd.to_datetime(st["qualifying_date"]).astype("datetime64[s]")
        out = out.merge(st, on=["service", "person_id", "qualifying_date"], how="left")
    else:
        out = out.assign(status=np.nan, updated_by=np.nan, updated_at=np.nan)
    out[["status", "updated_by", "updated_at"]] = out[["status", "updated_by", "updated_at"]].fillna("").astype(str)
    audit.append(store, user=role.user, role=role.name, endpoint="services.work_list", method="GET",
                 counts={"persons": len(out)},
                 detail=f"period {run.period}; community {community or 'all in scope'}; service {service or 'all'}")
    return out


def work_lists_by_community(work: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Split a work list into one list per community code (each sorted as the list is)."""
    return {str(c): f.reset_index(drop=True) for c, f in work.groupby("community_code", sort=True)}


def counts_by_grid(run: ServiceRun, t: Twin, *, role: Role = DISTRICT,
                   policy: AccessPolicy = DEFAULT_POLICY) -> pd.DataFrame:
    """Persons per grid (rows: every grid of ``t.grids``) and service (columns), for the map.

    Grids in ``role``'s record scope are exact; the others are published by :func:`twin.access.policy.publish`
    (``pd.NA`` where suppressed). Column ``in_scope`` says which."""
    names = [s.name for s in run.services]
    grids = t.grids["grid_code"].astype(str)
    exact = (run.rows.groupby(["grid_code", "service"]).size().unstack("service")
             .reindex(index=grids.to_numpy(), columns=names).fillna(0).astype("int64"))
    inside = grids.isin(record_scope(role, t)).to_numpy() if not sees_everything(role) else np.ones(len(grids), bool)
    if inside.all():
        out = exact.astype("Int64")
    else:
        pub = publish(exact.to_numpy(), policy.k_for(role))
        vals = np.where(inside[:, None], exact.to_numpy(), pub)
        out = pd.DataFrame(vals, index=exact.index, columns=names).astype("Int64").mask(vals < 0)
    out.index.name = "grid_code"
    out.columns.name = None
    out.insert(0, "in_scope", inside)
    return out


def export_work_list(work: pd.DataFrame, fmt: str) -> bytes:
    """A work list as ``"csv"`` (UTF-8 with BOM) or ``"xlsx"`` bytes, formula injection neutralised."""
    if fmt not in ("csv", "xlsx"):
        raise ValidationError(f"unknown work-list format {fmt!r}; use 'csv' or 'xlsx'.")
    if fmt == "csv":
        return frame_to_csv(work)
    return frame_to_xlsx(work, sheet_name="work list", note="Names are SYNTHETIC (made up from the person id); "
                                                            "the persons are synthetic records of the twin.")
