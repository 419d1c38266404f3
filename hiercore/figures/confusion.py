"""Tree-coloured confusion matrices, cell drill-down and the "top confusions" list.

Rows are true classes, columns predicted classes, both in `LevelIndex` order, where
every subtree is a contiguous block. Coloured bands beside both axes show each class's
ancestor at every higher level (one hue per first-level ancestor, shades below), so
confusions inside a subtree sit in the diagonal blocks the bands outline.

A level with too many classes to read is aggregated by subtree: classes are grouped by
their ancestor at the deepest level with at most `max_classes` nodes, and the matrix
blocks are summed. The predicted side is grouped through the predicted class's own
ancestors (not the model's possibly inconsistent upper-level prediction), which is what
summing blocks of the level's matrix means.

Each cell's customdata starts with (true index, predicted index, group level): indices
at the group level (1-based), so `confusion_cell_members` can resolve a click either way.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from hiercore.figures.lineage import (
    ancestor_indices,
    check_level,
    entry_label,
    level_name,
    path_label,
    shown,
)
from hiercore.figures.palette import ancestor_colors
from hiercore.taxonomy.levels import LevelIndex
from hiercore.taxonomy.tree import Taxonomy

BAND = 0.022  # width of one ancestor band, as a fraction of the figure
BAND_GAP = 0.004
CELL_TEXT_MAX = 25  # write counts in the cells up to this many classes


def group_level(index: LevelIndex, level: int, max_classes: int) -> int:
    """The deepest level at or above `level` with at most `max_classes` nodes (1 if none)."""
    for g in range(level, 0, -1):
        if index.sizes[g - 1] <= max_classes:
            return g
    return 1


def aggregate_confusion(cm: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Sum the blocks of `cm` whose rows and columns share a group: (G, G) counts.

    `groups[c]` is the group of class c. In `LevelIndex` order groups never decrease (a
    subtree is a contiguous block), which allows contiguous sums over 10k-class matrices;
    any other grouping takes the slower scatter-add.
    """
    groups = np.asarray(groups, dtype=np.int64)
    present = np.bincount(groups, minlength=n_groups) > 0
    if len(groups) and (np.diff(groups) >= 0).all() and present.all():
        starts = np.flatnonzero(np.r_[True, np.diff(groups) > 0])
        return np.add.reduceat(np.add.reduceat(cm, starts, axis=0), starts, axis=1)
    by_row = np.zeros((n_groups, cm.shape[1]), dtype=cm.dtype)
    np.add.at(by_row, groups, cm)
    out = np.zeros((n_groups, n_groups), dtype=cm.dtype)
    np.add.at(out.T, groups, by_row.T)
    return out


def _discrete_strip(codes: np.ndarray, colors: list[str]) -> dict:
    """Heatmap arguments that paint integer `codes` with exactly `colors`."""
    n = len(colors)
    scale = []
    for i, color in enumerate(colors):
        scale += [[i / n, color], [(i + 1) / n, color]]
    return dict(z=codes + 0.5, zmin=0, zmax=n, colorscale=scale, showscale=False, xgap=0, ygap=0)


