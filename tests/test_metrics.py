"""Tests of hiercore.metrics: hand-computed values on the toy tree and loop
re-implementations on random trees with partial labels."""

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from treegen import TOY_PARENTS, random_logits, random_parents, random_sizes, random_targets

from benchmarks.bench_scale_ui import hca_dense
from hiercore.decode import consistent_decode, independent_decode
from hiercore.metrics import (
    confusion_matrices,
    evaluate_predictions,
    full_path_accuracy,
    hierarchical_consistent_accuracy,
    inconsistency_by_level_pair,
    inconsistency_by_subtree,
    level_accuracy,
    level_macro_accuracy,
    mistake_severity,
    tree_inconsistency_error,
)

# Toy tree: A=0 -> {a1=0, a2=1}, B=1 -> {b1=2}.
TRUE = np.array([[0, 1], [1, 2], [0, 0], [1, -1], [-1, -1], [1, 2]])
PRED = np.array([[0, 1], [1, 0], [1, 1], [0, 0], [1, 1], [0, 2]])
# Sample by sample: 0 all right and valid; 1 leaf wrong (a1 for b1), a1 is not under B;
# 2 both wrong, a2 not under B; 3 level 1 wrong, valid; 4 unlabelled, a2 not under B;
# 5 level 1 wrong, leaf right, b1 not under A.


def test_level_accuracy_by_hand():
    # Level 1 known for samples 0,1,2,3,5 (right: 0,1); level 2 for 0,1,2,5 (right: 0,5).
    assert level_accuracy(PRED, TRUE) == pytest.approx([2 / 5, 2 / 4])


def test_level_macro_accuracy_by_hand():
    # Level 1: class A recall 1/2 (samples 0,2), class B 1/3 (1,3,5).
    # Level 2: a1 0/1, a2 1/1, b1 1/2.
    assert level_macro_accuracy(PRED, TRUE, [2, 3]) == pytest.approx(
        [(1 / 2 + 1 / 3) / 2, (0 + 1 + 1 / 2) / 3]
    )


def test_full_path_accuracy_by_hand():
    # Fully labelled: 0, 1, 2, 5; only 0 is right on both levels.
    assert full_path_accuracy(PRED, TRUE) == pytest.approx(1 / 4)


def test_tice_by_hand():
    # Broken links in samples 1, 2, 4, 5; correctness and labels do not matter.
    assert tree_inconsistency_error(PRED, TOY_PARENTS) == pytest.approx(4 / 6)
    assert inconsistency_by_level_pair(PRED, TOY_PARENTS) == pytest.approx([4 / 6])


def test_inconsistency_by_subtree_by_hand():
    table = inconsistency_by_subtree(PRED, TRUE, TOY_PARENTS)
    assert list(table.columns) == ["level", "parent_index", "n", "n_inconsistent", "rate"]
    # Under true B (samples 1, 3, 5): 1 and 5 broken. Under true A (0, 2): 2 broken.
    # Sample 4 has no known level 1 and is left out.
    assert table.to_dict("records") == [
        {"level": 2, "parent_index": 1, "n": 3, "n_inconsistent": 2, "rate": pytest.approx(2 / 3)},
        {"level": 2, "parent_index": 0, "n": 2, "n_inconsistent": 1, "rate": pytest.approx(1 / 2)},
    ]


def test_mistake_severity_by_hand():
    # Wrong leaves among fully labelled: sample 1 (a1 vs b1, LCA root, height 2) and
    # sample 2 (a2 vs a1, siblings, height 1).
    assert mistake_severity(PRED, TRUE, TOY_PARENTS) == pytest.approx(1.5)


def test_confusion_matrices_by_hand():
    level1, level2 = confusion_matrices(PRED, TRUE, [2, 3])
    assert level1.tolist() == [[1, 1], [2, 1]]
    assert level2.tolist() == [[0, 1, 0], [0, 1, 0], [1, 0, 1]]
    assert level1.dtype.kind == "i"


def test_hca_by_hand():
    z1 = np.array([[2, 1], [2, 1], [0, 1], [1, 0], [1, 0], [0, 1]], dtype=float)
    z2 = np.array([[0, 3, 1], [0, 1, 3], [5, 0, 1], [0, 0, 1], [1, 0, 0.5], [0, 9, 0]], dtype=float)
    true = np.array([[0, 1], [0, 1], [1, 2], [1, 2], [0, 0], [0, -1]])
    # Counted: 0 (all right) and 4. Not: 1 (leaf argmax b1 though a2 wins among A's
    # children), 2 (leaf wrong), 3 (level 1 wrong). Sample 5 is partial and left out.
    assert hierarchical_consistent_accuracy([z1, z2], true, TOY_PARENTS) == pytest.approx(2 / 5)


