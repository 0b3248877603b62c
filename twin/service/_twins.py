"""The per-version twin cache: the base twin, and the twins of the newest partition versions with query indexes.

A version's twin is built once (checkout + query indexes, ≈ 2 s) and kept for the newest ``keep_versions`` versions.
While one request builds a new head, other requests for "head" are answered from the newest version already built
(each response names its version); the editor whose commit made the new head gets it built before the edit returns.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from twin.access.roles import DISTRICT
from twin.model import Twin, load
from twin.partition.model import partition_from_twin
from twin.partition.versions import BASE_VERSION, checkout, ensure_base, resolve_version
from twin.query.dossier import grid_counts
from twin.query.summary import summarize_area
from twin.service._params import parse_version
from twin.store.sql import Store

__all__ = ["EXAMPLE_AREA", "Twins", "check_version"]

#: A small area (WGS84) near Shiwan: builds the query indexes at warm-up; the OpenAPI body example.
EXAMPLE_AREA: dict[str, Any] = {
    "type": "Polygon",
    "coordinates": [[[113.105, 23.005], [113.115, 23.005], [113.115, 23.012], [113.105, 23.012], [113.105, 23.005]]],
}


def check_version(version: str) -> str:
    """``head``, ``base`` or the version number (ASCII digits, 1 … 2⁶³−1) of ``version``;
    :class:`ValidationError` otherwise (:func:`twin.service._params.parse_version`)."""
    return parse_version(version)


class Twins:
    """The twins one service process answers from.

    Parameters
    ----------
    twin_root : twin directory (``None``: :func:`twin.io.default_twin_dir`); loaded on first use.
    store : the shared store holding the partition versions.
    base : an already loaded base twin (tests).
    keep_versions : how many built versions to keep.
    """

    def __init__(self, twin_root: Path | None, store: Store, base: Twin | None = None, *,
                 keep_versions: int = 4) -> None:
        self.twin_root = twin_root
        self.store = store
        self.base = base
        self.keep_versions = keep_versions
        self.ready = False
        self.built: dict[int, Twin] = {}
        self._lock = threading.Lock()
        self._build_lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        """Whether the base twin is in memory."""
        return self.base is not None

    def base_twin(self) -> Twin:
        """The base twin (loaded once; its partition registered as the store's base version)."""
        if self.base is None or not self.ready:
            with self._lock:
                if self.base is None:
                    self.base = load(self.twin_root)
                if not self.ready:
                    ensure_base(self.store, self.base)
                    self.ready = True
        return self.base

    def at(self, version: str | None) -> tuple[Twin, int]:
        """The twin as of ``version`` (a number, ``base`` or ``head``; default head) and the resolved version id."""
        base = self.base_twin()
        v = parse_version(version)
        default = v == "head"
        vid = resolve_version(self.store, v)
        if vid == BASE_VERSION:
            return base, vid
        hit = self.built.get(vid)
        if hit is not None:
            return hit, vid
        if default and not self._build_lock.acquire(blocking=False):
            older = [x for x in self.built if x < vid]
            return (self.built[max(older)], max(older)) if older else (base, BASE_VERSION)
        if not default:
            self._build_lock.acquire()
        try:
            return self._build(vid), vid
        finally:
            self._build_lock.release()

    def _build(self, vid: int) -> Twin:
        hit = self.built.get(vid)
        if hit is not None:
            return hit
        base = self.base_twin()
        t = checkout(base, vid, store=self.store)
        _build_indexes(t)
        self.built[vid] = t
        for old in sorted(self.built)[: max(0, len(self.built) - self.keep_versions)]:
            del self.built[old]
        for k in [k for k in base.cache if isinstance(k, tuple) and k[:1] == ("checkout",)]:
            if k[-1] not in self.built:
                base.cache.pop(k, None)
        return t

    def warm(self) -> None:
        """Load the twin and build the query indexes of the head version before the first request."""
        t, _ = self.at(None)
        _build_indexes(t)
        partition_from_twin(self.base_twin())  # cached: edits and diffs start from it


def _build_indexes(t: Twin) -> None:
    summarize_area(t, EXAMPLE_AREA, role=DISTRICT, by="grid")  # builds the point and partition indexes
    grid_counts(t)
