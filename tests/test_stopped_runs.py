"""A stopped run says so at once and is marked wherever runs are listed or compared
(issue #9, H3): "stopping…" while it winds down, then "stopped after N steps", its
metrics labelled as those of a partial run and never shaded as the best."""

from __future__ import annotations

import threading
import time

import pytest

from hiercore.figures import comparison_table_figure
from hiercore.jobs import TrainingQueue
from webapp.state import Studio
from webapp.tabs.results import comparison_frame, is_partial
from webapp.tabs.train import project_runs, status_text


def wait_for(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def studio(tmp_path):
    s = Studio(tmp_path / "ws")
    yield s
    s.close()


def test_a_stopped_run_shows_as_stopping_then_stopped_and_partial(studio):
    wind_down = threading.Event()  # holds the run in its final scoring, as a real run would
    resumed = threading.Event()
    calls = []

    def train(run_id, config, progress, stop_event):
        calls.append(run_id)
        if calls.count(run_id) == 2:  # resumed
            resumed.wait(10)
            return {"state": "finished", "metrics": {"fpa": 0.7, "tice": 0.1, "steps": 500}}
        if config.get("stop_me"):
            step = 0
            while not stop_event.is_set():
                step += 1
                progress(
                    {
                        "phase": "train",
                        "step": step,
                        "steps_total": 500,
                        "epochs": 5,
                        "epoch": 1,
                        "losses": {"total": 1.0},
                    }
                )
                time.sleep(0.01)
            progress(
                {"phase": "final", "step": step, "steps_total": 500, "message": "final evaluation"}
            )
            wind_down.wait(10)
            return {"state": "stopped", "metrics": {"fpa": 0.9, "tice": 0.0, "steps": step}}
        return {"state": "finished", "metrics": {"fpa": 0.6, "tice": 0.2, "steps": 500}}

    studio.queue.shutdown()
    studio.queue = TrainingQueue(studio.workspace, train, min_progress_interval=10.0)
    pid = studio.workspace.create_project("p")
    done = studio.queue.submit(pid, "whole", {})
    assert wait_for(lambda: studio.queue.status(done)["state"] == "finished")
    run = studio.queue.submit(pid, "cut short", {"stop_me": True})
    assert wait_for(lambda: (studio.queue.status(run)["step"] or 0) >= 1)
    assert "stopping" not in status_text(studio.queue.status(run))

    assert studio.queue.stop(run)
    # at once, although the run's progress writes are throttled to one per 10 s
    status = studio.queue.status(run)
    assert status["state"] == "running" and status["stopping"]
    line = status_text(status)
    assert "stopping…" in line and "running" not in line and "final evaluation" not in line
    assert "stopping…" in project_runs(studio, pid).set_index("id").loc[run, "state"]

    wind_down.set()
    assert wait_for(lambda: studio.queue.status(run)["state"] == "stopped")
    status = studio.queue.status(run)
    steps = status["metrics"]["steps"]
    assert f"stopped after {steps} steps" in status_text(status)
    assert "partial run: FPA 90.0%" in status_text(status)
    assert not studio.queue.status(run)["stopping"]

    table = project_runs(studio, pid).set_index("id")
    assert table.loc[run, "state"] == f"⏹️ stopped after {steps} steps"
    assert table.loc[run, "FPA"] == "90.0% (partial)"
    assert table.loc[done, "FPA"] == "60.0%"

    frame = comparison_frame(studio, pid)
    assert list(frame["run"]) == [f"#{done} whole", f"#{run} cut short"]
    assert is_partial(frame) == [False, True]
    assert "partial run" in frame["state"].iloc[1]
    fig = comparison_table_figure(frame, partial=is_partial(frame))
    fills = dict(zip(frame.columns, fig.data[0].cells.fill.color, strict=True))
    # the stopped run's FPA and TICE are higher / lower, yet the finished run is the best
    assert [f != "white" for f in fills["FPA"]] == [False, False]  # one whole run: no ranking
    assert [f != "white" for f in fills["TICE"]] == [False, False]

    # resumed, it no longer says it is stopping
    from hiercore.run_folder import RunFolder

    RunFolder(studio.workspace.get_run(run)["out_dir"]).save_checkpoint(1, steps, {}, {})
    studio.queue.resume(run)
    assert wait_for(lambda: studio.queue.status(run)["state"] == "running")
    status = studio.queue.status(run)
    assert not status["stopping"] and "stopping" not in status_text(status)
    # nor does it show the partial run's FPA as if it were the running run's
    assert "FPA 90.0%" not in status_text(status) and not status["metrics"]
    assert project_runs(studio, pid).set_index("id").loc[run, "FPA"] in ("", None)
    resumed.set()
    assert wait_for(lambda: studio.queue.status(run)["state"] == "finished")
    assert is_partial(comparison_frame(studio, pid)) == [False, False]


def test_a_stopped_run_with_scores_can_be_opened_in_results_as_partial(studio):
    from pathlib import Path

    from hiercore.run_folder import RESULT_FILES
    from webapp.tabs.results import finished_runs

    def train(run_id, config, progress, stop_event):
        if config.get("scored"):  # a stopped run scores its validation images
            out = Path(studio.workspace.get_run(run_id)["out_dir"])
            out.mkdir(parents=True, exist_ok=True)
            for name in RESULT_FILES:
                (out / name).write_bytes(b"")
        return {"state": "stopped", "metrics": {"fpa": 0.5, "steps": 3}}

    studio.queue.shutdown()
    studio.queue = TrainingQueue(studio.workspace, train)
    pid = studio.workspace.create_project("p")
    scored = studio.queue.submit(pid, "scored", {"scored": True})
    bare = studio.queue.submit(pid, "bare", {})
    assert wait_for(
        lambda: all(studio.queue.status(r)["state"] == "stopped" for r in (scored, bare))
    )
    assert finished_runs(studio, pid) == []  # predict and export: finished runs only
    assert finished_runs(studio, pid, with_stopped=True) == [
        (f"#{scored} scored (partial run)", scored)
    ]
