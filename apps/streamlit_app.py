"""一张图 · The "one map" of Chancheng District: layers, lasso drawing, area summaries, grid dossiers, live
incidents and workers, and the command-centre screen (``?screen=1``).

Run: ``make app`` (or ``.venv/bin/streamlit run apps/streamlit_app.py``). Thin wiring only:
widgets → :mod:`twin` → :mod:`layers` → the ``deck_map`` component (apps/components/deckmap). This script is the
app's entry: it names the pages (``st.navigation``) and is the "One map" page itself; everything shown follows the
store's head partition version (:func:`apps.state.head_twin`).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import streamlit as st

_T_START = time.perf_counter()

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import twin  # noqa: E402
from apps import edit, live, live_feed, panels, screen, state  # noqa: E402
from apps.components.deckmap import VendorMissingError, deck_map, ensure_vendor  # noqa: E402
from layers import boundaries, colors, hexagons  # noqa: E402
from layers import buildings as building_layers  # noqa: E402
from layers import fabric as fabric_layers  # noqa: E402  (issue 15: offline city base map)
from layers.incidents import category_label  # noqa: E402
from layers.serialize import layer_to_json  # noqa: E402
from twin.encoding import to_jsonable  # noqa: E402
from twin.query.areas import parse_area  # noqa: E402
from twin.query.dossier import grid_dossier  # noqa: E402

BASEMAP_URL = os.environ.get("TWIN_BASEMAP_URL", "https://tile.openstreetmap.org/{z}/{x}/{y}.png")
MAP_HEIGHT = 860
FLY_ZOOM = {"town": 12.6, "community": 14.2, "grid": 15.3}
MAX_TOUCHED_CELLS = 20_000
PAGE_TITLE = "One map 一张图"


def _is_screen() -> bool:
    return str(st.query_params.get("screen", "")).lower() in ("1", "true", "yes")

# --- events from the map (handled before the map is drawn, so it shows their result) -------------------------

def _set_area(geojson: dict[str, Any], title: str, source: str) -> None:
    ss = st.session_state
    ss.area = {"geojson": geojson, "title": title, "source": source}
    if source != "draw":  # a searched / uploaded area replaces the drawn one: its outline leaves the map
        ss.clear_seq = ss.get("clear_seq", 0) + 1


def _handle(t: twin.Twin, ectx: edit.EditContext | None, ev: dict[str, Any]) -> None:
    """One map event: in edit mode a click or drawing goes to edit mode; else a drawing is the area, a click
    opens the grid's dossier, a view change moves the buildings' bbox, clear forgets the area."""
    ss = st.session_state
    kind = ev.get("event")
    if ectx is not None and kind in ("draw", "click", "clear", "brush"):
        edit.handle_map_event(ectx, ev)
        return
    if kind == "draw" and ev.get("geojson"):
        ss.draw_count += 1
        _set_area(ev["geojson"], f"Drawn area #{ss.draw_count}", "draw")
    elif kind == "click" and ev.get("layer") == "incidents" and (ev.get("properties") or {}).get("id"):
        ss.incident = int(ev["properties"]["id"])
        ss.inc_id = ss.incident  # the Incidents page opens it too
    elif kind == "click":
        code = str((ev.get("properties") or {}).get("grid_code", "") or state.grid_at(t, ev.get("coordinate")))
        if code:
            ss.dossier = code
    elif kind == "view" and ev.get("bbox"):
        w, s, e, n = ev["bbox"]
        dx, dy = (e - w) * 0.5, (n - s) * 0.5
        ss.bbox = (w - dx, s - dy, e + dx, n + dy)
    elif kind == "clear":
        ss.area = None


def _on_upload(t: twin.Twin, upload: Any) -> None:
    """A new uploaded GeoJSON becomes the area (and the map flies to it); a bad file's error stays under the
    uploader until another file is chosen."""
    ss = st.session_state
    if upload is None:
        ss.upload_error = None
        return
    if upload.file_id != ss.upload_id:
        ss.upload_id, ss.upload_error = upload.file_id, None
        try:
            parsed = parse_area(upload.getvalue(), district=t.district)
            _set_area(to_jsonable(parsed.geometry), f"Uploaded: {upload.name}", "upload")
            b = parsed.geometry.bounds
            ss.fly = {"seq": time.time(), "longitude": (b[0] + b[2]) / 2, "latitude": (b[1] + b[3]) / 2, "zoom": 13.5}
        except twin.TwinError as e:
            ss.upload_error = f"{upload.name}: {e}"
    if ss.get("upload_error"):
        st.error(ss.upload_error)


def _pick(t: twin.Twin, level: str, code: str, label: str) -> None:
    """Query a town, community or grid as the area and fly to it (a grid also opens its dossier)."""
    ss = st.session_state
    geom = state.unit_geometry(t, level, code)
    _set_area(to_jsonable(geom), label, level)
    c = geom.centroid
    ss.fly = {"seq": time.time(), "longitude": c.x, "latitude": c.y, "zoom": FLY_ZOOM[level], "pitch": 0}
    if level == "grid":
        ss.dossier = code


def _on_search(t: twin.Twin, key: str) -> None:
    choice = st.session_state.get("search")
    if choice:
        level, code = state.search_options(t, key)[choice]
        _pick(t, level, code, choice)


# --- the page ---------------------------------------------------------------------------------------------------

def explore_page() -> None:
    """The one map: sidebar widgets, the map (its live layers refresh by themselves), the summary / dossier panel."""
    if _is_screen():
        screen.screen_page()
        return
    st.markdown("<style>.block-container{padding-top:3.6rem;padding-bottom:0;max-width:100%}"
                "[data-testid='stMetricValue']{font-size:1.55rem}</style>", unsafe_allow_html=True)
    try:
        ensure_vendor()
        base = state.get_twin()
        head = state.head_twin(base)
    except (twin.TwinError, VendorMissingError) as e:
        st.error(str(e))
        st.stop()
    t = head.twin
    KEY = state.twin_key(t)
    state.warm_dossier(t, KEY)
    ss = st.session_state
    for k, v in {"area": None, "seen_seq": None, "fly": None, "dossier": None, "bbox": None, "draw_count": 0,
                 "upload_id": None, "upload_error": None, "clear_seq": 0, "incident": None}.items():
        ss.setdefault(k, v)

    # edit mode (apps/edit/): its own map events, layers and panel; it works on the stored versions itself
    ectx: edit.EditContext | None = None
    if str(ss.get("mode", "")).startswith("Edit"):
        try:
            ectx = edit.context(base, state.twin_key(base))
        except twin.TwinError as e:
            st.error(f"Edit mode unavailable: {e}")

    ev = ss.get("map")
    if isinstance(ev, dict) and ev.get("seq") != ss.seen_seq:
        ss.seen_seq = ev.get("seq")
        if ss.dossier and ss.dossier not in set(t.grids["grid_code"].astype(str)):
            ss.dossier = None
        _handle(t, ectx, ev)
    if ss.dossier and ss.dossier not in set(t.grids["grid_code"].astype(str)):
        ss.dossier = None  # a grid of an older version

    # --- sidebar: widgets ------------------------------------------------------------------------------------------

    with st.sidebar:
        st.markdown("## 禅城区 · 一张图")
        st.caption(f"Synthetic twin · {t.manifest['counts']['residents']:,} residents · {head.label} · "
                   f"as of {t.as_of}")
        st.radio("Mode", ["Explore 浏览", "Edit grids 网格调整"], horizontal=True, key="mode")
        st.selectbox("Find a grid / community / town (name or code)", list(state.search_options(t, KEY)), index=None,
                     placeholder="e.g. 澜石 or 440604010001001", key="search", on_change=_on_search,
                     args=(t, KEY))
        upload = st.file_uploader("Upload an area (GeoJSON, WGS84)", type=["geojson", "json"], key="upload")
        _on_upload(t, upload)  # its error shows right here, under the uploader
        role_name = st.radio("Role", ["district 区级", "analyst 分析员 (suppressed)"], horizontal=True, key="role")
        role_key = "district" if role_name.startswith("district") else "analyst"
        role = state.ROLES[role_key]
        st.markdown("### Layers")
        show_bounds = st.checkbox("Boundaries: towns / communities / grids", True, key="lyr_bounds")
        show_labels = st.checkbox("Names 名称", True, key="lyr_labels")
        show_hex = st.checkbox("Hexagon overlay (H3)", True, key="lyr_hex")
        overlay = st.selectbox("Overlay", list(state.OVERLAY_CATEGORIES), key="overlay",
                               format_func=lambda k: state.OVERLAY_CATEGORIES[k][0])
        res_choice = st.select_slider("Hexagon resolution", ["auto", "8", "9", "10"], value="auto", key="res")
        show_metric = st.checkbox("Colour grids by a metric", False, key="lyr_metric")
        metric = st.selectbox("Grid metric", [*state.GRID_METRICS, "services_due"], key="metric",
                              format_func=lambda k: state.GRID_METRICS.get(k, "Services due this month 无感服务"))
        show_buildings = st.checkbox(f"3D buildings (zoom ≥ {building_layers.MIN_ZOOM})", True, key="lyr_buildings")
        show_business = st.checkbox("Businesses by credit colour", False, key="lyr_business")
        show_incidents = st.checkbox("Open incidents 在办事件 (live)", True, key="lyr_incidents")
        show_workers = st.checkbox("Grid workers 网格员 (live status)", True, key="lyr_workers")
        show_changes = st.checkbox("Record changes 台账变更 (live)", True, key="lyr_changes")
        show_cameras = st.checkbox("Cameras 视频", False, key="lyr_cameras")
        show_basemap = st.checkbox("Web basemap (needs internet)", False, key="lyr_basemap",
                                   help="OpenStreetMap tiles. Offline (as on this server) the map says the tiles are "
                                        "unreachable and shows the district outline only.")
        if st.button("Clear area and dossier", key="clear"):
            ss.area, ss.dossier, ss.incident = None, None, None
            ss.clear_seq += 1

    # --- the area query -------------------------------------------------------------------------------------------

    summary, query_ms, query_error = None, 0.0, None
    if ss.area is not None and ectx is None:
        t0 = time.perf_counter()
        try:
            summary = state.summary_of(t, ss.area["geojson"], role)
        except twin.TwinError as e:
            query_error = str(e)
        query_ms = (time.perf_counter() - t0) * 1000


    # --- layers (bottom → top); the live ones (incidents, workers) are added by the map fragment ---------------
    below: list[tuple[str, str]] = [state.static_layer(t, KEY, "district-fill")]
    above: list[tuple[str, str]] = []
    zoom_ranges: dict[str, tuple[float, float]] = {}
    legends: list[dict[str, Any]] = []
    below += fabric_layers.base_layers_json(t)  # streets, water, parks, blocks: first above the district fill
    zoom_ranges.update(fabric_layers.ZOOM_RANGES)
    if show_metric:
        lyr, legend = (live_feed.services_due_layer(t, state.store_url(t), role) if metric == "services_due"
                       else state.grid_metric_layer(t, KEY, metric))
        below.append(lyr)
        legends.append(dict(legend, layers=["grid-metric"]))
    if show_hex:
        hex_json, ranges, legend = state.hex_layers(t, KEY, overlay, res_choice, role_key)
        below += hex_json
        zoom_ranges.update(ranges)
        legends.append(dict(legend, layers=[i for i, _ in hex_json]))
    if summary is not None and 0 < len(summary.cells) <= MAX_TOUCHED_CELLS:
        below.append(("touched-cells", layer_to_json(hexagons.touched_cells_layer(summary.cells))))
    if show_bounds:
        for name in ("boundary-grid", "boundary-community", "boundary-town"):
            below.append(state.static_layer(t, KEY, name))
        zoom_ranges["boundary-grid"] = (12.0, 24.0)
        legends.append(_boundary_legend())
    if show_buildings and ss.bbox is not None:
        below.append(state.buildings_layer_json(t, ss.bbox))
        zoom_ranges["buildings-3d"] = (building_layers.MIN_ZOOM, 24.0)
        legends.append({"title": "Buildings by use", "layers": ["buildings-3d"], "rows": [
            {"color": colors.rgba_to_css(c), "label": u} for u, c in colors.USE_COLORS.items()]})
    if show_business:
        below.append(state.static_layer(t, KEY, "businesses"))
        zoom_ranges["businesses"] = (12.5, 24.0)
        legends.append({"title": "Businesses (worst credit colour)", "layers": ["businesses"], "rows": [
            {"color": colors.rgba_to_css(c), "label": k} for k, c in colors.CREDIT_COLORS.items()]})
    if show_cameras:
        below += [state.static_layer(t, KEY, "cameras-agg"), state.static_layer(t, KEY, "cameras")]
        zoom_ranges["cameras-agg"] = (0.0, live.POINTS_MIN_ZOOM)
        zoom_ranges["cameras"] = (live.POINTS_MIN_ZOOM, 24.0)
        legends.append(_camera_legend())
    if ss.area is not None:
        above.append(("query-area", layer_to_json(boundaries.area_layer(ss.area["geojson"]))))
    if show_labels:
        above += _label_layers(t, KEY, zoom_ranges)

    # --- page -------------------------------------------------------------------------------------------------
    col_map, col_panel = st.columns([0.64, 0.36], gap="small")
    # The panel is filled first: its deltas reach the browser before the map's, so the summary is on screen while
    # the map iframe is still drawing its next frame.
    with col_panel:
        if ectx is not None:
            edit.render(ectx)
        else:
            _panel(t, head, summary, query_ms, query_error)

    b = t.district.bounds
    view = {"longitude": (b[0] + b[2]) / 2, "latitude": (b[1] + b[3]) / 2, "zoom": 11.4, "pitch": 0, "bearing": 0}
    map_args = {"key": "map", "height": MAP_HEIGHT, "view": view, "fly_to": ss.fly,
                "loaded_bbox": ss.bbox if show_buildings else None,
                "view_events_min_zoom": building_layers.MIN_ZOOM if show_buildings else None,
                "basemap_url": BASEMAP_URL if show_basemap else None, "clear_drawn_seq": ss.clear_seq,
                # folded until asked for: open, the legend covers a third of this map and the area one wants to lasso
                "legend_collapsed": True}
    with col_map:
        if ectx is not None:
            layer_list, zr, lg = edit.map_layers(ectx)
            deck_map(layer_list, zoom_ranges=zr, legends=lg, brush=edit.brush_args(ectx), click_layers=[],
                     **{**map_args, "legend_collapsed": False})  # editors read grids by the deviation legend
        else:
            _live_map(t, head.label, below, above, zoom_ranges, legends, map_args,
                      incidents=show_incidents, workers=show_workers, changes=show_changes)

    if os.environ.get("TWIN_APP_TIMING"):
        print(f"[app] {time.time() * 1000:.0f} script run {1000 * (time.perf_counter() - _T_START):.0f} ms "
              f"(query {query_ms:.0f} ms, {len(below) + len(above)} static layers)", file=sys.stderr, flush=True)


def _boundary_legend() -> dict[str, Any]:
    return {"title": "Boundaries (synthetic)", "layers": ["boundary-town", "boundary-community", "boundary-grid"],
            "rows": [{"kind": "line", "color": colors.rgba_to_css(colors.LEVEL_COLORS[lv][0]), "label": lbl}
                     for lv, lbl in (("district", "District 区"), ("town", "Town 镇街"),
                                     ("community", "Community 村居"), ("grid", "Grid 网格 (zoom ≥ 12)"))]}


def _camera_legend() -> dict[str, Any]:
    return {"title": "Cameras 视频", "layers": ["cameras-agg", "cameras"], "rows": [
        {"color": "rgba(186,104,255,0.6)", "label": f"count per hexagon (zoom < {live.POINTS_MIN_ZOOM:g})"},
        {"color": "rgba(186,104,255,0.9)", "label": "camera"}]}


def _label_layers(t: twin.Twin, key: str, zoom_ranges: dict[str, tuple[float, float]]) -> list[tuple[str, str]]:
    zoom_ranges["labels-town"] = (0.0, 13.0)
    zoom_ranges["labels-community"] = (12.8, 15.0)
    zoom_ranges["labels-grid"] = (15.0, 24.0)
    return [state.static_layer(t, key, f"labels-{lv}") for lv in ("town", "community", "grid")]


def _live_map(t: twin.Twin, version_label: str, below: list[tuple[str, str]], above: list[tuple[str, str]],
              zoom_ranges: dict[str, tuple[float, float]], legends: list[dict[str, Any]], map_args: dict[str, Any],
              *, incidents: bool, workers: bool, changes: bool = True) -> None:
    """The map with its live layers: incidents and workers are ``"@live"`` placeholders that the browser fills
    from the live feed (:mod:`apps.live_feed`, polled every second), so they move without a rerun and a rerun
    (a click, a drawing) re-sends no live data. A click picks only the incident dots (the grid comes from the
    clicked coordinate), which keeps it fast on a software-rendered screen."""
    try:
        feed = live_feed.live_feed(state.store_url(t))
    except twin.TwinError as e:
        st.warning(f"Live layers unavailable: {e}")
        feed = None
    layers, ranges = list(below), dict(zoom_ranges)
    if feed is not None:
        layers += live_feed.live_placeholders(incidents=incidents, workers=workers, changes=changes)
        ranges.update(live.LIVE_ZOOM_RANGES | live_feed.CHANGE_ZOOM_RANGES)
        st.caption(f"{feed.latest.get('status', '● live')} · **{version_label}** · live layers refresh every "
                   f"{live_feed.FEED_EVERY_S:g} s without a rerun")
    deck_map(layers + above, zoom_ranges=ranges, legends=legends, click_layers=list(live.LIVE_LAYER_IDS["incidents"]),
             live={"url": feed.ref, "every_ms": int(1000 * live_feed.FEED_EVERY_S)} if feed is not None else None,
             **map_args)


def _panel(t: twin.Twin, head: state.HeadTwin, summary: Any, query_ms: float, query_error: str | None) -> None:
    """The side panel of Explore: the clicked incident, the area summary, the grid dossier, or a hint."""
    ss = st.session_state
    if query_error:
        st.error(query_error)
    if ss.incident:
        _incident_card(t, int(ss.incident))
    if summary is not None:
        panels.summary_panel(summary, title=ss.area["title"], geojson=ss.area["geojson"], ms=query_ms,
                             file_stem=f"area_{state.area_id(ss.area['geojson'])}")
    if ss.dossier:
        try:
            d = grid_dossier(t, ss.dossier)
            nb = state.grid_neighbours(t, ss.dossier)
            names = t.grids.set_index("grid_code")["grid_name"]
            status = live.incident_store(state.store_url(t)).worker_status()
            panels.dossier_panel(d, [(c, str(names.get(c, c))) for c in nb], version=head.label,
                                 live_status=dict(zip(status["worker_id"].astype(str), status["status"].astype(str))))
        except twin.TwinError as e:
            st.error(str(e))
    if summary is None and not ss.dossier and not query_error and not ss.incident:
        st.subheader("Draw an area 圈选")
        st.markdown("Use **◯ Lasso** (press, drag around, release) or **⬠ Polygon** (click corners, double-click) "
                    "on the map, pick a unit in the search box, or upload a GeoJSON. Click a grid for its dossier, "
                    "an incident to open it.")
        c = t.manifest["counts"]
        st.caption(f"District: {c['residents']:,} residents · {c['dwellings']:,} dwellings · "
                   f"{c['businesses']:,} businesses · {c['workers']} grid workers · {c['cameras']:,} cameras · "
                   f"{head.label}")


def _incident_card(t: twin.Twin, incident_id: int) -> None:
    try:
        inc = live.incident_store(state.store_url(t)).get(incident_id)
    except twin.TwinError as e:
        st.error(str(e))
        return
    cat = live.catalogue()
    st.subheader(f"Incident 事件 #{inc.id} · {category_label(inc.category, cat)}")
    st.markdown(f"state **{inc.state}** · level **{inc.level or '-'}** · grid `{inc.grid_code or '-'}` · worker "
                f"{inc.assignee or '-'} · reported {inc.reported_at:%Y-%m-%d %H:%M} · deadline "
                f"{inc.deadline.strftime('%Y-%m-%d %H:%M') if inc.deadline else '-'}")
    st.page_link(INCIDENTS_PAGE, label="Act on it in Incidents 事件 →", icon="🚨")


INCIDENTS_PAGE = st.Page("pages/1_Incidents.py", title="Incidents 事件", icon="🚨", url_path="Incidents")
pages = [st.Page(explore_page, title=PAGE_TITLE, icon="🗺️", default=True), INCIDENTS_PAGE,
         st.Page("pages/2_Records.py", title="Records 台账", icon="📒", url_path="Records"),
         st.Page("pages/3_Services.py", title="Services 无感服务", icon="🎁", url_path="Services")]
st.set_page_config(page_title="Chancheng one map 禅城一张图", page_icon="🗺️", layout="wide",
                   initial_sidebar_state="collapsed" if _is_screen() else "expanded")
st.navigation(pages, position="hidden" if _is_screen() else "sidebar").run()
