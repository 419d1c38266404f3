"""What the studio's training queue runs: a fine-tuning run, or a baseline comparison.

Both are queue jobs (one at a time, cancellable, progress in the database). A run's
config dict is a `RunConfig`; a comparison's carries `compare_methods` besides, and its
metrics hold one entry per method under "comparison" so the results tab's comparison
table can list them beside the project's own runs.

For the live chart the queue's recorder keeps the run's `hiercore.history.History` (every
loss term) in the progress it stores, so a reload or another tab draws the same curves.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from hiercore.config import RunConfig
from hiercore.errors import HierTuneError
from hiercore.jobs import default_train_fn
from hiercore.store import Workspace

log = logging.getLogger(__name__)

COMPARE_KEY = "compare_methods"


def _as_dict(event) -> dict:
    return event.to_dict() if hasattr(event, "to_dict") else dict(event)


def studio_train_fn(workspace: Workspace, run_id: int, config: dict, progress, stop_event):
    """The queue's train function: a comparison when the config asks for one, else a run."""
    if COMPARE_KEY in config:
        return comparison_job(workspace, run_id, config, progress, stop_event)
    result = default_train_fn(workspace, run_id, config, progress, stop_event)
    if getattr(result, "state", None) == "finished":
        precompute_maps_in_background(workspace.get_run(run_id)["out_dir"])
    return result


def precompute_maps_in_background(run_dir) -> threading.Thread:
    """Fit the run's embedding maps after it finishes, so that the Results tab's maps
    button reads them from the cache (a first UMAP call in a process compiles for ~15 s)."""
    from hiercore.run_results import RunResults

    def work() -> None:
        try:
            RunResults.load(run_dir).precompute_maps()
        except Exception:  # a map is a convenience: the button computes it again
            log.warning("precomputing the embedding maps of %s failed", run_dir, exc_info=True)

    thread = threading.Thread(target=work, name="precompute-maps", daemon=True)
    thread.start()
    return thread


def comparison_job(workspace: Workspace, run_id: int, config: dict, progress, stop_event):
    """`run_comparison` over the project's labelled images, reported as one queue job."""
    from hiercore.baselines.compare import comparison_split, run_comparison

    settings = dict(config)
    methods = settings.pop(COMPARE_KEY)
    run_config = RunConfig.from_dict(settings)
    run = workspace.get_run(run_id)
    taxonomy = workspace.taxonomy(run["project_id"])
    samples = workspace.samples(run["project_id"])
    if not samples:
        raise HierTuneError("The project has no labelled images to compare methods on.")
    train_s, eval_s, _ = comparison_split(
        taxonomy, samples, run_config.val_fraction, run_config.seed
    )

    def forward(ev) -> None:
        inner = _as_dict(ev.event) if ev.event is not None else {}
        progress(
            {
                **inner,
                "phase": inner.get("phase", "train"),
                "message": f"{ev.method}: method {ev.run} of {ev.runs}",
                "epoch": ev.run,
                "epochs": ev.runs,
            }
        )

    table = run_comparison(
        taxonomy,
        train_s,
        eval_s,
        run_config,
        methods,
        1,
        Path(run["out_dir"]),
        progress=forward,
        stop_event=stop_event,
    )
    rows = {r["method"]: _metrics_of_row(r) for r in table.to_dict("records")}
    state = "stopped" if stop_event.is_set() else "finished"
    return {"metrics": {"comparison": rows, "methods": list(rows)}, "state": state}


def _metrics_of_row(row: dict) -> dict:
    """A summary row (`<metric>_mean` columns) in the shape of a run's metrics."""

    def get(key):
        value = row.get(f"{key}_mean")
        return None if value is None or value != value else float(value)  # NaN -> None

    return {
        "method": row["method"],
        "fpa": get("fpa"),
        "tice": get("tice"),
        "consistent": {"fpa": get("fpa_consistent"), "tice": get("tice_consistent")},
        "hca": get("hca"),
        "mistake_severity": get("mistake_severity"),
        "trainable_pct": row.get("trainable_pct"),
        "train_time_s": get("train_time_s"),
    }


def is_comparison(config: dict | None) -> bool:
    return bool(config) and COMPARE_KEY in config


def submit_comparison(studio, project_id: int, base: RunConfig, methods: str | list[str]) -> int:
    """Queue a comparison of `methods` ('all', comma-separated or a list; empty: all) with
    `base`'s budget."""
    from hiercore.baselines.registry import list_methods, resolve_methods

    list_methods()  # loads the method families: resolve_methods checks names against them
    everything = methods in ("", "all", [], None)
    names = resolve_methods("all" if everything else methods)
    config = {**base.to_dict(), COMPARE_KEY: names}
    label = "all methods" if everything else ", ".join(names)
    return studio.queue.submit(project_id, f"comparison ({label})", config)
