"""Every comparison method on an easy generated image set with the tiny random CLIP.

The set is a ragged two-level tree (warm: red, orange, yellow; cool: blue, cyan; grey as
a first-level leaf padded to level 2); each leaf has its own colour, and every other leaf
a square of the complementary colour, so a model can tell leaves apart after a few steps.
Chance at the leaf level is 1/6. The zero-shot rows are exempt from beating chance: the
tiny CLIP is random, so its prompts mean nothing.
"""

from __future__ import annotations

import csv
import json
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from hiercore.baselines import create_method, frozen, levels_from_leaf_scores, list_methods
from hiercore.baselines.clip_adapter import Adapter
from hiercore.baselines.compare import level_columns, run_comparison, table_columns
from hiercore.baselines.coop import PromptLearner
from hiercore.baselines.hyperbolic import expmap0
from hiercore.baselines.lathadapter import HyperbolicAttributes, hierarchy_regulariser
from hiercore.baselines.registry import register_method, resolve_methods
from hiercore.baselines.tip_adapter import cache_logits, carve_rows
from hiercore.config import RunConfig
from hiercore.data import Sample
from hiercore.decode import consistent_decode, independent_decode
from hiercore.errors import HierTuneError
from hiercore.models import load_clip
from hiercore.taxonomy import LevelIndex, Taxonomy

LEAVES = {  # leaf: (parent, colour)
    "red": ("warm", (230, 25, 25)),
    "orange": ("warm", (250, 140, 0)),
    "yellow": ("warm", (240, 220, 20)),
    "blue": ("cool", (25, 25, 230)),
    "cyan": ("cool", (20, 220, 230)),
    "grey": (None, (128, 128, 128)),
}
TRAIN_PER_LEAF, EVAL_PER_LEAF = 6, 3
ZERO_SHOT = {"zero-shot", "zero-shot-chils"}
TRAINING_FREE = ZERO_SHOT | {"tip-adapter"}
LEAF_ONLY = {"zero-shot-chils", "flat-ce", "tip-adapter", "tip-adapter-f"}
LORA = {"flat-ce", "level-ce", "tpkl", "hisce", "tpkl-hisce"}
LORA |= {"flat-ce-marginal", "ce-scaled", "ce-balance", "tpkl-size"}  # the claim study's


def budget(name: str) -> dict:
    """A few steps per family: LoRA steps cost more than steps on cached features."""
    if name in LORA:
        return {"lr": 1e-2, "max_steps": 12}
    if name == "coop":  # each step runs the text tower
        return {"lr": 5e-2, "max_steps": 60}
    return {"lr": 3e-2, "max_steps": 150}


def quick(name: str = "", **kw) -> RunConfig:
    base = dict(model="tiny-random", epochs=100, batch_size=8, device="cpu", seed=0)
    base.update(eval_every_epoch=False, **budget(name))
    base.update(kw)
    return RunConfig(**base)


@dataclass
class Easy:
    taxonomy: Taxonomy
    train: list[Sample]
    evals: list[Sample]
    manifest: Path


