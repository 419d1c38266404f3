"""The studio's queue jobs: per-term loss curves in the stored progress, and a baseline
comparison run as one job whose rows reach the results table."""

from __future__ import annotations

import time
import zipfile
from pathlib import Path

import pytest
from imagegen import write_tree

from hiercore.config import RunConfig
from hiercore.history import History
from hiercore.ingest import import_files
from hiercore.jobs import MAX_CURVE_POINTS, ProgressRecorder
from hiercore.predict import Predictor
from webapp.run_jobs import is_comparison, submit_comparison
from webapp.state import Studio
from webapp.tabs.predict import bundle_for_run
from webapp.tabs.results import comparison_frame, finished_runs
from webapp.tabs.train import curve_key, live_history, start_run


def test_the_stored_history_keeps_every_term_and_stays_bounded(tmp_path):
    from hiercore.store import Workspace

    with Workspace(tmp_path / "ws") as ws:
        run_id = ws.create_run(ws.create_project("p"), "r", {})
        record = ProgressRecorder(ws, run_id, min_interval=0.0)
        for step in range(1, 1001):
            losses = {"total": 1.0, "ce": 0.5}
            record({"phase": "train", "step": step, "epoch": 1, "losses": losses})
        record({"phase": "eval", "step": 1000, "epoch": 1, "val": {"fpa": 0.5}})
        history = History.from_progress(ws.get_run(run_id)["progress"])
    steps = [p.step for p in history.steps]
    assert len(steps) <= MAX_CURVE_POINTS and steps == sorted(steps) and steps[0] == 1
    assert history.steps[-1].losses == {"total": 1.0, "ce": 0.5}
    assert history.last_val == {"fpa": 0.5}


def wait(studio: Studio, run_id: int, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = studio.queue.status(run_id)
        if status["state"] in ("finished", "failed", "stopped"):
            return status
        time.sleep(0.3)
    raise AssertionError(f"run {run_id} still {status['state']} after {timeout} s")


@pytest.fixture
def studio(tmp_path):
    s = Studio(tmp_path / "ws")
    yield s
    s.close()


def test_run_and_comparison_jobs(studio, tmp_path):
    pid = studio.workspace.create_project("shapes")
    import shutil

    tree = write_tree(tmp_path / "tree", per_leaf=4)
    archive = shutil.make_archive(str(tmp_path / "tree"), "zip", tree)
    assert import_files(studio.workspace, pid, [archive]).labelled == 32

    base = RunConfig(model="tiny-random", epochs=1, max_steps=2, batch_size=8)
    run_id = start_run(studio, pid, base)
    status = wait(studio, run_id)
    assert status["state"] == "finished", status["error"]
    # the live chart's points came from the database: every loss term, every step
    terms = History.from_progress(status["progress"]).steps
    assert [p.step for p in terms] == [1, 2]
    assert set(terms[0].losses) == {"total", "ce", "tpkl", "hisce"}
    history = live_history(studio, status)  # a finished run reads history.json
    assert [p.step for p in history.steps] == [1, 2]
    # the embedding maps are fitted in the background once the run has finished
    out_dir = Path(studio.workspace.get_run(run_id)["out_dir"])
    deadline = time.time() + 60
    while not (out_dir / "map_images_0.npz").is_file() and time.time() < deadline:
        time.sleep(0.2)
    assert (out_dir / "map_images_0.npz").is_file() and (out_dir / "map_nodes_0.npz").is_file()

    # the export bundle, unzipped, is a run folder that predicts like the run itself
    bundle = bundle_for_run(studio, run_id)
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(bundle) as zf:
        zf.extractall(unpacked)
    image = next((tree / "warm" / "reds" / "reds-square").glob("*.png"))
    original = Predictor.from_run(studio.workspace.get_run(run_id)["out_dir"], device="cpu")
    exported = Predictor.from_run(unpacked, device="cpu")
    a, b = (p.predict_files([image])[0] for p in (original, exported))
    assert a.path == b.path and a.level_probs == pytest.approx(b.level_probs, abs=1e-6)

    job = submit_comparison(studio, pid, base, "zero-shot, tpkl")
    status = wait(studio, job, timeout=240)
    assert status["state"] == "finished", status["error"]
    assert is_comparison(studio.workspace.get_run(job)["config"])
    assert status["metrics"]["methods"] == ["zero-shot", "tpkl"]
    frame = comparison_frame(studio, pid)
    assert list(frame["method"]) == ["tpkl-hisce", "zero-shot", "tpkl"]
    assert frame["FPA"].between(0, 1).all()
    # a comparison has no single model: results and predict list the run only
    assert [r for _, r in finished_runs(studio, pid)] == [run_id]
    assert studio.latest_finished_run(pid)["id"] == run_id


def test_a_project_without_runs_redraws_the_curves_it_inherited():
    # the curve state starts (and a project switch refreshes) at None: a no-run key equal
    # to it skipped the redraw, so the previous project's curves stayed on screen
    running = {"state": "running", "step": 3, "progress": {}}
    assert curve_key(None, None) is not None
    assert curve_key(None, None) != curve_key(7, running)
    assert curve_key(7, running) != curve_key(7, {**running, "step": 4})
    assert curve_key(7, running) == curve_key(7, dict(running))


def test_a_train_tab_tick_sends_only_what_changed(tmp_path):
    """Every open page polls every 1.5 s: the bar, status, curves and runs table go out
    only when they differ from what the page shows, not on every tick."""
    import gradio as gr

    from hiercore.store import Workspace
    from webapp.tabs import train

    with Workspace(tmp_path / "ws") as ws:
        pid = ws.create_project("p")
        run_id = ws.create_run(pid, "first", {})
        ws.update_run(run_id, state="failed", error="boom")
    studio = Studio(tmp_path / "ws")
    try:
        with gr.Blocks() as app:
            train.build(studio, gr.BrowserState(None))
        # the timer's handler (the same function follows a start, a resume, a pick)
        tick = next(f.fn for f in app.fns.values() if f.fn.__name__ == "snapshot")

        def sent(values) -> list[bool]:
            return [not (isinstance(v, dict) and v == gr.skip()) for v in values]

        first = tick(pid, None, None)
        assert sent(first) == [True] * 5  # a fresh page gets everything
        bar, text, fig, shown, table = tick(pid, None, first[3])
        assert sent([bar, text, fig, table]) == [False] * 4

        studio.workspace.update_run(run_id, name="renamed")
        bar, text, fig, shown, table = tick(pid, None, shown)
        assert sent([bar, text, fig, table]) == [False, True, False, True]  # status names it
        assert list(table["name"]) == ["renamed"]

        studio.workspace.update_run(run_id, state="stopped")
        bar, text, fig, shown, table = tick(pid, None, shown)
        assert sent([text, fig, table]) == [True, True, True]
    finally:
        studio.close()
