"""The declared no-application services (无感服务): which rules exist, as configuration rather than code.

Two kinds of rule cover the shipped services (both evaluated by :mod:`twin.services.rules`):

* :class:`AgeRule` — qualifies on the day a resident reaches ``age`` (the ``age``-th birthday; 0 = the day of
  birth), optionally only while some key-population flags are set on that day (``requires``).
* :class:`FlagRule` — qualifies on the day a key-population flag (``disabled``, ``low_income``, ``pregnant``) turns
  on for a resident who was already living in the district the day before (certified here, not moved in with it).

A birthday on 29 February falls on **1 March** in years that are not leap years (:data:`LEAP_DAY_RULE`).

The longevity allowance's tiers (80+, 90+, 100+) are a tuple of ages (:data:`LONGEVITY_TIERS`), one service per
tier; :func:`default_services` builds the catalogue from them and :func:`services_from_toml` reads a catalogue
written as TOML, so a district can change tiers or add a rule without touching the engine.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from twin.errors import ValidationError

__all__ = [
    "AgeRule",
    "FlagRule",
    "Service",
    "FLAGS",
    "LEAP_DAY_RULE",
    "LONGEVITY_TIERS",
    "default_services",
    "services_from_toml",
    "select_services",
]

FLAGS = ("disabled", "low_income", "pregnant")
"""Key-population flags of a resident (columns of ``twin.persons``)."""
LEAP_DAY_RULE = "march_1"
"""Convention for a 29 February birthday in a non-leap year: the anniversary is on 1 March."""
LONGEVITY_TIERS: tuple[int, ...] = (80, 90, 100)
"""Ages at which a longevity-allowance tier (高龄津贴) starts; one service ``longevity_<age>`` per tier."""


@dataclass(frozen=True)
class AgeRule:
    """Qualifies on the day the resident turns ``age`` (0 = day of birth), while every flag in ``requires`` is set."""

    name: str
    title: str
    age: int
    requires: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_name(self.name)
        if not isinstance(self.age, int) or isinstance(self.age, bool) or not 0 <= self.age <= 130:
            raise ValidationError(f"service {self.name!r}: age must be an integer 0–130, got {self.age!r}.")
        for f in self.requires:
            _check_flag(self.name, f)

    @property
    def detail(self) -> str:
        return "born" if self.age == 0 else f"turns {self.age}"


@dataclass(frozen=True)
class FlagRule:
    """Qualifies on the day ``flag`` turns on for a resident present in the district the day before."""

    name: str
    title: str
    flag: str

    def __post_init__(self) -> None:
        _check_name(self.name)
        _check_flag(self.name, self.flag)

    @property
    def detail(self) -> str:
        return f"{self.flag} certified"


Service = AgeRule | FlagRule


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name.isidentifier():
        raise ValidationError(f"service name must be an identifier like 'elderly_70', got {name!r}.")


def _check_flag(service: str, flag: str) -> None:
    if flag not in FLAGS:
        raise ValidationError(f"service {service!r}: unknown flag {flag!r}; use one of {', '.join(FLAGS)}.")


def default_services(longevity_tiers: Sequence[int] = LONGEVITY_TIERS) -> tuple[Service, ...]:
    """The shipped catalogue: 70th-birthday allowance, one longevity tier per age in ``longevity_tiers``, newborn
    registration follow-up, disability-certification follow-up, 低保 household member reaching 60."""
    tiers = sorted({int(a) for a in longevity_tiers})
    return (
        AgeRule("elderly_70", "70th-birthday elderly allowance (70岁老人津贴)", 70),
        *(AgeRule(f"longevity_{a}", f"longevity allowance {a}+ (高龄津贴)", a) for a in tiers),
        AgeRule("newborn_followup", "newborn registration follow-up (新生儿登记)", 0),
        FlagRule("disability_followup", "disability certification follow-up (残疾认定跟进)", "disabled"),
        AgeRule("low_income_60", "低保 household member reaching 60 (低保户成员满60岁)", 60, ("low_income",)),
    )


def services_from_toml(text: str) -> tuple[Service, ...]:
    """A catalogue written as TOML: ``[[service]]`` tables with ``name``, ``title`` and either ``age`` (plus
    optional ``requires = ["low_income"]``) or ``flag``; or ``longevity_tiers = [80, 90, 100]`` at the top level
    for the shipped catalogue with other tiers.

    >>> [s.name for s in services_from_toml('longevity_tiers = [85, 95]')][1:3]
    ['longevity_85', 'longevity_95']
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ValidationError(f"service catalogue is not valid TOML: {e}.") from e
    out: list[Service] = list(default_services(doc["longevity_tiers"])) if "longevity_tiers" in doc else []
    for i, entry in enumerate(doc.get("service", [])):
        out.append(_service_from_mapping(entry, i))
    if not out:
        raise ValidationError("service catalogue declares no service; add [[service]] tables or longevity_tiers.")
    return _unique(out)


def _service_from_mapping(entry: Mapping[str, Any], i: int) -> Service:
    name, title = entry.get("name"), entry.get("title", entry.get("name", ""))
    if ("age" in entry) == ("flag" in entry):
        raise ValidationError(f"service #{i + 1} ({name!r}) needs exactly one of 'age' or 'flag'.")
    if "age" in entry:
        return AgeRule(str(name), str(title), entry["age"], tuple(entry.get("requires", ())))
    return FlagRule(str(name), str(title), str(entry["flag"]))


def _unique(services: Iterable[Service]) -> tuple[Service, ...]:
    seen: set[str] = set()
    for s in services:
        if s.name in seen:
            raise ValidationError(f"service {s.name!r} is declared twice.")
        seen.add(s.name)
    return tuple(services)


def select_services(services: Sequence[Service], names: Sequence[str] | None) -> tuple[Service, ...]:
    """The services called ``names`` (all when None); :class:`ValidationError` lists the known names."""
    if not names:
        return tuple(services)
    known = {s.name: s for s in services}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValidationError(f"unknown service {', '.join(map(repr, unknown))}; known: {', '.join(known)}.")
    return tuple(known[n] for n in names)
