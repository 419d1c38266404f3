"""One colour scheme for every HierTune figure, keyed by the first-level ancestor.

Each first-level node gets a qualitative colour; deeper nodes get lighter shades of
their first-level ancestor's colour, so that a subtree reads as one hue family in the
sunburst, the confusion bands and the embedding maps alike. Siblings alternate between
two shades so that neighbouring blocks of one subtree stay distinguishable.
"""

from __future__ import annotations

import colorsys
import functools

from plotly.colors import qualitative

from hiercore.taxonomy.tree import ROOT, Taxonomy

BASE_COLORS: tuple[str, ...] = tuple(qualitative.Dark24)
UNKNOWN_COLOR = "#9e9e9e"


def _rgb(color: str) -> tuple[float, float, float]:
    color = color.lstrip("#")
    return tuple(int(color[i : i + 2], 16) / 255 for i in (0, 2, 4))  # type: ignore[return-value]


def _hex(rgb: tuple[float, float, float]) -> str:
    return "#" + "".join(f"{round(min(max(c, 0.0), 1.0) * 255):02x}" for c in rgb)


def top_color(k: int) -> str:
    """Colour of the k-th first-level node; past the palette, hues rotate so repeats differ."""
    base = BASE_COLORS[k % len(BASE_COLORS)]
    turn = k // len(BASE_COLORS)
    if turn == 0:
        return base
    h, light, s = colorsys.rgb_to_hls(*_rgb(base))
    return _hex(colorsys.hls_to_rgb((h + 0.13 * turn) % 1.0, light, s))


def shade(color: str, depth: int, sibling: int = 0) -> str:
    """`color` lightened for a node at `depth` (1 = unchanged), alternating by sibling."""
    return _shade(color, depth, sibling % 2)


@functools.lru_cache(maxsize=4096)
def _shade(color: str, depth: int, odd: int) -> str:
    # few distinct (colour, depth, parity) triples: a 16k-node tree asks for ~100
    if depth <= 1:
        return color
    t = min(0.78, 0.2 * (depth - 1) + (0.14 if odd else 0.0))
    r, g, b = _rgb(color)
    return _hex((r + (1 - r) * t, g + (1 - g) * t, b + (1 - b) * t))


def ancestor_colors(tax: Taxonomy) -> dict[str, str]:
    """Colour of every node: its first-level ancestor's hue, shaded by depth."""
    colors: dict[str, str] = {}
    succ = tax.graph.succ
    stack = [(top, 1, k, top_color(k)) for k, top in enumerate(succ[ROOT])]
    while stack:
        node, depth, sibling, base = stack.pop()
        colors[node] = shade(base, depth, sibling)
        for s, child in enumerate(succ[node]):
            stack.append((child, depth + 1, s, base))
    return colors
