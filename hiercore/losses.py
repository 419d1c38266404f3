"""Hierarchy-aware training losses on per-level logits (SPEC.md section 3).

Implements the three terms of "Hierarchy-Aware Fine-Tuning of Vision-Language Models"
(arXiv 2512.21529): per-level cross-entropy, Tree-Path KL divergence (TP-KL, one softmax
over the concatenated logits of the labelled levels, as in OpenVINO Training Extensions'
hierarchical classification head) and Hierarchy-Sibling Smoothed Cross-Entropy (HiSCE).

Conventions shared with `decode` and `metrics`:

- `logits` is a list of L tensors, `logits[l]` of shape (B, C_l) for level l + 1.
- `targets` is a LongTensor (B, L); a negative entry (normally -1) marks an unknown level,
  which is how partial labels (known down to some depth) reach the losses.
- `parents[l][c]` is the index at level l - 1 of the parent of node c of level l, and
  `parents[0]` is all zeros (the virtual root).

Every loss is the mean over the samples with at least one known level; samples with none
contribute nothing. Half-precision logits are promoted to float32 so that mixed-precision
training does not lose the small log-probabilities of deep levels.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def _promote(logits: Sequence[Tensor]) -> list[Tensor]:
    # float64 stays float64 so that gradcheck can run on these losses.
    return [z.to(torch.promote_types(z.dtype, torch.float32)) for z in logits]


def _check_shapes(logits: Sequence[Tensor], targets: Tensor) -> None:
    if targets.dim() != 2 or targets.shape[1] != len(logits):
        raise ValueError(
            f"targets must have shape (B, {len(logits)}) to match the {len(logits)} "
            f"levels of logits, got {tuple(targets.shape)}."
        )
    for level, z in enumerate(logits):
        if z.dim() != 2 or z.shape[0] != targets.shape[0]:
            raise ValueError(
                f"logits[{level}] must have shape (B={targets.shape[0]}, C), got {tuple(z.shape)}."
            )


def _batch_mean(per_sample: Tensor, labelled: Tensor) -> Tensor:
    """Mean of `per_sample` over the labelled samples; a graph-connected 0 if none."""
    # torch.where keeps the graph even when no sample is labelled, so callers can still
    # call backward() on a batch of unlabelled images.
    kept = torch.where(labelled, per_sample, torch.zeros_like(per_sample))
    return kept.sum() / labelled.sum().clamp(min=1)


def _true_logit(z: Tensor, target: Tensor) -> Tensor:
    """z[b, target[b]] with unknown (negative) targets read at index 0."""
    return z.gather(1, target.clamp(min=0).unsqueeze(1)).squeeze(1)


def level_cross_entropy(logits: Sequence[Tensor], targets: Tensor) -> Tensor:
    """Per-level CE averaged over each sample's known levels, then over samples."""
    _check_shapes(logits, targets)
    zs = _promote(logits)
    targets = targets.to(zs[0].device)
    known = targets >= 0
    n_known = known.sum(1)
    total = torch.zeros(targets.shape[0], dtype=zs[0].dtype, device=zs[0].device)
    for level, z in enumerate(zs):
        ce = F.cross_entropy(z, targets[:, level].clamp(min=0), reduction="none")
        total = total + torch.where(known[:, level], ce, torch.zeros_like(ce))
    return _batch_mean(total / n_known.clamp(min=1), n_known > 0)


def tree_path_kl(logits: Sequence[Tensor], targets: Tensor) -> Tensor:
    """KL(p || q) with q one softmax over the concatenated logits of the known levels.

    p puts 1/|K| on the true node of each known level, so
    KL = -log|K| + logsumexp(concat) - (1/|K|) * sum_{l in K} z^(l)[y_l].
    """
    _check_shapes(logits, targets)
    zs = _promote(logits)
    targets = targets.to(zs[0].device)
    known = targets >= 0
    n_known = known.sum(1)
    labelled = n_known > 0
    # Unknown levels leave the softmax by becoming -inf. Rows with no known level keep
    # their logits so that logsumexp stays finite (an all -inf row would give NaN
    # gradients); _batch_mean drops those rows afterwards.
    drop = ~known & labelled.unsqueeze(1)
    concat = torch.cat(
        [z.masked_fill(drop[:, level : level + 1], float("-inf")) for level, z in enumerate(zs)],
        dim=1,
    )
    log_partition = torch.logsumexp(concat, dim=1)
    true_sum = torch.zeros_like(log_partition)
    for level, z in enumerate(zs):
        picked = _true_logit(z, targets[:, level])
        true_sum = true_sum + torch.where(known[:, level], picked, torch.zeros_like(picked))
    k = n_known.clamp(min=1).to(log_partition.dtype)
    per_sample = -torch.log(k) + log_partition - true_sum / k
    return _batch_mean(per_sample, labelled)


