"""Small random trees, labels and logits for testing the loss, decode and metric math.

A tree is given the way the library takes it: `parents[l][c]` is the level l - 1 index of
node c's parent at level l (0-based list index), `parents[0]` is all zeros. Every node
above the last level gets at least one child, so every leaf is at the last level.
"""

import itertools

import numpy as np
import torch

# The toy tree used for hand-computed values:
#   level 1: A=0, B=1
#   level 2: a1=0 (A), a2=1 (A), b1=2 (B)   -- b1 is an only child, so has no siblings
TOY_PARENTS = [torch.tensor([0, 0]), torch.tensor([0, 0, 1])]


def random_sizes(rng: np.random.Generator, n_levels: int, max_width: int = 5) -> list[int]:
    """Level widths that never shrink, so each node above the leaves can have a child."""
    sizes = [int(rng.integers(1, max_width + 1))]
    for _ in range(n_levels - 1):
        sizes.append(int(sizes[-1] + rng.integers(0, max_width)))
    return sizes


def random_parents(rng: np.random.Generator, sizes: list[int]) -> list[torch.Tensor]:
    """A random tree with the given level widths, node order shuffled at each level."""
    parents = [torch.zeros(sizes[0], dtype=torch.long)]
    for level in range(1, len(sizes)):
        n_up, n_here = sizes[level - 1], sizes[level]
        assignment = np.concatenate([np.arange(n_up), rng.integers(0, n_up, n_here - n_up)])
        rng.shuffle(assignment)
        parents.append(torch.as_tensor(assignment, dtype=torch.long))
    return parents


def all_paths(parents: list[torch.Tensor]) -> list[tuple[int, ...]]:
    """Every root-to-leaf path, enumerated by brute force over all index tuples."""
    sizes = [len(p) for p in parents]
    valid = []
    for path in itertools.product(*(range(n) for n in sizes)):
        if all(
            int(parents[level][path[level]]) == path[level - 1] for level in range(1, len(sizes))
        ):
            valid.append(path)
    return valid


def random_targets(
    rng: np.random.Generator,
    parents: list[torch.Tensor],
    batch: int,
    partial: bool = True,
) -> torch.Tensor:
    """Valid label paths, cut to a random known depth (0..L) when `partial`."""
    paths = all_paths(parents)
    n_levels = len(parents)
    rows = []
    for _ in range(batch):
        path = list(paths[int(rng.integers(len(paths)))])
        depth = int(rng.integers(0, n_levels + 1)) if partial else n_levels
        rows.append(path[:depth] + [-1] * (n_levels - depth))
    return torch.tensor(rows, dtype=torch.long).reshape(batch, n_levels)


def random_logits(
    rng: np.random.Generator, sizes: list[int], batch: int, dtype: torch.dtype = torch.float64
) -> list[torch.Tensor]:
    return [torch.as_tensor(rng.normal(0.0, 2.0, (batch, n)), dtype=dtype) for n in sizes]
