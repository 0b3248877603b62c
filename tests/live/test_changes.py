"""Every change kind: its effect on the live state, and its bad inputs refused with the record and the rule named."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pytest
import shapely
from shapely.geometry import box, mapping

from tests.live.conftest import KW, D
from twin.errors import NotFoundError, OutsideDistrictError, ValidationError
from twin.live import changes as ch
from twin.live.changes import change_from_dict, change_to_dict
from twin.live.state import LiveTwin
from twin.model import ages_on


def _person(live: LiveTwin, pid: int, date: dt.date = D):
    p = live.persons_on(date)
    hit = p.loc[p["person_id"] == pid]
    return None if hit.empty else hit.iloc[0]


def _woman(live: LiveTwin, lo: int, hi: int, pregnant: bool = False) -> int:
    p = live.t.persons
    age = ages_on(p["birth_date"].to_numpy(), D)
    ok = (p["sex"] == "F").to_numpy() & (age >= lo) & (age <= hi) & (p["pregnant"].to_numpy() == pregnant)
    return int(p["person_id"].to_numpy()[ok][0])


def _inside_square(live: LiveTwin, half_deg: float = 0.00005) -> dict:
    c = live.t.cells.iloc[len(live.t.cells) // 2]
    return mapping(box(c.lng - half_deg, c.lat - half_deg, c.lng + half_deg, c.lat + half_deg))


def test_person_changes_show_in_persons_on(live: LiveTwin) -> None:
    t = live.t
    other = int(t.dwellings.loc[t.dwellings["building_id"] != t.persons.loc[1, "building_id"], "dwelling_id"].iloc[0])
    mother = _woman(live, 25, 35)
    res = live.apply([
        ch.PersonDies(person_id=0, **KW),
        ch.PersonMoves(person_id=1, dwelling_id=other, **KW),
        ch.PersonMovesOut(person_id=2, **KW),
        ch.PersonMovesIn(dwelling_id=other, sex="M", birth_date=dt.date(1990, 5, 1), **KW),
        ch.PersonBorn(dwelling_id=int(t.persons.loc[mother, "dwelling_id"]), sex="F", mother_id=mother, **KW),
        ch.PersonFlagChanged(person_id=3, flag="disabled", value=not bool(t.persons.loc[3, "disabled"]), **KW),
    ])
    assert len(res.seqs) == 6 and list(res.seqs) == sorted(res.seqs)
    n = len(t.persons)
    assert res.created[3] == (f"person:{n}",) and res.created[4] == (f"person:{n + 1}",)
    assert _person(live, 0) is None and _person(live, 2) is None
    moved = _person(live, 1)
    assert moved["dwelling_id"] == other and moved["building_id"] == t.dwellings.loc[other, "building_id"]
    baby = _person(live, n + 1)
    assert baby["birth_date"] == np.datetime64(D) and baby["household_id"] == t.persons.loc[mother, "household_id"]
    assert bool(_person(live, 3)["disabled"]) != bool(t.persons.loc[3, "disabled"])
    assert len(live.persons_on(D)) == len(t.persons) - 2 + 2
    # time travel: the day before, the snapshot
    before = live.persons_on(D - dt.timedelta(days=1))
    assert len(before) == len(t.persons) and _person(live, 0, D - dt.timedelta(days=1)) is not None
    # grid columns come from the building's cell
    p = live.persons_on(D)
    g = t.buildings.set_index("building_id")["grid_code"].astype(str)
    assert (p["grid_code"].to_numpy() == g.loc[p["building_id"]].to_numpy()).all()
    assert {"community_code", "town_code"} <= set(p.columns)


def test_events_between_lists_changes_with_ids(live: LiveTwin) -> None:
    live.apply([ch.PersonDies(person_id=5, **KW)])
    live.apply([ch.PersonBorn(dwelling_id=0, sex="M", **{**KW, "effective_date": D + dt.timedelta(days=3)})])
    e = live.events_between(D, D + dt.timedelta(days=3))
    assert e["kind"].tolist() == ["person.dies", "person.born"]
    assert e["person_id"].tolist() == [5, len(live.t.persons)]
    assert live.events_between(D, D)["kind"].tolist() == ["person.dies"]
    assert e["author"].unique().tolist() == ["李敏"]


def test_household_business_building_dwelling_kinds(live: LiveTwin) -> None:
    t = live.t
    hh = t.persons.groupby("household_id").size()
    big = int(hh[hh >= 3].index[0])
    members = t.persons.loc[t.persons["household_id"] == big, "person_id"].tolist()
    res = live.apply([
        ch.HouseholdSplits(household_id=big, person_ids=members[:1], **KW),
        ch.HouseholdForms(person_ids=members[1:3], **KW),
        ch.BusinessOpens(building_id=0, business_kind="individual", industry="services", credit="yellow", **KW),
        ch.BusinessCloses(business_id=0, **KW),
        ch.BusinessMoves(business_id=1, building_id=5, **KW),
        ch.BusinessCreditChanged(business_id=2, credit="red", **KW),
        ch.BuildingAdded(footprint=_inside_square(live), use="residential", floors=6, **KW),
        ch.DwellingAdded(building_id=len(t.buildings), **KW),
        ch.BuildingChanged(building_id=0, floors=int(t.buildings.loc[0, "floors"]) + 1, **KW),
    ])
    fr = live.frames_on(D)
    p = fr.persons.set_index("person_id")
    assert p.loc[members[0], "household_id"] != big and p.loc[members[1], "household_id"] == p.loc[members[2],
                                                                                                     "household_id"]
    b = fr.businesses.set_index("business_id")
    assert 0 not in b.index and b.loc[1, "building_id"] == 5 and b.loc[2, "credit"] == "red"
    assert b.loc[len(t.businesses), "credit"] == "yellow"
    nb = live.twin_on(D).buildings.set_index("building_id").loc[len(t.buildings)]  # counts refreshed in views
    assert nb["use"] == "residential" and nb["height_m"] == 18 and nb["dwellings"] == 1 and nb["grid_code"]
    assert 20 < nb["footprint_m2"] < 200  # ≈ 10 m × 11 m square measured in EPSG:4547
    assert fr.buildings.set_index("building_id").loc[0, "floors"] == t.buildings.loc[0, "floors"] + 1
    assert res.created[7] == (f"dwelling:{len(t.dwellings)}",)
    # demolish the new building: its dwelling goes with it; then a dwelling there is refused
    live.apply([ch.BuildingDemolished(building_id=len(t.buildings), **KW)])
    fr = live.frames_on(D)
    assert len(t.buildings) not in set(fr.buildings["building_id"]) and len(fr.dwellings) == len(t.dwellings)
    with pytest.raises(ValidationError, match=r"building:\d+ is gone \(building.demolished"):
        live.apply([ch.DwellingAdded(building_id=len(t.buildings), **KW)])


def test_bad_changes_name_the_record_and_rule(live: LiveTwin) -> None:
    t = live.t
    live.apply([ch.PersonDies(person_id=0, **KW)])
    with pytest.raises(ValidationError, match=r"person:0 is gone \(person.dies effective 2026-12-01\)"):
        live.apply([ch.PersonMoves(person_id=0, dwelling_id=1, **{**KW, "effective_date": D + dt.timedelta(1)})])
    with pytest.raises(NotFoundError, match="unknown person id 99999999"):
        live.apply([ch.PersonDies(person_id=99_999_999, **KW)])
    with pytest.raises(ValidationError, match="on or before the snapshot's reference date"):
        live.apply([ch.PersonDies(person_id=4, **{**KW, "effective_date": dt.date(2023, 6, 30)})])
    man = int(t.persons.loc[t.persons["sex"] == "M", "person_id"].iloc[3])
    with pytest.raises(ValidationError, match=rf"person:{man} \(M, aged \d+\) cannot be registered pregnant"):
        live.apply([ch.PersonFlagChanged(person_id=man, flag="pregnant", value=True, **KW)])
    old = _woman(live, 60, 120)
    with pytest.raises(ValidationError, match="only women aged 15–55"):
        live.apply([ch.PersonFlagChanged(person_id=old, flag="pregnant", value=True, **KW)])
    occupied = int(t.persons.loc[5, "building_id"])
    with pytest.raises(ValidationError, match=rf"building:{occupied} still has \d+ residents"):
        live.apply([ch.BuildingDemolished(building_id=occupied, **KW)])
    with pytest.raises(ValidationError, match=r"dwelling:\d+ still has \d+ residents"):
        live.apply([ch.DwellingRemoved(dwelling_id=int(t.persons.loc[5, "dwelling_id"]), **KW)])
    with pytest.raises(ValidationError, match="birth date 2027-01-01 is after the move-in date"):
        live.apply([ch.PersonMovesIn(dwelling_id=0, sex="F", birth_date=dt.date(2027, 1, 1), **KW)])
    # per-record effective dates never go back
    live.apply([ch.PersonFlagChanged(person_id=6, flag="low_income", value=True, **{**KW, "effective_date":
                                                                                     D + dt.timedelta(30)})])
    with pytest.raises(ValidationError, match=r"person:6 already has a change effective 2026-12-31"):
        live.apply([ch.PersonDies(person_id=6, **KW)])
    # a baby's record cannot be changed before it is born
    res = live.apply([ch.PersonBorn(dwelling_id=0, sex="M", **{**KW, "effective_date": D + dt.timedelta(10)})])
    baby = int(res.created[0][0].split(":")[1])
    with pytest.raises(ValidationError, match=rf"person:{baby} exists only from 2026-12-11"):
        live.apply([ch.PersonDies(person_id=baby, **KW)])


def test_footprints_are_checked() -> None:
    bow_tie = {"type": "Polygon", "coordinates": [[[113.10, 23.02], [113.11, 23.03], [113.11, 23.02],
                                                   [113.10, 23.03], [113.10, 23.02]]]}
    with pytest.raises(ValidationError, match="not a valid polygon .*Self-intersection"):
        ch.BuildingAdded(footprint=bow_tie, use="residential", floors=3, **KW)
    with pytest.raises(ValidationError, match="must be one non-empty Polygon"):
        ch.BuildingAdded(footprint={"type": "Point", "coordinates": [113.1, 23.0]}, use="residential", floors=3,
                         **KW)
    with pytest.raises(ValidationError, match="not WGS84 degrees"):
        ch.BuildingAdded(footprint=mapping(box(500000, 2500000, 500010, 2500010)), use="public", floors=3, **KW)
    with pytest.raises(ValidationError, match="use must be one of"):
        ch.BuildingAdded(footprint=mapping(box(113.1, 23.0, 113.1001, 23.0001)), use="castle", floors=3, **KW)
    with pytest.raises(ValidationError, match="floors must be an integer 1–150"):
        ch.BuildingAdded(footprint=mapping(box(113.1, 23.0, 113.1001, 23.0001)), use="public", floors=0, **KW)


def test_building_outside_the_district_is_refused(live: LiveTwin) -> None:
    far = mapping(box(114.0, 22.5, 114.0005, 22.5005))  # Shenzhen
    with pytest.raises(OutsideDistrictError, match="not wholly inside the district"):
        live.apply([ch.BuildingAdded(footprint=far, use="public", floors=2, **KW)])
    assert live.events_between(D, D).empty


def test_change_dict_round_trip_and_errors() -> None:
    c = ch.HouseholdForms(person_ids=(1, 2), dwelling_id=3, **KW)
    d = change_to_dict(c)
    assert d["kind"] == "household.forms" and d["effective_date"] == "2026-12-01" and d["person_ids"] == [1, 2]
    assert change_from_dict(d) == c
    with pytest.raises(ValidationError, match="unknown kind 'person.flies'"):
        change_from_dict({**d, "kind": "person.flies"})
    with pytest.raises(ValidationError, match=r"unknown field\(s\) \['colour'\]"):
        change_from_dict({**d, "colour": "red"})
    with pytest.raises(ValidationError, match="author must be non-empty"):
        dataclasses.replace(c, author=" ")
    with pytest.raises(ValidationError, match="ISO date"):
        change_from_dict({**d, "effective_date": "1 Dec"})
    with pytest.raises(ValidationError, match="lists a person twice"):
        ch.HouseholdForms(person_ids=(1, 1), **KW)
    assert shapely.is_valid(ch.BuildingAdded(footprint=mapping(box(113.1, 23.0, 113.1001, 23.0001)), use="public",
                                             floors=2, **KW).geometry)
