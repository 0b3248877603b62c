"""Small pieces of the per-version twin cache (:mod:`twin.service._twins`): the version id an answer names, the
skipped-build error, the version check, the OpenAPI example area and the index warm-up."""

from __future__ import annotations

from typing import Any

from shapely.geometry import box, mapping

from twin.access.roles import DISTRICT
from twin.model import Twin
from twin.query.dossier import grid_counts
from twin.query.summary import summarize_area
from twin.service._params import parse_version

__all__ = ["EXAMPLE_AREA", "AnsweredVersion", "SupersededBuild", "build_indexes", "check_version"]

#: A small area (WGS84) near Shiwan: the OpenAPI body example.
EXAMPLE_AREA: dict[str, Any] = {
    "type": "Polygon",
    "coordinates": [[[113.105, 23.005], [113.115, 23.005], [113.115, 23.012], [113.105, 23.012], [113.105, 23.005]]],
}


class AnsweredVersion(int):
    """A resolved partition version id (an ``int``: stored, compared and serialised as the number) that also names
    ``changes``, the newest change event (:mod:`twin.live.events` seq; 0 = none) the answer's twin reflects."""

    changes: int

    def __new__(cls, vid: int, changes: int = 0) -> AnsweredVersion:
        out = super().__new__(cls, int(vid))
        out.changes = int(changes)
        return out


class SupersededBuild(RuntimeError):
    """A queued build nobody waited for, skipped because a newer version was queued after it."""


def check_version(version: str) -> str:
    """``head``, ``base`` or the version number (ASCII digits, 1 … 2⁶³−1) of ``version``;
    :class:`ValidationError` otherwise (:func:`twin.service._params.parse_version`)."""
    return parse_version(version)


def build_indexes(t: Twin) -> None:
    """Build ``t``'s point and partition indexes and per-grid counts (a summary of a small area inside its
    district, ≈ 600 m across, WGS84)."""
    pt = t.district.representative_point()
    area = mapping(box(pt.x - 0.003, pt.y - 0.003, pt.x + 0.003, pt.y + 0.003).intersection(t.district))
    summarize_area(t, area, role=DISTRICT, by="grid")
    grid_counts(t)
