"""``deck_map``: a deck.gl map component that renders pydeck layers and lets the user draw an area.

Why a custom component: ``st.pydeck_chart`` cannot draw polygons. This one renders the same pydeck layer JSON
with deck.gl (through ``@deck.gl/json``), adds a freehand lasso and a click-the-corners polygon tool, keeps the
view across reruns (the iframe keeps its own view state; Python only moves it with ``fly_to``) and returns events:

``{"event": "draw", "seq": …, "geojson": Feature, "view": {...}}`` — a finished drawing (WGS84 lng/lat),
``{"event": "click", "layer": id | None, "properties": {...}, "coordinate": [lng, lat]}`` — a click in pan mode,
``{"event": "view", "bbox": [w, s, e, n]}`` — the view moved outside ``loaded_bbox`` while zoomed in,
``{"event": "clear"}`` — the user cleared the drawing.

The deck.gl bundles come from npm (``package.json``: ``deck.gl``); :func:`ensure_vendor` copies them from
``node_modules`` into ``frontend/vendor`` (git-ignored) at start-up, so a fresh clone needs only ``npm ci``
(which ``make app``/``make test`` run).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import streamlit.components.v1 as components

__all__ = ["deck_map", "ensure_vendor", "VendorMissingError", "FRONTEND", "VENDOR_FILES"]

FRONTEND = Path(__file__).parent / "frontend"
_ROOT = Path(__file__).resolve().parents[3]
#: vendor file name → path under node_modules
VENDOR_FILES = {
    "h3-js.umd.js": Path("h3-js/dist/h3-js.umd.js"),  # deck.gl's UMD bundle expects h3-js as the global ``h3``
    "deck.gl.min.js": Path("deck.gl/dist.min.js"),
    "deck.gl-json.min.js": Path("@deck.gl/json/dist.min.js"),
}


class VendorMissingError(RuntimeError):
    """The deck.gl bundles are not installed (``npm ci`` was not run)."""


def ensure_vendor(node_modules: Path | None = None) -> list[Path]:
    """Copy the deck.gl bundles from ``node_modules`` into ``frontend/vendor`` when missing or outdated.

    Returns the vendor paths. Raises :class:`VendorMissingError` naming the missing file and the fix.
    """
    nm = node_modules or _ROOT / "node_modules"
    vendor = FRONTEND / "vendor"
    vendor.mkdir(exist_ok=True)
    out = []
    for name, rel in VENDOR_FILES.items():
        src, dst = nm / rel, vendor / name
        if not src.exists():
            if dst.exists():
                out.append(dst)
                continue
            raise VendorMissingError(f"{src} not found: install the front-end packages with `npm ci` in {_ROOT}.")
        if not dst.exists() or dst.stat().st_size != src.stat().st_size or dst.stat().st_mtime < src.stat().st_mtime:
            tmp = dst.with_suffix(".tmp")
            shutil.copyfile(src, tmp)
            tmp.replace(dst)
        out.append(dst)
    return out


_component = components.declare_component("deckmap", path=str(FRONTEND))

#: layers larger than this are served as files next to the component instead of inside every rerun's message
BY_REFERENCE_CHARS = 64_000
_LAYER_DIR = FRONTEND / "layers"  # git-ignored; served by Streamlit with the component's files
_refs: dict[tuple[int, int], str] = {}


def _by_reference(layer_json: str) -> str:
    """A large layer's JSON → ``"@layers/<sha1>.json"`` (written once; the browser fetches and caches it).

    Static layers (boundaries, hexagons, workers…) are the same string on every rerun; sending them inline
    re-sends megabytes over the websocket each time. By reference, a rerun only carries the layers that changed.
    """
    if len(layer_json) < BY_REFERENCE_CHARS:
        return layer_json
    memo_key = (hash(layer_json), len(layer_json))  # str hashes are cached by Python: O(1) after the first call
    ref = _refs.get(memo_key)
    if ref is None:
        digest = hashlib.sha1(layer_json.encode()).hexdigest()
        path = _LAYER_DIR / f"{digest}.json"
        if not path.exists():
            _LAYER_DIR.mkdir(exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(layer_json, encoding="utf-8")
            tmp.replace(path)
        ref = _refs[memo_key] = f"@layers/{digest}.json"
    return ref


def deck_map(layers: Sequence[tuple[str, str]], *, view: Mapping[str, float], key: str, height: int = 760,
             zoom_ranges: Mapping[str, tuple[float, float]] | None = None, legends: Sequence[Mapping] = (),
             fly_to: Mapping[str, Any] | None = None,
             loaded_bbox: Sequence[float] | None = None, view_events_min_zoom: float | None = None,
             basemap_url: str | None = None, clear_drawn_seq: int | None = None,
             hud: Mapping[str, Any] | None = None, screen: bool = False, fill_height: bool = False,
             legend_collapsed: bool = False, hidden: Sequence[str] = (),
             fit_bounds: Sequence[float] | None = None,
             brush: Mapping[str, Any] | None = None, inline: Sequence[str] = (),
             live: Mapping[str, Any] | None = None, click_layers: Sequence[str] | None = None) -> dict[str, Any] | None:
    """Show the map; return the last event (see module doc) or ``None`` before any.

    Parameters
    ----------
    layers : list of (id, json)
        Layers bottom → top, each as compact ``@deck.gl/json`` (:func:`layers.serialize.layer_to_json`).
        The browser re-parses a layer only when its JSON string changed. Layers over
        :data:`BY_REFERENCE_CHARS` travel as files (``"@layers/<sha1>.json"``), fetched once by the browser.
    view : dict
        Initial view (longitude, latitude, zoom, pitch, bearing), used once when the map first appears.
    zoom_ranges : dict id → (min_zoom, max_zoom)
        Layers shown only inside that zoom range (e.g. finer hexagons when zoomed in), switched in the browser.
    fly_to : dict with ``seq``
        Move the view when ``seq`` changes (e.g. to a picked grid).
    legends : list of dict
        ``{"title", "rows": [{"color", "label", "kind": "line" | "ring" | None}], "layers": [ids]}``. The legend is
        collapsible, lists only entries whose layers are shown at the current zoom, and each entry with ``layers``
        has a box that switches those layers off/on in the browser (no rerun).
    hud : dict
        Command-centre overlay: ``title``, ``subtitle``, ``updated``, ``kpis`` ([{key, label, value, sub, tone}]),
        ``alarms`` ([{id, kind, at, text}]), ``alarm_hours``; a clock (CST) ticks in the browser.
    screen : bool
        Command-centre styling: no drawing toolbar, text ≥ 18 px and scaled with the window (1 vw).
    fill_height : bool
        Make the map as tall as the browser window (full-bleed screen mode); ``height`` is the fallback.
    hidden : list of ids
        Layers switched off in the legend when the map first appears (the user switches them on there).
    inline : list of ids
        Layers always sent inside the message, whatever their size (live layers that change often: no extra file
        round trip between a refresh and the dots on screen).
    fit_bounds : (west, south, east, north)
        Initial view fitted to these WGS84 bounds in the map's actual size (instead of ``view``'s zoom).
    basemap_url : str
        Web tiles; probed first, and when unreachable (no internet) the map says so and draws no tile layer.
    live : dict
        ``{"url": path relative to the component, "every_ms": poll period}`` (:mod:`apps.live_feed`): layers given
        as ``(id, "@live")`` take their JSON from that file, polled by the browser (no rerun); with ``hud["live"]``
        the KPI tiles and alarms come from it too.
    click_layers : list of ids
        The layers a click picks objects from (e.g. incidents, to open one); other clicks send only the coordinate
        (the grid is found from it in Python). Picking few layers keeps a click fast on software-rendered screens.
        ``None``: every pickable layer.
    brush : dict
        Edit mode's brush (:func:`apps.edit.brush_args`): adds a "✎ Brush" tool that paints H3 res-11 cells into
        ``target`` with a live balance box, and returns ``{"event": "brush", "target", "cells": [hex…]}`` per stroke.
    """
    keep = set(inline)
    return _component(layers=[[i, j if i in keep or j == "@live" else _by_reference(j)] for i, j in layers],
                      view=dict(view), zoom_ranges=dict(zoom_ranges or {}),
                      live=dict(live) if live else None,
                      click_layers=list(click_layers) if click_layers is not None else None,
                      legends=list(legends), fly_to=dict(fly_to) if fly_to else None,
                      loaded_bbox=list(loaded_bbox) if loaded_bbox else None,
                      view_events_min_zoom=view_events_min_zoom, basemap_url=basemap_url,
                      clear_drawn_seq=clear_drawn_seq, height=height, hud=dict(hud) if hud else None,
                      screen=screen, fill_height=fill_height, legend_collapsed=legend_collapsed, hidden=list(hidden),
                      fit_bounds=list(fit_bounds) if fit_bounds else None, key=key,
                      brush=dict(brush) if brush else None, default=None)
