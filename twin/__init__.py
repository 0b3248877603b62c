"""Chancheng Twin: the spatial core (no UI imports).

>>> import twin
>>> t = twin.load()                      # the default twin, built by `twin build`
>>> t.manifest["counts"]["residents"]
1330000
"""

from twin.errors import (
    ConflictError,
    CRSError,
    IngestError,
    NotFoundError,
    OutsideDistrictError,
    PartitionError,
    PermissionDenied,
    TwinError,
    TwinNotBuiltError,
    ValidationError,
)
from twin.model import Twin, load
from twin.partition.validate import validate
from twin.query.areas import parse_area
from twin.query.overlays import overlay
from twin.query.summary import records_in_area, summarize_area
from twin.synth.build import build_twin

__all__ = [
    "Twin",
    "load",
    "build_twin",
    "validate",
    "summarize_area",
    "records_in_area",
    "overlay",
    "parse_area",
    "TwinError",
    "ValidationError",
    "CRSError",
    "OutsideDistrictError",
    "IngestError",
    "PartitionError",
    "ConflictError",
    "NotFoundError",
    "PermissionDenied",
    "TwinNotBuiltError",
]

# incidents: the closed loop, four-level dispatch, statistics, credit-based inspections
from twin.errors import InvalidTransition  # noqa: E402
from twin.incidents.catalogue import load_catalogue  # noqa: E402
from twin.incidents.inspections import inspection_plan  # noqa: E402
from twin.incidents.stats import incident_stats, incidents_per_grid  # noqa: E402
from twin.incidents.store import IncidentStore, open_incident_store, report_incident  # noqa: E402

__all__ += ["InvalidTransition", "load_catalogue", "incident_stats", "incidents_per_grid", "IncidentStore",
            "open_incident_store", "report_incident", "inspection_plan"]

# grids: partition rules, boundary edits, versions (time travel), balance, re-partition, grid layers in/out
from twin.ingest.grids import import_grids  # noqa: E402
from twin.partition.balance import balance_report  # noqa: E402
from twin.partition.edits import merge_grids, move_area, move_cells, redraw_grid, split_grid  # noqa: E402
from twin.partition.export import export_grids  # noqa: E402
from twin.partition.model import Partition, check_partition, partition_from_twin  # noqa: E402
from twin.partition.rebalance import rebalance  # noqa: E402
from twin.partition.versions import checkout, commit, diff_versions, list_versions, rollback, undo  # noqa: E402

__all__ += ["balance_report", "move_cells", "move_area", "split_grid", "merge_grids", "redraw_grid", "export_grids",
            "import_grids", "Partition", "check_partition", "partition_from_twin", "rebalance", "checkout", "commit",
            "diff_versions", "list_versions", "rollback", "undo"]
