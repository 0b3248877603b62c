"""No-application services (无感服务): declared rules evaluated over the live twin.

>>> from twin.services import run_services, snapshot_view      # doctest: +SKIP
>>> run = run_services(snapshot_view(t), "2026-12")            # doctest: +SKIP
>>> run.counts()                                               # doctest: +SKIP

* :mod:`twin.services.config` — the declared services (ages, flags, longevity tiers) as configuration.
* :mod:`twin.services.view` — the :class:`LiveView` protocol the engine reads (and a small in-memory one).
* :mod:`twin.services.rules` — who qualifies on a day range (pure, vectorised).
* :mod:`twin.services.engine` — a month or a date range, exact at every event date.
* :mod:`twin.services.worklists` — scoped, audited work lists, counts per grid, CSV/XLSX.
* :mod:`twin.services.status` — identified → notified → delivered / declined, in the store.
"""

from twin.services.config import AgeRule, FlagRule, Service, default_services, services_from_toml
from twin.services.engine import Period, ServiceRun, parse_period, run_services
from twin.services.status import ServiceStatusStore, StatusRecord
from twin.services.view import FrameView, LiveView, located_persons, snapshot_view
from twin.services.worklists import counts_by_grid, export_work_list, synthetic_name, work_list

__all__ = [
    "AgeRule", "FlagRule", "Service", "default_services", "services_from_toml",
    "Period", "ServiceRun", "parse_period", "run_services",
    "ServiceStatusStore", "StatusRecord",
    "FrameView", "LiveView", "located_persons", "snapshot_view",
    "counts_by_grid", "export_work_list", "synthetic_name", "work_list",
]
