"""The run comparison table as a Plotly table, best value per metric highlighted.

One row per run or baseline (docs/method.md §6). Numeric columns are written with three
significant decimals; for each metric column the best cell is shaded, where "best" is
the largest value except for error-like columns (`lower_is_better`). Column names are
matched in any case with spaces as underscores, so the studio's "TICE" and "severity"
are error-like too; columns that are not a quality (`NOT_RANKED`) are never shaded.
Rows marked `partial` (a stopped run: its metrics are of a model trained part way) are
written in grey and never shaded as best.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from hiercore.figures.lineage import shown

LOWER_IS_BETTER = (
    "tice",
    "consistent_tice",
    "mistake_severity",
    "severity",
    "loss",
    "train_time_s",
)
NOT_RANKED = ("trainable_%", "trainable_pct", "steps", "seed", "n_val", "n_train")
BEST_FILL = "#d9f2d9"
PLAIN_FILL = "white"
PARTIAL_FONT = "#888888"
PLAIN_FONT = "#222222"


def _cell_text(value: object) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    if isinstance(value, (float, np.floating)):
        return f"{value:.3f}"
    return shown(value)  # a run's name is the user's


def metric_key(column: object) -> str:
    """A column name as the metric it holds: 'consistent TICE' -> 'consistent_tice'."""
    return str(column).strip().lower().replace(" ", "_")


def comparison_table_figure(
    df: pd.DataFrame,
    lower_is_better: Iterable[str] = LOWER_IS_BETTER,
    partial: Sequence[bool] | None = None,
) -> go.Figure:
    """A table of `df` (one row per run) with the best value of each numeric column shaded
    among the rows not marked `partial`."""
    lower = {metric_key(c) for c in lower_is_better}
    part = [bool(p) for p in partial] if partial is not None else [False] * len(df)
    whole = pd.Series([not p for p in part], index=df.index)
    fills, texts = [], []
    for column in df.columns:
        values = df[column]
        texts.append([_cell_text(v) for v in values])
        fill = [PLAIN_FILL] * len(values)
        numeric = pd.to_numeric(values, errors="coerce").where(whole)
        key = metric_key(column)
        ranked = key not in NOT_RANKED and pd.api.types.is_numeric_dtype(values)
        if ranked and numeric.notna().sum() > 1:
            best = numeric.min() if key in lower else numeric.max()
            fill = [BEST_FILL if v == best else PLAIN_FILL for v in numeric]
        fills.append(fill)
    font = [PARTIAL_FONT if p else PLAIN_FONT for p in part]
    fig = go.Figure(
        go.Table(
            header=dict(values=[shown(c) for c in df.columns], fill_color="#eeeeee", align="left"),
            cells=dict(
                values=texts,
                fill_color=fills,
                font=dict(color=[font] * len(df.columns)),
                align="left",
            ),
        )
    )
    fig.update_layout(
        title=f"Run comparison ({len(df)} runs)",
        margin=dict(t=50, l=10, r=10, b=10),
        height=max(250, 110 + 30 * len(df)),
    )
    return fig
