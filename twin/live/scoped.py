"""Changes made by a scoped user (a community, a town): the live records of their unit, whether a change set stays
inside their record scope, whether its records moved on since they looked, and compare-and-set versions.

The HTTP service (``/sheets``) and the Records page of the app both commit through these, then through
:meth:`twin.live.state.LiveTwin.apply` (one atomic change set). Scope is :mod:`twin.access.scope`'s.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from types import SimpleNamespace
from typing import cast

import numpy as np
import pandas as pd

from twin.access.roles import Role
from twin.access.scope import record_scope, sees_everything
from twin.cells import PARTITION_RES, latlng_to_cells
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


# fields whose record may lie outside the caller's scope: where a person / business / household moves to
_DESTINATIONS: dict[type, tuple[str, ...]] = {ch.PersonMoves: ("dwelling_id",), ch.BusinessMoves: ("building_id",),
                                              ch.HouseholdSplits: ("dwelling_id",), ch.HouseholdForms: ()}
_OWN_FIELDS = (("person_id", "persons"), ("mother_id", "persons"), ("business_id", "businesses"),
               ("dwelling_id", "dwellings"), ("building_id", "buildings"))


def _grid_now(lt: LiveTwin, table: str, rid: int) -> str | None:
    """The grid of a record in the current state (``None`` when unknown or gone: the core names that when the set
    is applied)."""
    row = lt.world.row(table, int(rid))
    if row is None:
        return None
    b = row if table == "buildings" else lt.world.row("buildings", int(row["building_id"]))
    if b is None:
        return None
    return str(lt.t.grid_of_cells(np.array([b["cell"]], dtype=np.uint64))[0]) or None


def check_scope(lt: LiveTwin, changes: list[ch.Change], role: Role) -> None:
    """The one record-scope rule for changes (分权分域), used by ``POST /changes``, ``/sheets`` and the Records page.

    :class:`PermissionDenied` naming the first change that touches a record outside ``role``'s record scope: the
    person, business, dwelling or building changed, a mother, the dwelling or building a new record goes to, a new
    building's site. A scoped user **may move** a person, business or household **out** of its scope (the
    destination of ``person.moves``, ``business.moves``, ``household.splits`` is not checked) and learns nothing of
    the destination. Checked against the current state; unknown ids pass (the live core names them on apply).
    Analysts and other read-only roles may not change records."""
    if sees_everything(role):
        return
    if not role.can_edit:
        raise PermissionDenied(f"user {role.user!r} ({role.name}) may not change records.")
    scope = record_scope(role, lt.t)
    lt.refresh()
    for i, c in enumerate(changes):
        free = _DESTINATIONS.get(type(c), ())
        checks = [(table, getattr(c, f)) for f, table in _OWN_FIELDS
                  if f not in free and getattr(c, f, None) is not None]
        checks += [("persons", p) for p in getattr(c, "person_ids", ())]
        grids = [(table, rid, _grid_now(lt, table, rid)) for table, rid in checks]
        if isinstance(c, ch.BuildingAdded):
            pt = c.geometry.centroid
            cell = latlng_to_cells(np.array([pt.y]), np.array([pt.x]), PARTITION_RES)
            grids.append(("buildings", "new", str(lt.t.grid_of_cells(cell)[0]) or None))
        for table, rid, g in grids:
            if g is not None and g not in scope:
                raise PermissionDenied(f"changes[{i}] ({c.kind}): {table[:-1]} {rid} is in grid {g}, outside your "
                                       f"scope ({role.scope_level} {', '.join(role.scope_codes)}); change only "
                                       "records of your own scope.")


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
