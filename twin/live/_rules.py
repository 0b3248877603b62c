"""Validate one change against the records now and turn it into row writes (:func:`resolve`).

Rules (each refusal names the record and the rule): a change takes effect after the snapshot's reference date and
not before the latest change already made to any record it writes (per-record effective dates never go back, so
"the state on date D" is well defined); referenced records must exist on the effective date (unknown ids →
:class:`NotFoundError`; died / moved out / demolished / removed → :class:`ValidationError` saying when); a
person's change may not be effective before the person's birth; pregnancy only for women aged 15–55 on the
effective date; a building is demolished, a dwelling removed, only when nobody lives (and no business is) there;
a new footprint must be a valid polygon wholly inside the district; ``expected_version`` must equal the main
record's version (:class:`ConflictError` naming the record and its current version).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from twin.cells import PARTITION_RES, latlng_to_cells
from twin.crs import geometry_to_metric
from twin.errors import ConflictError, NotFoundError, OutsideDistrictError, ValidationError
from twin.live import changes as ch
from twin.live._world import World, record_key
from twin.model import ages_on

__all__ = ["resolve", "PREGNANCY_AGES", "primary_record"]

PREGNANCY_AGES = (15, 55)
"""Pregnancy may be registered for women of these ages (inclusive) on the effective date."""

_PRIMARY: dict[type[ch.Change], tuple[str, str]] = {
    ch.PersonMoves: ("persons", "person_id"), ch.PersonMovesOut: ("persons", "person_id"),
    ch.PersonDies: ("persons", "person_id"), ch.PersonFlagChanged: ("persons", "person_id"),
    ch.BusinessCloses: ("businesses", "business_id"), ch.BusinessMoves: ("businesses", "business_id"),
    ch.BusinessCreditChanged: ("businesses", "business_id"), ch.BuildingDemolished: ("buildings", "building_id"),
    ch.BuildingChanged: ("buildings", "building_id"), ch.DwellingRemoved: ("dwellings", "dwelling_id"),
}

Write = list[Any]  # [table, id, row | None, flag: "created" | "removed" | ""]


def primary_record(c: ch.Change) -> str | None:
    """The key of the record a change's ``expected_version`` refers to (``None`` for creations)."""
    hit = _PRIMARY.get(type(c))
    return None if hit is None else record_key(hit[0], getattr(c, hit[1]))


class _Ctx:
    def __init__(self, world: World, c: ch.Change, district: BaseGeometry, cells: np.ndarray) -> None:
        self.w, self.c, self.district, self.cells = world, c, district, cells
        self.writes: list[Write] = []

    def fail(self, text: str) -> ValidationError:
        return ValidationError(f"{self.c.kind} effective {self.c.effective_date}: {text}")

    def get(self, table: str, rid: int) -> dict[str, Any]:
        """The live row of a record that exists on the effective date."""
        key = record_key(table, rid)
        row = self.w.row(table, rid)
        if row is None:
            gone = self.w.removed.get(key)
            if gone is not None:
                raise self.fail(f"{key} is gone ({gone[1]} effective {gone[0]}); it cannot be changed or used.")
            raise NotFoundError(f"{self.c.kind}: unknown {key.split(':')[0]} id {rid} (no such record in the twin "
                                f"or its changes).")
        made = self.w.created.get(key)
        if made is not None and made > self.c.effective_date:
            raise self.fail(f"{key} exists only from {made}, after this change's effective date.")
        return row

    def person(self, pid: int) -> dict[str, Any]:
        row = self.get("persons", pid)
        if dt.date.fromisoformat(row["birth_date"]) > self.c.effective_date:
            raise self.fail(f"person:{pid} is born on {row['birth_date']}, after this change's effective date.")
        return row

    def dwelling(self, did: int) -> dict[str, Any]:
        row = self.get("dwellings", did)
        self.get("buildings", int(row["building_id"]))  # a dwelling in a demolished building is gone with it
        return row

    def put(self, table: str, rid: int, row: dict[str, Any] | None, flag: str = "") -> None:
        key = record_key(table, rid)
        last = self.w.last_eff.get(key)
        if last is not None and last > self.c.effective_date:
            raise self.fail(f"{key} already has a change effective {last}; a later change to it cannot take effect "
                            f"earlier. Give an effective date on or after {last}.")
        self.writes.append([table, int(rid), row, flag])


