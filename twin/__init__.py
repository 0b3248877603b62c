"""Chancheng Twin: the spatial core (no UI imports).

>>> import twin
>>> t = twin.load()                      # the default twin, built by `twin build`
>>> t.manifest["counts"]["residents"]
1330000

Subpackages by job: :mod:`twin.synth` (synthetic generation), :mod:`twin.ingest` (real data in), :mod:`twin.query`
(area queries), :mod:`twin.partition` (grids: edits, balance, re-partition, versions), :mod:`twin.access` (roles,
the privacy policy, keys, audit), :mod:`twin.store`, :mod:`twin.incidents`, :mod:`twin.service` (HTTP),
:mod:`twin.cli`. This module re-exports the public functions and result types.
"""

from twin.access.policy import MAX_PAGE_SIZE, AccessPolicy
from twin.access.roles import Role, make_role
from twin.errors import (
    ConflictError,
    CRSError,
    IngestError,
    InvalidTransition,
    NotFoundError,
    OutsideDistrictError,
    PartitionError,
    PermissionDenied,
    TwinError,
    TwinNotBuiltError,
    ValidationError,
)
from twin.incidents.catalogue import load_catalogue
from twin.incidents.ingest import import_incidents
from twin.incidents.inspections import inspection_plan
from twin.incidents.lifecycle import Incident, Transition
from twin.incidents.stats import incident_stats, incidents_per_grid
from twin.incidents.store import IncidentStore, open_incident_store, report_incident
from twin.ingest.grids import ImportResult, import_grids
from twin.model import Twin, load
from twin.partition.balance import BalanceReport, EditEffect, balance_report, edit_effect
from twin.partition.edit_ops import EditOp, EditResult, apply_edit
from twin.partition.edits import merge_grids, move_area, move_cells, redraw_grid, split_grid
from twin.partition.export import export_grids
from twin.partition.model import Partition, check_partition, neighbour_grids, partition_from_twin
from twin.partition.rebalance import RebalanceResult, rebalance
from twin.partition.validate import ValidationReport, validate
from twin.partition.versions import (
    VersionDiff,
    VersionInfo,
    checkout,
    commit,
    diff_versions,
    list_versions,
    rollback,
    undo,
)
from twin.query.areas import ParsedArea, parse_area
from twin.query.overlays import overlay
from twin.query.records import RecordPage, records_in_area
from twin.query.results import AreaSummary
from twin.query.summary import summarize_area
from twin.synth.build import build_twin

__all__ = [
    # the twin
    "Twin", "load", "build_twin", "validate", "ValidationReport",
    # area queries and access
    "summarize_area", "records_in_area", "overlay", "parse_area", "AreaSummary", "RecordPage", "ParsedArea",
    "Role", "make_role", "AccessPolicy", "MAX_PAGE_SIZE",
    # grids: partition rules, edits, balance, re-partition, versions, grid layers in/out
    "Partition", "check_partition", "partition_from_twin", "neighbour_grids", "move_cells", "move_area",
    "split_grid", "merge_grids", "redraw_grid", "EditOp", "EditResult", "apply_edit", "balance_report",
    "BalanceReport", "edit_effect", "EditEffect", "rebalance", "RebalanceResult", "checkout", "commit",
    "diff_versions", "list_versions", "rollback", "undo", "VersionDiff", "VersionInfo", "export_grids",
    "import_grids", "ImportResult",
    # incidents
    "IncidentStore", "open_incident_store", "report_incident", "Incident", "Transition", "load_catalogue",
    "import_incidents", "incident_stats", "incidents_per_grid", "inspection_plan",
    # errors
    "TwinError", "ValidationError", "CRSError", "OutsideDistrictError", "IngestError", "PartitionError",
    "ConflictError", "NotFoundError", "PermissionDenied", "TwinNotBuiltError", "InvalidTransition",
]
