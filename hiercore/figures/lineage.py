"""Names and ancestors of taxonomy entries, shared by every figure.

Figures speak of levels the way docs/method.md §1 does: 1..L, level 1 being the first level
below the virtual root. Per-level entries are those of `LevelIndex` (padding copies
included), so a figure axis follows the index order where a subtree is a contiguous block.

Plotly renders a subset of HTML (and fills ``%{...}`` in hover templates) in every text it
draws: labels, ticks, hover boxes, legends, titles, table cells. A name a user typed goes
through `shown` before a figure draws it, so ``<b>x</b>`` or ``<script>`` shows as typed.
"""

from __future__ import annotations

import html

import numpy as np

from hiercore.taxonomy.levels import LevelIndex
from hiercore.taxonomy.tree import Taxonomy

PATH_SEP = " / "


def shown(text: object) -> str:
    """`text` as Plotly should draw it literally: HTML's special characters, and the "%"
    that starts a hover-template field, as character references (Plotly decodes them)."""
    return html.escape(str(text), quote=False).replace("%", "&#37;")


def check_level(index: LevelIndex, level: int) -> int:
    """`level` (1-based) as an int, or a ValueError when the taxonomy has no such level."""
    level = int(level)
    if not 1 <= level <= index.depth:
        raise ValueError(f"level must be in 1..{index.depth}, got {level}.")
    return level


def level_name(tax: Taxonomy, level: int) -> str:
    """The rank name of 1-based `level` when the taxonomy has one, else "level N"."""
    names = tax.level_names
    if 1 <= level <= len(names) and names[level - 1]:
        return names[level - 1]
    return f"level {level}"


def level_names_for(tax: Taxonomy, depth: int, given: list[str] | None = None) -> list[str]:
    """One display name per level: `given` where present, else the taxonomy's, else "level N"."""
    given = list(given or [])
    return [
        given[i] if i < len(given) and given[i] else level_name(tax, i + 1) for i in range(depth)
    ]


def path_label(tax: Taxonomy, node_id: str) -> str:
    """ "Aves / Corvidae / raven": the names from the first level down to `node_id`."""
    return PATH_SEP.join(tax.path_names(node_id))


def entry_label(index: LevelIndex, tax: Taxonomy, level: int, i: int) -> str:
    """Display name of entry `i` of 1-based `level`; padding copies say so (docs/method.md §1)."""
    node = index.node_at(level - 1, i)
    name = tax.name(node)
    return f"{name} (padded)" if index.padded[level - 1][i] else name


def ancestor_indices(index: LevelIndex, level: int, at_level: int) -> np.ndarray:
    """For every entry of `level`, the index of its ancestor at `at_level` (both 1-based).

    `at_level == level` gives the identity. The ancestor follows the tree from the entry
    itself, so a predicted class maps to the subtree it lies in even when the model's
    prediction at the upper level says otherwise.
    """
    if not 1 <= at_level <= level:
        raise ValueError(f"at_level must be in 1..{level}, got {at_level}.")
    anc = np.arange(index.sizes[level - 1], dtype=np.int64)
    for lvl0 in range(level - 1, at_level - 1, -1):
        anc = np.asarray(index.parents[lvl0], dtype=np.int64)[anc]
    return anc


def top_ancestor(tax: Taxonomy, node_id: str) -> str:
    """The first-level node above (or equal to) `node_id`."""
    return tax.path(node_id)[0]