def test_hca_checks_the_restricted_argmax_below_the_leaf_level():
    # Three levels: the level-2 argmax among the true level-1 node's children is wrong
    # while the unrestricted leaf and level-1 argmaxes are right.
    parents = [torch.zeros(2, dtype=torch.long), torch.tensor([0, 0, 1]), torch.tensor([0, 1, 2])]
    z1 = np.array([[1.0, 0.0]])
    z2 = np.array([[5.0, 0.0, 9.0]])  # among A's children {0, 1}, 0 wins; truth is 1
    z3 = np.array([[0.0, 1.0, 0.0]])
    true = np.array([[0, 1, 1]])
    assert hierarchical_consistent_accuracy([z1, z2, z3], true, parents) == 0.0
    z2 = np.array([[0.0, 5.0, 9.0]])  # b-level node 2 wins overall but is not A's child
    assert hierarchical_consistent_accuracy([z1, z2, z3], true, parents) == 1.0


def test_nothing_to_score_gives_nan():
    pred = np.array([[0, 1]])
    true = np.array([[-1, -1]])
    assert all(math.isnan(v) for v in level_accuracy(pred, true))
    assert all(math.isnan(v) for v in level_macro_accuracy(pred, true, [2, 3]))
    assert math.isnan(full_path_accuracy(pred, true))
    assert math.isnan(mistake_severity(pred, true, TOY_PARENTS))
    assert math.isnan(mistake_severity(pred, np.array([[0, 1]]), TOY_PARENTS))  # no mistake
    assert math.isnan(
        hierarchical_consistent_accuracy([np.zeros((1, 2)), np.zeros((1, 3))], true, TOY_PARENTS)
    )
    assert inconsistency_by_subtree(pred, true, TOY_PARENTS).empty


def test_torch_inputs_match_numpy_inputs():
    pred, true = torch.as_tensor(PRED), torch.as_tensor(TRUE)
    assert level_accuracy(pred, true) == level_accuracy(PRED, TRUE)
    assert tree_inconsistency_error(pred, TOY_PARENTS) == tree_inconsistency_error(
        PRED, [p.numpy() for p in TOY_PARENTS]
    )
    assert mistake_severity(pred, true, TOY_PARENTS) == mistake_severity(PRED, TRUE, TOY_PARENTS)


# ---- loop re-implementations ----------------------------------------------------------


def loop_metrics(pred, true, parents, logits):
    """Every metric with explicit python loops over samples, for comparison."""
    n, n_levels = len(true), len(parents)
    parents = [[int(x) for x in p] for p in parents]

    def broken(path, level):
        return parents[level][path[level]] != path[level - 1]

    def up_path(leaf):
        path = [leaf]
        for level in range(n_levels - 1, 0, -1):
            path.insert(0, parents[level][path[0]])
        return path

    out = {"acc": [], "macro": []}
    for level in range(n_levels):
        hits = [pred[i][level] == true[i][level] for i in range(n) if true[i][level] >= 0]
        out["acc"].append(sum(hits) / len(hits) if hits else math.nan)
        recalls = []
        for c in sorted({true[i][level] for i in range(n) if true[i][level] >= 0}):
            members = [i for i in range(n) if true[i][level] == c]
            recalls.append(sum(pred[i][level] == c for i in members) / len(members))
        out["macro"].append(sum(recalls) / len(recalls) if recalls else math.nan)
    full = [i for i in range(n) if all(t >= 0 for t in true[i])]
    fpa = [all(pred[i][lv] == true[i][lv] for lv in range(n_levels)) for i in full]
    out["fpa"] = sum(fpa) / len(fpa) if fpa else math.nan
    out["tice"] = sum(any(broken(pred[i], lv) for lv in range(1, n_levels)) for i in range(n)) / n
    out["pairs"] = [sum(broken(pred[i], lv) for i in range(n)) / n for lv in range(1, n_levels)]
    heights = []
    for i in full:
        if pred[i][-1] != true[i][-1]:
            a, b = up_path(pred[i][-1]), up_path(true[i][-1])
            depth = 0
            while depth < n_levels and a[depth] == b[depth]:
                depth += 1
            heights.append(n_levels - depth)
    out["severity"] = sum(heights) / len(heights) if heights else math.nan
    hca = []
    for i in full:
        ok = int(np.argmax(logits[-1][i])) == true[i][-1]
        for level in range(n_levels):
            if level == 0:
                candidates = list(range(len(parents[0])))
            else:
                candidates = [
                    c for c in range(len(parents[level])) if parents[level][c] == true[i][level - 1]
                ]
            best = max(candidates, key=lambda c: logits[level][i][c])
            ok = ok and best == true[i][level]
        hca.append(ok)
    out["hca"] = sum(hca) / len(hca) if hca else math.nan
    rows = {}
    for level in range(1, n_levels):
        for i in range(n):
            if true[i][level - 1] >= 0:
                key = (level + 1, true[i][level - 1])
                seen, bad = rows.get(key, (0, 0))
                rows[key] = (seen + 1, bad + broken(pred[i], level))
    out["subtree"] = rows
    return out


