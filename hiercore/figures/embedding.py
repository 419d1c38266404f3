"""Maps of the embedding space: taxonomy nodes before vs after fine-tuning, and images.

Coordinates come from `hiercore.embedding_map` (UMAP or its PCA fallback, which the
figure names). Node maps show each distinct node once, in the order of
`hiercore.models.hierclip.HierClip.node_ids` (level order, padding copies skipped); edges
join parent and child so the hierarchy's shape in the space is visible.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from hiercore.figures.lineage import level_name, path_label, shown, top_ancestor
from hiercore.figures.palette import UNKNOWN_COLOR, ancestor_colors
from hiercore.taxonomy.levels import LevelIndex
from hiercore.taxonomy.tree import ROOT, Taxonomy


def distinct_node_ids(index: LevelIndex) -> list[str]:
    """Every node once, in level order (the row order of `HierClip.encode_nodes`)."""
    seen: dict[str, None] = {}
    for level in index.level_nodes:
        for node in level:
            seen.setdefault(node, None)
    return list(seen)


def _method_note(*coords: np.ndarray) -> str:
    notes = {getattr(c, "note", "") for c in coords} - {""}
    methods = {getattr(c, "method", "umap") for c in coords}
    if notes:
        return " — " + " ".join(sorted(notes))
    return " (PCA)" if methods == {"pca"} else ""


def _node_rows(coords: np.ndarray, index: LevelIndex, node_ids: Sequence[str] | None):
    """Coordinates per distinct node; per-level rows (padding copies included) are deduplicated."""
    coords = np.asarray(coords, dtype=float)
    ids = list(node_ids) if node_ids is not None else distinct_node_ids(index)
    if len(coords) == sum(index.sizes) and len(coords) != len(ids):
        flat = [n for level in index.level_nodes for n in level]
        first = {}
        for row, n in enumerate(flat):
            first.setdefault(n, row)
        coords = coords[[first[n] for n in ids]]
    if coords.shape != (len(ids), 2):
        raise ValueError(f"node coordinates must be ({len(ids)}, 2), got {coords.shape}.")
    return coords, ids


def node_embedding_figure(
    coords_before: np.ndarray,
    coords_after: np.ndarray,
    index: LevelIndex,
    tax: Taxonomy,
    node_ids: Sequence[str] | None = None,
) -> go.Figure:
    """Two panels (before | after fine-tuning) of every taxonomy node in one 2-D map.

    Points are coloured by first-level ancestor and sized by depth (deeper = smaller);
    thin lines join each node to its parent. Rows of the coordinates follow `node_ids`
    (default: `distinct_node_ids(index)`); per-level rows with padding copies also work.
    """
    note = _method_note(coords_before, coords_after)
    before, ids = _node_rows(coords_before, index, node_ids)
    after, _ = _node_rows(coords_after, index, ids)
    colors = ancestor_colors(tax)
    row_of = {n: i for i, n in enumerate(ids)}
    depth = np.array([tax.depth(n) for n in ids])
    tops = [top_ancestor(tax, n) for n in ids]
    paths = [shown(path_label(tax, n)) for n in ids]
    edges = [(row_of[tax.parent(n)], i) for i, n in enumerate(ids) if tax.parent(n) in row_of]
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("before fine-tuning", "after fine-tuning"),
        horizontal_spacing=0.06,
    )
    for col, xy in ((1, before), (2, after)):
        ex, ey = [], []
        for a, b in edges:
            ex += [xy[a, 0], xy[b, 0], None]
            ey += [xy[a, 1], xy[b, 1], None]
        fig.add_scatter(
            x=ex,
            y=ey,
            mode="lines",
            line=dict(color="rgba(120,120,120,0.35)", width=0.7),
            hoverinfo="skip",
            showlegend=False,
            name="parent–child",
            row=1,
            col=col,
        )
        for top in tax.children(ROOT):
            rows = [i for i, t in enumerate(tops) if t == top]
            if not rows:
                continue
            fig.add_scatter(
                x=xy[rows, 0],
                y=xy[rows, 1],
                mode="markers",
                name=shown(tax.name(top)),
                legendgroup=top,
                showlegend=col == 1,
                marker=dict(
                    color=[colors[ids[i]] for i in rows],
                    size=np.maximum(4, 14 - 3 * (depth[rows] - 1)),
                    line=dict(width=0.5, color="white"),
                ),
                customdata=[[paths[i], ids[i], int(depth[i])] for i in rows],
                hovertemplate="%{customdata[0]}<br>level %{customdata[2]}<extra></extra>",
                row=1,
                col=col,
            )
    # one map: both panels keep the same ranges, so zooming one zooms the other
    fig.update_xaxes(showticklabels=False, title_text="", matches="x")
    fig.update_yaxes(showticklabels=False, title_text="", matches="y")
    fig.update_layout(
        title=f"Node text embeddings, one shared map{note}",
        legend=dict(title="first level"),
        height=560,
    )
    return fig


def _group_at(tax: Taxonomy, node: str | None, level: int) -> str | None:
    """The node at depth `level` on `node`'s path; a shallower leaf stands for itself."""
    if node is None or node not in tax:
        return None
    path = tax.path(node)
    if len(path) >= level:
        return path[level - 1]
    return node if tax.is_leaf(node) else None  # partial label: unknown at this level