def _sibling_counts(parent_of: Tensor) -> Tensor:
    """For each node of a level, how many other nodes share its parent."""
    family_size = torch.bincount(parent_of)
    return family_size[parent_of] - 1


def hisce(
    logits: Sequence[Tensor],
    targets: Tensor,
    parents: Sequence[Tensor],
    eps: float = 0.1,
) -> Tensor:
    """Cross-entropy against targets smoothed by `eps` over the true node's siblings.

    The target keeps 1 - eps on the true node and spreads eps evenly over the other
    children of its parent (all other first-level nodes at level 1); it stays one-hot
    when the true node is an only child.
    """
    _check_shapes(logits, targets)
    if len(parents) != len(logits):
        raise ValueError(f"parents has {len(parents)} levels but logits has {len(logits)}.")
    zs = _promote(logits)
    device = zs[0].device
    targets = targets.to(device)
    known = targets >= 0
    n_known = known.sum(1)
    total = torch.zeros(targets.shape[0], dtype=zs[0].dtype, device=device)
    for level, z in enumerate(zs):
        parent_of = torch.as_tensor(parents[level], dtype=torch.long, device=device)
        n_families = 1 if level == 0 else zs[level - 1].shape[1]
        log_p = F.log_softmax(z, dim=1)
        # Sum of log-probabilities over each family (children of one parent); the sum
        # over a node's siblings is its family's sum minus its own log-probability.
        family_log_p = log_p.new_zeros(log_p.shape[0], n_families).index_add(1, parent_of, log_p)
        y = targets[:, level].clamp(min=0)
        log_p_true = log_p.gather(1, y.unsqueeze(1)).squeeze(1)
        sibling_log_p = family_log_p.gather(1, parent_of[y].unsqueeze(1)).squeeze(1) - log_p_true
        n_siblings = _sibling_counts(parent_of)[y]
        smooth = (n_siblings > 0).to(log_p.dtype) * eps
        ce = -(1.0 - smooth) * log_p_true - smooth * sibling_log_p / n_siblings.clamp(min=1)
        total = total + torch.where(known[:, level], ce, torch.zeros_like(ce))
    return _batch_mean(total / n_known.clamp(min=1), n_known > 0)


def hierarchical_loss(
    logits: Sequence[Tensor],
    targets: Tensor,
    parents: Sequence[Tensor],
    alpha: float = 1.0,
    lam: float = 1.0,
    eps: float = 0.1,
) -> dict[str, Tensor]:
    """The training objective L = CE + alpha * TP-KL + lam * HiSCE, with its terms.

    Returns {"ce", "tpkl", "hisce", "total"}; a term whose weight is 0 is not computed
    and is reported as a zero tensor, so logging code can treat every run alike.
    """
    ce = level_cross_entropy(logits, targets)
    zero = torch.zeros((), dtype=ce.dtype, device=ce.device)
    tpkl = tree_path_kl(logits, targets) if alpha != 0 else zero
    smoothed = hisce(logits, targets, parents, eps=eps) if lam != 0 else zero
    total = ce
    if alpha != 0:
        total = total + alpha * tpkl
    if lam != 0:
        total = total + lam * smoothed
    return {"ce": ce, "tpkl": tpkl, "hisce": smoothed, "total": total}


__all__ = [
    "hierarchical_loss",
    "hisce",
    "level_cross_entropy",
    "tree_path_kl",
]
