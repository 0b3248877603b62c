"""What one service app holds: the store, the access policy, the per-version twins and the incident tables."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import pandas as pd
from fastapi import Request

from twin.access.policy import AccessPolicy
from twin.incidents.catalogue import load_catalogue
from twin.incidents.store import IncidentStore
from twin.service._twins import Twins
from twin.store.sql import Store

__all__ = ["IncidentTables", "ServiceState", "service"]


@dataclass(frozen=True)
class IncidentTables:
    """The incident store over the service's store, and the item-type catalogue."""

    istore: IncidentStore
    catalogue: pd.DataFrame


@dataclass
class ServiceState:
    """Per-app state (``app.state.svc``).

    ``hierarchy_cache`` maps (level, version, filters, caller scope) to an encoded FeatureCollection and its
    feature count.
    """

    store: Store
    policy: AccessPolicy
    twins: Twins
    hierarchy_cache: dict[tuple[object, ...], tuple[bytes, int]] = field(default_factory=dict)
    _incidents: IncidentTables | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def incidents(self) -> IncidentTables:
        """The incident tables, opened on first use."""
        if self._incidents is None:
            with self._lock:
                if self._incidents is None:
                    self._incidents = IncidentTables(IncidentStore(self.store), load_catalogue())
        return self._incidents


def service(request: Request) -> ServiceState:
    """The state of the app serving ``request``."""
    state: ServiceState = request.app.state.svc
    return state
