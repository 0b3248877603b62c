"""Each service rule against hand-made residents at its boundaries (tiny in-memory LiveView)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from service_cases import event, person, view_of

from twin.errors import ValidationError
from twin.services import default_services, run_services, services_from_toml
from twin.services.config import select_services
from twin.services.rules import anniversary


def listed(run, service: str) -> dict[int, str]:
    """person_id → qualifying date (ISO) of one service's rows."""
    f = run.for_service(service)
    return {int(p): str(q.date()) for p, q in zip(f["person_id"], f["qualifying_date"])}


def test_anniversary_convention_29_february_is_1_march_in_non_leap_years():
    b = np.array(["1956-02-29", "1960-02-29", "1956-02-28", "1956-03-01"], dtype="datetime64[D]")
    assert anniversary(b, 70).astype(str).tolist() == ["2026-03-01", "2030-03-01", "2026-02-28", "2026-03-01"]
    assert anniversary(b[1:2], 80).astype(str).tolist() == ["2040-02-29"]  # 2040 is a leap year
    assert anniversary(b[:1], 44).astype(str).tolist() == ["2000-02-29"]  # 2000 is a leap year (÷400)
    assert anniversary(np.array(["1920-02-29"], dtype="datetime64[D]"), 80).astype(str).tolist() == ["2000-02-29"]
    assert anniversary(np.array(["1920-02-29"], dtype="datetime64[D]"), 180).astype(str).tolist() == ["2100-03-01"]


def test_elderly_70_first_and_last_day_of_the_month_and_neighbours():
    people = [person(1, "1956-12-01"), person(2, "1956-12-31"), person(3, "1956-11-30"), person(4, "1957-01-01"),
              person(5, "1955-12-15"), person(6, "1956-12-15")]
    run = run_services(view_of(people), "2026-12")
    assert listed(run, "elderly_70") == {1: "2026-12-01", 2: "2026-12-31", 6: "2026-12-15"}


def test_elderly_70_leap_day_birthday_is_listed_in_march_of_a_non_leap_year():
    people = [person(1, "1956-02-29"), person(2, "1956-02-28")]
    assert listed(run_services(view_of(people), "2026-02"), "elderly_70") == {2: "2026-02-28"}
    assert listed(run_services(view_of(people), "2026-03"), "elderly_70") == {1: "2026-03-01"}


def test_death_before_on_and_after_the_qualifying_date():
    people = [person(1, "1956-12-15"), person(2, "1956-12-15"), person(3, "1956-12-15"), person(4, "1956-12-15")]
    events = [event(1, "died", 1, "2026-12-14"),  # the day before: not listed
              event(2, "died", 2, "2026-12-15"),  # on the day: an event is in force on its day → not listed
              event(3, "died", 3, "2026-12-16"),  # the day after: listed
              event(4, "died", 4, "2026-11-20")]  # before the period: not listed
    assert listed(run_services(view_of(people, events), "2026-12"), "elderly_70") == {3: "2026-12-15"}


def test_moves_around_the_qualifying_date():
    people = [person(1, "1956-12-20"), person(2, "1956-12-20"), person(3, "1956-12-10"), person(4, "1956-12-10"),
              person(5, "1956-12-05")]
    events = [event(1, "moved_in", 1, "2026-12-19"),  # moved in the day before: listed
              event(2, "moved_in", 2, "2026-12-21"),  # moved in after the birthday: not listed
              event(3, "moved_out", 3, "2026-12-11"),  # moved out the day after: listed
              event(4, "moved_out", 4, "2026-12-09"),  # moved out the day before: not listed
              event(5, "moved_in", 5, "2026-12-01")]  # moved in on the first day: listed
    run = run_services(view_of(people, events), "2026-12")
    assert listed(run, "elderly_70") == {1: "2026-12-20", 3: "2026-12-10", 5: "2026-12-05"}
    assert run.persons_on_calls == 1 + 5  # the day before (for the flag rule) + one per piece between event days
    assert [lo for lo, _ in run.segments] == [dt.date(2026, 12, d) for d in (1, 9, 11, 19, 21)]


