"""Sampled negatives per level: the nodes a training step scores when a level is large.

Every loss term reads a level's logits through its true logit, the logits of the true
node's siblings (HiSCE) and its partition sum Z_l = sum_c exp(z_c) (CE, TP-KL, B). A
sampled level keeps every node the batch labels and every sibling of one, exactly, and
from the R other nodes a uniform sample of m without replacement, each of which carries
the log-weight log(R / m) (the logQ correction of sampled softmax: each was kept with
probability m / R, so the weighted sum over the kept nodes is an unbiased estimate of Z_l,
Horvitz-Thompson). With m >= R every node is kept and the loss is the full loss exactly.
The loss itself (a log of the estimate) is consistent, not unbiased: the sampled loss is
a cheaper stand-in for the full one, used where the text tower must otherwise encode
every node each step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class SampledLevel:
    """One level's kept nodes, in the order of the sampled logits."""

    kept: torch.Tensor
    """Indices into the level's nodes: labelled nodes and their siblings, then the sample."""
    log_weight: torch.Tensor
    """Added to each kept logit: 0 for the exact part, log(R / m) for the sampled part."""
    targets: torch.Tensor
    """The batch's targets at this level as positions in `kept` (-1 stays -1)."""
    families: torch.Tensor
    """Each kept node's family (parent) as an id in 0..n_families-1."""
    n_families: int


def sample_level(
    targets: torch.Tensor, parent_of: torch.Tensor, negatives: int, g: torch.Generator
) -> SampledLevel:
    """Keep the labelled nodes of a level (`targets`, -1 unknown), their siblings and
    `negatives` uniformly drawn others, on the CPU."""
    n = parent_of.shape[0]
    labelled = torch.unique(targets[targets >= 0])
    exact = torch.isin(parent_of, parent_of[labelled])
    exact_idx = exact.nonzero().squeeze(1)
    rest = (~exact).nonzero().squeeze(1)
    if rest.numel() > negatives:
        drawn = rest[torch.randperm(rest.numel(), generator=g)[:negatives]]
        weight = math.log(rest.numel() / negatives)
    else:
        drawn, weight = rest, 0.0
    kept = torch.cat([exact_idx, drawn])
    log_weight = torch.cat([torch.zeros(exact_idx.numel()), torch.full((drawn.numel(),), weight)])
    position = torch.full((n,), -1, dtype=torch.long)
    position[kept] = torch.arange(kept.numel())
    new_targets = torch.where(targets >= 0, position[targets.clamp(min=0)], targets)
    families, ids = torch.unique(parent_of[kept], return_inverse=True)
    return SampledLevel(kept, log_weight, new_targets, ids, families.numel())
