"""Tests of the background training queue with fake train functions."""

from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hiercore.errors import HierTuneError
from hiercore.history import History
from hiercore.jobs import TrainingQueue
from hiercore.store import INTERRUPTED, Workspace

WAIT = 10.0  # generous bound for a thread hand-over on a loaded CI machine


def wait_for(predicate, timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


@dataclass
class FakeEvent:
    """Shaped like hiercore.training.ProgressEvent."""

    phase: str
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    steps_total: int = 0
    losses: dict = field(default_factory=dict)
    val: dict | None = None


@dataclass
class FakeResult:
    state: str
    metrics: dict


@pytest.fixture
def ws(tmp_path):
    with Workspace(tmp_path) as workspace:
        yield workspace


@pytest.fixture
def project(ws):
    return ws.create_project("p")


def make_queue(ws, train_fn, **kw):
    queue = TrainingQueue(ws, train_fn, **kw)
    return queue


def test_progress_and_metrics_flow_into_the_database(ws, project):
    calls = []

    def train(run_id, config, progress, stop_event):
        calls.append((run_id, config))
        for epoch in (1, 2):
            for step in range(1, 4):
                s = (epoch - 1) * 3 + step
                progress(FakeEvent("train", epoch, 2, s, 6, {"total": 10.0 - s}))
            progress(FakeEvent("eval", epoch, 2, epoch * 3, 6, val={"fpa": 0.25 * epoch}))
        progress({"phase": "done", "epoch": 2, "epochs": 2, "step": 6, "steps_total": 6})
        return FakeResult("finished", {"fpa": 0.5, "tice": 0.1})

    queue = make_queue(ws, train, min_progress_interval=0.0)
    try:
        run_id = queue.submit(project, "first", {"lr": 0.1})
        assert wait_for(lambda: queue.status(run_id)["state"] == "finished")
    finally:
        queue.shutdown()
    assert calls == [(run_id, {"lr": 0.1})]
    status = queue.status(run_id)
    assert status["metrics"] == {"fpa": 0.5, "tice": 0.1}
    assert (status["epoch"], status["step"], status["phase"]) == (2, 6, "done")
    assert status["queue_position"] is None
    progress = status["progress"]
    history = History.from_progress(progress)
    assert [(p.step, p.losses) for p in history.steps] == [
        (s, {"total": 10.0 - s}) for s in range(1, 7)
    ]
    assert [(p.epoch, p.val) for p in history.evals] == [(1, {"fpa": 0.25}), (2, {"fpa": 0.5})]
    run = ws.get_run(run_id)
    assert run["started"] <= run["finished"]
    # A second connection (another tab, a reloaded page) sees the same job.
    with Workspace(ws.root) as other:
        assert TrainingQueue(other).status(run_id) == status


def test_progress_writes_are_throttled_but_the_last_is_kept(ws, project, monkeypatch):
    writes = []
    original = Workspace.update_run

    def counting(self, run_id, **fields):
        if "progress" in fields:
            writes.append(fields["progress"]["step"])
        return original(self, run_id, **fields)

    monkeypatch.setattr(Workspace, "update_run", counting)

    def train(run_id, config, progress, stop_event):
        for step in range(1, 301):
            progress({"phase": "train", "step": step, "losses": {"total": 1.0}})
            time.sleep(0.001)
        return {"metrics": {}}

    queue = make_queue(ws, train, min_progress_interval=0.25)
    try:
        run_id = queue.submit(project, "r", {})
        assert wait_for(lambda: queue.status(run_id)["state"] == "finished")
    finally:
        queue.shutdown()
    # 300 events over about 0.3-1 s: the first (a new phase), a few throttled ones, the last.
    assert 2 <= len(writes) <= 12
    assert writes[0] == 1 and writes[-1] == 300
    assert queue.status(run_id)["step"] == 300


def test_jobs_run_one_at_a_time_in_submission_order(ws, project):
    log = []
    release = threading.Event()

    def train(run_id, config, progress, stop_event):
        log.append(("start", config["k"]))
        if config["k"] == 0:
            release.wait(WAIT)
        time.sleep(0.02)
        log.append(("end", config["k"]))
        return {"metrics": {"k": config["k"]}}

    queue = make_queue(ws, train)
    try:
        ids = [queue.submit(project, f"r{k}", {"k": k}) for k in range(3)]
        assert wait_for(lambda: queue.status(ids[0])["state"] == "running")
        assert [queue.status(i)["queue_position"] for i in ids] == [None, 1, 2]
        assert [queue.status(i)["state"] for i in ids] == ["running", "queued", "queued"]
        assert queue.running() == ids[0]
        release.set()
        assert wait_for(lambda: queue.status(ids[2])["state"] == "finished")
    finally:
        queue.shutdown()
    assert log == [(e, k) for k in range(3) for e in ("start", "end")]
    assert [queue.status(i)["metrics"] for i in ids] == [{"k": 0}, {"k": 1}, {"k": 2}]


def test_stop_a_running_job_within_a_step(ws, project):
    steps = []

    def train(run_id, config, progress, stop_event):
        step = 0
        while not stop_event.is_set() and step < 10_000:
            step += 1
            steps.append(step)
            progress({"phase": "train", "step": step})
            time.sleep(0.005)
        return FakeResult("stopped" if stop_event.is_set() else "finished", {"steps": step})

    queue = make_queue(ws, train)
    try:
        run_id = queue.submit(project, "long", {})
        assert wait_for(lambda: len(steps) >= 3)
        asked = time.monotonic()
        assert queue.stop(run_id)
        assert wait_for(lambda: queue.status(run_id)["state"] == "stopped", timeout=2.0)
        assert time.monotonic() - asked < 2.0
    finally:
        queue.shutdown()
    status = queue.status(run_id)
    assert status["metrics"] == {"steps": len(steps)}
    assert status["step"] == len(steps)  # the last progress event was written
    assert len(steps) < 10_000


def test_stop_a_queued_job_before_it_starts(ws, project):
    started = []
    release = threading.Event()

    def train(run_id, config, progress, stop_event):
        started.append(run_id)
        release.wait(WAIT)
        return {"metrics": {}}

    queue = make_queue(ws, train)
    try:
        first = queue.submit(project, "first", {})
        second = queue.submit(project, "second", {})
        third = queue.submit(project, "third", {})
        assert wait_for(lambda: started == [first])
        assert queue.stop(second)
        assert queue.status(second)["state"] == "stopped"
        assert queue.status(third)["queue_position"] == 1
        assert not queue.stop(second)  # already out of the queue
        release.set()
        assert wait_for(lambda: queue.status(third)["state"] == "finished")
    finally:
        queue.shutdown()
    assert started == [first, third]
    assert queue.status(first)["state"] == "finished"


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (
            HierTuneError("The project has no labelled images."),
            "The project has no labelled images.",
        ),
        (KeyError("lr"), "internal error: KeyError: 'lr'"),
        (
            RuntimeError("CUDA out of memory.\nTried to allocate"),
            "internal error: RuntimeError: CUDA out of memory.",
        ),
    ],
)
def test_a_failing_train_function_marks_the_run_failed(ws, project, error, message):
    def train(run_id, config, progress, stop_event):
        progress({"phase": "train", "step": 1})
        raise error

    def ok(run_id, config, progress, stop_event):
        return {"metrics": {"ok": True}}

    fns = iter([train, ok])
    queue = make_queue(ws, lambda *args: next(fns)(*args))
    try:
        bad = queue.submit(project, "bad", {})
        good = queue.submit(project, "good", {})  # the worker survives the failure
        assert wait_for(lambda: queue.status(good)["state"] == "finished")
    finally:
        queue.shutdown()
    status = queue.status(bad)
    assert status["state"] == "failed"
    assert status["error"] == message
    assert status["step"] == 1
    assert status["finished"] is not None


