"""The training loop and the CLI end to end on generated images with the tiny CLIP."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from imagegen import write_manifest, write_tree

from hiercore.config import RunConfig
from hiercore.data import samples_from_folder_tree, split_samples
from hiercore.errors import HierTuneError
from hiercore.taxonomy import LevelIndex
from hiercore.training import train

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def image_tree(tmp_path_factory) -> Path:
    return write_tree(tmp_path_factory.mktemp("tree"), per_leaf=8)


@pytest.fixture(scope="module")
def split_data(image_tree):
    tax, samples = samples_from_folder_tree(image_tree)
    train_s, val_s = split_samples(samples, LevelIndex.build(tax), 0.25, seed=0)
    return tax, train_s, val_s


def quick(**kw) -> RunConfig:
    base = dict(model="tiny-random", epochs=1, batch_size=8, lr=3e-3, device="cpu")
    base.update(kw)
    return RunConfig(**base)


def test_run_writes_every_artifact_and_reports_progress(split_data, tmp_path):
    tax, train_s, val_s = split_data
    events = []
    result = train(quick(epochs=2), tax, train_s, val_s, tmp_path, progress=events.append)
    assert result.state == "finished"
    for name in (
        "config.json",
        "taxonomy.json",
        "history.json",
        "metrics.json",
        "adapter.safetensors",
        "predictions.npz",
    ):
        assert (tmp_path / name).is_file(), name
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert set(m) >= {"fpa", "tice", "level_accuracy", "n_val", "consistent"}
    assert len(m["level_accuracy"]) == 3 and m["n_val"] == len(val_s)
    assert m["consistent"]["tice"] == 0
    assert 0 < m["trainable_pct"] < 10
    phases = [e.phase for e in events]
    assert phases[0] == "setup" and phases[-1] == "done"
    steps = [e.step for e in events if e.phase == "train"]
    assert steps == sorted(steps) and steps[-1] == events[-1].steps_total
    vals = [e.val for e in events if e.phase == "eval" and e.val]
    assert len(vals) == 2  # one validation score per epoch
    pred = np.load(tmp_path / "predictions.npz")
    assert pred["pred_consistent"].shape == (len(val_s), 3)
    assert pred["node_feats_before"].shape == pred["node_feats_after"].shape


def test_hierarchical_losses_learn_the_easy_tree(split_data, tmp_path):
    """Fine-tuning raises full-path accuracy well above chance (1/8 leaves)."""
    tax, train_s, val_s = split_data
    cfg = quick(epochs=8, lora="both", rank=8, lr=5e-3, seed=0)
    m = train(cfg, tax, train_s, val_s, tmp_path).metrics
    assert m["consistent"]["fpa"] >= 0.5, m


def test_stop_event_cancels_within_a_step(split_data, tmp_path):
    tax, train_s, val_s = split_data
    stop = threading.Event()

    def on_progress(event):
        if event.phase == "train" and event.step >= 2:
            stop.set()

    result = train(
        quick(epochs=5, batch_size=4),
        tax,
        train_s,
        val_s,
        tmp_path,
        progress=on_progress,
        stop_event=stop,
    )
    assert result.state == "stopped"
    assert result.metrics["steps"] == 2


def test_resume_continues_from_the_checkpoint(split_data, tmp_path):
    tax, train_s, val_s = split_data
    train(quick(epochs=1), tax, train_s, val_s, tmp_path)
    first = json.loads((tmp_path / "metrics.json").read_text())["steps"]
    events = []
    train(quick(epochs=2), tax, train_s, val_s, tmp_path, progress=events.append, resume=True)
    train_steps = [e.step for e in events if e.phase == "train"]
    assert train_steps[0] == first + 1  # the first epoch was not repeated
    with pytest.raises(HierTuneError, match="different settings"):
        train(quick(epochs=3, lr=1e-2), tax, train_s, val_s, tmp_path, resume=True)


def test_text_only_training_encodes_images_once(split_data, tmp_path, monkeypatch):
    tax, train_s, val_s = split_data
    from hiercore.models import hierclip

    calls = {"n": 0}
    original = hierclip.HierClip.encode_images

    def counting(self, images):
        calls["n"] += images.shape[0]
        return original(self, images)

    monkeypatch.setattr(hierclip.HierClip, "encode_images", counting)
    train(quick(epochs=3, lora="text", eval_every_epoch=False), tax, train_s, val_s, tmp_path)
    # once for the cache, once for the final validation pass: not once per epoch
    assert calls["n"] == len(train_s) + len(val_s)


def test_training_reads_the_files_when_the_image_cache_is_off(split_data, tmp_path, monkeypatch):
    from hiercore import image_cache

    def refuse(*args, **kwargs):
        raise AssertionError("the cache was built")

    monkeypatch.setattr(image_cache.DecodedImages, "build", refuse)
    tax, train_s, val_s = split_data
    config = quick(lora="vision", eval_every_epoch=False, max_steps=2)
    result = train(config, tax, train_s, val_s, tmp_path, image_cache=False)
    assert result.state == "finished" and result.metrics["steps"] == 2


def test_sampled_negatives_train_the_text_tower(split_data, tmp_path):
    tax, train_s, val_s = split_data
    config = quick(lora="text", negatives=2, eval_every_epoch=False, max_steps=2)
    result = train(config, tax, train_s, val_s, tmp_path)
    assert result.state == "finished" and result.metrics["steps"] == 2
    assert json.loads((tmp_path / "config.json").read_text())["negatives"] == 2


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hiercore", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )


def test_cli_train_on_a_folder_tree(image_tree, tmp_path):
    out = tmp_path / "run"
    r = run_cli(
        "train",
        "--data",
        str(image_tree),
        "--model",
        "tiny-random",
        "--epochs",
        "1",
        "--out",
        str(out),
        "--device",
        "cpu",
    )
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert {"fpa", "tice", "level_accuracy", "n_val"} <= set(m)
    assert {"fpa", "tice", "level_accuracy"} <= set(m["consistent"])
    r = run_cli("eval", str(out))
    assert r.returncode == 0 and json.loads(r.stdout)["n_val"] == m["n_val"]
    img = next(image_tree.rglob("*.png"))
    r = run_cli("predict", "--run", str(out), str(img))
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout.splitlines()[0])["path"]) == 3


def test_cli_manifest_and_zero_shot_eval(tmp_path):
    manifest = write_manifest(tmp_path, per_leaf=3)
    r = run_cli("eval", "--data", str(manifest), "--model", "tiny-random", "--split", "all")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["n_val"] == 24


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["taxonomy", "check", "MISSING.csv"], "MISSING.csv"),
        (["train", "--data", "nowhere", "--model", "tiny-random", "--out", "x"], "nowhere"),
        (["train", "--data", ".", "--model", "tiny-random", "--out", "x", "--rank", "0"], "rank"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(args, fragment):
    r = run_cli(*args)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.strip().splitlines() if not ln.startswith("WARNING")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], r.stderr


def test_cli_rejects_a_malformed_taxonomy(tmp_path):
    bad = tmp_path / "edges.csv"
    bad.write_text("id,name,parent_id,description\na,A,,\nb,B,a,\na2,A,,\nc,C,zz,\n")
    r = run_cli("taxonomy", "check", str(bad))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and r.stderr.startswith("error: ")


def test_cli_taxonomy_check_prints_levels(tmp_path):
    (tmp_path / "t.csv").write_text("order,family,species\nA,B,C\nA,B,D\nA,E,\n")
    r = run_cli("taxonomy", "check", str(tmp_path / "t.csv"))
    assert r.returncode == 0, r.stderr
    assert "3 levels" in r.stdout and "padding" in r.stdout


def test_restyle_varies_style_but_keeps_the_normalisation():
    from types import SimpleNamespace

    import torch

    from hiercore.training import restyle

    torch.manual_seed(0)
    visual = SimpleNamespace(image_mean=[0.48, 0.46, 0.41], image_std=[0.27, 0.26, 0.28])
    mean = torch.tensor(visual.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(visual.image_std).view(1, 3, 1, 1)
    pixels = torch.rand(16, 3, 32, 32)
    x = (pixels - mean) / std
    y = restyle(x, visual)
    assert y.shape == x.shape and y.dtype == x.dtype
    back = y * std + mean
    assert back.min() >= -1e-4 and back.max() <= 1 + 1e-4  # still images, same normalisation
    assert not torch.allclose(y, x, atol=0.05)  # and they changed
