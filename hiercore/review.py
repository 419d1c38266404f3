"""The review queue of model-assisted labelling: which images a person should look at first.

For each image the model gives per-level logits. From them:

- confidence: the probability of the best valid path, exp of its summed per-level
  log-probability (`decode.consistent_topk`);
- margin: that probability minus the second-best valid path's (small = the model hesitates
  between two paths; 1 when the tree has a single leaf);
- disagreement: the number of levels where independent decoding (per-level argmax) and
  consistent decoding differ, and broken_links the number of adjacent level pairs where the
  independent path leaves the tree (docs/method.md §5's inconsistency, per image).

`review_order` sorts by one of three keys: "margin" (smallest first), "confidence" (lowest
first) or "inconsistency" (most broken links, then most disagreeing levels, then smallest
margin). Ties keep the input order, so the queue is deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from hiercore.decode import consistent_topk, independent_decode
from hiercore.errors import HierTuneError

ORDERS = ("margin", "confidence", "inconsistency")


@dataclass
class ReviewScores:
    """Per-image scores behind the review queue, each an array of length N."""

    confidence: np.ndarray
    margin: np.ndarray
    disagreement: np.ndarray
    broken_links: np.ndarray


def review_scores(logits: Sequence, parents: Sequence) -> ReviewScores:
    """Scores of N images from their per-level logits (N, C_l) and the level parents."""
    z = [torch.as_tensor(np.asarray(x), dtype=torch.float32) for x in logits]
    par = [torch.as_tensor(np.asarray(p), dtype=torch.long) for p in parents]
    n = z[0].shape[0]
    if n == 0:
        empty = np.zeros(0)
        return ReviewScores(empty, empty, empty.astype(np.int64), empty.astype(np.int64))
    paths, scores = consistent_topk(z, par, k=2)
    probs = scores.exp().numpy().astype(np.float64)
    confidence = probs[:, 0]
    margin = probs[:, 0] - probs[:, 1] if probs.shape[1] > 1 else np.ones(n)
    ind = independent_decode(z).numpy()
    best = paths[:, 0].numpy()
    disagreement = (ind != best).sum(axis=1).astype(np.int64)
    broken = np.zeros(n, dtype=np.int64)
    for level in range(1, len(par)):
        broken += par[level].numpy()[ind[:, level]] != ind[:, level - 1]
    return ReviewScores(confidence, margin, disagreement, broken)


def review_order(scores: ReviewScores, order: str = "margin") -> np.ndarray:
    """Row indices in review order (see the module docstring for the keys)."""
    if order not in ORDERS:
        raise HierTuneError(f"Review order must be one of {', '.join(ORDERS)}, not {order!r}.")
    if order == "margin":
        keys = (scores.confidence, scores.margin)
    elif order == "confidence":
        keys = (scores.margin, scores.confidence)
    else:
        keys = (scores.margin, -scores.disagreement, -scores.broken_links)
    # np.lexsort sorts by the last key first and is stable
    return np.lexsort(keys)
