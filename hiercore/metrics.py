"""Evaluation metrics for hierarchical predictions (docs/method.md §5).

Predicted and true paths are (N, L) integer arrays (numpy or torch); a negative entry in
`true` marks a level the expert did not label, and every metric scores partial labels on
their known levels only. Full-Path Accuracy, HCA and mistake severity use the fully
labelled samples. Tree-based Inconsistency Error (TICE) looks at predictions alone.

Definitions follow the paper (FPA, TICE), "Making Better Mistakes" (CVPR 2020) for the
mistake severity as the height of the lowest common ancestor, and ProTeCt (CVPR 2024)
for Hierarchical Consistent Accuracy. A metric with nothing to score is NaN, which
`evaluate_predictions` writes as None so that its summary is valid JSON.
"""

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from hiercore.decode import consistent_decode, independent_decode


def _as_array(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        # numpy has no bfloat16; widening is harmless for argmax and counting.
        return (x.float() if x.dtype == torch.bfloat16 else x).numpy()
    return np.asarray(x)


def _as_paths(x: Any) -> np.ndarray:
    paths = _as_array(x).astype(np.int64)
    if paths.ndim != 2:
        raise ValueError(f"paths must have shape (N, L), got {paths.shape}.")
    return paths


def _as_parents(parents: Sequence[Any]) -> list[np.ndarray]:
    return [_as_array(p).astype(np.int64) for p in parents]


def _mean(flags: np.ndarray) -> float:
    return float(flags.mean()) if flags.size else math.nan


def _fully_labelled(true: np.ndarray) -> np.ndarray:
    return (true >= 0).all(axis=1)


def _inconsistent_pairs(pred: np.ndarray, parents: list[np.ndarray]) -> np.ndarray:
    """(N, L-1) flags: column l-1 says parents[l][P_l] != P_{l-1}."""
    columns = [
        parents[level][pred[:, level]] != pred[:, level - 1] for level in range(1, len(parents))
    ]
    if not columns:
        return np.zeros((pred.shape[0], 0), dtype=bool)
    return np.stack(columns, axis=1)


def level_accuracy(pred: Any, true: Any) -> list[float]:
    """Micro accuracy at each level over the samples whose label is known there."""
    pred, true = _as_paths(pred), _as_paths(true)
    accuracies = []
    for level in range(true.shape[1]):
        known = true[:, level] >= 0
        accuracies.append(_mean(pred[known, level] == true[known, level]))
    return accuracies


def level_macro_accuracy(pred: Any, true: Any, sizes: Sequence[int]) -> list[float]:
    """Mean per-class recall at each level, over the classes present in `true` there."""
    pred, true = _as_paths(pred), _as_paths(true)
    accuracies = []
    for level, size in enumerate(sizes):
        known = true[:, level] >= 0
        labels = true[known, level]
        hits = (pred[known, level] == labels).astype(np.int64)
        support = np.bincount(labels, minlength=size)
        correct = np.bincount(labels, weights=hits, minlength=size)
        present = support > 0
        accuracies.append(
            float((correct[present] / support[present]).mean()) if present.any() else math.nan
        )
    return accuracies


def full_path_accuracy(pred: Any, true: Any) -> float:
    """Share of fully labelled samples whose whole predicted path is right (FPA)."""
    pred, true = _as_paths(pred), _as_paths(true)
    full = _fully_labelled(true)
    return _mean((pred[full] == true[full]).all(axis=1))


def tree_inconsistency_error(pred: Any, parents: Sequence[Any]) -> float:
    """Share of predicted paths that are not root-to-leaf paths of the tree (TICE)."""
    flags = _inconsistent_pairs(_as_paths(pred), _as_parents(parents))
    return _mean(flags.any(axis=1))


def inconsistency_by_level_pair(pred: Any, parents: Sequence[Any]) -> list[float]:
    """For each adjacent pair of levels (l-1, l), the rate of broken parent links."""
    flags = _inconsistent_pairs(_as_paths(pred), _as_parents(parents))
    return [_mean(flags[:, column]) for column in range(flags.shape[1])]


def inconsistency_by_subtree(pred: Any, true: Any, parents: Sequence[Any]) -> pd.DataFrame:
    """Where broken parent links concentrate, grouped by the true node one level up.

    One row per level pair and true parent node (the subtree the sample belongs to),
    among samples whose label is known at that parent's level: `level` is the deeper
    level (1-based), `parent_index` the true node's index at the level above it.
    Sorted with the most inconsistent subtrees first.
    """
    pred, true = _as_paths(pred), _as_paths(true)
    parent_arrays = _as_parents(parents)
    flags = _inconsistent_pairs(pred, parent_arrays)
    rows = []
    for level in range(1, len(parent_arrays)):
        known = true[:, level - 1] >= 0
        subtree = true[known, level - 1]
        broken = flags[known, level - 1]
        n_parents = len(parent_arrays[level - 1])
        n = np.bincount(subtree, minlength=n_parents)
        n_broken = np.bincount(subtree, weights=broken.astype(np.int64), minlength=n_parents)
        for parent_index in np.flatnonzero(n):
            rows.append(
                {
                    "level": level + 1,
                    "parent_index": int(parent_index),
                    "n": int(n[parent_index]),
                    "n_inconsistent": int(n_broken[parent_index]),
                    "rate": float(n_broken[parent_index] / n[parent_index]),
                }
            )
    columns = ["level", "parent_index", "n", "n_inconsistent", "rate"]
    table = pd.DataFrame(rows, columns=columns)
    table = table.astype(
        {"level": "int64", "parent_index": "int64", "n": "int64", "n_inconsistent": "int64"}
    )
    table = table.sort_values(
        ["n_inconsistent", "rate", "level", "parent_index"],
        ascending=[False, False, True, True],
        kind="stable",
    )
    return table.reset_index(drop=True)


def _leaf_paths(leaves: np.ndarray, parents: list[np.ndarray]) -> np.ndarray:
    steps = [leaves]
    for level in range(len(parents) - 1, 0, -1):
        steps.append(parents[level][steps[-1]])
    return np.stack(steps[::-1], axis=1)


def mistake_severity(pred: Any, true: Any, parents: Sequence[Any]) -> float:
    """Mean height of the LCA of predicted and true leaf over wrong leaf predictions.

    Height is L minus the LCA's depth (root depth 0), so confusing two siblings costs 1
    and confusing leaves that only share the root costs L. The ancestors come from the
    leaves themselves, not from the predicted upper levels, which may be inconsistent.
    """
    pred, true = _as_paths(pred), _as_paths(true)
    parent_arrays = _as_parents(parents)
    full = _fully_labelled(true)
    wrong = full & (pred[:, -1] != true[:, -1])
    if not wrong.any():
        return math.nan
    predicted = _leaf_paths(pred[wrong, -1], parent_arrays)
    actual = _leaf_paths(true[wrong, -1], parent_arrays)
    # In a tree, equal nodes at a level imply equal ancestors, so the number of equal
    # levels is the depth of the lowest common ancestor.
    lca_depth = (predicted == actual).sum(axis=1)
    return float((true.shape[1] - lca_depth).mean())


def hierarchical_consistent_accuracy(
    logits: Sequence[Any], true: Any, parents: Sequence[Any]
) -> float:
    """HCA (ProTeCt): leaf argmax right and, at every level, the argmax among the
    children of the true node one level up right; over fully labelled samples.

    Memory is linear in N x (widest sibling group), not N x nodes: each sample's sibling
    candidates are gathered through a (parents, widest family) table of child indices in
    ascending order, so ties go to the lowest index as an argmax over the level would.
    """
    true = _as_paths(true)
    parent_arrays = _as_parents(parents)
    full = _fully_labelled(true)
    if not full.any():
        return math.nan
    rows = np.flatnonzero(full)
    true = true[full]
    scores = [_as_array(z) for z in logits]
    ok = scores[-1].argmax(axis=1)[rows] == true[:, -1]
    ok &= scores[0].argmax(axis=1)[rows] == true[:, 0]
    for level in range(1, len(scores)):
        table = _children_table(parent_arrays[level], scores[level - 1].shape[1])
        candidates = table[true[:, level - 1]]  # (n, widest family), -1 pads
        for start in range(0, len(rows), 4096):  # bounded temporaries at any N
            part = slice(start, start + 4096)
            cand = candidates[part]
            picked = scores[level][rows[part, None], np.maximum(cand, 0)]
            picked[cand < 0] = -np.inf
            best = cand[np.arange(len(cand)), picked.argmax(axis=1)]
            ok[part] &= best == true[part, level]
    return float(ok.mean())


def _children_table(parents: np.ndarray, n_parents: int) -> np.ndarray:
    """(n_parents, widest family) child indices per parent, ascending, padded with -1."""
    order = np.argsort(parents, kind="stable")
    counts = np.bincount(parents, minlength=n_parents)
    table = np.full((n_parents, max(int(counts.max(initial=0)), 1)), -1, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    column = np.arange(len(order)) - np.repeat(starts, counts)
    table[parents[order], column] = order
    return table


def confusion_matrices(pred: Any, true: Any, sizes: Sequence[int]) -> list[np.ndarray]:
    """Per level, a (C_l, C_l) count matrix with true rows and predicted columns."""
    pred, true = _as_paths(pred), _as_paths(true)
    matrices = []
    for level, size in enumerate(sizes):
        known = true[:, level] >= 0
        matrix = np.zeros((size, size), dtype=np.int64)
        np.add.at(matrix, (true[known, level], pred[known, level]), 1)
        matrices.append(matrix)
    return matrices


def confusion_at_level(pred: Any, true: Any, level: int, size: int, sparse: bool = False):
    """The (C, C) count matrix of one 0-based `level` (true rows, predicted columns);
    a `scipy.sparse.csr_matrix` when `sparse` (a 10k-leaf level is 800 MB dense)."""
    pred, true = _as_paths(pred), _as_paths(true)
    known = true[:, level] >= 0
    rows, cols = true[known, level], pred[known, level]
    if sparse:
        from scipy.sparse import coo_matrix

        ones = np.ones(len(rows), dtype=np.int64)
        return coo_matrix((ones, (rows, cols)), shape=(size, size)).tocsr()  # sums duplicates
    matrix = np.zeros((size, size), dtype=np.int64)
    np.add.at(matrix, (rows, cols), 1)
    return matrix


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _decoding_summary(
    pred: torch.Tensor, true: np.ndarray, parents: list[np.ndarray], sizes: list[int]
) -> dict:
    return {
        "fpa": full_path_accuracy(pred, true),
        "tice": tree_inconsistency_error(pred, parents),
        "level_accuracy": level_accuracy(pred, true),
        "level_macro_accuracy": level_macro_accuracy(pred, true, sizes),
        "mistake_severity": mistake_severity(pred, true, parents),
        "inconsistency_by_level_pair": inconsistency_by_level_pair(pred, parents),
    }


DECODE_CHUNK = 256
"""Rows decoded at once by `evaluate_predictions` (bounds its temporaries at any N)."""


def evaluate_predictions(logits: Sequence[Any], true: Any, parents: Sequence[Any]) -> dict:
    """JSON-ready summary for the CLI and the studio.

    Top-level keys hold the independent decoding's metrics (fpa, tice, level_accuracy,
    level_macro_accuracy, mistake_severity, inconsistency_by_level_pair); "consistent"
    holds the same keys for consistent decoding; "hca" and "n" complete it. NaN is None.
    """
    tensors = [torch.as_tensor(_as_array(z)) for z in logits]
    true = _as_paths(true)
    parent_arrays = _as_parents(parents)
    parent_tensors = [torch.as_tensor(p) for p in parent_arrays]
    sizes = [z.shape[1] for z in tensors]
    # decoded in row chunks: a 10k-leaf level's log-softmax is N x 10k floats otherwise
    chunks = [
        [z[start : start + DECODE_CHUNK] for z in tensors]
        for start in range(0, max(true.shape[0], 1), DECODE_CHUNK)
    ]
    independent = torch.cat([independent_decode(c).cpu() for c in chunks])
    consistent = torch.cat([consistent_decode(c, parent_tensors).cpu() for c in chunks])
    summary = _decoding_summary(independent, true, parent_arrays, sizes)
    summary["consistent"] = _decoding_summary(consistent, true, parent_arrays, sizes)
    summary["hca"] = hierarchical_consistent_accuracy(tensors, true, parent_arrays)
    summary["n"] = int(true.shape[0])
    return _json_safe(summary)


__all__ = [
    "confusion_at_level",
    "confusion_matrices",
    "evaluate_predictions",
    "full_path_accuracy",
    "hierarchical_consistent_accuracy",
    "inconsistency_by_level_pair",
    "inconsistency_by_subtree",
    "level_accuracy",
    "level_macro_accuracy",
    "mistake_severity",
    "tree_inconsistency_error",
]