def image_embedding_figure(
    coords: np.ndarray,
    node_ids: Sequence[str | None],
    tax: Taxonomy,
    level: int = 1,
    correct: Sequence[bool] | np.ndarray | None = None,
    paths: Sequence[str] | None = None,
) -> go.Figure:
    """Images in a 2-D map coloured by their true node at 1-based `level`.

    `node_ids` is each image's label (any depth; None when unlabelled). One trace per
    first-level ancestor; images whose label stops above `level` are grey. With `correct`,
    wrong predictions are drawn as x markers. Hover shows the file name and the label path.
    """
    method = _method_note(coords)
    coords = np.asarray(coords, dtype=float)
    n = len(node_ids)
    if coords.shape != (n, 2):
        raise ValueError(f"coords must be ({n}, 2), got {coords.shape}.")
    if correct is not None and len(correct) != n:
        raise ValueError(f"correct needs one flag per image ({n}), got {len(correct)}.")
    if paths is not None and len(paths) != n:
        raise ValueError(f"paths needs one file per image ({n}), got {len(paths)}.")
    colors = ancestor_colors(tax)
    cache: dict[str | None, tuple[str | None, str, str]] = {}

    def describe(node: str | None) -> tuple[str | None, str, str]:
        if node not in cache:
            group = _group_at(tax, node, level)
            top = top_ancestor(tax, node) if node is not None and node in tax else None
            label = shown(path_label(tax, node)) if top is not None else "(unlabelled)"
            cache[node] = (top, colors[group] if group else UNKNOWN_COLOR, label)
        return cache[node]

    info = [describe(node) for node in node_ids]
    files = [shown(os.path.basename(str(p))) for p in paths] if paths is not None else [""] * n
    wrong = np.zeros(n, dtype=bool) if correct is None else ~np.asarray(correct, dtype=bool)
    fig = go.Figure()
    order = [*tax.children(ROOT), None]
    for top in order:
        # wrong predictions last: drawn on top, and the legend shows a plain circle
        rows = sorted((i for i in range(n) if info[i][0] == top), key=lambda i: wrong[i])
        if not rows:
            continue
        fig.add_scatter(
            x=coords[rows, 0],
            y=coords[rows, 1],
            mode="markers",
            name=shown(tax.name(top)) if top is not None else "unlabelled",
            legendgroup=top or "unlabelled",
            marker=dict(
                color=[info[i][1] for i in rows],
                symbol=["x" if wrong[i] else "circle" for i in rows],
                size=[9 if wrong[i] else 7 for i in rows],
                line=dict(width=0.4, color="white"),
            ),
            customdata=[[files[i], info[i][2], "wrong" if wrong[i] else "", i] for i in rows],
            hovertemplate="%{customdata[0]}<br>%{customdata[1]}<br>%{customdata[2]}<extra></extra>",
        )
    if correct is not None and wrong.any():
        fig.add_scatter(
            x=[None],
            y=[None],
            mode="markers",
            name="wrong prediction",
            marker=dict(symbol="x", color="#444", size=9),
            hoverinfo="skip",
        )
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    fig.update_layout(
        title=f"Image embeddings coloured by {shown(level_name(tax, level))}{method}",
        legend=dict(title="first level"),
        height=560,
    )
    return fig
