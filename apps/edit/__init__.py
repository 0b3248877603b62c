"""Edit mode of the map app (网格调整): pick a grid, preview an edit with its balance, commit it as a version,
browse versions (time travel), undo, and propose a balanced re-partition.

Thin wiring only: edits go through the one edit dispatch :func:`twin.partition.edit_ops.apply_edit`; versions,
balance and re-partition come from :mod:`twin.partition`; layers from :mod:`layers.edit`. One job per module:

- :mod:`apps.edit.data` — cached per-version data and the per-run :class:`EditContext`;
- :mod:`apps.edit.actions` — the session-state machine: button callbacks (preview, commit, undo, …);
- :mod:`apps.edit.mapview` — map events and the layers of edit mode;
- :mod:`apps.edit.brush` — the brush: paint cells of neighbouring grids into the selected grid (one version);
- :mod:`apps.edit.panel` and :mod:`apps.edit.preview` — the widgets of the side panel.

Session state (all keys start with ``ed_``): ``ed_base`` the version the editor started from (the commit's
``base_version``), ``ed_version`` the version viewed, ``ed_grid`` the selected grid, ``ed_drawn`` the last
drawn polygon (GeoJSON geometry, WGS84), ``ed_preview`` the proposed edit, ``ed_brush`` the painted cells and
their target, ``ed_diff_*`` the compared versions (undo/redo read their chain from the store), ``ed_error`` (with the failing
control in ``ed_error_at``) / ``ed_conflict`` / ``ed_notice`` messages. The store is :func:`twin.store.sql.open_store` for the twin (``$TWIN_DATABASE_URL`` wins).
"""

from apps.edit.brush import brush_args
from apps.edit.data import EditContext, ViewData, context
from apps.edit.mapview import handle_map_event, map_layers
from apps.edit.panel import TARGET_GRIDS, render

__all__ = ["EditContext", "ViewData", "brush_args", "context", "handle_map_event", "map_layers", "render",
           "TARGET_GRIDS"]