def test_a_train_function_may_report_its_own_stop(ws, project):
    queue = make_queue(ws, lambda *a: {"metrics": {"fpa": 0.1}, "state": "stopped"})
    try:
        run_id = queue.submit(project, "r", {})
        assert wait_for(lambda: queue.status(run_id)["state"] == "stopped")
    finally:
        queue.shutdown()
    assert queue.status(run_id)["metrics"] == {"fpa": 0.1}


def test_interrupted_runs_become_failed_at_start_up(tmp_path):
    release = threading.Event()
    with Workspace(tmp_path) as ws:
        pid = ws.create_project("p")
        queue = TrainingQueue(ws, lambda *a: release.wait(WAIT))
        run_id = queue.submit(pid, "r", {})
        assert wait_for(lambda: queue.status(run_id)["state"] == "running")
        # Simulate a crash: a second process opens the workspace while the row says running.
        with Workspace(tmp_path) as restarted:
            assert restarted.interrupted_runs_to_failed() == [run_id]
            run = restarted.get_run(run_id)
            assert (run["state"], run["error"]) == ("failed", INTERRUPTED)
        release.set()
        queue.shutdown()


def test_shutdown_stops_the_running_job_and_joins_the_worker(ws, project):
    def train(run_id, config, progress, stop_event):
        stop_event.wait(WAIT)
        return {"metrics": {}}

    queue = make_queue(ws, train)
    running = queue.submit(project, "a", {})
    waiting = queue.submit(project, "b", {})
    assert wait_for(lambda: queue.status(running)["state"] == "running")
    queue.shutdown(timeout=5.0)
    assert not queue._worker.is_alive()
    assert queue.status(running)["state"] == "stopped"
    assert queue.status(waiting)["state"] == "stopped"
    with pytest.raises(RuntimeError, match="shut down"):
        queue.submit(project, "c", {})


