"""指挥大屏 · The command-centre screen (``/?screen=1``): one full-bleed dark map, KPI tiles, an alarm strip and a
clock, live by itself: the browser polls the live feed (:mod:`apps.live_feed`) every second; no Streamlit rerun.

No Streamlit chrome (header, toolbar, sidebar and page list hidden: CSS here, ``client.toolbarMode = "viewer"`` in
``.streamlit/config.toml``, ``st.navigation(position="hidden")``). Layers are aggregated by zoom so the district view
stays readable: workers and cameras as counts per H3 res-8 hexagon until zoom 14, then one dot each; grid outlines
from zoom 12; labels by level. The legend (collapsible, only visible layers) switches layers on and off in the browser.
Nothing here needs a web basemap.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import streamlit as st

import twin
from apps import live, live_feed, state
from apps.components.deckmap import VendorMissingError, deck_map, ensure_vendor
from layers import fabric as fabric_layers

__all__ = ["SCREEN_CSS", "screen_page", "screen_layers"]

#: hides every piece of Streamlit chrome and makes the page one dark, unscrolled map
SCREEN_CSS = """<style>
header[data-testid="stHeader"], [data-testid="stToolbar"], [data-testid="stDecoration"], [data-testid="stSidebar"],
[data-testid="stSidebarCollapsedControl"], [data-testid="stStatusWidget"], #MainMenu, footer,
[data-testid="stAppDeployButton"] { display: none !important; }
html, body, .stApp, [data-testid="stAppViewContainer"], [data-testid="stMain"] { background: #0b1426 !important;
  overflow: hidden !important; }
.block-container, [data-testid="stMainBlockContainer"] { padding: 0 !important; max-width: 100% !important; }
[data-testid="stMainBlockContainer"] [data-testid="stVerticalBlock"] { gap: 0 !important; }
[data-testid="stElementContainer"]:has(> .stMarkdown style), [data-testid="stElementContainer"]:has(style) {
  display: none; }
iframe[title*="deckmap"] { display: block; border: 0; }
</style>"""


def screen_layers(t: twin.Twin, key: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]],
                                                   dict[str, tuple[float, float]], list[dict[str, Any]], list[str]]:
    """Static layers of the screen: (below the live layers, above them, zoom ranges, legends, layers off at start)."""
    below = [state.static_layer(t, key, "district-fill")]
    below += fabric_layers.base_layers_json(t)  # the city fabric (streets, water, parks): the offline base map
    hex_json, ranges, legend = state.hex_layers(t, key, "residents", "auto", "district")
    below += hex_json
    zoom = dict(ranges, **fabric_layers.ZOOM_RANGES)
    legends: list[dict[str, Any]] = [dict(legend, layers=[i for i, _ in hex_json])]
    below += [state.static_layer(t, key, n) for n in ("boundary-grid", "boundary-community", "boundary-town")]
    zoom["boundary-grid"] = (12.0, 24.0)
    below += [state.static_layer(t, key, "cameras-agg"), state.static_layer(t, key, "cameras")]
    zoom["cameras-agg"] = (0.0, live.POINTS_MIN_ZOOM)
    zoom["cameras"] = (live.POINTS_MIN_ZOOM, 24.0)
    legends.append({"title": "Cameras 视频", "layers": ["cameras-agg", "cameras"], "rows": [
        {"color": "rgba(186,104,255,0.6)", "label": f"count per hexagon (zoom < {live.POINTS_MIN_ZOOM:g})"},
        {"color": "rgba(186,104,255,0.9)", "label": "camera"}]})
    above = [state.static_layer(t, key, f"labels-{lv}") for lv in ("town", "community", "grid")]
    zoom.update({"labels-town": (0.0, 13.0), "labels-community": (12.8, 15.0), "labels-grid": (15.0, 24.0)})
    hidden = [i for i, _ in hex_json] + ["cameras-agg", "cameras"]
    return below, above, zoom, legends, hidden


def screen_page() -> None:
    """The whole screen: static layers and the live feed's placeholders, drawn once; the browser polls the feed
    (:mod:`apps.live_feed`) for the live layers, KPI tiles and alarms, so nothing reruns while the wall shows it."""
    t0 = time.perf_counter()
    st.markdown(SCREEN_CSS, unsafe_allow_html=True)
    try:
        ensure_vendor()
        head = state.head_twin()
        feed = live_feed.live_feed(state.store_url(head.twin))
    except (twin.TwinError, VendorMissingError) as e:
        st.error(str(e))
        st.stop()
    t = head.twin
    key = state.twin_key(t)
    below, above, zoom, legends, hidden = screen_layers(t, key)
    hud = {"title": "禅城区 一张图 · Chancheng", "subtitle": f"SYNTHETIC DATA 模拟数据 · {head.label}", "live": True,
           **feed.latest.get("hud", {})}
    b = t.district.bounds
    deck_map(below + live_feed.live_placeholders(changes=True) + above, key="screen-map", height=1080, fill_height=True,
             screen=True, zoom_ranges={**zoom, **live.LIVE_ZOOM_RANGES}, legends=legends, hud=hud, hidden=hidden,
             view={"longitude": (b[0] + b[2]) / 2, "latitude": (b[1] + b[3]) / 2, "zoom": 11.4, "pitch": 0,
                   "bearing": 0}, fit_bounds=list(b), click_layers=[],
             live={"url": feed.ref, "every_ms": int(1000 * live_feed.FEED_EVERY_S)})
    if os.environ.get("TWIN_APP_TIMING"):
        print(f"[screen] {time.time() * 1000:.0f} page run {1000 * (time.perf_counter() - t0):.0f} ms",
              file=sys.stderr, flush=True)
