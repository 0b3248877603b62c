"""The kinds of change a community makes to the twin's records (the data closed loop, 数据闭环).

Every change is a frozen dataclass with ``effective_date`` (the day it takes effect, a :class:`datetime.date`),
``author`` (a named person: 操作日志留痕), ``reason`` and an optional ``expected_version`` of its main record
(compare-and-set: the change is refused with :class:`twin.errors.ConflictError` when the record has moved on).
The checks here need nothing but the change itself (types, vocabularies, geometry shape); the checks against the
records (unknown ids, dead persons, demolished buildings, the district boundary …) are made when a change set is
committed (:mod:`twin.live._rules`). Footprints are WGS84 (EPSG:4326) GeoJSON Polygons.

>>> PersonDies(person_id=7, effective_date=dt.date(2026, 12, 1), author="李敏", reason="death certificate")
... # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import shapely
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from twin.errors import ValidationError
from twin.model import BUILDING_USES, CREDIT_COLOURS

__all__ = [
    "Change", "PersonMovesIn", "PersonMoves", "PersonMovesOut", "PersonBorn", "PersonDies", "PersonFlagChanged",
    "HouseholdForms", "HouseholdSplits", "BusinessOpens", "BusinessCloses", "BusinessMoves",
    "BusinessCreditChanged", "BuildingAdded", "BuildingDemolished", "BuildingChanged", "DwellingAdded",
    "DwellingRemoved", "CHANGE_KINDS", "FLAGS", "SEXES", "BUSINESS_KINDS", "change_from_dict", "change_to_dict",
    "footprint_geometry",
]

FLAGS = ("disabled", "low_income", "pregnant")
SEXES = ("M", "F")
BUSINESS_KINDS = ("enterprise", "individual", "organisation")
MAX_FLOORS = 150


def _date(value: object, what: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError as e:
            raise ValidationError(f"{what} must be an ISO date like 2026-12-01, got {value!r}.") from e
    raise ValidationError(f"{what} must be a date (or ISO text like 2026-12-01), got {value!r}.")


def _id(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(f"{what} must be a non-negative integer id, got {value!r}.")
    return int(value)


def _choice(value: object, options: tuple[str, ...], what: str) -> str:
    if value not in options:
        raise ValidationError(f"{what} must be one of {', '.join(options)}, got {value!r}.")
    return str(value)


@dataclass(frozen=True, kw_only=True)
class Change:
    """Fields every change has. ``kind`` (class attribute) names it in the event log."""

    kind: ClassVar[str] = ""
    effective_date: dt.date
    author: str
    reason: str
    expected_version: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "effective_date", _date(self.effective_date, f"{self.kind}: effective_date"))
        for f in ("author", "reason"):
            v = getattr(self, f)
            if not isinstance(v, str) or not v.strip():
                raise ValidationError(f"{self.kind}: {f} must be non-empty text (who made the change and why), "
                                      f"got {v!r}.")
        if self.expected_version is not None and (isinstance(self.expected_version, bool) or not isinstance(
                self.expected_version, int) or self.expected_version < 0):
            raise ValidationError(f"{self.kind}: expected_version must be an integer ≥ 0, got "
                                  f"{self.expected_version!r}.")
        for fld in dataclasses.fields(self):
            if fld.name.endswith("_id"):
                v = getattr(self, fld.name)
                if v is not None:
                    object.__setattr__(self, fld.name, _id(v, f"{self.kind}: {fld.name}"))


# --- persons ------------------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class PersonMovesIn(Change):
    """A person from outside the district moves into ``dwelling_id`` (a new person id is assigned); joins
    ``household_id`` if given, else forms a new household."""

    kind: ClassVar[str] = "person.moves_in"
    dwelling_id: int
    sex: str
    birth_date: dt.date
    household_id: int | None = None
    disabled: bool = False
    low_income: bool = False
    pregnant: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        _choice(self.sex, SEXES, f"{self.kind}: sex")
        object.__setattr__(self, "birth_date", _date(self.birth_date, f"{self.kind}: birth_date"))
        for f in FLAGS:
            if not isinstance(getattr(self, f), bool):
                raise ValidationError(f"{self.kind}: {f} must be true or false, got {getattr(self, f)!r}.")


@dataclass(frozen=True, kw_only=True)
class PersonMoves(Change):
    """A resident moves to another dwelling in the district; joins ``household_id`` if given, else forms a new
    one-person household."""

    kind: ClassVar[str] = "person.moves"
    person_id: int
    dwelling_id: int
    household_id: int | None = None


@dataclass(frozen=True, kw_only=True)
class PersonMovesOut(Change):
    """A resident leaves the district (no longer counted from ``effective_date``)."""

    kind: ClassVar[str] = "person.moves_out"
    person_id: int


@dataclass(frozen=True, kw_only=True)
class PersonBorn(Change):
    """A baby is born on ``effective_date`` into ``dwelling_id``; joins ``household_id`` (default: the mother's
    household, else a new one). The mother's pregnancy flag, if set, ends."""

    kind: ClassVar[str] = "person.born"
    dwelling_id: int
    sex: str
    household_id: int | None = None
    mother_id: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _choice(self.sex, SEXES, f"{self.kind}: sex")


