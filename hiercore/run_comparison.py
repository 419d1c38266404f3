"""Run comparison that explains: which settings differ, how each run learnt, which nodes
got better or worse.

- `settings_frame`: one row per run with only the run settings that differ between the
  runs (all of them for a single run) beside its headline metrics.
- `epoch_curves`: long-form (run, epoch, metric, value) rows of the validation metrics
  each run recorded after every epoch (`history.json`), for overlaid curves.
- `node_diff`: per-node accuracy of two runs and its change. A node's accuracy is the
  share of the validation images under it whose prediction at its level is that node
  (its recall at its level). Nodes are matched by id, so runs on different versions of
  the taxonomy compare on the nodes they share.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from hiercore.history import History

METRIC_COLUMNS = {"FPA": "fpa", "TICE": "tice", "HCA": "hca"}
DIFF_COLUMNS = ["node", "node_id", "level", "n_a", "accuracy_a", "n_b", "accuracy_b", "change"]


def settings_frame(runs: Sequence[tuple[str, Mapping, Mapping]]) -> pd.DataFrame:
    """(name, config, metrics) per run -> run, the differing settings, the metrics."""
    configs = [dict(c or {}) for _, c, _ in runs]
    keys = sorted({k for c in configs for k in c})
    if len(runs) > 1:
        keys = [k for k in keys if len({repr(c.get(k)) for c in configs}) > 1]
    rows = []
    for (name, _, metrics), config in zip(runs, configs, strict=True):
        m = metrics or {}
        row = {"run": name}
        row.update({k: _cell(config.get(k)) for k in keys})
        row.update({label: m.get(key) for label, key in METRIC_COLUMNS.items()})
        row["consistent FPA"] = (m.get("consistent") or {}).get("fpa")
        rows.append(row)
    columns = ["run", *keys, *METRIC_COLUMNS, "consistent FPA"]
    return pd.DataFrame(rows, columns=columns)


def _cell(value: object) -> object:
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)


def epoch_curves(histories: Mapping[str, History | Sequence[Mapping]]) -> pd.DataFrame:
    """Run name -> its `History` (as `RunResults.history` holds it) or history.json
    records; the validation metrics per epoch, long form."""
    rows = []
    for name, history in histories.items():
        if isinstance(history, History):
            history = history.to_records()
        for h in history:
            val = h.get("val")
            if not isinstance(val, Mapping):
                continue
            for metric, value in val.items():
                if isinstance(value, int | float) and np.isfinite(value):
                    rows.append(
                        {"run": name, "epoch": h.get("epoch"), "metric": metric, "value": value}
                    )
    return pd.DataFrame(rows, columns=["run", "epoch", "metric", "value"])


def node_accuracy(results, decoding: str = "independent") -> dict[str, tuple[int, int, int]]:
    """Node id -> (1-based level, images under it, of which predicted as it at its level)."""
    pred = results.pred(decoding)
    out = {}
    for level, nodes in enumerate(results.index.level_nodes):
        t, p = results.true[:, level], pred[:, level]
        for c, node in enumerate(nodes):
            if results.index.padded[level][c]:
                continue
            under = t == c
            n = int(under.sum())
            if n:
                out[node] = (level + 1, n, int((p[under] == c).sum()))
    return out


def node_diff(results_a, results_b, decoding: str = "independent") -> pd.DataFrame:
    """Per-node accuracy of run A and run B and the change (B - A), most worsened first."""
    a, b = node_accuracy(results_a, decoding), node_accuracy(results_b, decoding)
    tax = results_b.taxonomy
    rows = []
    for node in a.keys() & b.keys():
        (level, n_a, ok_a), (_, n_b, ok_b) = a[node], b[node]
        acc_a, acc_b = ok_a / n_a, ok_b / n_b
        name = " / ".join(tax.path_names(node)) if node in tax else node
        rows.append(
            {
                "node": name,
                "node_id": node,
                "level": level,
                "n_a": n_a,
                "accuracy_a": acc_a,
                "n_b": n_b,
                "accuracy_b": acc_b,
                "change": acc_b - acc_a,
            }
        )
    frame = pd.DataFrame(rows, columns=DIFF_COLUMNS)
    return frame.sort_values(["change", "node"], kind="stable").reset_index(drop=True)
