"""Validation curves of several runs on one plot (the run comparison's overlay)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from hiercore.figures.training_curves import VAL_LABELS


def overlaid_curves_figure(curves: pd.DataFrame, metric: str = "fpa") -> go.Figure:
    """One line per run of `metric` against epoch, from `run_comparison.epoch_curves`."""
    fig = go.Figure()
    part = curves[curves["metric"] == metric]
    for run, rows in part.groupby("run", sort=False):
        rows = rows.sort_values("epoch")
        fig.add_scatter(x=rows["epoch"], y=rows["value"], mode="lines+markers", name=str(run))
    label = VAL_LABELS.get(metric, metric)
    fig.update_layout(
        title=f"Validation {label} per epoch" + ("" if len(part) else " (no epochs recorded)"),
        xaxis_title="epoch",
        yaxis_title=label,
        height=380,
    )
    return fig
