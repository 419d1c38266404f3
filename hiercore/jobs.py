"""The background training queue: one worker thread, one run at a time, in submission order.

A GPU trains one model at a time, so runs wait in FIFO order behind the one in progress.
Everything a page needs to show a run lives in the workspace's `runs` table (state,
progress, metrics, error), so a reload or a second tab sees the same job: `status` reads
the database, never the queue's memory.

The studio calls `Workspace.interrupted_runs_to_failed()` once at start-up, before it
builds the queue, because no worker survives a restart.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hiercore.errors import HierTuneError
from hiercore.history import History
from hiercore.run_folder import RunFolder
from hiercore.store import Workspace, utc_now

log = logging.getLogger(__name__)

TrainFn = Callable[[int, dict, Callable[[Any], None], threading.Event], Any]
"""train_fn(run_id, config, progress_cb, stop_event) -> result with `.metrics` (or a dict)."""

MAX_CURVE_POINTS = 400


def default_train_fn(
    workspace: Workspace,
    run_id: int,
    config: dict,
    progress: Callable[[Any], None],
    stop_event: threading.Event,
) -> Any:
    """Train a run on its project's current taxonomy and labelled images.

    Images pinned to a split (the demo's held-out art style) stay on their side; the
    rest are split by `hiercore.data.split_samples`, stratified by leaf and seeded, so a
    run is reproducible from its stored config.
    """
    from hiercore.config import RunConfig
    from hiercore.data import split_samples
    from hiercore.taxonomy import LevelIndex
    from hiercore.training import train

    run = workspace.get_run(run_id)
    taxonomy, samples = workspace.training_snapshot(run["project_id"])
    if not samples:
        raise HierTuneError("The project has no labelled images to train on.")
    run_config = RunConfig.from_dict(config)
    train_s, val_s = split_samples(
        samples, LevelIndex.build(taxonomy), run_config.val_fraction, run_config.seed
    )
    out_dir = Path(run["out_dir"])
    return train(
        run_config,
        taxonomy,
        train_s,
        val_s,
        out_dir,
        progress=progress,
        stop_event=stop_event,
        # a resumed run (TrainingQueue.resume) continues from its last epoch checkpoint
        resume=RunFolder(out_dir).has_checkpoint(),
    )


class TrainingQueue:
    """Runs submitted training jobs one after the other on a single worker thread."""

    def __init__(
        self,
        workspace: Workspace,
        train_fn: TrainFn | None = None,
        min_progress_interval: float = 0.25,
    ) -> None:
        self.workspace = workspace
        self.train_fn: TrainFn = train_fn or functools.partial(default_train_fn, workspace)
        self.min_progress_interval = min_progress_interval
        self._lock = threading.Condition()
        self._waiting: collections.deque[int] = collections.deque()
        self._current: tuple[int, threading.Event] | None = None
        self._recorder: ProgressRecorder | None = None
        self._worker: threading.Thread | None = None
        self._closing = False

    # ------------------------------------------------------------------ public
    def submit(self, project_id: int, run_name: str, config: dict) -> int:
        """Record a queued run and put it at the back of the queue; its run id."""
        with self._lock:
            if self._closing:
                raise RuntimeError("The training queue has been shut down.")
            run_id = self.workspace.create_run(project_id, run_name, config)
            self._waiting.append(run_id)
            if self._worker is None:  # started lazily: importing the studio costs no thread
                self._worker = threading.Thread(
                    target=self._work, name="hiertune-training", daemon=True
                )
                self._worker.start()
            self._lock.notify_all()
        return run_id

    def resume(self, run_id: int) -> None:
        """Queue a stopped or failed run again; it continues from its last epoch checkpoint.

        The run keeps its id, config and folder; `default_train_fn` resumes whenever the
        run folder holds a checkpoint, so the epochs already done are not repeated.
        """
        with self._lock:
            if self._closing:
                raise RuntimeError("The training queue has been shut down.")
            run = self.workspace.get_run(run_id)
            if run["state"] not in ("stopped", "failed"):
                raise HierTuneError(
                    f"Run #{run_id} is {run['state']}; only a stopped or failed run can resume."
                )
            if not RunFolder(run["out_dir"]).has_checkpoint():
                raise HierTuneError(
                    f"Run #{run_id} has no checkpoint yet (it stopped before its first epoch "
                    "ended); start a new run instead."
                )
            # the stopped run's partial metrics no longer describe it once it trains again
            self.workspace.update_run(
                run_id, state="queued", error=None, finished=None, metrics=None
            )
            self._waiting.append(run_id)
            if self._worker is None:
                self._worker = threading.Thread(
                    target=self._work, name="hiertune-training", daemon=True
                )
                self._worker.start()
            self._lock.notify_all()

    def stop(self, run_id: int) -> bool:
        """Cancel a run: the running one stops within a step, a queued one never starts.

        A running run's progress says at once that it is stopping (it still scores its
        validation images before it ends, as stopped). Returns False when the run is
        neither running nor waiting here.
        """
        with self._lock:
            if self._current is not None and self._current[0] == run_id:
                self._current[1].set()
                if self._recorder is not None:
                    self._recorder.flush(force=True)
                return True
            if run_id in self._waiting:
                self._waiting.remove(run_id)
                self.workspace.update_run(run_id, state="stopped", finished=utc_now())
                return True
        return False

    def status(self, run_id: int) -> dict:
        """JSON-ready state of a run, read from the database (same for every tab)."""
        run = self.workspace.get_run(run_id)
        progress = run["progress"] or {}
        position = None
        if run["state"] == "queued":
            queued = self.workspace.queued_runs()
            position = queued.index(run_id) + 1 if run_id in queued else None
        return {
            "run_id": run_id,
            "name": run["name"],
            "state": run["state"],
            "phase": progress.get("phase"),
            "epoch": progress.get("epoch"),
            "epochs": progress.get("epochs"),
            "step": progress.get("step"),
            "steps_total": progress.get("steps_total"),
            "eta_s": progress.get("eta_s"),
            "stopping": run["state"] == "running" and bool(progress.get("stopping")),
            "metrics": run["metrics"],
            "progress": progress,
            "error": run["error"],
            "queue_position": position,
            "created": run["created"],
            "started": run["started"],
            "finished": run["finished"],
        }

    def running(self) -> int | None:
        """The id of the run in progress, if any."""
        with self._lock:
            return None if self._current is None else self._current[0]

    def shutdown(self, timeout: float | None = 10.0) -> None:
        """Stop the running job, mark the waiting ones stopped and join the worker."""
        with self._lock:
            self._closing = True
            while self._waiting:
                run_id = self._waiting.popleft()
                self.workspace.update_run(run_id, state="stopped", finished=utc_now())
            if self._current is not None:
                self._current[1].set()
            self._lock.notify_all()
            worker = self._worker
        if worker is not None:
            worker.join(timeout)
            if worker.is_alive():
                log.warning("the training worker did not stop within %s s", timeout)

    # ------------------------------------------------------------------ worker
    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._waiting and not self._closing:
                    self._lock.wait()
                if self._closing:
                    return
                run_id = self._waiting.popleft()
                stop_event = threading.Event()
                self._current = (run_id, stop_event)
            try:
                self._run(run_id, stop_event)
            except Exception:  # bookkeeping must never kill the worker
                log.exception("training queue bookkeeping failed for run %s", run_id)
            finally:
                with self._lock:
                    self._current = None

    def _run(self, run_id: int, stop_event: threading.Event) -> None:
        ws = self.workspace
        run = ws.get_run(run_id)
        fields = {}
        earlier = run["progress"] or {}
        if "stopping" in earlier:  # a resumed run is no longer being stopped
            fields["progress"] = {k: v for k, v in earlier.items() if k != "stopping"}
        ws.update_run(run_id, state="running", started=utc_now(), error=None, **fields)
        if stop_event.is_set():  # stopped between leaving the queue and starting
            ws.update_run(run_id, state="stopped", finished=utc_now())
            return
        progress = ProgressRecorder(ws, run_id, self.min_progress_interval, stop_event)
        with self._lock:
            self._recorder = progress
        try:
            result = self.train_fn(run_id, run["config"], progress, stop_event)
        except Exception as exc:
            progress.flush()
            first_line = next(iter(str(exc).strip().splitlines()), "")
            if isinstance(exc, HierTuneError):
                message = first_line
            else:
                message = f"internal error: {type(exc).__name__}: {first_line}"
                log.exception("run %s failed", run_id)
            ws.update_run(run_id, state="failed", error=message, finished=utc_now())
            return
        finally:
            with self._lock:
                self._recorder = None
        progress.flush()
        if isinstance(result, dict):  # {"metrics": ..., "state": ...} or the metrics alone
            metrics, reported = result.get("metrics", result), result.get("state")
        else:
            metrics, reported = getattr(result, "metrics", None), getattr(result, "state", None)
        stopped = stop_event.is_set() or reported == "stopped"
        state = "stopped" if stopped else "finished"
        ws.update_run(run_id, state=state, metrics=metrics, finished=utc_now())


class ProgressRecorder:
    """The progress callback handed to a train function: writes the latest event to the run.

    Writes are throttled (at most one per `min_interval` seconds), except that phase
    changes and evaluation results are written at once and `flush` writes the last
    event. Besides the latest event it keeps the run's `History` under "history" (every
    loss term of every step, thinned to at most MAX_CURVE_POINTS steps, and every
    evaluation), so live charts survive a page reload, and "stopping" once the run's
    `stop_event` is set.
    """

    def __init__(
        self,
        workspace: Workspace,
        run_id: int,
        min_interval: float = 0.25,
        stop_event: threading.Event | None = None,
    ) -> None:
        self.workspace = workspace
        self.run_id = run_id
        self.min_interval = min_interval
        self.stop_event = stop_event
        self._lock = threading.Lock()
        self._latest: dict | None = None
        self._history = History()
        self._last_write = float("-inf")
        self._pending = False

    def __call__(self, event: Any) -> None:
        data = _event_dict(event)
        with self._lock:
            urgent = self._latest is None or data.get("phase") != self._latest.get("phase")
            self._latest = data
            recorded = self._history.add_event(data)
            if recorded and len(self._history.steps) > MAX_CURVE_POINTS:
                # thinning keeps the whole run's shape in bounded JSON
                self._history = self._history.thinned(MAX_CURVE_POINTS // 2)
            if data.get("val"):
                urgent = True
            self._pending = True
            if urgent or time.monotonic() - self._last_write >= self.min_interval:
                self._write()

    def flush(self, force: bool = False) -> None:
        """Write the latest event if the throttle held it back (or at once, with `force`)."""
        with self._lock:
            if self._pending or force:
                self._write()

    def _write(self) -> None:
        progress = {**(self._latest or {}), "history": self._history.to_records()}
        if self.stop_event is not None and self.stop_event.is_set():
            progress["stopping"] = True
        self.workspace.update_run(self.run_id, progress=progress)
        self._last_write = time.monotonic()
        self._pending = False


def _event_dict(event: Any) -> dict:
    if isinstance(event, dict):
        return dict(event)
    if hasattr(event, "to_dict"):
        return event.to_dict()
    if dataclasses.is_dataclass(event) and not isinstance(event, type):
        return dataclasses.asdict(event)
    raise TypeError(f"A progress event must be a dict or a dataclass, not {type(event).__name__}.")
