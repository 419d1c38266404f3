"""What fine-tuning and the hierarchy-aware losses change, over seeds (issue #8 F).

`method_effect_figure` draws one group of bars per metric (FPA with independent and with
consistent decoding, TICE, accuracy per level) and one bar per method inside it: the mean
over seeds with a 95% t-interval, and every seed as a dot, so a difference that the
seeds do not support is visible as overlapping intervals rather than hidden in a mean.
Input is the per-seed table a comparison writes (`comparison_runs.csv`, or the claim
study's `runs.csv`): one row per (method, seed).
"""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go
from scipy import stats

from hiercore.figures.lineage import shown

METRIC_LABELS = {
    "fpa": "FPA",
    "fpa_consistent": "FPA, consistent decoding",
    "tice": "TICE (lower is better)",
}

METHOD_LABELS = {
    "zero-shot": "zero-shot",
    "level-ce": "CE per level",
    "tpkl": "CE + TP-KL",
    "hisce": "CE + HiSCE",
    "tpkl-hisce": "CE + TP-KL + HiSCE",
    "ce-scaled": "(1 + α)·CE (control)",
    "ce-balance": "CE + α·B (control)",
    "flat-ce-marginal": "flat leaf CE, parents marginalised",
    "tpkl-size": "CE + size-corrected TP-KL",
}

COLOURS = ["#9e9e9e", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]


def interval(values: pd.Series) -> tuple[float, float]:
    """(mean, half-width of the 95% t-interval); half-width 0 for one value or none."""
    v = pd.to_numeric(values, errors="coerce").dropna()
    if v.empty:
        return math.nan, 0.0
    if len(v) < 2 or v.std(ddof=1) == 0:
        return float(v.mean()), 0.0
    half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    return float(v.mean()), float(half)


def effect_metrics(runs: pd.DataFrame) -> list[str]:
    """The metric columns drawn: the headline ones, then accuracy per level."""
    head = [m for m in METRIC_LABELS if m in runs.columns]
    return head + [c for c in runs.columns if c.startswith("acc_")]


def method_effect_figure(
    runs: pd.DataFrame, methods: list[str] | None = None, title: str | None = None
) -> go.Figure:
    """Grouped bars (mean ± 95% interval, seeds as dots) of `methods` over the metrics."""
    if runs.empty:
        raise ValueError("There are no runs to draw.")
    methods = methods or list(dict.fromkeys(runs["method"]))
    metrics = effect_metrics(runs)
    labels = [METRIC_LABELS.get(m, m.removeprefix("acc_") + " accuracy") for m in metrics]
    fig = go.Figure()
    for i, method in enumerate(methods):
        rows = runs[runs["method"] == method]
        if rows.empty:
            continue
        name = METHOD_LABELS.get(method, method)
        means, halves = zip(*(interval(rows[m]) for m in metrics), strict=True)
        seeds = rows["seed"].nunique() if "seed" in rows else len(rows)
        fig.add_bar(
            x=labels,
            y=means,
            name=f"{shown(name)} ({seeds} seed{'s' if seeds != 1 else ''})",
            marker_color=COLOURS[i % len(COLOURS)],
            offsetgroup=str(i),
            error_y=dict(type="data", array=halves, visible=True, thickness=1.5, width=4),
            customdata=[[shown(name), h] for h in halves],
            hovertemplate="%{customdata[0]}<br>%{x}: %{y:.3f} ± %{customdata[1]:.3f}"
            "<extra></extra>",
        )
        for metric, label in zip(metrics, labels, strict=True):
            values = pd.to_numeric(rows[metric], errors="coerce").dropna()
            fig.add_scatter(
                x=[label] * len(values),
                y=values,
                mode="markers",
                marker=dict(size=5, color="black", opacity=0.6),
                offsetgroup=str(i),
                showlegend=False,
                hoverinfo="skip",
            )
    fig.update_layout(
        title=title or "Methods over seeds: mean, 95% interval, each seed a dot",
        barmode="group",
        scattermode="group",
        yaxis=dict(title="score", rangemode="tozero"),
        legend=dict(orientation="h", y=-0.2),
        margin=dict(t=60, l=50, r=10, b=40),
        height=460,
    )
    return fig