def draw(colour: tuple[int, int, int], square: bool, rng: np.random.Generator) -> Image.Image:
    img = np.zeros((32, 32, 3)) + colour
    if square:
        img[8:24, 8:24] = 255 - np.asarray(colour)
    img += rng.normal(0, 10, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def easy(tmp_path_factory) -> Easy:
    root = tmp_path_factory.mktemp("easy")
    tax = Taxonomy(["group", "kind"])
    for group in ("warm", "cool"):
        tax.add(group, node_id=group)
    rng = np.random.default_rng(0)
    train, evals, rows = [], [], []
    for i, (leaf, (parent, colour)) in enumerate(LEAVES.items()):
        tax.add(leaf, parent, node_id=leaf) if parent else tax.add(leaf, node_id=leaf)
        for j in range(TRAIN_PER_LEAF + EVAL_PER_LEAF):
            path = root / f"{leaf}_{j}.png"
            draw(colour, i % 2 == 1, rng).save(path)
            split = "val" if j < EVAL_PER_LEAF else "train"
            (evals if split == "val" else train).append(Sample(str(path), leaf))
            rows.append([path.name, parent or leaf, leaf if parent else "", split])
    manifest = root / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        csv.writer(f).writerows([["path", "group", "kind", "split"], *rows])
    return Easy(tax, train, evals, manifest)


# ---------------------------------------------------------------------- registry
def test_registry_holds_every_method_of_the_spec():
    assert list_methods() == [
        "zero-shot",
        "zero-shot-chils",
        "flat-ce",
        "level-ce",
        "tpkl",
        "hisce",
        "tpkl-hisce",
        "flat-ce-marginal",
        "ce-scaled",
        "ce-balance",
        "tpkl-size",
        "coop",
        "clip-adapter",
        "tip-adapter",
        "tip-adapter-f",
        "lathadapter",
    ]
    assert resolve_methods(" coop,tpkl ,coop") == ["coop", "tpkl"]
    with pytest.raises(HierTuneError, match="Unknown method 'nope'"):
        create_method("nope")
    with pytest.raises(HierTuneError, match="does not take"):
        create_method("coop", colour="blue")
    with pytest.raises(ValueError, match="registered twice"):
        register_method("coop")(lambda: None)
    assert create_method("coop", n_ctx=4).name == "coop"


# ---------------------------------------------------------------------- every method
@pytest.fixture(scope="module")
def shared_features():
    """Frozen-backbone methods encode the images once for the whole module, as in a table."""
    with frozen.sharing():
        yield


@pytest.mark.parametrize("name", list_methods())
def test_method_runs_and_gives_valid_per_level_predictions(name, easy, tmp_path, shared_features):
    result = create_method(name).fit(
        easy.taxonomy, easy.train, easy.evals, quick(name), tmp_path / name
    )
    index = LevelIndex.build(easy.taxonomy)
    n = len(easy.evals)
    assert result.state == "finished"
    assert [z.shape for z in result.logits] == [(n, c) for c in index.sizes]
    assert all(np.isfinite(z).all() for z in result.logits)
    assert result.true.tolist() == [index.target(s.node_id) for s in easy.evals]
    logits = [torch.from_numpy(np.asarray(z, dtype=np.float32)) for z in result.logits]
    parents = [torch.from_numpy(p) for p in index.parents]
    for paths in (independent_decode(logits), consistent_decode(logits, parents)):
        for level, size in enumerate(index.sizes):
            assert int(paths[:, level].min()) >= 0 and int(paths[:, level].max()) < size
    m = result.metrics()
    assert m["consistent"]["tice"] == 0
    if name in LEAF_ONLY:  # ancestors of one leaf: consistent by construction
        assert result.leaf_only and m["tice"] == 0
    if name in TRAINING_FREE:
        assert result.trainable_params == 0
    else:
        assert 0 < result.trainable_pct < 5
    assert result.notes and result.train_time_s >= 0
    saved = json.loads((tmp_path / name / "metrics.json").read_text())
    assert saved["fpa"] == m["fpa"] and saved["method"] == name
    if name not in ZERO_SHOT:
        chance = 1 / index.sizes[-1]
        assert m["level_accuracy"][-1] >= 0.4 > 2 * chance, m["level_accuracy"]


def test_tip_adapter_never_looks_at_evaluation_labels(easy, tmp_path):
    """a and b are searched on the training samples: relabelling the evaluation set
    changes nothing but the true labels."""
    relabelled = [Sample(s.path, "grey" if s.node_id != "grey" else "red") for s in easy.evals]
    a = create_method("tip-adapter").fit(
        easy.taxonomy, easy.train, easy.evals, quick(), tmp_path / "a"
    )
    b = create_method("tip-adapter").fit(
        easy.taxonomy, easy.train, relabelled, quick(), tmp_path / "b"
    )
    assert (a.extra["a"], a.extra["b"]) == (b.extra["a"], b.extra["b"])
    for za, zb in zip(a.logits, b.logits, strict=True):
        np.testing.assert_allclose(za, zb, rtol=1e-5, atol=1e-5)
    assert a.extra["cache_size"] == len(easy.train)


# ---------------------------------------------------------------------- hand-computed
def test_leaf_scores_map_to_the_best_leafs_path():
    """Leaves a1, a2 under A and b1 under B with p = (.35, .25, .40): the best leaf is b1
    although A holds more mass (.6); subtree marginals would make the consistent path
    A/a1 (.6 * .35 > .4 * .4). Max-pooling keeps b1's path for both decodings."""
    parents = [np.array([0, 0]), np.array([0, 0, 1])]
    levels = levels_from_leaf_scores(np.log([[0.35, 0.25, 0.40]]), parents)
    np.testing.assert_allclose(levels[0], np.log([[0.35, 0.40]]), rtol=1e-6)
    np.testing.assert_allclose(levels[1], np.log([[0.35, 0.25, 0.40]]), rtol=1e-6)
    logits = [torch.from_numpy(z) for z in levels]
    par = [torch.from_numpy(p) for p in parents]
    assert independent_decode(logits).tolist() == [[1, 2]]
    assert consistent_decode(logits, par).tolist() == [[1, 2]]


def test_tip_adapter_cache_logits_on_two_samples():
    f = torch.tensor([[0.6, 0.8]])
    keys = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # two cached training features
    values = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # their one-hot labels
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z = cache_logits(f, text, keys, values, scale=10.0, a=2.0, b=3.0)
    # s f W^T = (6, 8); affinities exp(-3 (1 - .6)), exp(-3 (1 - .8)) = e^-1.2, e^-0.6
    expected = torch.tensor([[6 + 2 * np.exp(-1.2), 8 + 2 * np.exp(-0.6)]], dtype=torch.float32)
    torch.testing.assert_close(z, expected)


def test_carved_validation_rows_are_stratified_and_disjoint():
    leaf = np.array([0] * 10 + [1] * 5 + [2] + [-1] * 3)
    keep, val = carve_rows(leaf, 0.2, seed=3)
    assert set(keep).isdisjoint(val)
    assert sorted([*keep, *val]) == list(range(16))  # unlabelled rows are in neither
    assert np.bincount(leaf[val], minlength=3).tolist() == [2, 1, 0]
    again = carve_rows(leaf, 0.2, seed=3)
    assert keep.tolist() == again[0].tolist() and val.tolist() == again[1].tolist()


def test_clip_adapter_is_the_residual_bottleneck():
    adapter = Adapter(4, ratio=0.2)
    assert [type(m).__name__ for m in adapter.net] == ["Linear", "ReLU", "Linear", "ReLU"]
    assert adapter.net[0].weight.shape == (1, 4) and adapter.net[0].bias is None
    with torch.no_grad():
        adapter.net[0].weight.copy_(torch.tensor([[2.0, 0.0, 0.0, 0.0]]))
        adapter.net[2].weight.copy_(torch.tensor([[1.0], [-1.0], [0.5], [0.0]]))
    f = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    # A(f) = relu((2, -2, 1, 0)) = (2, 0, 1, 0); f* = .2 A(f) + .8 f = (1.2, 0, .2, 0)
    expected = F.normalize(torch.tensor([[1.2, 0.0, 0.2, 0.0]]), dim=-1)
    torch.testing.assert_close(adapter(f), expected)


def test_coop_prompts_reproduce_encode_text_with_a_hand_made_context():
    """Context vectors set to the embeddings of 'a photo of a' give exactly the text
    features of 'a photo of a <name>.' (the text tower re-traced on embeddings)."""
    bundle = load_clip("tiny-random", seed=0)
    clip, tok = bundle.model, bundle.tokenizer
    names = ["red", "deep sea blue", "grey"]
    learner = PromptLearner(clip, tok, names, n_ctx=4)
    words = tok(["a photo of a"])[0, 1:5]
    with torch.no_grad():
        learner.ctx.copy_(clip.token_embedding(words))
        expected = F.normalize(clip.encode_text(tok([f"a photo of a {n}." for n in names])), dim=-1)
        torch.testing.assert_close(learner(), expected, atol=1e-5, rtol=1e-5)


def test_lathadapter_regulariser_on_hand_placed_points():
    """Parent g = (.1, 0), child g = (.5, 0), one attribute each equal to its category,
    an image at tangent (1, 0) labelled with the child. d_0(exp_0(v)) = 2|v| at c = 1,
    so d_0 = .2 (parent), 1.0 (child), 2.0 (image)."""
    g = torch.tensor([[0.1, 0.0], [0.5, 0.0]])
    module = HyperbolicAttributes(g, n_attributes=1, curvature=1.0, scale=1.0)
    with torch.no_grad():
        module.delta.zero_()
    edges = torch.tensor([[0, 1]])
    image = torch.tensor([[1.0, 0.0]])
    _, u, d = module.node_logits(image, torch.tensor(1.0))
    torch.testing.assert_close(u, expmap0(image))
    terms = hierarchy_regulariser(module, edges, u, torch.tensor([1]), d, margin=0.05)
    # edge: relu(.2 - 1 + .05) = 0; attributes: relu(d0 - d0 + .05) = .05; image: 0
    assert float(terms["order"]) == pytest.approx(0.05, abs=1e-5)
    assert float(terms["contain"]) == 0 and float(terms["spread"]) == 0
    flipped = hierarchy_regulariser(module, edges.flip(1), u, torch.tensor([1]), d)
    # edge now child -> parent: relu(1 - .2 + .05) = .85
    assert float(flipped["order"]) == pytest.approx(0.85 + 0.05, abs=1e-5)


# ---------------------------------------------------------------------- the table
def test_run_comparison_reports_progress_and_stops_when_asked(easy, tmp_path):
    stop = threading.Event()
    events = []

    def progress(e):
        events.append(e)
        if e.phase == "done":
            stop.set()

    table = run_comparison(
        easy.taxonomy,
        easy.train,
        easy.evals,
        quick(),
        ["zero-shot", "tip-adapter"],
        seeds=2,
        out_dir=tmp_path,
        progress=progress,
        stop_event=stop,
    )
    assert [e.phase for e in events if e.phase != "progress"] == ["start", "done"]
    assert {e.runs for e in events} == {4}
    assert table["method"].tolist() == ["zero-shot"]
    assert len(table.attrs["runs"]) == 1
    assert list(table.columns) == table_columns(level_columns(easy.taxonomy))


def test_compare_command_writes_both_tables(easy, tmp_path, capsys):
    from hiercore.cli import main

    out = tmp_path / "cmp"
    code = main(
        [
            "compare",
            "--data",
            str(easy.manifest),
            "--model",
            "tiny-random",
            "--methods",
            "tip-adapter,tpkl-hisce",
            "--seeds",
            "2",
            "--out",
            str(out),
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--max-steps",
            "2",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    table = pd.read_csv(out / "comparison.csv")
    acc = ["acc_group", "acc_kind"]
    assert level_columns(easy.taxonomy) == acc
    assert list(table.columns) == table_columns(acc)
    assert table["method"].tolist() == ["tip-adapter", "tpkl-hisce"]
    assert table["seeds"].tolist() == [2, 2]
    for col in ("fpa", "tice", "tice_consistent", *acc, "mistake_severity", "train_time_s"):
        assert f"{col}_mean" in table and f"{col}_std" in table
    assert (table["tice_consistent_mean"] == 0).all()
    assert table.loc[0, "trainable_params"] == 0 and table.loc[1, "trainable_params"] > 0
    runs = pd.read_csv(out / "comparison_runs.csv")
    assert sorted(runs["seed"].tolist()) == [0, 0, 1, 1]
    # the manifest's split column is honoured: 3 evaluation images per leaf, not 20%
    for method, seed in zip(runs["method"], runs["seed"], strict=True):
        metrics = json.loads((out / method / f"seed{seed}" / "metrics.json").read_text())
        assert metrics["n"] == EVAL_PER_LEAF * len(LEAVES)
    md = (out / "comparison.md").read_text()
    assert "| Method | FPA |" in md and "TICE (consistent)" in md and "Notes |" in md
    assert md.count("\n| tip-adapter |") == 1 and md.count("\n| tpkl-hisce |") == 1
    assert " ± " in md
    assert "split column" in md


def test_lora_rows_need_adapters(easy, tmp_path):
    with pytest.raises(HierTuneError, match="tpkl fine-tune LoRA"):
        run_comparison(
            easy.taxonomy,
            easy.train,
            easy.evals,
            quick(lora="none"),
            "zero-shot,tpkl",
            out_dir=tmp_path,
        )


def test_resolve_methods_by_name_in_a_fresh_interpreter():
    """Naming methods (not 'all') must work before anything else filled the registry."""
    import subprocess
    import sys

    code = (
        "from hiercore.baselines.registry import resolve_methods;"
        "print(resolve_methods('level-ce,tpkl-hisce'))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "['level-ce', 'tpkl-hisce']" in r.stdout
