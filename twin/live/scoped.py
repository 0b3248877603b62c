"""Changes made by a scoped user (a community, a town): the live records of their unit, whether a change set stays
inside their record scope, whether its records moved on since they looked, and compare-and-set versions.

The HTTP service (``/sheets``) and the Records page of the app both commit through these, then through
:meth:`twin.live.state.LiveTwin.apply` (one atomic change set). Scope is :mod:`twin.access.scope`'s.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from types import SimpleNamespace
from typing import Any, cast

import pandas as pd

from twin.access.roles import Role
from twin.access.scope import record_scope, sees_everything
from twin.errors import ConflictError, PermissionDenied
from twin.live import changes as ch
from twin.live.events import read_events
from twin.live.sheets import located_records
from twin.live.state import LiveTwin
from twin.model import Twin

__all__ = ["live_records", "record_of", "check_scope", "check_unchanged_since", "with_versions"]


def live_records(lt: LiveTwin, kind: str, date: dt.date | None = None, *, community: str | None = None
                 ) -> pd.DataFrame:
    """The live ``persons`` or ``businesses`` on ``date`` (default today) with ``grid_code``, ``community_code``
    and ``town_code`` (:func:`twin.live.sheets.located_records` over the live frames), optionally only those of
    one ``community`` (located after selecting its buildings: ≈ 100× less work than the whole district).
    SYNTHETIC records."""
    fr = lt.frames_on(date)
    buildings, persons, businesses = fr.buildings, fr.persons, fr.businesses
    if community is not None:
        g = lt.t.grids
        grids = g.loc[g["community_code"].astype(str) == str(community), "grid_code"].astype(str)
        buildings = buildings.loc[buildings["grid_code"].astype(str).isin(grids)]
        ids = buildings["building_id"].to_numpy()
        if kind == "persons":
            persons = persons.loc[persons["building_id"].isin(ids)]
        else:
            businesses = businesses.loc[businesses["building_id"].isin(ids)]
    view = SimpleNamespace(buildings=buildings, persons=persons, businesses=businesses, grids=lt.t.grids)
    return located_records(cast(Twin, view), kind)


def record_of(c: ch.Change) -> tuple[str, int] | None:
    """``("persons", id)`` or ``("businesses", id)``: the existing record a change is about (``None``: it creates
    one)."""
    if isinstance(c, ch.PersonMovesIn | ch.PersonBorn | ch.BusinessOpens):
        return None
    for table, col in (("persons", "person_id"), ("businesses", "business_id")):
        rid = getattr(c, col, None)
        if rid is not None:
            return table, int(rid)
    return None


def check_scope(lt: LiveTwin, changes: list[ch.Change], role: Role, date: dt.date) -> None:
    """:class:`PermissionDenied` naming the first change that reaches outside ``role``'s record scope: a person or
    business not in it on ``date``, or a new / moved record going to a dwelling or building outside it. Unknown
    ids pass (the live core names them when the set is applied)."""
    if sees_everything(role):
        return
    if not role.can_edit:
        raise PermissionDenied(f"user {role.user!r} ({role.name}) may not change records.")
    fr = lt.frames_on(date)
    grid_of_building = pd.Series(fr.buildings["grid_code"].astype(str).to_numpy(),
                                 index=fr.buildings["building_id"].to_numpy())
    building_of: dict[str, pd.Series] = {
        "dwellings": pd.Series(fr.dwellings["building_id"].to_numpy(), index=fr.dwellings["dwelling_id"].to_numpy()),
        "persons": pd.Series(fr.persons["building_id"].to_numpy(), index=fr.persons["person_id"].to_numpy()),
        "businesses": pd.Series(fr.businesses["building_id"].to_numpy(),
                                index=fr.businesses["business_id"].to_numpy())}
    scope = record_scope(role, lt.t)

    def grid(table: str, rid: Any) -> str | None:
        b = rid if table == "buildings" else building_of[table].get(rid)
        return None if b is None or b not in grid_of_building.index else str(grid_of_building.get(b))

    for c in changes:
        checks: list[tuple[str, Any, str]] = []
        r = record_of(c)
        if r is not None:
            checks.append((r[0], r[1], f"{'person' if r[0] == 'persons' else 'business'} {r[1]}"))
        for col, table in (("dwelling_id", "dwellings"), ("building_id", "buildings"), ("mother_id", "persons")):
            v = getattr(c, col, None)
            if v is not None and not (col == "building_id" and r is not None and r[0] == "persons"):
                checks.append((table, v, f"{table[:-1]} {v}"))
        for table, rid, what in checks:
            g = grid(table, rid)
            if g is not None and g not in scope:
                raise PermissionDenied(f"{c.kind}: {what} is in grid {g}, outside your scope ({role.scope_level} "
                                       f"{', '.join(role.scope_codes)}); change only records of your own scope.")


def check_unchanged_since(lt: LiveTwin, changes: list[ch.Change], base_seq: int) -> None:
    """:class:`ConflictError` naming the first record of ``changes`` that a change set committed after
    ``base_seq`` (the change head when the user looked) wrote."""
    mine = {r for r in map(record_of, changes) if r is not None}
    for e in read_events(lt.store, since_seq=int(base_seq)):
        for table, rid, _, _ in e.writes:
            if (table, int(rid)) in mine:
                what = "person" if table == "persons" else "business"
                raise ConflictError(f"{what} {int(rid)} was changed by change set {e.set_id} ({e.kind}, by "
                                    f"{e.author}, effective {e.effective_date}) after you looked (change {base_seq}); "
                                    "reload the records, redo your edit and try again.")


def with_versions(lt: LiveTwin, changes: list[ch.Change]) -> list[ch.Change]:
    """``changes`` with each existing record's first change carrying its current version, so a change committed
    meanwhile by anyone makes the set fail with :class:`ConflictError` (compare-and-set at commit)."""
    seen: set[tuple[str, int]] = set()
    out = []
    for c in changes:
        r = record_of(c)
        if r is not None and r not in seen and c.expected_version is None:
            seen.add(r)
            c = replace(c, expected_version=lt.version(*r))
        out.append(c)
    return out
