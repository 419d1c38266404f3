"""Where inconsistent predictions happen: per adjacent level pair and per parent subtree.

A prediction is inconsistent at the pair (l-1, l) when the level-l class's parent is not
the level-(l-1) prediction (docs/method.md §5). Consistent decoding is 0 by construction; it is
drawn anyway so the two decodings can be compared at a glance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import plotly.graph_objects as go

from hiercore.figures.accuracy import DECODING_COLORS, as_float, decodings, fmt_share
from hiercore.figures.lineage import level_name, path_label, shown
from hiercore.figures.palette import ancestor_colors
from hiercore.taxonomy.levels import LevelIndex
from hiercore.taxonomy.tree import Taxonomy


def pair_labels(level_names: Sequence[str] | None, n_pairs: int) -> list[str]:
    given = list(level_names or [])

    def name(i: int) -> str:
        return shown(given[i]) if i < len(given) and given[i] else f"level {i + 1}"

    return [f"{name(i)} → {name(i + 1)}" for i in range(n_pairs)]


def inconsistency_pairs_figure(
    metrics: Mapping, level_names: Sequence[str] | None = None
) -> go.Figure:
    """Bars of the broken-parent-link rate per adjacent level pair, per decoding."""
    fig = go.Figure()
    n_pairs = len(metrics.get("inconsistency_by_level_pair") or [])
    labels = pair_labels(level_names, n_pairs)
    for decoding, m in decodings(metrics):
        values = [as_float(v) for v in (m.get("inconsistency_by_level_pair") or [])]
        fig.add_bar(
            x=labels[: len(values)],
            y=values,
            name=decoding,
            marker_color=DECODING_COLORS[decoding],
            text=[fmt_share(v) for v in values],
            textposition="outside",
            hovertemplate="%{x}: %{y:.1%} inconsistent<extra>" + decoding + "</extra>",
        )
    fig.update_layout(
        title=f"Inconsistency per level pair (TICE {fmt_share(metrics.get('tice'))})",
        barmode="group",
        yaxis=dict(tickformat=".0%", title="share of predictions", rangemode="tozero"),
        xaxis=dict(title="parent level → child level"),
        legend=dict(title="decoding"),
    )
    return fig


def inconsistency_subtree_figure(
    df: pd.DataFrame, index: LevelIndex, tax: Taxonomy, top: int = 20
) -> go.Figure:
    """Horizontal bars for the `top` subtrees with the most inconsistent predictions.

    `df` is `hiercore.metrics.inconsistency_by_subtree`: `level` is the deeper level
    (1-based) and `parent_index` the true parent's index one level above it.
    """
    rows = df[df["n_inconsistent"] > 0].sort_values(
        ["n_inconsistent", "rate", "level", "parent_index"],
        ascending=[False, False, True, True],
        kind="stable",
    )
    rows = rows.head(top).iloc[::-1]  # largest at the top of a horizontal bar chart
    colors = ancestor_colors(tax)
    nodes = [
        index.node_at(int(lv) - 2, int(pi))
        for lv, pi in zip(rows["level"], rows["parent_index"], strict=True)
    ]
    labels = [
        f"{shown(path_label(tax, node))} → {shown(level_name(tax, int(lv)))}"
        for node, lv in zip(nodes, rows["level"], strict=True)
    ]
    fig = go.Figure(
        go.Bar(
            x=rows["rate"].to_numpy(dtype=float),
            y=list(range(len(rows))),
            orientation="h",
            marker_color=[colors[node] for node in nodes],
            text=[f"{k}/{n}" for k, n in zip(rows["n_inconsistent"], rows["n"], strict=True)],
            textposition="outside",
            customdata=[
                [label, int(k), int(n), node]
                for label, k, n, node in zip(
                    labels, rows["n_inconsistent"], rows["n"], nodes, strict=True
                )
            ],
            hovertemplate=(
                "%{customdata[0]}<br>%{customdata[1]} of %{customdata[2]} images "
                "inconsistent (%{x:.1%})<extra></extra>"
            ),
        )
    )
    fig.update_layout(
        title=f"Subtrees with the most inconsistent predictions (top {len(rows)})",
        xaxis=dict(tickformat=".0%", title="inconsistent share", rangemode="tozero"),
        yaxis=dict(tickmode="array", tickvals=list(range(len(rows))), ticktext=labels),
        height=max(300, 120 + 24 * len(rows)),
        showlegend=False,
    )
    return fig
