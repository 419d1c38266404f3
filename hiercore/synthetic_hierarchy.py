"""A controlled synthetic stand-in for "frozen CLIP features + trainable prompts".

The claim study (`hiercore.claim_study`) needs a setting where the image features do
carry the class information at every level, so that a difference between the losses is
the losses' doing and not the backbone's (FINDINGS.md section 3). This module makes one:

- a complete tree with `branching[l]` children per node at level l + 1 (6/6/6 gives
  6/36/216 nodes);
- for every node an offset u_n in R^D with expected norm `spread[l]`; a leaf's feature
  mean is the sum of the offsets along its path (category + subcategory + leaf);
- an image is that mean plus isotropic noise of expected norm `noise`, normalised to
  the unit sphere like a CLIP image embedding;
- a node's "prompt" embedding, where training starts, is the mean of its subtree (the
  sum of the offsets down to the node) plus noise of expected norm `prompt_noise`: a
  text tower that knows roughly, not exactly, where each class lies.

The head that is trained is the text side of CLIP reduced to what matters for the
losses: one free embedding per node, per-level cosine logits z = s * <f, g_n> with s a
fixed or learnable logit scale (`CosineHead`). `LinearProbe` is the unconstrained
baseline (a leaf-level linear classifier with a bias).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class SyntheticSetting:
    """The knobs of the synthetic hierarchy; each seed draws a fresh tree of offsets."""

    branching: tuple[int, ...] = (6, 6, 6)
    """Children per node at each level (level 1: the number of categories)."""
    dim: int = 64
    """Feature dimension."""
    spread: tuple[float, ...] = (1.0, 1.0, 1.0)
    """Expected norm of a node's offset at each level: how informative the level is."""
    noise: float = 1.5
    """Expected norm of the per-image noise before normalisation."""
    prompt_noise: tuple[float, ...] = (1.0, 1.0, 1.0)
    """Expected norm of the error in the initial node embeddings, per level."""
    train_per_leaf: int = 4
    """Training images per leaf (few-shot, like the demo's two styles per emoji)."""
    test_per_leaf: int = 4
    """Held-out images per leaf, drawn from the same means."""

    def __post_init__(self) -> None:
        for name in ("spread", "prompt_noise"):
            if len(getattr(self, name)) != len(self.branching):
                raise ValueError(
                    f"{name} has {len(getattr(self, name))} levels but branching has "
                    f"{len(self.branching)}."
                )
        if min(self.branching) < 1 or self.dim < 2:
            raise ValueError("branching must be positive at every level and dim at least 2.")

    @property
    def sizes(self) -> list[int]:
        return [math.prod(self.branching[: level + 1]) for level in range(len(self.branching))]


def complete_tree(branching: tuple[int, ...]) -> list[Tensor]:
    """`parents[l][c]` of a complete tree: node c of level l hangs under c // branching[l]."""
    parents = [torch.zeros(branching[0], dtype=torch.long)]
    size = branching[0]
    for width in branching[1:]:
        parents.append(torch.arange(size * width) // width)
        size *= width
    return parents


def leaf_paths(parents: list[Tensor]) -> Tensor:
    """(C_L, L) path of every leaf."""
    steps = [torch.arange(len(parents[-1]))]
    for level in range(len(parents) - 1, 0, -1):
        steps.append(parents[level][steps[-1]])
    return torch.stack(steps[::-1], dim=1)


@dataclass
class SyntheticData:
    """One seed's draw: frozen features, labels and initial prompts."""

    parents: list[Tensor]
    train_x: Tensor
    """(N, D) unit-norm training features."""
    train_y: Tensor
    """(N, L) true path of each training image."""
    test_x: Tensor
    test_y: Tensor
    prompts: list[Tensor]
    """Per level, (C_l, D) unit-norm initial node embeddings."""

    @property
    def sizes(self) -> list[int]:
        return [len(p) for p in self.parents]


def _random_vectors(n: int, dim: int, norm: float, gen: torch.Generator) -> Tensor:
    # Gaussian with per-coordinate std norm / sqrt(dim): expected squared norm = norm^2
    return torch.randn(n, dim, generator=gen, dtype=torch.float64) * (norm / math.sqrt(dim))


def make_synthetic(setting: SyntheticSetting, seed: int) -> SyntheticData:
    """Draw the offsets, the train and test images and the initial prompts for `seed`."""
    gen = torch.Generator().manual_seed(seed)
    parents = complete_tree(setting.branching)
    offsets = [
        _random_vectors(size, setting.dim, spread, gen)
        for size, spread in zip(setting.sizes, setting.spread, strict=True)
    ]
    # node mean = parent's mean + own offset
    means = [offsets[0]]
    for level in range(1, len(parents)):
        means.append(means[-1][parents[level]] + offsets[level])
    paths = leaf_paths(parents)

    def images(per_leaf: int) -> tuple[Tensor, Tensor]:
        leaves = torch.arange(len(paths)).repeat_interleave(per_leaf)
        x = means[-1][leaves] + _random_vectors(len(leaves), setting.dim, setting.noise, gen)
        return F.normalize(x, dim=1).float(), paths[leaves]

    train_x, train_y = images(setting.train_per_leaf)
    test_x, test_y = images(setting.test_per_leaf)
    prompts = [
        F.normalize(m + _random_vectors(len(m), setting.dim, err, gen), dim=1).float()
        for m, err in zip(means, setting.prompt_noise, strict=True)
    ]
    return SyntheticData(parents, train_x, train_y, test_x, test_y, prompts)


class CosineHead(torch.nn.Module):
    """Per-level logits s * <f, g_n> with trainable node embeddings g and scale s."""

    def __init__(self, prompts: list[Tensor], scale: float, learn_scale: bool) -> None:
        super().__init__()
        self.nodes = torch.nn.ParameterList([torch.nn.Parameter(p.clone()) for p in prompts])
        log_scale = torch.tensor(math.log(scale))
        if learn_scale:
            self.log_scale = torch.nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)

    @property
    def scale(self) -> float:
        return float(self.log_scale.detach().exp())

    def forward(self, x: Tensor) -> list[Tensor]:
        # CLIP clamps its logit scale at 100; so does this stand-in
        s = self.log_scale.clamp(max=math.log(100.0)).exp()
        return [s * x @ F.normalize(g, dim=1).T for g in self.nodes]


class LinearProbe(torch.nn.Module):
    """A leaf-level linear classifier with a bias on the frozen features."""

    def __init__(self, dim: int, n_leaves: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(dim, n_leaves)

    def forward(self, x: Tensor) -> list[Tensor]:
        return [self.linear(x)]


__all__ = [
    "CosineHead",
    "LinearProbe",
    "SyntheticData",
    "SyntheticSetting",
    "complete_tree",
    "leaf_paths",
    "make_synthetic",
]