def same(a, b):
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_levels=st.integers(1, 4), consistent=st.booleans())
def test_metrics_match_loop_reimplementations(seed, n_levels, consistent):
    rng = np.random.default_rng(seed)
    sizes = random_sizes(rng, n_levels, max_width=3)
    parents = random_parents(rng, sizes)
    n = int(rng.integers(1, 12))
    true = random_targets(rng, parents, n).numpy()
    # Logits biased towards the truth so that right and wrong predictions both occur.
    logits = random_logits(rng, sizes, n)
    for level in range(n_levels):
        known = true[:, level] >= 0
        logits[level][np.flatnonzero(known), true[known, level]] += 1.5
    decode = consistent_decode if consistent else independent_decode
    pred = (decode(logits, parents) if consistent else decode(logits)).numpy()
    np_logits = [z.numpy() for z in logits]
    ref = loop_metrics(pred.tolist(), true.tolist(), parents, np_logits)

    assert same(level_accuracy(pred, true), ref["acc"])
    assert same(level_macro_accuracy(pred, true, sizes), ref["macro"])
    assert same(full_path_accuracy(pred, true), ref["fpa"])
    assert same(tree_inconsistency_error(pred, parents), ref["tice"])
    assert same(inconsistency_by_level_pair(pred, parents), ref["pairs"])
    assert same(mistake_severity(pred, true, parents), ref["severity"])
    assert same(hierarchical_consistent_accuracy(np_logits, true, parents), ref["hca"])
    table = inconsistency_by_subtree(pred, true, parents)
    got = {
        (r["level"], r["parent_index"]): (r["n"], r["n_inconsistent"])
        for r in table.to_dict("records")
    }
    assert got == ref["subtree"]
    assert list(table["n_inconsistent"]) == sorted(table["n_inconsistent"], reverse=True)
    if consistent:
        assert tree_inconsistency_error(pred, parents) == 0.0
    for level, matrix in enumerate(confusion_matrices(pred, true, sizes)):
        assert matrix.sum() == (true[:, level] >= 0).sum()
        assert np.trace(matrix) == sum(
            1 for i in range(n) if true[i, level] >= 0 and pred[i, level] == true[i, level]
        )


# ---- the JSON summary -----------------------------------------------------------------


def test_evaluate_predictions_layout_and_values():
    rng = np.random.default_rng(4)
    sizes = [3, 5, 8]
    parents = random_parents(rng, sizes)
    true = random_targets(rng, parents, 30)
    logits = random_logits(rng, sizes, 30, dtype=torch.float32)
    summary = evaluate_predictions(logits, true, parents)
    json.dumps(summary, allow_nan=False)  # NaN must already be None

    keys = {
        "fpa",
        "tice",
        "level_accuracy",
        "level_macro_accuracy",
        "mistake_severity",
        "inconsistency_by_level_pair",
    }
    assert set(summary) == keys | {"consistent", "hca", "n"}
    assert set(summary["consistent"]) == keys
    assert summary["n"] == 30
    independent = independent_decode(logits)
    consistent = consistent_decode(logits, parents)
    assert summary["tice"] == pytest.approx(tree_inconsistency_error(independent, parents))
    assert summary["consistent"]["tice"] == 0.0
    assert summary["level_accuracy"] == pytest.approx(level_accuracy(independent, true))
    assert summary["consistent"]["fpa"] == pytest.approx(full_path_accuracy(consistent, true))
    assert summary["hca"] == pytest.approx(hierarchical_consistent_accuracy(logits, true, parents))


def test_evaluate_predictions_writes_nan_as_none():
    logits = [torch.zeros(2, 2, dtype=torch.bfloat16), torch.zeros(2, 3, dtype=torch.bfloat16)]
    true = torch.full((2, 2), -1)
    summary = evaluate_predictions(logits, true, TOY_PARENTS)
    json.dumps(summary, allow_nan=False)
    assert summary["fpa"] is None and summary["hca"] is None
    assert summary["level_accuracy"] == [None, None]
    assert summary["consistent"]["mistake_severity"] is None


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 4), st.booleans())
def test_hca_equals_the_dense_definition_on_random_trees(seed, n_levels, ties):
    rng = np.random.default_rng(seed)
    sizes = random_sizes(rng, n_levels)
    parents = random_parents(rng, sizes)
    true = random_targets(rng, parents, 40).numpy()
    logits = [z.numpy().astype(np.float32) for z in random_logits(rng, sizes, 40)]
    if ties:  # rounded logits tie often: the lowest index must still win
        logits = [np.round(z) for z in logits]
    expected = hca_dense(logits, true, parents)
    got = hierarchical_consistent_accuracy(logits, true, parents)
    assert got == expected or (math.isnan(got) and math.isnan(expected))