def _band_traces(
    index: LevelIndex, tax: Taxonomy, glevel: int, n: int, layout: dict
) -> list[go.Heatmap]:
    """Ancestor bands left of the rows and above the columns, one per level above `glevel`.

    Row bands share the matrix's y axis and column bands its x axis, so they stay aligned
    when the user zooms; the outermost band is the first level.
    """
    colors = ancestor_colors(tax)
    traces = []
    bands = list(range(1, glevel))
    for k, band_level in enumerate(bands):
        anc = ancestor_indices(index, glevel, band_level)
        nodes = [index.node_at(band_level - 1, int(a)) for a in anc]
        palette = sorted({colors[node] for node in nodes})
        code = {c: i for i, c in enumerate(palette)}
        codes = np.array([code[colors[node]] for node in nodes], dtype=float)
        paths = np.array([shown(path_label(tax, node)) for node in nodes], dtype=object)
        strip = _discrete_strip(codes, palette)
        name = shown(level_name(tax, band_level))
        hover = "%{customdata}<extra>" + name + "</extra>"
        xa, ya = f"x{k + 2}", f"y{k + 2}"
        x0 = k * (BAND + BAND_GAP)
        layout[f"xaxis{k + 2}"] = dict(domain=[x0, x0 + BAND], anchor="y", visible=False)
        top = 1 - k * (BAND + BAND_GAP)
        layout[f"yaxis{k + 2}"] = dict(domain=[top - BAND, top], anchor="x", visible=False)
        traces.append(
            go.Heatmap(
                x=[0],
                y=np.arange(n),
                customdata=paths[:, None],
                hovertemplate=hover,
                xaxis=xa,
                yaxis="y",
                name=f"{name} (rows)",
                **{**strip, "z": strip["z"][:, None]},
            )
        )
        traces.append(
            go.Heatmap(
                x=np.arange(n),
                y=[0],
                customdata=paths[None, :],
                hovertemplate=hover,
                xaxis="x",
                yaxis=ya,
                name=f"{name} (columns)",
                **{**strip, "z": strip["z"][None, :]},
            )
        )
    return traces


def tree_confusion_figure(
    cm: np.ndarray, index: LevelIndex, tax: Taxonomy, level: int, max_classes: int = 60
) -> go.Figure:
    """Row-normalised confusion at 1-based `level` with ancestor bands on both axes.

    `cm` is the level's (C, C) count matrix (true rows, predicted columns), dense or
    scipy.sparse, e.g. from `hiercore.metrics.confusion_at_level`. Above `max_classes`
    classes it is summed by subtree and the title says so. Cell customdata: [true index,
    predicted index, group level, count, share of row, true path, predicted path].
    """
    level = check_level(index, level)
    sparse = hasattr(cm, "tocoo")  # scipy.sparse: a 10k-class level is summed cell by cell
    cm = cm if sparse else np.asarray(cm)
    size = index.sizes[level - 1]
    if cm.shape != (size, size):
        raise ValueError(f"cm must be ({size}, {size}) for level {level}, got {cm.shape}.")
    glevel = group_level(index, level, max_classes)
    n = index.sizes[glevel - 1]
    if sparse:
        cells = cm.tocoo()
        groups = np.arange(size) if glevel == level else ancestor_indices(index, level, glevel)
        matrix = np.zeros((n, n), dtype=np.int64)
        np.add.at(matrix, (groups[cells.row], groups[cells.col]), cells.data)
    elif glevel == level:
        matrix = cm
    else:
        matrix = aggregate_confusion(cm, ancestor_indices(index, level, glevel), n)
    row_totals = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, row_totals, out=np.zeros(matrix.shape), where=row_totals > 0)

    paths = [shown(path_label(tax, index.node_at(glevel - 1, i))) for i in range(n)]
    labels = [shown(entry_label(index, tax, glevel, i)) for i in range(n)]
    custom = np.empty((n, n, 7), dtype=object)
    rows, cols = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    custom[..., 0] = rows
    custom[..., 1] = cols
    custom[..., 2] = glevel
    custom[..., 3] = matrix.astype(np.int64)
    custom[..., 4] = share
    custom[..., 5] = np.array(paths, dtype=object)[rows]
    custom[..., 6] = np.array(paths, dtype=object)[cols]
    what = "classes" if glevel == level else "subtrees"
    heat = go.Heatmap(
        z=share,
        x=np.arange(n),
        y=np.arange(n),
        zmin=0,
        zmax=1,
        colorscale="Blues",
        customdata=custom,
        colorbar=dict(title="share of row", tickformat=".0%"),
        hovertemplate=(
            "true: %{customdata[5]}<br>predicted: %{customdata[6]}<br>"
            "%{customdata[3]} images (%{customdata[4]:.0%} of row)<extra></extra>"
        ),
        name=f"confusion ({what})",
        xaxis="x",
        yaxis="y",
    )
    if n <= CELL_TEXT_MAX:
        heat.text = np.where(matrix > 0, matrix.astype(np.int64).astype(str), "")
        heat.texttemplate = "%{text}"

    n_bands = glevel - 1
    left = n_bands * (BAND + BAND_GAP) + (BAND_GAP if n_bands else 0)
    layout: dict = {}
    traces = [heat, *_band_traces(index, tax, glevel, n, layout)]
    ticks = dict(tickmode="array", tickvals=list(range(n)), ticktext=labels, showgrid=False)
    group_name = shown(level_name(tax, glevel))
    layout["xaxis"] = dict(
        domain=[left, 1.0], anchor="y", title=f"predicted ({group_name})", **ticks
    )
    layout["yaxis"] = dict(
        domain=[0.0, 1.0 - left],
        anchor="free",
        position=0.0,
        autorange="reversed",
        title=f"true ({group_name})",
        **ticks,
    )
    name = shown(level_name(tax, level))
    if glevel == level:
        title = f"Confusion at {name}: {n} classes (rows true, columns predicted)"
    else:
        title = (
            f"Confusion at {name}, {size:,} classes grouped into {n} subtrees at "
            f"{group_name} (matrix blocks summed)"
        )
    fig = go.Figure(traces)
    side = max(450, min(1100, 200 + 22 * n))
    fig.update_layout(title=title, height=side, margin=dict(l=10, t=70, b=10, r=10), **layout)
    fig.update_xaxes(automargin=True)
    fig.update_yaxes(automargin=True)
    return fig