@dataclass(frozen=True, kw_only=True)
class PersonDies(Change):
    kind: ClassVar[str] = "person.dies"
    person_id: int


@dataclass(frozen=True, kw_only=True)
class PersonFlagChanged(Change):
    """A key-population flag certified/granted/registered (``value=True``) or ended (``False``): ``disabled``,
    ``low_income`` (低保) or ``pregnant`` (women aged 15–55 on the effective date only)."""

    kind: ClassVar[str] = "person.flag"
    person_id: int
    flag: str
    value: bool

    def __post_init__(self) -> None:
        super().__post_init__()
        _choice(self.flag, FLAGS, f"{self.kind}: flag")
        if not isinstance(self.value, bool):
            raise ValidationError(f"{self.kind}: value must be true or false, got {self.value!r}.")


# --- households ---------------------------------------------------------------------------------------------

def _person_ids(c: Change, ids: object) -> tuple[int, ...]:
    if not isinstance(ids, (list, tuple)) or not ids:
        raise ValidationError(f"{c.kind}: person_ids must be a non-empty list of person ids, got {ids!r}.")
    out = tuple(_id(i, f"{c.kind}: person_ids") for i in ids)
    if len(set(out)) != len(out):
        raise ValidationError(f"{c.kind}: person_ids lists a person twice: {list(out)}.")
    return out


@dataclass(frozen=True, kw_only=True)
class HouseholdForms(Change):
    """Residents form a new household (a new household id), living in ``dwelling_id`` (default: where they
    already all live)."""

    kind: ClassVar[str] = "household.forms"
    person_ids: tuple[int, ...]
    dwelling_id: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "person_ids", _person_ids(self, self.person_ids))


@dataclass(frozen=True, kw_only=True)
class HouseholdSplits(Change):
    """Some (not all) members of ``household_id`` split off into a new household, optionally moving to
    ``dwelling_id``."""

    kind: ClassVar[str] = "household.splits"
    household_id: int
    person_ids: tuple[int, ...]
    dwelling_id: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "person_ids", _person_ids(self, self.person_ids))


# --- businesses ---------------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class BusinessOpens(Change):
    kind: ClassVar[str] = "business.opens"
    building_id: int
    business_kind: str
    industry: str
    credit: str = "green"

    def __post_init__(self) -> None:
        super().__post_init__()
        _choice(self.business_kind, BUSINESS_KINDS, f"{self.kind}: business_kind")
        _choice(self.credit, CREDIT_COLOURS, f"{self.kind}: credit")
        if not isinstance(self.industry, str) or not self.industry:
            raise ValidationError(f"{self.kind}: industry must be non-empty text, got {self.industry!r}.")


@dataclass(frozen=True, kw_only=True)
class BusinessCloses(Change):
    kind: ClassVar[str] = "business.closes"
    business_id: int


@dataclass(frozen=True, kw_only=True)
class BusinessMoves(Change):
    kind: ClassVar[str] = "business.moves"
    business_id: int
    building_id: int


@dataclass(frozen=True, kw_only=True)
class BusinessCreditChanged(Change):
    """The credit three-colour code changes (green / yellow / red drive inspections 1 / 2 / 4 a month)."""

    kind: ClassVar[str] = "business.credit"
    business_id: int
    credit: str

    def __post_init__(self) -> None:
        super().__post_init__()
        _choice(self.credit, CREDIT_COLOURS, f"{self.kind}: credit")


# --- buildings and dwellings --------------------------------------------------------------------------------

def footprint_geometry(footprint: object, what: str = "footprint") -> BaseGeometry:
    """A GeoJSON Polygon (dict or text) or shapely Polygon → a valid shapely Polygon (WGS84 lng/lat).

    Raises :class:`ValidationError` for anything else, NaN or out-of-range coordinates, empty or
    self-intersecting rings (the message gives GEOS's reason and location).
    """
    try:
        if isinstance(footprint, BaseGeometry):
            geom = footprint
        elif isinstance(footprint, str):
            geom = shapely.from_geojson(footprint)
        elif isinstance(footprint, Mapping):
            geom = shape(footprint)
        else:
            raise ValidationError(f"{what} must be a GeoJSON Polygon, got {type(footprint).__name__}.")
    except ValidationError:
        raise
    except Exception as e:  # shapely/GEOS parse errors
        raise ValidationError(f"{what} is not a readable GeoJSON Polygon: {e}.") from e
    if geom.geom_type != "Polygon" or geom.is_empty:
        raise ValidationError(f"{what} must be one non-empty Polygon (WGS84 lng/lat), got {geom.geom_type}.")
    b = geom.bounds
    if not all(map(lambda v: v == v, b)) or not (-180 <= b[0] <= b[2] <= 180 and -90 <= b[1] <= b[3] <= 90):
        raise ValidationError(f"{what} coordinates are not WGS84 degrees (bounds {b}); give lng/lat in EPSG:4326.")
    if not geom.is_valid:
        raise ValidationError(f"{what} is not a valid polygon ({shapely.is_valid_reason(geom)}); "
                              "a footprint ring must not cross itself.")
    return geom


