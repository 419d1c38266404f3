"""Live training curves: loss terms per optimiser step and validation metrics per epoch.

The history is a `hiercore.history.History` (what `hiercore.training.train` writes to
history.json and the studio keeps in a running run's progress) or its records:
{"step", "epoch", "losses": {"total", "ce", "tpkl", "hisce"}} for a step and
{"step", "epoch", "val": {"fpa", "tice", ...}} after an epoch's evaluation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from hiercore.figures.accuracy import as_float
from hiercore.history import History

LOSS_ORDER = ("total", "ce", "tpkl", "hisce")
LOSS_LABELS = {"total": "total", "ce": "cross-entropy", "tpkl": "TP-KL", "hisce": "HiSCE"}
VAL_LABELS = {"fpa": "FPA", "tice": "TICE", "consistent_fpa": "FPA (consistent)"}
VAL_COLORS = {"fpa": "#2E91E5", "tice": "#FB0D0D", "consistent_fpa": "#1CA71C"}


def _ordered(keys: set[str], preferred: Sequence[str]) -> list[str]:
    return [k for k in preferred if k in keys] + sorted(keys - set(preferred))


def training_curves_figure(history: History | Sequence[Mapping]) -> go.Figure:
    """Two panels: each loss term against step, and validation FPA/TICE against epoch."""
    if isinstance(history, History):
        history = history.to_records()
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("Loss terms per step", "Validation per epoch"),
        horizontal_spacing=0.12,
    )
    steps = [h for h in history if isinstance(h.get("losses"), Mapping)]
    evals = [h for h in history if isinstance(h.get("val"), Mapping)]
    loss_keys = _ordered({k for h in steps for k in h["losses"]}, LOSS_ORDER)
    for key in loss_keys:
        points = [(h["step"], as_float(h["losses"].get(key))) for h in steps]
        fig.add_scatter(
            x=[s for s, _ in points],
            y=[v for _, v in points],
            mode="lines",
            name=LOSS_LABELS.get(key, key),
            line=dict(width=2.5 if key == "total" else 1.5),
            hovertemplate="step %{x}: %{y:.4f}<extra>" + LOSS_LABELS.get(key, key) + "</extra>",
            row=1,
            col=1,
        )
    val_keys = _ordered({k for h in evals for k in h["val"]}, tuple(VAL_LABELS))
    for key in val_keys:
        points = [(h["epoch"], as_float(h["val"].get(key))) for h in evals]
        fig.add_scatter(
            x=[e for e, _ in points],
            y=[v for _, v in points],
            mode="lines+markers",
            name=VAL_LABELS.get(key, key),
            line=dict(color=VAL_COLORS.get(key)),
            hovertemplate="epoch %{x}: %{y:.1%}<extra>" + VAL_LABELS.get(key, key) + "</extra>",
            row=1,
            col=2,
        )
    fig.update_xaxes(title_text="step", row=1, col=1)
    fig.update_yaxes(title_text="loss", row=1, col=1)
    fig.update_xaxes(title_text="epoch", dtick=1, row=1, col=2)
    fig.update_yaxes(title_text="share", tickformat=".0%", rangemode="tozero", row=1, col=2)
    if not steps:
        fig.add_annotation(
            text="no training steps yet",
            xref="x domain",
            yref="y domain",
            x=0.5,
            y=0.5,
            showarrow=False,
        )
    if not evals:
        # an empty trace makes Plotly draw the right panel's axes, which the note sits in
        fig.add_scatter(x=[], y=[], showlegend=False, hoverinfo="skip", row=1, col=2)
        fig.add_annotation(
            text="no validation yet",
            xref="x2 domain",
            yref="y2 domain",
            x=0.5,
            y=0.5,
            showarrow=False,
        )
    last = steps[-1] if steps else None
    title = "Training"
    if last is not None:
        title += f": step {last['step']}, epoch {last.get('epoch', '?')}"
    fig.update_layout(title=title, legend=dict(orientation="h", y=-0.2))
    return fig