def confusion_cell_members(
    pred: np.ndarray,
    true: np.ndarray,
    level: int,
    cell_customdata: Sequence,
    index: LevelIndex,
) -> np.ndarray:
    """Indices of the samples behind a clicked confusion cell (grouped cells included).

    `pred` and `true` are (N, L) index paths (-1 in `true` where unknown); `cell_customdata`
    is the clicked cell's customdata, whose first three entries are the true and predicted
    indices at the group level and the group level itself.
    """
    level = check_level(index, level)
    i, j, glevel = (int(v) for v in list(cell_customdata)[:3])
    glevel = check_level(index, glevel)
    pred, true = np.asarray(pred), np.asarray(true)
    t, p = true[:, level - 1], pred[:, level - 1]
    anc = ancestor_indices(index, level, glevel)
    known = t >= 0
    in_cell = known & (anc[np.where(known, t, 0)] == i) & (anc[p] == j)
    return np.flatnonzero(in_cell)


def top_confusions(
    pred: np.ndarray,
    true: np.ndarray,
    index: LevelIndex,
    tax: Taxonomy,
    level: int,
    k: int = 20,
) -> pd.DataFrame:
    """The `k` most frequent wrong (true, predicted) pairs at 1-based `level`.

    `lca_height` is how far apart the two classes are: `level` minus the depth of their
    lowest common ancestor (1 for siblings, `level` when only the root is shared), the
    "Making Better Mistakes" height used by `hiercore.metrics.mistake_severity`.
    """
    level = check_level(index, level)
    pred, true = np.asarray(pred), np.asarray(true)
    t, p = true[:, level - 1], pred[:, level - 1]
    wrong = (t >= 0) & (t != p)
    size = index.sizes[level - 1]
    keys, counts = np.unique(t[wrong] * size + p[wrong], return_counts=True)
    ti, pi = keys // size, keys % size
    shared = np.zeros(len(keys), dtype=np.int64)
    for up in range(1, level + 1):
        anc = ancestor_indices(index, level, up)
        shared += anc[ti] == anc[pi]
    table = pd.DataFrame(
        {
            "count": counts.astype(np.int64),
            "lca_height": (level - shared).astype(np.int64),
            "true_index": ti.astype(np.int64),
            "predicted_index": pi.astype(np.int64),
        }
    )
    table = table.sort_values(
        ["count", "lca_height", "true_index", "predicted_index"],
        ascending=[False, False, True, True],
        kind="stable",
    )
    table = table.head(k).reset_index(drop=True)
    # names for the rows kept only (at 10k leaves: 20 instead of 8,000 path walks)
    node = index.node_at
    table.insert(
        0, "true_path", [path_label(tax, node(level - 1, int(a))) for a in table["true_index"]]
    )
    table.insert(
        1,
        "predicted_path",
        [path_label(tax, node(level - 1, int(b))) for b in table["predicted_index"]],
    )
    return table
