"""Hierarchy-aware training losses on per-level logits (docs/method.md §3).

Implements the three terms of "Hierarchy-Aware Fine-Tuning of Vision-Language Models"
(arXiv 2512.21529): per-level cross-entropy, Tree-Path KL divergence (TP-KL, one softmax
over the concatenated logits of the labelled levels, as in OpenVINO Training Extensions'
hierarchical classification head) and Hierarchy-Sibling Smoothed Cross-Entropy (HiSCE).

TP-KL splits exactly into the per-level CE and a term that reads no label. With
Z_l = sum_n exp(z^(l)_n) over the nodes of level l and k known levels,

    TP-KL = mean_l CE_l + B - log k,      B = log(sum_l Z_l) - mean_l log Z_l,

so CE + alpha * TP-KL = (1 + alpha) * CE + alpha * B + constant. `mass_balance` computes
B, so that the two controls of the paper's claim ((1 + alpha) * CE and CE + alpha * B)
can be trained and compared with TP-KL (FINDINGS.md section 1, `hiercore.claim_study`).
B >= log k, with equality when every level holds the same logit mass Z_l; at uniform
logits Z_l = C_l * exp(z), so B starts out pulling mass away from the largest level.

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

import math
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


def _tpkl_inputs(
    logits: Sequence[Tensor], temperature: float, size_correction: bool
) -> list[Tensor]:
    """The logits TP-KL's concatenated softmax sees: z / T, minus log C_l if corrected.

    Subtracting log C_l makes Z_l the mean (not the sum) of exp(z) over a level, so that
    uniform logits already balance the levels and B no longer acts on level size alone.
    Per-level CE is unchanged by the shift (it is constant within a level).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}.")
    zs = _promote(logits)
    if temperature != 1.0:
        zs = [z / temperature for z in zs]
    if size_correction:
        zs = [z - math.log(z.shape[1]) for z in zs]
    return zs


def _known_concat(zs: list[Tensor], known: Tensor) -> Tensor:
    """Concatenated logits with unknown levels at -inf (rows with no known level kept)."""
    labelled = known.any(1)
    # Unknown levels leave the softmax by becoming -inf. Rows with no known level keep
    # their logits so that logsumexp stays finite (an all -inf row would give NaN
    # gradients); _batch_mean drops those rows afterwards.
    drop = ~known & labelled.unsqueeze(1)
    return torch.cat(
        [z.masked_fill(drop[:, level : level + 1], float("-inf")) for level, z in enumerate(zs)],
        dim=1,
    )


def tree_path_kl(
    logits: Sequence[Tensor],
    targets: Tensor,
    temperature: float = 1.0,
    size_correction: bool = False,
) -> Tensor:
    """KL(p || q) with q one softmax over the concatenated logits of the known levels.

    p puts 1/|K| on the true node of each known level, so
    KL = -log|K| + logsumexp(concat) - (1/|K|) * sum_{l in K} z^(l)[y_l].

    The defaults are the paper's form. `temperature` divides the logits before the
    softmax (T < 1 sharpens it, like a larger logit scale for this term only);
    `size_correction` subtracts log C_l from level l first (see `_tpkl_inputs`).
    """
    _check_shapes(logits, targets)
    zs = _tpkl_inputs(logits, temperature, size_correction)
    targets = targets.to(zs[0].device)
    known = targets >= 0
    n_known = known.sum(1)
    log_partition = torch.logsumexp(_known_concat(zs, known), dim=1)
    true_sum = torch.zeros_like(log_partition)
    for level, z in enumerate(zs):
        picked = _true_logit(z, targets[:, level])
        true_sum = true_sum + torch.where(known[:, level], picked, torch.zeros_like(picked))
    k = n_known.clamp(min=1).to(log_partition.dtype)
    per_sample = -torch.log(k) + log_partition - true_sum / k
    return _batch_mean(per_sample, n_known > 0)


