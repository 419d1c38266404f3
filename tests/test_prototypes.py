"""Image prototypes (docs/method.md §2.1): the formula, and that they come from training
images only and travel with the run to prediction."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import SMALL_NODES
from imagegen import write_tree

from hiercore.config import RunConfig
from hiercore.data import samples_from_folder_tree, split_samples
from hiercore.models import HierClip, load_clip
from hiercore.models.hierclip import subtree_max
from hiercore.predict import Predictor, load_run_model
from hiercore.prototypes import PrototypeSums, from_features
from hiercore.run_folder import RunFolder
from hiercore.taxonomy import LevelIndex, Taxonomy
from hiercore.training import train


def shallow_taxonomy() -> Taxonomy:
    """The small taxonomy plus a leaf at depth 1, so the last level holds a padding copy."""
    nodes = [{"id": i, "name": n, "parent": p, "description": d} for i, n, p, d in SMALL_NODES]
    nodes.append({"id": "fungi", "name": "Fungi", "parent": "", "description": ""})
    return Taxonomy.from_nodes(nodes, level_names=["class", "family", "genus"])


def leaves_under(index: LevelIndex, level: int) -> list[list[int]]:
    """For each node of `level`, the last-level positions whose ancestor it is (by parents)."""
    last = index.depth - 1
    out = [[] for _ in range(index.sizes[level])]
    for leaf in range(index.sizes[-1]):
        node = leaf
        for lvl in range(last, level, -1):
            node = int(index.parents[lvl][node])
        out[node].append(leaf)
    return out


def test_subtree_max_is_each_nodes_best_last_level_node():
    index = LevelIndex.build(shallow_taxonomy())
    parents = [torch.as_tensor(p) for p in index.parents]
    scores = torch.randn(4, index.sizes[-1])
    got = subtree_max(scores, parents, index.sizes)
    assert [g.shape[1] for g in got] == index.sizes
    for level in range(index.depth):
        for node, leaves in enumerate(leaves_under(index, level)):
            assert leaves, "every node has a last-level node under it"
            assert torch.equal(got[level][:, node], scores[:, leaves].max(1).values)


@pytest.fixture(scope="module")
def tiny_model():
    return HierClip(load_clip("tiny-random", seed=0), shallow_taxonomy()).eval()


def test_the_prototype_term_follows_the_method_contract(tiny_model):
    model = tiny_model
    f = F.normalize(torch.randn(5, model.bundle.embed_dim), dim=-1)
    with torch.no_grad():
        nodes = model.encode_nodes()
        text = model.level_logits(f, nodes)
        n_leaves = model.index.sizes[-1]
        protos = F.normalize(torch.randn(n_leaves, f.shape[1]), dim=-1)
        counts = torch.arange(n_leaves, dtype=torch.float)  # leaf 0 has no training image
        model.set_prototypes(protos, counts, weight=1.5)
        try:
            fused = model.level_logits(f, nodes)
        finally:
            model.set_prototypes(None)
        assert all(
            torch.equal(a, b) for a, b in zip(model.level_logits(f, nodes), text, strict=True)
        )
    s = model.logit_scale().detach()
    points = protos.clone()
    points[0] = model.node_embeddings(nodes)[-1][0]  # the text embedding stands in
    for level in range(model.depth):
        for node, leaves in enumerate(leaves_under(model.index, level)):
            best = (s * f @ points[leaves].t()).max(1).values
            assert torch.allclose(
                fused[level][:, node], text[level][:, node] + 1.5 * best, atol=1e-5
            )


def test_weight_zero_is_the_papers_form_and_a_wrong_shape_is_refused(tiny_model):
    model = tiny_model
    f = F.normalize(torch.randn(3, model.bundle.embed_dim), dim=-1)
    with torch.no_grad():
        before = model.level_logits(f)
        model.set_prototypes(torch.randn(model.index.sizes[-1], f.shape[1]), weight=0.0)
        assert model.proto_feats is None
        assert all(torch.equal(a, b) for a, b in zip(model.level_logits(f), before, strict=True))
    with pytest.raises(ValueError, match="prototypes must be"):
        model.set_prototypes(torch.randn(2, f.shape[1]), weight=1.0)


def test_sums_leave_out_images_labelled_above_the_last_level():
    feats = F.normalize(torch.randn(6, 4), dim=-1)
    leaf = torch.tensor([0, 0, 2, -1, 2, -1])
    protos, counts = from_features(feats, leaf, 3)
    assert counts.tolist() == [2, 0, 2]
    assert torch.allclose(protos[0], F.normalize(feats[0] + feats[1], dim=0))
    assert torch.allclose(protos[2], F.normalize(feats[2] + feats[4], dim=0))
    assert torch.equal(protos[1], torch.zeros(4))
    sums = PrototypeSums(3, 4)
    sums.add(feats[:3], leaf[:3])
    sums.reset()
    assert sums.result()[1].sum() == 0


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    root = write_tree(tmp_path_factory.mktemp("tree"), per_leaf=6)
    tax, samples = samples_from_folder_tree(root)
    train_s, val_s = split_samples(samples, LevelIndex.build(tax), 0.25, seed=0)
    # one leaf has validation images only: its prototype must stay empty
    held = val_s[0].node_id
    moved = [s for s in train_s if s.node_id == held]
    train_s = [s for s in train_s if s.node_id != held]
    val_s = val_s + moved
    config = RunConfig(
        model="tiny-random", epochs=2, batch_size=8, lr=3e-3, device="cpu", lora="vision"
    )
    out = tmp_path_factory.mktemp("run")
    result = train(config, tax, train_s, val_s, out)
    return out, tax, train_s, val_s, held, result


def test_a_run_makes_its_prototypes_from_training_images_only(trained_run):
    out, tax, train_s, val_s, held, result = trained_run
    assert result.state == "finished"
    feats, counts = RunFolder(out).read_prototypes()
    index = LevelIndex.build(tax)
    position = {n: i for i, n in enumerate(index.level_nodes[-1])}
    expected = np.zeros(index.sizes[-1])
    for s in train_s:
        expected[position[s.node_id]] += 1
    assert counts.numpy().tolist() == expected.tolist()
    assert counts[position[held]] == 0 and any(s.node_id == held for s in val_s)
    # each prototype is the mean of its training images' features under the run's model
    model = load_run_model(out)
    with torch.no_grad():
        some = [s for s in train_s if s.node_id == train_s[0].node_id]
        x = torch.stack([model.bundle.preprocess(_open(s.path)) for s in some])
        mean = F.normalize(model.encode_images(x).sum(0), dim=0)
    assert torch.allclose(feats[position[some[0].node_id]], mean, atol=1e-4)


def test_prediction_scores_a_run_as_its_evaluation_did(trained_run):
    out = trained_run[0]
    predictor = Predictor.from_run(out)
    assert predictor.model.proto_feats is not None
    saved = np.load(out / "predictions.npz")
    images = [_open(s) for s in saved["paths"][:4]]
    logits = predictor.level_logits(images)
    for level, z in enumerate(logits):
        assert np.allclose(z.numpy(), saved[f"logits_{level}"][:4], atol=1e-4)


def _open(path):
    from hiercore.images import open_rgb

    return open_rgb(str(path))


@pytest.mark.parametrize("lora, image_cache", [("text", True), ("vision", False)])
def test_every_way_a_run_reads_its_images_gives_the_same_prototypes(tmp_path, lora, image_cache):
    """Frozen features (text LoRA), images read again from disk (no cache): the prototype
    is still the mean of the training images' features under the evaluation transform."""
    root = write_tree(tmp_path / "tree", per_leaf=3)
    tax, samples = samples_from_folder_tree(root)
    train_s, val_s = split_samples(samples, LevelIndex.build(tax), 0.34, seed=1)
    config = RunConfig(model="tiny-random", epochs=1, batch_size=8, device="cpu", lora=lora)
    train(config, tax, train_s, val_s, tmp_path / "run", image_cache=image_cache)
    feats, counts = RunFolder(tmp_path / "run").read_prototypes()
    model = load_run_model(tmp_path / "run")
    index = LevelIndex.build(tax)
    leaf = train_s[0].node_id
    some = [s for s in train_s if s.node_id == leaf]
    with torch.no_grad():
        x = torch.stack([model.bundle.preprocess(_open(s.path)) for s in some])
        mean = F.normalize(model.encode_images(x).sum(0), dim=0)
    at = list(index.level_nodes[-1]).index(leaf)
    assert counts[at] == len(some)
    assert torch.allclose(feats[at], mean, atol=1e-4)


def test_a_run_saved_before_the_prototypes_reads_as_text_only(trained_run, tmp_path):
    import json
    import shutil

    old = tmp_path / "old-run"
    shutil.copytree(trained_run[0], old)
    config = json.loads((old / "config.json").read_text())
    del config["prototypes"]
    (old / "config.json").write_text(json.dumps(config))
    (old / "prototypes.safetensors").unlink()
    assert RunFolder(old).read_config().prototypes == 0.0
    assert load_run_model(old).proto_feats is None
