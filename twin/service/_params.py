"""Parsing of request parameters the schema cannot fully check: versions, client times.

One rule per kind of value, used by every route that takes it, so that no input reaches ``int()``, SQLite or
``datetime`` arithmetic unchecked (each failure is a :class:`twin.errors.ValidationError`, i.e. a 422 problem):

* a **version** is ``head``, ``base`` or a number written in ASCII digits (``str.isdigit`` also accepts ``²``
  and ``①``, which ``int()`` does not) no larger than :data:`MAX_VERSION` (SQLite's largest INTEGER);
* a **client time** is ISO-8601 (naive = CST) between :data:`MIN_TIME` and :data:`MAX_TIME`, far enough from
  ``datetime``'s own range (years 1–9999) that arithmetic on it (deadlines, ± 24 h windows) never overflows.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import Query

from twin.errors import ValidationError
from twin.incidents.lifecycle import CST, as_time

__all__ = ["MAX_VERSION", "MIN_TIME", "MAX_TIME", "VERSION_PATTERN", "VersionQ", "ascii_digits", "parse_version",
           "parse_version_id", "client_time"]

MAX_VERSION = 2**63 - 1
"""The largest version id (SQLite INTEGER, PostgreSQL BIGINT)."""
MIN_TIME = dt.datetime(1900, 1, 1, tzinfo=CST)
MAX_TIME = dt.datetime(2200, 1, 1, tzinfo=CST)
VERSION_PATTERN = r"^\s*(head|base|HEAD|BASE|[0-9]{1,19})\s*$"

VersionQ = Annotated[str | None, Query(description="partition version id, 'base' or 'head' (default)",
                                       max_length=20, pattern=VERSION_PATTERN)]


def ascii_digits(s: str) -> bool:
    """Whether ``s`` is a non-empty run of ASCII digits 0–9 (``"²"``, ``"①"``, ``"٣"`` are not)."""
    return s.isascii() and s.isdigit()


def parse_version_id(value: int | str, *, what: str = "version") -> int:
    """A version number 1 … :data:`MAX_VERSION` from an int or ASCII digits; :class:`ValidationError` otherwise."""
    if isinstance(value, str):
        s = value.strip()
        if not ascii_digits(s):
            raise ValidationError(f"{what} must be a number (ASCII digits), 'head' or 'base'; got {value!r}.")
        if len(s) > 19:
            raise ValidationError(f"{what} {s[:24]}… is larger than the largest version id {MAX_VERSION}.")
        value = int(s)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{what} must be a number, 'head' or 'base'; got {value!r}.")
    if not 1 <= value <= MAX_VERSION:
        raise ValidationError(f"{what} {value} is out of range: version ids run from 1 to {MAX_VERSION}.")
    return value


def parse_version(value: str | None, *, what: str = "version") -> str:
    """``head`` (also for ``None``/empty), ``base`` or a version number as canonical digits."""
    s = "" if value is None else str(value).strip()
    if s.lower() in ("", "head"):
        return "head"
    if s.lower() == "base":
        return "base"
    return str(parse_version_id(s, what=what))


def client_time(value: str | dt.datetime, *, what: str = "time") -> dt.datetime:
    """An ISO time from a client (naive = CST) as an aware CST datetime within [:data:`MIN_TIME`,
    :data:`MAX_TIME`)."""
    try:
        t = as_time(value, what=what)
    except ValidationError:
        raise
    except (OverflowError, ValueError) as e:  # e.g. an offset pushing year 1 or 9999 out of range
        raise ValidationError(f"{what} {value!r} is not a usable ISO time ({e}).") from None
    if not MIN_TIME <= t < MAX_TIME:
        raise ValidationError(f"{what} {value!r} is outside {MIN_TIME.year}–{MAX_TIME.year - 1}; give a time "
                              "like 2026-11-03T09:30:00.")
    return t
