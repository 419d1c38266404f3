"""The comparison table: every method on the same split, the same budget, several seeds.

`run_comparison` is the library entry point (the studio calls it with a progress
callback); ``python -m hiercore compare`` is its command line. For each seed and each
method it fits the method on the training samples, scores its per-level logits on the
evaluation samples with `hiercore.metrics.evaluate_predictions`, and then averages over
seeds (mean and sample standard deviation). It writes:

- ``comparison.csv``: one row per method, ``<metric>_mean`` and ``<metric>_std`` columns;
- ``comparison.md``: the same table for people, "mean ± std";
- ``comparison_runs.csv``: one row per method and seed;
- ``<method>/seed<k>/``: each run's metrics.json, predictions.npz and weights.

The split is fixed across methods and seeds (seeds change initialisation and batch
order). With the CLI, a data set whose samples carry a split (the demo manifest's
``split`` column: Twemoji + Noto for training, OpenMoji for evaluation) is used as given;
otherwise a stratified split of `val_fraction` is held out. Each method is scored once,
after training, so per-epoch validation is switched off.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from hiercore.errors import DataError, HierTuneError

if TYPE_CHECKING:
    import pandas as pd

    from hiercore.config import RunConfig
    from hiercore.taxonomy import Taxonomy
    from hiercore.training import ProgressEvent

METRICS = ("fpa", "fpa_consistent", "tice", "tice_consistent")
TAIL_METRICS = ("mistake_severity", "hca", "train_time_s")
TITLES = {
    "fpa": "FPA",
    "fpa_consistent": "FPA (consistent)",
    "tice": "TICE (independent)",
    "tice_consistent": "TICE (consistent)",
    "mistake_severity": "Mistake severity",
    "hca": "HCA",
    "train_time_s": "Train time (s)",
}


@dataclass
class CompareEvent:
    """Progress of a comparison: which run, and the run's own event."""

    method: str
    seed: int
    run: int
    """1-based index of this (method, seed) run."""
    runs: int
    phase: str
    """'start', 'progress' (see `event`) or 'done' (see `metrics`)."""
    event: ProgressEvent | None = None
    metrics: dict | None = None


def level_columns(taxonomy: Taxonomy) -> list[str]:
    """Names of the per-level accuracy columns: acc_<rank name> or acc_level<k>."""
    from hiercore.taxonomy import LevelIndex

    depth = LevelIndex.build(taxonomy).depth
    names = list(taxonomy.level_names)
    if len(names) != depth or len(set(names)) != depth:
        names = [f"level{i + 1}" for i in range(depth)]
    return ["acc_" + re.sub(r"[^0-9a-z]+", "_", n.lower()).strip("_") for n in names]


def run_row(method: str, seed: int, metrics: dict, acc_columns: list[str]) -> dict:
    """One per-seed row of the table from a `MethodResult.metrics()` dict."""
    row = {"method": method, "seed": seed, "state": metrics["state"]}
    cons = metrics.get("consistent", {})
    row.update(
        fpa=metrics.get("fpa"),
        fpa_consistent=cons.get("fpa"),
        tice=metrics.get("tice"),
        tice_consistent=cons.get("tice"),
    )
    for col, acc in zip(acc_columns, metrics.get("level_accuracy", []), strict=False):
        row[col] = acc
    row.update(
        mistake_severity=metrics.get("mistake_severity"),
        hca=metrics.get("hca"),
        trainable_params=metrics["trainable_params"],
        trainable_pct=metrics["trainable_pct"],
        train_time_s=metrics["train_time_s"],
        notes=metrics.get("notes", ""),
    )
    return {k: (math.nan if v is None else v) for k, v in row.items()}


def summarise(runs: pd.DataFrame, acc_columns: list[str]) -> pd.DataFrame:
    """Mean and sample std over seeds, one row per method (in the order of `runs`)."""
    import pandas as pd

    numeric = [*METRICS, *acc_columns, *TAIL_METRICS]
    rows = []
    for method, group in runs.groupby("method", sort=False):
        row: dict = {"method": method, "seeds": len(group)}
        for col in numeric:
            values = pd.to_numeric(group[col], errors="coerce")
            row[f"{col}_mean"] = values.mean()
            row[f"{col}_std"] = values.std(ddof=1) if values.notna().sum() > 1 else math.nan
        row["trainable_params"] = int(group["trainable_params"].iloc[0])
        row["trainable_pct"] = float(group["trainable_pct"].iloc[0])
        stopped = (group["state"] != "finished").any()
        row["notes"] = group["notes"].iloc[0] + ("; stopped early" if stopped else "")
        rows.append(row)
    return pd.DataFrame(rows)