def resolve(world: World, c: ch.Change, *, district: BaseGeometry, cells: np.ndarray) -> list[Write]:
    """Check ``c`` against ``world`` and return its writes (not yet applied). ``cells``: the partition's sorted
    uint64 res-11 cells (a new building's point must fall in one)."""
    if c.effective_date <= world.as_of:
        raise ValidationError(f"{c.kind}: effective date {c.effective_date} is on or before the snapshot's reference "
                              f"date {world.as_of}; changes must take effect after it.")
    key = primary_record(c)
    if c.expected_version is not None:
        if key is None:
            raise ValidationError(f"{c.kind} creates records; it takes no expected_version.")
        now = world.version(key)
        if now != c.expected_version:
            raise ConflictError(f"{key} is at version {now}, but the change expected version {c.expected_version} "
                                f"(someone changed it meanwhile); reload {key} and try again.")
    x = _Ctx(world, c, district, cells)
    _HANDLERS[type(c)](x, c)
    return x.writes


# --- persons ------------------------------------------------------------------------------------------------

def _new_household(x: _Ctx, given: int | None) -> int:
    if given is None:
        return x.w.new_id("households")
    if x.w.hh_size.get(given) <= 0:
        raise NotFoundError(f"{x.c.kind}: unknown household id {given} (nobody lives in it now).")
    return given


def _check_pregnancy(x: _Ctx, row: dict[str, Any]) -> None:
    age = int(ages_on(np.array([row["birth_date"]], dtype="datetime64[D]"), x.c.effective_date)[0])
    lo, hi = PREGNANCY_AGES
    if row["sex"] != "F" or not lo <= age <= hi:
        raise x.fail(f"person:{row['person_id']} ({row['sex']}, aged {age}) cannot be registered pregnant: only "
                     f"women aged {lo}–{hi} on the effective date.")


def _moves_in(x: _Ctx, c: ch.PersonMovesIn) -> None:
    d = x.dwelling(c.dwelling_id)
    if c.birth_date > c.effective_date:
        raise x.fail(f"birth date {c.birth_date} is after the move-in date.")
    pid = x.w.new_id("persons")
    row = {"person_id": pid, "household_id": _new_household(x, c.household_id), "dwelling_id": c.dwelling_id,
           "building_id": int(d["building_id"]), "sex": c.sex, "birth_date": c.birth_date.isoformat(),
           "disabled": c.disabled, "low_income": c.low_income, "pregnant": c.pregnant}
    if c.pregnant:
        _check_pregnancy(x, row)
    x.put("persons", pid, row, "created")


def _moves(x: _Ctx, c: ch.PersonMoves) -> None:
    p = x.person(c.person_id)
    d = x.dwelling(c.dwelling_id)
    if int(p["dwelling_id"]) == c.dwelling_id and c.household_id in (None, p["household_id"]):
        raise x.fail(f"person:{c.person_id} already lives in dwelling:{c.dwelling_id}.")
    x.put("persons", c.person_id, {**p, "dwelling_id": c.dwelling_id, "building_id": int(d["building_id"]),
                                   "household_id": _new_household(x, c.household_id)})


def _gone(flag: str):  # noqa: ANN202 (handler factory)
    def handler(x: _Ctx, c: ch.PersonMovesOut | ch.PersonDies) -> None:
        x.person(c.person_id)
        x.put("persons", c.person_id, None, "removed")
    return handler


