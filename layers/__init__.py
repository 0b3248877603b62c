"""pydeck layer builders: data in, ``pydeck.Layer`` out (each with a stable ``id``), WGS84 positions.

One module per kind of layer; :mod:`layers.serialize` writes a layer as the compact JSON the map component reads.
Layers import :mod:`twin` at most, never :mod:`apps` (an import-linter contract checks).
"""

__all__ = ["boundaries", "buildings", "colors", "edit", "hexagons", "incidents", "points", "serialize"]
