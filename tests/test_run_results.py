"""Reading a run folder back: confusion, inconsistency drill-down and cached maps."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hiercore.config import RunConfig
from hiercore.errors import HierTuneError
from hiercore.run_results import RunResults
from hiercore.taxonomy import Taxonomy

# level 1: A(0) B(1); level 2: a1(0) a2(1) under A, b1(2) under B
TAX = Taxonomy.from_nodes(
    [
        {"id": "A", "name": "A", "parent": None},
        {"id": "B", "name": "B", "parent": None},
        {"id": "a1", "name": "a1", "parent": "A"},
        {"id": "a2", "name": "a2", "parent": "A"},
        {"id": "b1", "name": "b1", "parent": "B"},
    ]
)
TRUE = np.array([[0, 0], [0, 1], [1, 2], [1, 2], [0, -1]])
IND = np.array([[0, 0], [0, 2], [1, 2], [0, 2], [1, 2]])  # rows 1 and 3 break the tree
CONS = np.array([[0, 0], [1, 2], [1, 2], [1, 2], [1, 2]])


@pytest.fixture
def run(tmp_path):
    RunConfig(model="tiny-random").save(tmp_path / "config.json")
    (tmp_path / "taxonomy.json").write_text(json.dumps(TAX.to_dict()))
    (tmp_path / "metrics.json").write_text(json.dumps({"fpa": 0.25}))
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "predictions.npz",
        logits_0=rng.normal(size=(5, 2)),
        logits_1=rng.normal(size=(5, 3)),
        true=TRUE,
        pred_independent=IND,
        pred_consistent=CONS,
        paths=np.array([f"img{i}.png" for i in range(5)]),
        image_feats=rng.normal(size=(5, 4)).astype(np.float16),
        node_feats_before=rng.normal(size=(5, 4)),
        node_feats_after=rng.normal(size=(5, 4)),
        node_ids=np.array(["A", "B", "a1", "a2", "b1"]),
    )
    return RunResults.load(tmp_path)


def test_confusion_counts_by_hand(run):
    assert run.n == 5 and run.depth == 2
    # level 1, independent: true A -> A, A, (row 4) B ; true B -> B, A
    assert run.confusion(1).tolist() == [[2, 1], [1, 1]]
    # level 2: row 4 is unknown there and left out
    assert run.confusion(2, "consistent").tolist() == [[1, 0, 0], [0, 0, 1], [0, 0, 2]]


def test_inconsistent_rows_and_table(run):
    assert run.inconsistent_rows().tolist() == [1, 3]
    assert run.inconsistent_rows(level=2, subtree="A").tolist() == [1]
    assert run.inconsistent_rows(level=2, subtree="B").tolist() == [3]
    assert run.inconsistent_rows(decoding="consistent").tolist() == []
    table = run.inconsistency_table()
    rows = {r.node_id: (r.n, r.n_inconsistent) for r in table.itertuples()}
    assert rows == {"A": (3, 1), "B": (2, 1)}
    assert set(table["subtree"]) == {"A", "B"}
    with pytest.raises(HierTuneError, match="Level"):
        run.inconsistent_rows(level=1)


def test_labels_and_names(run):
    assert run.label_node(1) == "a2"
    assert run.label_node(4) == "A"  # a partial label
    assert run.path_names(IND[1]) == ["A", "b1"]
    assert run.path_names(TRUE[4]) == ["A"]


def test_maps_are_cached_beside_the_run(run):
    before, after, ids = run.node_maps()
    assert before.shape == (5, 2) and after.shape == (5, 2) and ids[0] == "A"
    assert before.method == "pca"  # five points are too few for UMAP
    assert (run.run_dir / "map_nodes_0.npz").is_file()
    again, _, _ = run.node_maps()
    np.testing.assert_allclose(before, again)
    assert again.note == before.note
    assert not run.has_image_map()
    coords = run.image_map()
    assert run.has_image_map()
    assert coords.shape == (5, 2) and (run.run_dir / "map_images_0.npz").is_file()


def test_unfinished_run(tmp_path):
    with pytest.raises(HierTuneError, match="not finished"):
        RunResults.load(tmp_path)


def test_a_run_keeps_top_k_classes_and_paths_and_reads_them_back(tmp_path, monkeypatch):
    """Collected.save keeps the top-k per level and the top-k valid paths; without the full
    logits (too large) RunResults still gives the same top-k as from the logits."""
    import torch

    from hiercore import evaluation
    from hiercore.decode import consistent_topk
    from hiercore.taxonomy import LevelIndex

    index = LevelIndex.build(TAX)
    parents = [torch.as_tensor(p) for p in index.parents]
    rng = np.random.default_rng(3)
    logits = [rng.normal(size=(5, n)).astype(np.float32) for n in index.sizes]
    collected = evaluation.Collected(
        logits, TRUE, rng.normal(size=(5, 4)).astype(np.float32), [f"{i}.png" for i in range(5)]
    )
    RunConfig(model="tiny-random").save(tmp_path / "config.json")
    (tmp_path / "taxonomy.json").write_text(json.dumps(TAX.to_dict()))
    (tmp_path / "metrics.json").write_text("{}")
    collected.save(tmp_path / "predictions.npz", parents)
    full = RunResults.load(tmp_path)
    assert [z.tolist() for z in full.logits] == [z.tolist() for z in logits]  # read now
    monkeypatch.setattr(evaluation, "FULL_LOGITS_UP_TO", 0)
    collected.save(tmp_path / "predictions.npz", parents)
    kept = RunResults.load(tmp_path)
    with pytest.raises(HierTuneError, match="kept only the top"):
        _ = kept.logits
    paths, scores = consistent_topk([torch.from_numpy(z) for z in logits], parents, k=5)
    assert np.array_equal(kept.topk["path_topk"], paths.numpy())
    assert np.allclose(kept.topk["path_score"], scores.numpy())
    for level in (1, 2):
        classes, probs = kept.level_topk(level)
        old_classes, old_probs = full.level_topk(level)  # the same arrays were kept here too
        z = logits[level - 1]
        softmax = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        assert np.array_equal(classes, np.argsort(-z, axis=1)[:, : classes.shape[1]])
        assert np.allclose(probs, np.take_along_axis(softmax, classes, axis=1), atol=1e-6)
        assert np.array_equal(old_classes, classes) and np.allclose(old_probs, probs)


def test_an_older_run_folder_gives_its_top_k_from_the_logits(run):
    classes, probs = run.level_topk(2)
    z = run.logits[1]
    assert np.array_equal(classes, np.argsort(-z, axis=1))
    assert np.allclose(probs.sum(axis=1), 1.0)


def test_the_per_epoch_score_equals_the_full_score_on_its_three_figures():
    import torch

    from hiercore.evaluation import Collected, epoch_score, score
    from hiercore.taxonomy import LevelIndex

    index = LevelIndex.build(TAX)
    parents = [torch.as_tensor(p) for p in index.parents]
    rng = np.random.default_rng(5)
    for n in (0, 5, 700):
        logits = [rng.normal(size=(n, c)).astype(np.float32) for c in index.sizes]
        true = TRUE[rng.integers(0, len(TRUE), n)] if n else np.zeros((0, 2), np.int64)
        collected = Collected(logits, true, np.zeros((n, 4), np.float32), [""] * n)
        full = score(collected, parents)
        quick = epoch_score(collected, parents)
        assert quick == {
            "fpa": full["fpa"],
            "tice": full["tice"],
            "consistent_fpa": full["consistent"]["fpa"],
        }


def test_precomputing_the_maps_fills_both_caches(run):
    assert not run.has_image_map()
    run.precompute_maps()
    assert run.has_image_map() and (run.run_dir / "map_nodes_0.npz").is_file()
    assert not list(run.run_dir.glob(".map_*"))  # no temporary file is left behind
    coords = run.image_map()
    assert coords.shape == (5, 2)
