"""Colours for the map: classed scales with legends, and the fixed palettes (building use, credit, worker status).

Colours are RGBA lists of ints 0–255 (what deck.gl accessors take). A :class:`ClassedScale` maps values to a few
classes (quantile breaks by default, rounded for a readable legend) so that a skewed distribution such as
residents per hexagon still shows structure; ``legend()`` returns the rows a legend panel draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "RGBA",
    "ClassedScale",
    "classed_scale",
    "PALETTES",
    "USE_COLORS",
    "CREDIT_COLORS",
    "STATUS_COLORS",
    "LEVEL_COLORS",
    "rgba_to_css",
]

RGBA = list[int]

#: Sequential palettes, light → dark (ColorBrewer YlOrRd / PuRd / BuGn / Blues, 6 classes).
PALETTES: dict[str, list[RGBA]] = {
    "YlOrRd": [[255, 255, 178], [254, 217, 118], [254, 178, 76], [253, 141, 60], [240, 59, 32], [189, 0, 38]],
    "PuRd": [[241, 238, 246], [212, 185, 218], [201, 148, 199], [223, 101, 176], [221, 28, 119], [152, 0, 67]],
    "BuGn": [[237, 248, 251], [204, 236, 230], [153, 216, 201], [102, 194, 164], [44, 162, 95], [0, 109, 44]],
    "Blues": [[239, 243, 255], [198, 219, 239], [158, 202, 225], [107, 174, 214], [49, 130, 189], [8, 81, 156]],
}

USE_COLORS: dict[str, RGBA] = {
    "residential": [246, 196, 120, 255],
    "mixed": [214, 120, 186, 255],
    "commercial": [80, 160, 230, 255],
    "industrial": [150, 150, 160, 255],
    "public": [90, 200, 120, 255],
}
CREDIT_COLORS: dict[str, RGBA] = {
    "green": [46, 204, 113, 230],
    "yellow": [241, 196, 15, 230],
    "red": [231, 76, 60, 240],
}
STATUS_COLORS: dict[str, RGBA] = {"online": [0, 230, 118, 255], "offline": [158, 158, 158, 255]}
#: Outline colour and width (pixels) per administrative level.
LEVEL_COLORS: dict[str, tuple[RGBA, float]] = {
    "district": ([255, 255, 255, 255], 3.0),
    "town": ([255, 214, 0, 255], 2.5),
    "community": ([0, 229, 255, 200], 1.2),
    "grid": ([200, 200, 220, 140], 0.6),
}


def rgba_to_css(c: Sequence[int]) -> str:
    """``[r, g, b, a]`` (0–255) → CSS ``rgba(r,g,b,a)``."""
    a = c[3] / 255 if len(c) > 3 else 1.0
    return f"rgba({c[0]},{c[1]},{c[2]},{a:.2f})"


@dataclass(frozen=True)
class ClassedScale:
    """Class breaks and their colours: class ``i`` holds values in ``[breaks[i], breaks[i+1])`` (last one closed)."""

    breaks: tuple[float, ...]
    colors: tuple[tuple[int, int, int, int], ...]
    title: str = ""
    unit: str = ""

    def classify(self, values: np.ndarray | Sequence[float]) -> np.ndarray:
        """Class index per value (0 … n_classes-1); NaN → -1."""
        v = np.asarray(values, dtype=float)
        inner = np.asarray(self.breaks[1:-1], dtype=float)
        idx = np.searchsorted(inner, v, side="right")
        return np.where(np.isnan(v), -1, idx)

    def colors_for(self, values: np.ndarray | Sequence[float], *, nan_color: RGBA | None = None) -> list[RGBA]:
        """One RGBA list per value (``nan_color`` — default transparent — for NaN/suppressed values)."""
        nan = nan_color if nan_color is not None else [0, 0, 0, 0]
        table = [list(c) for c in self.colors]
        return [table[i] if i >= 0 else list(nan) for i in self.classify(values).tolist()]

    def legend(self) -> list[dict[str, str]]:
        """Rows ``{"color": css, "label": "a – b"}`` from the lowest class up."""
        rows = []
        for i, c in enumerate(self.colors):
            lo, hi = self.breaks[i], self.breaks[i + 1]
            rows.append({"color": rgba_to_css(c), "label": f"{_fmt(lo)} – {_fmt(hi)}{(' ' + self.unit) if self.unit else ''}"})
        return rows


def classed_scale(values: np.ndarray | Sequence[float], *, palette: str = "YlOrRd", n_classes: int = 5,
                  alpha: int = 200, title: str = "", unit: str = "") -> ClassedScale:
    """Quantile classes over the finite values, breaks rounded to 2 significant digits, duplicates merged.

    Parameters
    ----------
    values : array of float
        The values to classify (NaN ignored). All-equal or empty input gives one class.
    palette : str
        A key of :data:`PALETTES`; the darkest ``n_classes`` colours are used, light → dark.
    n_classes : int
        Wanted number of classes (1–6); fewer when the values have fewer distinct breaks.
    alpha : int
        Opacity 0–255 applied to all class colours.
    """
    if palette not in PALETTES:
        raise ValueError(f"unknown palette {palette!r}; use one of {sorted(PALETTES)}")
    n_classes = int(min(max(n_classes, 1), len(PALETTES[palette])))
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    brk: tuple[float, ...]
    if v.size == 0 or v.min() == v.max():
        lo = float(v.min()) if v.size else 0.0
        hi = float(v.max()) if v.size else 1.0
        brk = (lo, hi if hi > lo else lo + 1.0)
    else:
        qs = np.quantile(v, np.linspace(0, 1, n_classes + 1))
        inner = sorted({_round_sig(q) for q in qs[1:-1]} - {_round_sig(float(v.min()))})
        inner = [b for b in inner if v.min() < b < v.max()]
        brk = (float(v.min()), *inner, float(v.max()))
    k = len(brk) - 1
    pal = PALETTES[palette][len(PALETTES[palette]) - k:] if k > 1 else [PALETTES[palette][-2]]
    colors = tuple((c[0], c[1], c[2], int(alpha)) for c in pal)
    return ClassedScale(tuple(brk), colors, title, unit)


def _round_sig(x: float, sig: int = 2) -> float:
    if x == 0 or not np.isfinite(x):
        return float(x)
    digits = sig - int(np.floor(np.log10(abs(x)))) - 1
    return float(round(x, digits))


def _fmt(x: float) -> str:
    if abs(x) >= 100 or float(x).is_integer():
        return f"{x:,.0f}"
    return f"{x:,.2g}" if abs(x) < 1 else f"{x:,.1f}"