def fill_with_generated_tree(ws, project, per_leaf: int) -> None:
    """The easy 3-level generated tree (tests/imagegen.py) as nodes and labelled images."""
    from imagegen import TREE, draw

    k = 0
    for top, mids in TREE.items():
        top_id = ws.add_node(project, top)
        for mid, leaves in mids.items():
            mid_id = ws.add_node(project, mid, top_id)
            for leaf in leaves:
                leaf_id = ws.add_node(project, leaf, mid_id)
                for _ in range(per_leaf):
                    buf = io.BytesIO()
                    draw(top, mid, leaf, seed=k).save(buf, format="PNG")
                    assert ws.add_images(
                        project, [(f"{k}.png", buf.getvalue())], node_id=leaf_id
                    ).added
                    k += 1


def test_default_train_fn_trains_the_project_end_to_end(ws, project):
    """The real adapter: taxonomy and labelled images from the store, tiny CLIP, one epoch."""
    fill_with_generated_tree(ws, project, per_leaf=4)
    config = {"model": "tiny-random", "epochs": 1, "batch_size": 8, "device": "cpu", "max_steps": 2}
    queue = TrainingQueue(ws)
    try:
        run_id = queue.submit(project, "tiny", config)
        assert wait_for(lambda: queue.status(run_id)["state"] in ("finished", "failed"), 300)
    finally:
        queue.shutdown()
    status = queue.status(run_id)
    assert status["state"] == "finished", status["error"]
    assert 0 <= status["metrics"]["fpa"] <= 1
    assert status["phase"] == "done"
    assert (Path(ws.get_run(run_id)["out_dir"]) / "adapter.safetensors").is_file()


def test_a_stopped_run_resumes_from_its_checkpoint(ws, project):
    """Stop after the first epoch, resume: the run finishes without redoing that epoch."""
    from hiercore.jobs import default_train_fn

    fill_with_generated_tree(ws, project, per_leaf=3)
    calls: list[list[int]] = []

    def train(run_id, config, progress, stop_event):
        steps: list[int] = []
        calls.append(steps)

        def watch(event):
            progress(event)
            if event.phase == "train":
                steps.append(event.step)
            if len(calls) == 1 and event.phase == "eval" and event.val:
                stop_event.set()  # the first call stops once epoch 1 is scored

        return default_train_fn(ws, run_id, config, watch, stop_event)

    config = {"model": "tiny-random", "epochs": 3, "batch_size": 8, "device": "cpu"}
    queue = TrainingQueue(ws, train)
    try:
        run_id = queue.submit(project, "tiny", config)
        assert wait_for(lambda: queue.status(run_id)["state"] == "stopped", 300)
        queue.resume(run_id)
        assert wait_for(lambda: queue.status(run_id)["state"] == "finished", 300)
        with pytest.raises(HierTuneError, match="only a stopped or failed run"):
            queue.resume(run_id)  # a finished run cannot resume
    finally:
        queue.shutdown()
    first, second = calls[0], calls[-1]
    assert queue.status(run_id)["state"] == "finished"
    assert second[0] == first[-1] + 1  # continued after epoch 1, did not start over
    assert queue.status(run_id)["epoch"] == 3


def test_resume_needs_a_checkpoint(ws, project):
    def stop_at_once(run_id, config, progress, stop_event):
        return FakeResult("stopped", {})

    queue = TrainingQueue(ws, stop_at_once)
    try:
        run_id = queue.submit(project, "quick", {"model": "tiny-random"})
        assert wait_for(lambda: queue.status(run_id)["state"] == "stopped", 30)
        with pytest.raises(HierTuneError, match="no checkpoint"):
            queue.resume(run_id)
    finally:
        queue.shutdown()