@dataclass(frozen=True, kw_only=True)
class BuildingAdded(Change):
    """A new building: WGS84 GeoJSON Polygon ``footprint`` inside the district, ``use`` (one of
    :data:`twin.model.BUILDING_USES`) and ``floors``; its point is the footprint centroid."""

    kind: ClassVar[str] = "building.added"
    footprint: dict[str, Any]
    use: str
    floors: int

    def __post_init__(self) -> None:
        super().__post_init__()
        _choice(self.use, BUILDING_USES, f"{self.kind}: use")
        _floors(self, self.floors)
        geom = footprint_geometry(self.footprint, f"{self.kind}: footprint")
        object.__setattr__(self, "footprint", shapely.geometry.mapping(geom))

    @property
    def geometry(self) -> BaseGeometry:
        return shape(self.footprint)


def _floors(c: Change, floors: object) -> None:
    if isinstance(floors, bool) or not isinstance(floors, int) or not 1 <= floors <= MAX_FLOORS:
        raise ValidationError(f"{c.kind}: floors must be an integer 1–{MAX_FLOORS}, got {floors!r}.")


@dataclass(frozen=True, kw_only=True)
class BuildingDemolished(Change):
    """A building is demolished with its dwellings; refused while anyone lives or any business is in it."""

    kind: ClassVar[str] = "building.demolished"
    building_id: int


@dataclass(frozen=True, kw_only=True)
class BuildingChanged(Change):
    kind: ClassVar[str] = "building.changed"
    building_id: int
    use: str | None = None
    floors: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.use is None and self.floors is None:
            raise ValidationError(f"{self.kind}: give use and/or floors to change.")
        if self.use is not None:
            _choice(self.use, BUILDING_USES, f"{self.kind}: use")
        if self.floors is not None:
            _floors(self, self.floors)


@dataclass(frozen=True, kw_only=True)
class DwellingAdded(Change):
    kind: ClassVar[str] = "dwelling.added"
    building_id: int


@dataclass(frozen=True, kw_only=True)
class DwellingRemoved(Change):
    """A dwelling is removed; refused while anyone lives in it."""

    kind: ClassVar[str] = "dwelling.removed"
    dwelling_id: int


CHANGE_KINDS: dict[str, type[Change]] = {c.kind: c for c in (
    PersonMovesIn, PersonMoves, PersonMovesOut, PersonBorn, PersonDies, PersonFlagChanged, HouseholdForms,
    HouseholdSplits, BusinessOpens, BusinessCloses, BusinessMoves, BusinessCreditChanged, BuildingAdded,
    BuildingDemolished, BuildingChanged, DwellingAdded, DwellingRemoved)}
"""Every change kind by its name in the event log (``person.moves``, ``building.added`` …)."""


def change_to_dict(c: Change) -> dict[str, Any]:
    """The change as plain JSON values: ``{"kind": …, field: value …}`` (dates ISO, tuples lists)."""
    out: dict[str, Any] = {"kind": c.kind}
    for f in dataclasses.fields(c):
        v = getattr(c, f.name)
        if isinstance(v, dt.date):
            v = v.isoformat()
        elif isinstance(v, tuple):
            v = list(v)
        out[f.name] = v
    return out


def change_from_dict(d: Mapping[str, Any], *, where: str = "change") -> Change:
    """Parse one change from JSON values (as :func:`change_to_dict` writes); errors name ``where`` and the field."""
    if not isinstance(d, Mapping):
        raise ValidationError(f"{where} must be a JSON object, got {type(d).__name__}.")
    kind = d.get("kind")
    cls = CHANGE_KINDS.get(str(kind))
    if cls is None:
        raise ValidationError(f"{where}: unknown kind {kind!r}; use one of {', '.join(CHANGE_KINDS)}.")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names - {"kind"})
    if unknown:
        raise ValidationError(f"{where} ({kind}): unknown field(s) {unknown}; {kind} has {sorted(names)}.")
    args: dict[str, Any] = {k: (tuple(v) if k == "person_ids" and isinstance(v, list) else v)
                            for k, v in d.items() if k != "kind"}
    try:
        return cls(**args)
    except TypeError as e:
        raise ValidationError(f"{where} ({kind}): {e}.") from e
    except ValidationError as e:
        raise ValidationError(f"{where}: {e}") from e
