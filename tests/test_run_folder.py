"""The run folder's layout (`hiercore.run_folder`) and the one history shape
(`hiercore.history`)."""

from __future__ import annotations

import json
import threading

import pytest
from imagegen import write_tree

from hiercore.config import RunConfig
from hiercore.data import samples_from_folder_tree, split_samples
from hiercore.errors import HierTuneError
from hiercore.history import History, HistoryPoint
from hiercore.run_folder import (
    ADAPTER,
    CONFIG,
    HISTORY,
    METRICS,
    STATUS,
    TAXONOMY,
    RunFolder,
    TrainingStatus,
)
from hiercore.taxonomy import LevelIndex
from hiercore.training import train


@pytest.fixture(scope="module")
def tiny_split(tmp_path_factory):
    tax, samples = samples_from_folder_tree(write_tree(tmp_path_factory.mktemp("t"), per_leaf=4))
    train_s, val_s = split_samples(samples, LevelIndex.build(tax), 0.25, seed=0)
    return tax, train_s, val_s


def quick(**kw) -> RunConfig:
    return RunConfig(
        **{"model": "tiny-random", "epochs": 1, "batch_size": 8, "device": "cpu", **kw}
    )


def test_every_file_round_trips(small_taxonomy, tmp_path):
    folder = RunFolder(tmp_path / "run").create()
    config = RunConfig(model="tiny-random", epochs=2, alpha=0.5, templates=["a {name}."])
    history = History()
    history.add_step(1, 1, {"total": 2.0, "ce": 1.5})
    history.add_val(1, 1, {"fpa": 0.25, "tice": 0.5})
    status = TrainingStatus("done", stopped=True, step=7, epoch=1, train_time_s=3.5)
    folder.write_config(config)
    folder.write_taxonomy(small_taxonomy)
    folder.write_history(history)
    folder.write_metrics({"fpa": 0.25, "consistent": {"tice": 0.0}})
    folder.write_status(status)
    folder.write_adapter(b"weights")

    again = RunFolder(str(tmp_path / "run"))
    assert again.read_config() == config
    assert again.read_taxonomy().to_dict() == small_taxonomy.to_dict()
    assert again.read_history() == history
    assert again.read_metrics() == {"fpa": 0.25, "consistent": {"tice": 0.0}}
    assert again.read_status() == status and again.read_status().state == "stopped"
    assert again.adapter_file.read_bytes() == b"weights"
    assert sorted(p.name for p in again.path.iterdir()) == sorted(
        [CONFIG, TAXONOMY, HISTORY, METRICS, STATUS, ADAPTER]
    )  # no temp file left behind
    with pytest.raises(HierTuneError, match=r"predictions\.npz is missing"):
        again.require((CONFIG, "predictions.npz"))


def test_a_checkpoint_round_trips_and_keeps_only_the_newest(tmp_path):
    folder = RunFolder(tmp_path)
    assert not folder.has_checkpoint()
    for epoch in (1, 2):
        folder.save_checkpoint(epoch, 10 * epoch, {"lr": 0.1}, {"adapter": b"a", "history": b"[]"})
    state, paths = folder.checkpoint_state()
    assert (state["epoch"], state["step"], state["config"]) == (2, 20, {"lr": 0.1})
    assert paths["adapter"].read_bytes() == b"a" and paths["adapter"].name.endswith(
        "epoch2.safetensors"
    )
    names = sorted(p.name for p in folder.checkpoint_dir.iterdir())
    assert names == sorted(["state.json", paths["adapter"].name, paths["history"].name])