def _born(x: _Ctx, c: ch.PersonBorn) -> None:
    d = x.dwelling(c.dwelling_id)
    hh = c.household_id
    if c.mother_id is not None:
        m = x.person(c.mother_id)
        if m["sex"] != "F":
            raise x.fail(f"mother person:{c.mother_id} is not a woman.")
        if m["pregnant"]:
            x.put("persons", c.mother_id, {**m, "pregnant": False})
        if hh is None:
            hh = int(m["household_id"])
    pid = x.w.new_id("persons")
    x.put("persons", pid, {"person_id": pid, "household_id": _new_household(x, hh), "dwelling_id": c.dwelling_id,
                           "building_id": int(d["building_id"]), "sex": c.sex,
                           "birth_date": c.effective_date.isoformat(), "disabled": False, "low_income": False,
                           "pregnant": False}, "created")


def _flag(x: _Ctx, c: ch.PersonFlagChanged) -> None:
    p = x.person(c.person_id)
    if bool(p[c.flag]) == c.value:
        raise x.fail(f"person:{c.person_id} already has {c.flag}={c.value}.")
    if c.flag == "pregnant" and c.value:
        _check_pregnancy(x, p)
    x.put("persons", c.person_id, {**p, c.flag: c.value})


# --- households ---------------------------------------------------------------------------------------------

def _regroup(x: _Ctx, persons: list[dict[str, Any]], dwelling_id: int | None) -> None:
    if dwelling_id is None:
        where = {int(p["dwelling_id"]) for p in persons}
        if len(where) > 1:
            raise x.fail(f"persons {[p['person_id'] for p in persons]} live in dwellings {sorted(where)}; give the "
                         "dwelling_id of the new household.")
        dwelling_id = where.pop()
    d = x.dwelling(dwelling_id)
    hh = x.w.new_id("households")
    for p in persons:
        x.put("persons", int(p["person_id"]), {**p, "household_id": hh, "dwelling_id": dwelling_id,
                                               "building_id": int(d["building_id"])})


def _forms(x: _Ctx, c: ch.HouseholdForms) -> None:
    _regroup(x, [x.person(i) for i in c.person_ids], c.dwelling_id)


def _splits(x: _Ctx, c: ch.HouseholdSplits) -> None:
    persons = [x.person(i) for i in c.person_ids]
    outside = [p["person_id"] for p in persons if int(p["household_id"]) != c.household_id]
    if outside:
        raise x.fail(f"persons {outside} are not members of household:{c.household_id}.")
    if x.w.hh_size.get(c.household_id) <= len(persons):
        raise x.fail(f"all members of household:{c.household_id} would leave it; a split keeps at least one.")
    _regroup(x, persons, c.dwelling_id)


# --- businesses ---------------------------------------------------------------------------------------------

def _opens(x: _Ctx, c: ch.BusinessOpens) -> None:
    x.get("buildings", c.building_id)
    bid = x.w.new_id("businesses")
    x.put("businesses", bid, {"business_id": bid, "building_id": c.building_id, "kind": c.business_kind,
                              "industry": c.industry, "credit": c.credit}, "created")


def _closes(x: _Ctx, c: ch.BusinessCloses) -> None:
    x.get("businesses", c.business_id)
    x.put("businesses", c.business_id, None, "removed")


def _biz_moves(x: _Ctx, c: ch.BusinessMoves) -> None:
    b = x.get("businesses", c.business_id)
    x.get("buildings", c.building_id)
    if int(b["building_id"]) == c.building_id:
        raise x.fail(f"business:{c.business_id} is already in building:{c.building_id}.")
    x.put("businesses", c.business_id, {**b, "building_id": c.building_id})


def _credit(x: _Ctx, c: ch.BusinessCreditChanged) -> None:
    b = x.get("businesses", c.business_id)
    if b["credit"] == c.credit:
        raise x.fail(f"business:{c.business_id} is already {c.credit}.")
    x.put("businesses", c.business_id, {**b, "credit": c.credit})


# --- buildings and dwellings --------------------------------------------------------------------------------