def mass_balance(
    logits: Sequence[Tensor],
    targets: Tensor,
    temperature: float = 1.0,
    size_correction: bool = False,
) -> Tensor:
    """B = log(sum_l Z_l) - mean_l log Z_l over each sample's known levels, batch mean.

    The label-free part of TP-KL: `targets` is read only for which levels are known,
    never for the true nodes. For the same options,

        tree_path_kl = level_cross_entropy(z / T) + mass_balance - mean over samples of log|K|

    (exact up to rounding; `size_correction` leaves the CE unchanged). B >= log|K|.
    """
    _check_shapes(logits, targets)
    zs = _tpkl_inputs(logits, temperature, size_correction)
    known = targets.to(zs[0].device) >= 0
    n_known = known.sum(1)
    log_mass = torch.stack([torch.logsumexp(z, dim=1) for z in zs], dim=1)  # (B, L)
    known_log_mass = torch.where(known, log_mass, torch.zeros_like(log_mass))
    mean_log_mass = known_log_mass.sum(1) / n_known.clamp(min=1).to(log_mass.dtype)
    per_sample = torch.logsumexp(_known_concat(zs, known), dim=1) - mean_log_mass
    return _batch_mean(per_sample, n_known > 0)


def _sibling_counts(parent_of: Tensor, n_families: int) -> Tensor:
    """For each node of a level, how many other nodes share its parent."""
    # index_add rather than bincount: bincount reads the largest index back to the host,
    # which would stall every training step on a GPU
    family_size = parent_of.new_zeros(n_families).index_add_(
        0, parent_of, torch.ones_like(parent_of)
    )
    return family_size[parent_of] - 1


def hisce(
    logits: Sequence[Tensor],
    targets: Tensor,
    parents: Sequence[Tensor],
    eps: float = 0.1,
    n_families: Sequence[int] | None = None,
) -> Tensor:
    """Cross-entropy against targets smoothed by `eps` over the true node's siblings.

    `n_families[l]`, when given, is how many family ids `parents[l]` uses (default: the
    size of level l - 1, as when `parents` indexes it; sampled levels number families
    themselves, `hiercore.sampled_levels`).

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
        families = 1 if level == 0 else zs[level - 1].shape[1]
        if n_families is not None:
            families = n_families[level]
        log_p = F.log_softmax(z, dim=1)
        # Sum of log-probabilities over each family (children of one parent); the sum
        # over a node's siblings is its family's sum minus its own log-probability.
        family_log_p = log_p.new_zeros(log_p.shape[0], families).index_add(1, parent_of, log_p)
        y = targets[:, level].clamp(min=0)
        log_p_true = log_p.gather(1, y.unsqueeze(1)).squeeze(1)
        sibling_log_p = family_log_p.gather(1, parent_of[y].unsqueeze(1)).squeeze(1) - log_p_true
        n_siblings = _sibling_counts(parent_of, families)[y]
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
    ce_weight: float = 1.0,
    balance: float = 0.0,
    tpkl_temperature: float = 1.0,
    tpkl_size_correction: bool = False,
    n_families: Sequence[int] | None = None,
) -> dict[str, Tensor]:
    """The objective ce_weight * CE + alpha * TP-KL + lam * HiSCE + balance * B, with its terms.

    The defaults give the paper's L = CE + alpha * TP-KL + lam * HiSCE. `ce_weight` and
    `balance` exist for the controls of the claim study: (1 + alpha) * CE and CE + alpha * B
    (`mass_balance`); the TP-KL options are those of `tree_path_kl`, `n_families` is `hisce`'s.

    Returns {"ce", "tpkl", "hisce", "total"} (the unweighted terms and the weighted sum),
    plus "balance" when its weight is not 0; a term whose weight is 0 is not computed and
    is reported as a zero tensor, so logging code can treat every run alike.
    """
    ce = level_cross_entropy(logits, targets)
    zero = torch.zeros((), dtype=ce.dtype, device=ce.device)
    tpkl_options = {"temperature": tpkl_temperature, "size_correction": tpkl_size_correction}
    tpkl = tree_path_kl(logits, targets, **tpkl_options) if alpha != 0 else zero
    smoothed = hisce(logits, targets, parents, eps, n_families) if lam != 0 else zero
    total = ce if ce_weight == 1.0 else ce_weight * ce
    if alpha != 0:
        total = total + alpha * tpkl
    if lam != 0:
        total = total + lam * smoothed
    out = {"ce": ce, "tpkl": tpkl, "hisce": smoothed}
    if balance != 0:
        out["balance"] = mass_balance(logits, targets, **tpkl_options)
        total = total + balance * out["balance"]
    out["total"] = total
    return out


__all__ = [
    "hierarchical_loss",
    "hisce",
    "level_cross_entropy",
    "mass_balance",
    "tree_path_kl",
]