def test_an_old_run_folder_is_still_read(tmp_path):
    """What training wrote before status.json and the History class: a bare record list
    (some points without a step) and a stopped run's state in its metrics."""
    old = [
        {"step": 1, "epoch": 1, "losses": {"total": 2.0, "ce": 2.0, "tpkl": 0.0, "hisce": 0.0}},
        {"step": 2, "epoch": 1, "losses": {"total": 1.5, "ce": 1.5, "tpkl": 0.0, "hisce": 0.0}},
        {"epoch": 1, "val": {"fpa": 0.5, "tice": 0.25}},
        {"note": "a record this version does not know"},
    ]
    (tmp_path / HISTORY).write_text(json.dumps(old))
    (tmp_path / METRICS).write_text(json.dumps({"fpa": 0.5, "state": "stopped", "steps": 2}))
    folder = RunFolder(tmp_path)
    history = folder.read_history()
    assert [p.step for p in history.steps] == [1, 2]
    assert history.evals == [HistoryPoint(None, 1, val={"fpa": 0.5, "tice": 0.25})]
    assert history.to_records() == [{**r, "step": r.get("step")} for r in old[:3]]
    frame = history.frame()
    assert list(frame["loss_total"].dropna()) == [2.0, 1.5] and frame["val_fpa"].iloc[2] == 0.5
    status = folder.read_status()
    assert status.state == "stopped" and status.step == 2 and status.training_ended
    assert RunFolder(tmp_path / "nothing").read_status() is None


def test_old_stored_progress_curves_read_as_a_history():
    progress = {
        "loss_curve": [[1, 3.0], [2, 2.5]],
        "val_curve": [{"epoch": 1, "fpa": 0.1}, {"epoch": 1, "fpa": 0.2}],
    }
    history = History.from_progress(progress)
    assert [(p.step, p.losses) for p in history.steps] == [(1, {"total": 3.0}), (2, {"total": 2.5})]
    assert history.last_val == {"fpa": 0.2} and len(history.evals) == 1
    terms = {"loss_terms": [{"step": 4, "epoch": 1, "losses": {"total": 1.0, "ce": 1.0}}]}
    assert History.from_progress(terms).steps[0].losses == {"total": 1.0, "ce": 1.0}


def test_thinning_keeps_every_evaluation_and_the_run_shape():
    history = History()
    for step in range(1, 101):
        history.add_step(step, 1, {"total": 1.0 / step})
        if step % 25 == 0:
            history.add_val(step, step // 25, {"fpa": step / 100})
    thin = history.thinned(30)
    assert len(thin.steps) <= 30 and thin.steps[0].step == 1
    assert len(thin.evals) == 4
    assert History.from_records(thin.to_records()) == thin


def test_the_end_of_training_is_the_written_status_not_a_message(tiny_split, tmp_path):
    """A stopped run says so in status.json: training ended, stopped, after how many steps
    and how long the loop took; progress events mark the end with their phase."""
    tax, train_s, val_s = tiny_split
    stop = threading.Event()
    seen = []

    def progress(event):
        seen.append((event.phase, RunFolder(tmp_path).read_status()))
        if event.phase == "train" and event.step == 2:
            stop.set()

    result = train(quick(epochs=3), tax, train_s, val_s, tmp_path, progress, stop)
    assert result.state == "stopped"
    status = RunFolder(tmp_path).read_status()
    assert status == TrainingStatus("done", True, 2, 1, status.train_time_s)
    assert 0 < status.train_time_s <= result.metrics["train_time_s"]
    # while the steps ran the folder said "training"; the final scoring saw "evaluating"
    phases = [p for p, _ in seen]
    assert phases.count("final") == 1 and phases.index("final") > phases.index("train")
    assert all(s.state == "training" for p, s in seen if p == "train")
    assert next(s for p, s in seen if p == "final").state == "evaluating"


def test_a_lora_row_takes_its_training_time_from_the_run_folder(tiny_split, tmp_path, monkeypatch):
    """The comparison's LoRA rows no longer watch for the text "final evaluation": with
    every message blanked, the row's training time is still the loop's, from status.json."""
    import hiercore.training as training
    from hiercore.baselines.registry import create_method

    real = training.ProgressEvent

    def blank(*args, **kwargs):
        event = real(*args, **kwargs)
        event.message = ""
        return event

    monkeypatch.setattr(training, "ProgressEvent", blank)
    tax, train_s, val_s = tiny_split
    method = create_method("level-ce")
    result = method.fit(tax, train_s, val_s, quick(max_steps=2), tmp_path)
    status = RunFolder(tmp_path / "run").read_status()
    assert status.train_time_s is not None
    assert result.train_time_s == pytest.approx(status.train_time_s)
