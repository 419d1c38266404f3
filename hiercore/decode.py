"""Turning per-level logits into predicted label paths (docs/method.md §4).

Independent decoding (the paper's protocol) takes the argmax at every level and may
produce a path that is not in the tree. Consistent decoding picks the valid root-to-leaf
path with the highest summed per-level log-probability, so its Tree-based Inconsistency
Error is 0 by construction.

Every leaf is at level L (ragged trees are padded upstream), so a valid full path is
determined by its leaf. The best path ending at each node therefore follows from a
single top-down pass: cum[l] = log_softmax(z^(l)) + cum[l-1][parents[l]], a gather
per level, O(B * sum C_l) in all. The best leaf of cum[L] is the answer and the k best
leaves are the k best paths.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def _parent_tensors(parents: Sequence[Tensor], device: torch.device) -> list[Tensor]:
    return [torch.as_tensor(p, dtype=torch.long, device=device) for p in parents]


def independent_decode(logits: Sequence[Tensor]) -> Tensor:
    """Argmax at every level on its own, shape (B, L); the path may be invalid."""
    return torch.stack([z.argmax(dim=1) for z in logits], dim=1)


def path_scores(logits: Sequence[Tensor], parents: Sequence[Tensor]) -> Tensor:
    """Summed log-probability of the full path ending at each leaf, shape (B, C_L)."""
    if len(parents) != len(logits):
        raise ValueError(f"parents has {len(parents)} levels but logits has {len(logits)}.")
    device = logits[0].device
    parent_tensors = _parent_tensors(parents, device)
    cum = None
    for level, z in enumerate(logits):
        log_p = F.log_softmax(z.to(torch.promote_types(z.dtype, torch.float32)), dim=1)
        cum = log_p if cum is None else log_p + cum[:, parent_tensors[level]]
    return cum


def leaf_to_path(leaf_idx: Tensor, parents: Sequence[Tensor]) -> Tensor:
    """Full path (level-1 index, ..., leaf index) of leaves of any shape, as (..., L)."""
    leaf_idx = torch.as_tensor(leaf_idx, dtype=torch.long)
    parent_tensors = _parent_tensors(parents, leaf_idx.device)
    steps = [leaf_idx]
    for level in range(len(parent_tensors) - 1, 0, -1):
        steps.append(parent_tensors[level][steps[-1]])
    return torch.stack(steps[::-1], dim=-1)


def consistent_decode(logits: Sequence[Tensor], parents: Sequence[Tensor]) -> Tensor:
    """The valid full path with the highest summed log-probability, shape (B, L)."""
    best_leaf = path_scores(logits, parents).argmax(dim=1)
    return leaf_to_path(best_leaf, parents)


def consistent_topk(
    logits: Sequence[Tensor], parents: Sequence[Tensor], k: int = 3
) -> tuple[Tensor, Tensor]:
    """The k best valid full paths (B, k, L) and their summed log-probabilities (B, k).

    Scores are sorted best first. When the tree has fewer than k leaves, every path is
    returned and the second dimension is the number of leaves.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}.")
    scores = path_scores(logits, parents)
    top_scores, top_leaves = scores.topk(min(k, scores.shape[1]), dim=1, sorted=True)
    return leaf_to_path(top_leaves, parents), top_scores


__all__ = [
    "consistent_decode",
    "consistent_topk",
    "independent_decode",
    "leaf_to_path",
    "path_scores",
]