def test_longevity_tiers_are_configuration():
    people = [person(1, "1946-12-05"), person(2, "1936-12-06"), person(3, "1926-12-07"), person(4, "1941-12-08")]
    run = run_services(view_of(people), "2026-12")
    assert listed(run, "longevity_80") == {1: "2026-12-05"}
    assert listed(run, "longevity_90") == {2: "2026-12-06"}
    assert listed(run, "longevity_100") == {3: "2026-12-07"}
    other = run_services(view_of(people), "2026-12", services=default_services((85, 95)))
    assert [s.name for s in other.services if s.name.startswith("longevity")] == ["longevity_85", "longevity_95"]
    assert listed(other, "longevity_85") == {4: "2026-12-08"}
    from_toml = services_from_toml('longevity_tiers = [85]\n[[service]]\nname = "age_75"\nage = 75\n')
    assert {s.name for s in from_toml} >= {"longevity_85", "age_75", "elderly_70"}
    assert "longevity_80" not in {s.name for s in from_toml}


def test_the_catalogue_in_the_docs_parses():
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "services.md").read_text(encoding="utf-8")
    services = services_from_toml(re.search(r"```toml\n(.*?)```", doc, re.S).group(1))
    extra = {s.name: s for s in services[len(default_services()):]}
    assert extra["low_income_disabled_70"].requires == ("low_income", "disabled")
    assert extra["pregnancy_followup"].flag == "pregnant"


def test_catalogue_errors_are_clear():
    with pytest.raises(ValidationError, match="unknown flag 'rich'"):
        services_from_toml('[[service]]\nname = "x"\nflag = "rich"\n')
    with pytest.raises(ValidationError, match="exactly one of 'age' or 'flag'"):
        services_from_toml('[[service]]\nname = "x"\n')
    with pytest.raises(ValidationError, match="declared twice"):
        services_from_toml('longevity_tiers = [80]\n[[service]]\nname = "elderly_70"\nage = 71\n')
    with pytest.raises(ValidationError, match="unknown service 'nope'; known: elderly_70"):
        select_services(default_services(), ["nope"])


def test_newborn_follow_up_is_the_day_of_birth():
    people = [person(1, "2026-12-01"), person(2, "2026-12-31"), person(3, "2026-11-30"), person(4, "2026-12-10")]
    events = [event(1, "born", 1, "2026-12-01"), event(2, "born", 2, "2026-12-31"),
              event(3, "born", 3, "2026-11-30"), event(4, "born", 4, "2026-12-10"),
              event(5, "died", 4, "2026-12-12")]  # died two days later: qualified on the 10th, listed
    assert listed(run_services(view_of(people, events), "2026-12"), "newborn_followup") == {
        1: "2026-12-01", 2: "2026-12-31", 4: "2026-12-10"}


def test_disability_certified_in_the_period():
    people = [person(1, "1980-01-01"), person(2, "1980-01-01"), person(3, "1980-01-01"),
              person(4, "1980-01-01", disabled=True), person(5, "1980-01-01"), person(6, "1980-01-01")]
    on = {"disabled": True}
    events = [event(1, "flag", 1, "2026-12-10", on),
              event(2, "flag", 2, "2026-11-30", on),  # before the period
              event(3, "flag", 3, "2026-12-01", on),  # on the first day: listed
              event(4, "moved_in", 4, "2026-12-05"),  # moved in already certified: not a certification here
              event(5, "died", 5, "2026-12-09"),
              event(6, "flag", 5, "2026-12-10", on),  # certified after death: not listed
              event(7, "flag", 6, "2026-12-31", on)]
    run = run_services(view_of(people, events), "2026-12")
    assert listed(run, "disability_followup") == {1: "2026-12-10", 3: "2026-12-01", 6: "2026-12-31"}


def test_low_income_member_reaching_60():
    people = [person(1, "1966-12-15", low_income=True), person(2, "1966-12-15"),
              person(3, "1966-12-15", low_income=True), person(4, "1966-12-15")]
    events = [event(1, "flag", 3, "2026-12-10", {"low_income": False}),  # ended before the birthday
              event(2, "flag", 4, "2026-12-14", {"low_income": True})]  # granted the day before
    assert listed(run_services(view_of(people, events), "2026-12"), "low_income_60") == {
        1: "2026-12-15", 4: "2026-12-15"}


def test_a_date_range_and_bad_periods():
    people = [person(1, "1956-12-01"), person(2, "1957-01-03")]
    run = run_services(view_of(people), "2026-12-01..2027-01-05")
    assert listed(run, "elderly_70") == {1: "2026-12-01", 2: "2027-01-03"}
    assert str(run.period) == "2026-12-01..2027-01-05"
    for bad, msg in (("2026-13", "no month 13"), ("december", "neither a month"),
                     ("2026-12-05..2026-12-01", "before it starts"), ("2026-01-01..2027-12-31", "longer than")):
        with pytest.raises(ValidationError, match=msg):
            run_services(view_of(people), bad)
