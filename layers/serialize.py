"""Compact JSON for pydeck layers (what the map component receives).

pydeck's own ``to_json`` pretty-prints (≈3× larger) and is slow for big layers; this writes the same
``@deck.gl/json`` document compactly. pydeck turns every unquoted string keyword into an accessor expression
(``"@@=..."``); for props that are not accessors (``tooltipHtml`` …) the prefix is removed again here.
"""

from __future__ import annotations

import json
from typing import Any

import pydeck as pdk
from pydeck.bindings.json_tools import default_serialize

__all__ = ["layer_to_dict", "layer_to_json"]

_EXPR = "@@="


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    for k, v in list(d.items()):
        if isinstance(v, str) and v.startswith(_EXPR) and not k.startswith("get"):
            d[k] = v[len(_EXPR):]
    return d


def layer_to_json(layer: pdk.Layer) -> str:
    """One layer as a compact ``@deck.gl/json`` string (``@@type``, camelCase props, ``id``, ``data``)."""
    if not layer.id:
        raise ValueError(f"every map layer needs an id; got a {layer.type} without one")
    return json.dumps(layer, default=lambda o: _plain(default_serialize(o)) if isinstance(o, pdk.Layer)
                      else default_serialize(o), separators=(",", ":"), ensure_ascii=False)


def layer_to_dict(layer: pdk.Layer) -> dict[str, Any]:
    """The parsed form of :func:`layer_to_json`."""
    out: dict[str, Any] = json.loads(layer_to_json(layer))
    return out
