"""The objects every tab and API endpoint shares: the workspace, the training queue, models.

All state a user cares about lives in the workspace's SQLite database and run folders
(`hiercore.store`); what is held here is either a handle on it (`Workspace`,
`TrainingQueue`) or a cache that can be rebuilt from it at any time (loaded predictors,
read-back run results). The only per-browser state is which project is open, kept in
the browser's local storage by `webapp.app`.
"""

from __future__ import annotations

import collections
import functools
import logging
import os
import threading
from pathlib import Path

from hiercore.errors import HierTuneError
from hiercore.jobs import TrainingQueue
from hiercore.models.loading import DEFAULT_MODEL_DIR
from hiercore.store import Workspace
from webapp.run_jobs import is_comparison, studio_train_fn

log = logging.getLogger(__name__)

ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets"


def default_model() -> str:
    """'default' when the embedded model is shipped, else the random 'tiny-random'."""
    forced = os.environ.get("HIERTUNE_MODEL")
    if forced:
        return forced
    return "default" if (DEFAULT_MODEL_DIR / "open_clip_config.json").is_file() else "tiny-random"


def model_notice() -> str:
    """One line for the header when new runs and suggestions use the random test model."""
    if default_model() != "tiny-random":
        return ""
    why = (
        "HIERTUNE_MODEL selects it"
        if os.environ.get("HIERTUNE_MODEL")
        else "the embedded model is not installed (assets/model)"
    )
    return (
        f"⚠️ The studio uses **tiny-random**, a random untrained CLIP, because {why}: "
        "suggestions and zero-shot predictions are noise until you train a run."
    )


def whole_number(value: object, what: str) -> int:
    """`value` (an int, an integral float or digits) as an int; one sentence otherwise."""
    try:
        number = float(value) if not isinstance(value, int) else value
        if isinstance(value, bool) or number != int(number):
            raise ValueError
        return int(number)
    except (TypeError, ValueError, OverflowError):
        text = str(value)
        text = text if len(text) <= 30 else text[:27] + "..."
        raise HierTuneError(f"{what} must be a whole number, not {text!r}.") from None


class Studio:
    """The workspace, its training queue and caches of loaded models and results."""

    def __init__(self, workspace_dir: str | Path) -> None:
        self.workspace = Workspace(workspace_dir)
        failed = self.workspace.interrupted_runs_to_failed()
        if failed:
            log.warning("runs %s were interrupted by a restart and are marked failed", failed)
        self.queue = TrainingQueue(
            self.workspace, functools.partial(studio_train_fn, self.workspace)
        )
        self._lock = threading.Lock()
        self._predictors: collections.OrderedDict = collections.OrderedDict()
        self._zero_shot_models: dict = {}
        self._results: collections.OrderedDict = collections.OrderedDict()

    @property
    def root(self) -> Path:
        return self.workspace.root

    def close(self) -> None:
        self.queue.shutdown()
        self.workspace.close()

    # ------------------------------------------------------------------ projects
    def project_id(self, value: object) -> int:
        """The open project's id from the browser's stored value; one sentence if none."""
        try:
            pid = int(value)  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError):  # None, '', NaN, infinity
            raise HierTuneError("Open or create a project first (Projects tab).") from None
        self.workspace.get_project(pid)  # raises if it was deleted meanwhile
        return pid

    def resolve_project(self, project: str | int) -> int:
        """A project named by id or by name (API callers use either)."""
        if isinstance(project, int) or str(project).strip().isdigit():
            return self.project_id(project)
        pid = self.workspace.find_project(str(project))
        if pid is None:
            raise HierTuneError(f"There is no project named {project!r}.")
        return pid

    # ------------------------------------------------------------------ models
    def latest_finished_run(self, project_id: int) -> dict | None:
        """The newest finished fine-tuning run (comparisons have no single model)."""
        runs = self.workspace.list_runs(project_id)
        done = [
            int(r.id)
            for r in runs.itertuples()
            if r.state == "finished" and not is_comparison(r.config)
        ]
        return self.workspace.get_run(done[-1]) if done else None

    def predictor(self, project_id: int, run_id: int | None = None, latest: bool = True):
        """(Predictor, description): a run's model, else the latest finished run's, else
        zero-shot with the default model over the project's current taxonomy."""
        from hiercore.predict import Predictor

        run = self.workspace.get_run(run_id) if run_id else None
        if run is None and latest:
            run = self.latest_finished_run(project_id)
        if run is not None:
            if run["state"] != "finished":
                raise HierTuneError(f"Run {run['name']!r} has not finished ({run['state']}).")
            key = ("run", run["id"])
            what = f"run {run['name']!r}"
            build = functools.partial(Predictor.from_run, run["out_dir"], device="auto")
        else:
            taxonomy = self.workspace.taxonomy(project_id)
            if len(taxonomy) == 0:
                raise HierTuneError("The project's taxonomy is empty: add or import classes.")
            model = default_model()
            # the version id changes with every edit and undo (no 16k-node repr as a key)
            key = ("zero-shot", project_id, model, self.workspace.taxonomy_version(project_id))
            what = f"zero-shot {model} model (no finished run yet)"
            build = functools.partial(self._zero_shot, taxonomy, model)
        with self._lock:
            if key in self._predictors:
                self._predictors.move_to_end(key)
                return self._predictors[key], what
        predictor = build()
        with self._lock:
            self._predictors[key] = predictor
            while len(self._predictors) > 3:
                self._predictors.popitem(last=False)
        return predictor, what

    def _zero_shot(self, taxonomy, model: str):
        """A zero-shot predictor that reuses the loaded model and the prompt embeddings of
        earlier trees: after an edit only the changed nodes' prompts are encoded."""
        from hiercore.models import load_clip
        from hiercore.predict import Predictor, PromptFeatures

        with self._lock:
            cached = self._zero_shot_models.get(model)
        if cached is None:
            cached = (load_clip(model), PromptFeatures())
            with self._lock:
                self._zero_shot_models = {model: cached}  # one frozen model at a time
        bundle, prompts = cached
        return Predictor.zero_shot(
            taxonomy, model, device="auto", prompt_cache=prompts, bundle=bundle
        )

    def results(self, run_id: int):
        """The read-back results of a finished run (cached: a run folder does not change)."""
        from hiercore.run_results import RunResults

        run = self.workspace.get_run(run_id)
        if run["state"] != "finished":
            raise HierTuneError(f"Run {run['name']!r} has not finished ({run['state']}).")
        with self._lock:
            if run_id in self._results:
                return self._results[run_id]
        results = RunResults.load(run["out_dir"])
        with self._lock:
            self._results[run_id] = results
            while len(self._results) > 4:
                self._results.popitem(last=False)
        return results
