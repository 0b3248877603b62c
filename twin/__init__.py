"""Chancheng Twin: the spatial core (no UI imports).

>>> import twin
>>> t = twin.load()                      # the default twin, built by `twin build`
>>> t.manifest["counts"]["residents"]
1330000
"""

from twin.areas import parse_area
from twin.build import build_twin
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
from twin.overlays import overlay
from twin.query import records_in_area, summarize_area
from twin.validate import validate

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
from twin.incident_catalogue import load_catalogue  # noqa: E402
from twin.incident_stats import incident_stats, incidents_per_grid  # noqa: E402
from twin.incident_store import IncidentStore, open_incident_store, report_incident  # noqa: E402
from twin.inspections import inspection_plan  # noqa: E402

__all__ += ["InvalidTransition", "load_catalogue", "incident_stats", "incidents_per_grid", "IncidentStore",
            "open_incident_store", "report_incident", "inspection_plan"]

# grids: partition rules, boundary edits, versions (time travel), balance, re-partition, grid layers in/out
from twin.balance import balance_report  # noqa: E402
from twin.edits import merge_grids, move_area, move_cells, redraw_grid, split_grid  # noqa: E402
from twin.grid_io import export_grids, import_grids  # noqa: E402
from twin.partition import Partition, check_partition, partition_from_twin  # noqa: E402
from twin.rebalance import rebalance  # noqa: E402
from twin.versions import checkout, commit, diff_versions, list_versions, rollback, undo  # noqa: E402

__all__ += ["balance_report", "move_cells", "move_area", "split_grid", "merge_grids", "redraw_grid", "export_grids",
            "import_grids", "Partition", "check_partition", "partition_from_twin", "rebalance", "checkout", "commit",
            "diff_versions", "list_versions", "rollback", "undo"]