def _height_m(use: str, floors: int) -> float:
    return float(floors * (6 if use == "industrial" else 3))


def _building_added(x: _Ctx, c: ch.BuildingAdded) -> None:
    geom = c.geometry
    if not x.district.covers(geom):
        raise OutsideDistrictError(f"{c.kind}: the footprint (bounds {tuple(round(v, 6) for v in geom.bounds)}) is not "
                                   "wholly inside the district; draw it inside Chancheng (WGS84 lng/lat).")
    pt = geom.centroid
    cell = latlng_to_cells(np.array([pt.y]), np.array([pt.x]), PARTITION_RES)[0]
    pos = int(np.searchsorted(x.cells, cell))
    if pos >= len(x.cells) or x.cells[pos] != cell:
        raise OutsideDistrictError(f"{c.kind}: the footprint's centroid ({pt.x:.6f}, {pt.y:.6f}) is in no grid cell.")
    bid = x.w.new_id("buildings")
    x.put("buildings", bid, {"building_id": bid, "use": c.use, "floors": c.floors,
                             "height_m": _height_m(c.use, c.floors),
                             "footprint_m2": float(geometry_to_metric(geom).area), "cell": int(cell),
                             "lng": float(pt.x), "lat": float(pt.y),
                             "footprint": shapely.geometry.mapping(geom)}, "created")


def _demolished(x: _Ctx, c: ch.BuildingDemolished) -> None:
    x.get("buildings", c.building_id)
    res, biz = x.w.res_by_building.get(c.building_id), x.w.biz_by_building.get(c.building_id)
    if res or biz:
        raise x.fail(f"building:{c.building_id} still has {res} residents and {biz} businesses; move them out "
                     "first.")
    for did in x.w.dwellings_of(c.building_id):
        x.put("dwellings", did, None, "removed")
    x.put("buildings", c.building_id, None, "removed")


def _building_changed(x: _Ctx, c: ch.BuildingChanged) -> None:
    b = x.get("buildings", c.building_id)
    use = c.use if c.use is not None else b["use"]
    floors = c.floors if c.floors is not None else int(b["floors"])
    if use == b["use"] and floors == int(b["floors"]):
        raise x.fail(f"building:{c.building_id} already has use {use} and {floors} floors.")
    x.put("buildings", c.building_id, {**b, "use": use, "floors": floors, "height_m": _height_m(use, floors)})


def _dwelling_added(x: _Ctx, c: ch.DwellingAdded) -> None:
    x.get("buildings", c.building_id)
    did = x.w.new_id("dwellings")
    x.put("dwellings", did, {"dwelling_id": did, "building_id": c.building_id, "occupied": False,
                             "household_id": -1}, "created")


def _dwelling_removed(x: _Ctx, c: ch.DwellingRemoved) -> None:
    x.dwelling(c.dwelling_id)
    n = x.w.res_by_dwelling.get(c.dwelling_id)
    if n:
        raise x.fail(f"dwelling:{c.dwelling_id} still has {n} residents; move them out first.")
    x.put("dwellings", c.dwelling_id, None, "removed")


_HANDLERS: dict[type[ch.Change], Any] = {
    ch.PersonMovesIn: _moves_in, ch.PersonMoves: _moves, ch.PersonMovesOut: _gone("moved out"),
    ch.PersonDies: _gone("died"), ch.PersonBorn: _born, ch.PersonFlagChanged: _flag, ch.HouseholdForms: _forms,
    ch.HouseholdSplits: _splits, ch.BusinessOpens: _opens, ch.BusinessCloses: _closes,
    ch.BusinessMoves: _biz_moves, ch.BusinessCreditChanged: _credit, ch.BuildingAdded: _building_added,
    ch.BuildingDemolished: _demolished, ch.BuildingChanged: _building_changed, ch.DwellingAdded: _dwelling_added,
    ch.DwellingRemoved: _dwelling_removed,
}