def run_comparison(
    taxonomy: Taxonomy,
    train_samples: list,
    eval_samples: list,
    config: RunConfig,
    methods: str | list[str] = "all",
    seeds: int = 1,
    out_dir: str | Path = "comparison",
    progress: Callable[[CompareEvent], None] | None = None,
    stop_event: threading.Event | None = None,
    method_options: dict[str, dict] | None = None,
    header: dict | None = None,
) -> pd.DataFrame:
    """Fit and score every method for `seeds` seeds; write and return the summary table.

    Seeds are config.seed, config.seed + 1, ...; `method_options` maps a method name to
    keyword options of its factory (e.g. ``{"coop": {"n_ctx": 4}}``). The per-seed rows
    are in ``table.attrs["runs"]``. A set `stop_event` stops the current run and skips
    the rest; the table then holds what finished.
    """
    import pandas as pd

    from hiercore.baselines import frozen
    from hiercore.baselines.registry import create_method, resolve_methods

    names = resolve_methods(methods)
    if seeds < 1:
        raise DataError(f"The number of seeds must be at least 1, not {seeds}.")
    if not train_samples:
        raise DataError("The comparison has no training images.")
    if not eval_samples:
        raise DataError("The comparison has no evaluation images.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stop = stop_event or threading.Event()
    emit = progress or (lambda e: None)
    acc_columns = level_columns(taxonomy)
    options = method_options or {}
    lora_rows = [n for n in names if getattr(create_method(n), "needs_lora", False)]
    if lora_rows and config.lora == "none":
        raise HierTuneError(
            f"The rows {', '.join(lora_rows)} fine-tune LoRA adapters: choose lora vision, "
            "text or both, or leave those rows out."
        )
    plan = [(config.seed + k, name) for k in range(seeds) for name in names]
    rows = []
    with frozen.sharing():  # frozen-backbone rows encode the images once per seed
        for i, (seed, name) in enumerate(plan, start=1):
            if stop.is_set():
                break
            run_config = replace(config, seed=seed, eval_every_epoch=False)
            emit(CompareEvent(name, seed, i, len(plan), "start"))
            method = create_method(name, **options.get(name, {}))

            def forward(event: ProgressEvent, _n=name, _s=seed, _i=i) -> None:
                emit(CompareEvent(_n, _s, _i, len(plan), "progress", event=event))

            result = method.fit(
                taxonomy,
                train_samples,
                eval_samples,
                run_config,
                out / name / f"seed{seed}",
                forward,
                stop,
            )
            metrics = result.metrics()
            rows.append(run_row(name, seed, metrics, acc_columns))
            emit(CompareEvent(name, seed, i, len(plan), "done", metrics=metrics))
    runs = pd.DataFrame(rows)
    if runs.empty:
        table = pd.DataFrame(columns=table_columns(acc_columns))
    else:
        # methods in the order asked for, whatever order the seeds finished in
        runs["method"] = pd.Categorical(runs["method"], categories=names, ordered=True)
        runs = runs.sort_values(["method", "seed"], kind="stable")
        runs["method"] = runs["method"].astype(str)
        table = summarise(runs, acc_columns)[table_columns(acc_columns)]
    table.attrs["runs"] = runs
    runs.to_csv(out / "comparison_runs.csv", index=False)
    table.to_csv(out / "comparison.csv", index=False)
    info = {
        "model": config.model if not config.pretrained else f"{config.model} ({config.pretrained})",
        "train images": len(train_samples),
        "evaluation images": len(eval_samples),
        "seeds": ", ".join(str(config.seed + k) for k in range(seeds)),
        "budget": _budget(config),
        **(header or {}),
    }
    (out / "comparison.md").write_text(to_markdown(table, acc_columns, info))
    return table


def table_columns(acc_columns: list[str]) -> list[str]:
    cols = ["method", "seeds"]
    for col in [*METRICS, *acc_columns, *TAIL_METRICS]:
        if col == "train_time_s":
            cols += ["trainable_params", "trainable_pct"]
        cols += [f"{col}_mean", f"{col}_std"]
    return [*cols, "notes"]


def _budget(config: RunConfig) -> str:
    steps = f", at most {config.max_steps} steps" if config.max_steps else ""
    lora = f"LoRA {config.lora} rank {config.rank}" if config.lora != "none" else "no LoRA"
    return (
        f"{config.epochs} epoch{'s' if config.epochs != 1 else ''} of batch {config.batch_size}"
        f"{steps}, lr {config.lr:g}; "
        f"{lora} for the LoRA rows"
    )


def _cell(mean: float, std: float, digits: int = 3) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def to_markdown(table: pd.DataFrame, acc_columns: list[str], info: dict) -> str:
    """The table for people: metric cells as 'mean ± std', a header saying what was run."""
    titles = {**TITLES, **{c: "Acc " + c.removeprefix("acc_") for c in acc_columns}}
    metric_cols = [*METRICS, *acc_columns, "mistake_severity", "hca"]
    head = ["Method", *(titles[c] for c in metric_cols)]
    head += ["Trainable params", "Trainable %", titles["train_time_s"], "Notes"]
    lines = ["# Method comparison", ""]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    lines += [
        "- metrics: independent decoding unless marked consistent; per-level accuracy is "
        "independent; mean ± sample std over seeds",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(head) - 2) + ["---"]) + "|",
    ]
    for _, r in table.iterrows():
        cells = [str(r["method"])]
        cells += [_cell(r[f"{c}_mean"], r[f"{c}_std"]) for c in metric_cols]
        cells += [
            f"{int(r['trainable_params']):,}",
            f"{r['trainable_pct']:.3f}",
            _cell(r["train_time_s_mean"], r["train_time_s_std"], 1),
            str(r["notes"]).replace("|", "/"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def comparison_split(
    taxonomy: Taxonomy, samples: list, val_fraction: float, seed: int
) -> tuple[list, list, str]:
    """(train, evaluation, how): the samples' own split where they carry one (a manifest's
    ``split`` column), a stratified hold-out of `val_fraction` for the rest."""
    from hiercore.data import split_samples
    from hiercore.taxonomy import LevelIndex

    train, evals = split_samples(samples, LevelIndex.build(taxonomy), val_fraction, seed)
    if not evals:
        raise DataError(
            "No image is left for evaluation: mark some as 'val' in the split column or "
            "raise --val-fraction."
        )
    if any(s.split for s in samples):
        return train, evals, "the data's split column"
    return train, evals, f"stratified hold-out of {val_fraction:g} (seed {seed})"


__all__ = ["CompareEvent", "comparison_split", "run_comparison"]
