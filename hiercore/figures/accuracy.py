"""Per-level accuracy of independent vs consistent decoding (docs/method.md §4, §5).

Reads the dict of `hiercore.metrics.evaluate_predictions`: top-level keys are the
independent decoding's metrics, "consistent" holds the same for consistent decoding.
Missing values (None: nothing to score) are left as gaps rather than drawn as zero.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import plotly.graph_objects as go

from hiercore.figures.lineage import shown

DECODING_COLORS = {"independent": "#2E91E5", "consistent": "#1CA71C"}


def as_float(value: object) -> float:
    """A metric value as a float, NaN for None (metrics write NaN as None)."""
    return math.nan if value is None else float(value)  # type: ignore[arg-type]


def fmt_share(value: object) -> str:
    v = as_float(value)
    return "n/a" if math.isnan(v) else f"{v:.1%}"


def decodings(metrics: Mapping) -> list[tuple[str, Mapping]]:
    """("independent", metrics) and, when present, ("consistent", metrics["consistent"])."""
    out = [("independent", metrics)]
    if isinstance(metrics.get("consistent"), Mapping):
        out.append(("consistent", metrics["consistent"]))
    return out


def _names(level_names: Sequence[str] | None, depth: int) -> list[str]:
    given = list(level_names or [])
    return [
        shown(given[i]) if i < len(given) and given[i] else f"level {i + 1}" for i in range(depth)
    ]


def level_accuracy_figure(metrics: Mapping, level_names: Sequence[str] | None = None) -> go.Figure:
    """Grouped bars of accuracy per level, one bar per decoding, with FPA and TICE noted."""
    depth = len(metrics.get("level_accuracy") or [])
    names = _names(level_names, depth)
    fig = go.Figure()
    notes = []
    for decoding, m in decodings(metrics):
        values = [as_float(v) for v in (m.get("level_accuracy") or [])]
        fig.add_bar(
            x=names[: len(values)],
            y=values,
            name=decoding,
            marker_color=DECODING_COLORS[decoding],
            text=[fmt_share(v) for v in values],
            textposition="outside",
            hovertemplate="%{x}: %{y:.1%}<extra>" + decoding + "</extra>",
        )
        notes.append(f"{decoding}: FPA {fmt_share(m.get('fpa'))}, TICE {fmt_share(m.get('tice'))}")
    if metrics.get("hca") is not None:
        notes.append(f"HCA {fmt_share(metrics['hca'])}")
    n = metrics.get("n")
    fig.update_layout(
        title="Accuracy per level" + (f" ({n:,} images)" if isinstance(n, int) else ""),
        barmode="group",
        yaxis=dict(range=[0, 1.12], tickformat=".0%", title="accuracy"),
        xaxis=dict(title="level"),
        legend=dict(title="decoding"),
        margin=dict(t=90),
    )
    fig.add_annotation(
        text="<br>".join(notes),
        xref="paper",
        yref="paper",
        x=1.0,
        y=1.0,
        xanchor="right",
        yanchor="bottom",
        showarrow=False,
        align="right",
    )
    return fig
