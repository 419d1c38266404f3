"""Tests of hiercore.decode against brute-force enumeration of all paths."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from treegen import TOY_PARENTS, all_paths, random_logits, random_parents, random_sizes

from hiercore.decode import (
    consistent_decode,
    consistent_topk,
    independent_decode,
    leaf_to_path,
)


def brute_force_ranking(logits, parents, b):
    """All valid paths of sample b with their summed log-probabilities, best first."""
    log_p = [F.log_softmax(z[b].double(), 0) for z in logits]
    scored = [
        (sum(float(log_p[lv][c]) for lv, c in enumerate(path)), path) for path in all_paths(parents)
    ]
    return sorted(scored, key=lambda item: -item[0])


def is_valid(path, parents):
    return all(int(parents[lv][path[lv]]) == path[lv - 1] for lv in range(1, len(parents)))


def test_independent_decode_by_hand():
    z1 = torch.tensor([[0.0, 1.0], [2.0, 1.0]])
    z2 = torch.tensor([[3.0, 0.0, 1.0], [0.0, 0.0, 4.0]])
    assert independent_decode([z1, z2]).tolist() == [[1, 0], [0, 2]]


def test_consistent_decode_by_hand():
    # Independent argmax gives (B, a1), which is not a path. Candidate paths:
    # (A, a1): log .4 + log .5   (A, a2): log .4 + log .1   (B, b1): log .6 + log .4
    # .4 * .5 = .20 < .6 * .4 = .24, so (B, b1) wins.
    z1 = torch.tensor([[0.4, 0.6]]).log()
    z2 = torch.tensor([[0.5, 0.1, 0.4]]).log()
    assert independent_decode([z1, z2]).tolist() == [[1, 0]]
    assert consistent_decode([z1, z2], TOY_PARENTS).tolist() == [[1, 2]]
    paths, scores = consistent_topk([z1, z2], TOY_PARENTS, k=3)
    assert paths.tolist() == [[[1, 2], [0, 0], [0, 1]]]
    expected = np.log([0.24, 0.20, 0.04])
    assert np.allclose(scores[0].numpy(), expected, atol=1e-6)


def test_leaf_to_path_by_hand():
    assert leaf_to_path(torch.tensor([0, 1, 2]), TOY_PARENTS).tolist() == [
        [0, 0],
        [0, 1],
        [1, 2],
    ]
    # Any leading shape is kept.
    assert leaf_to_path(torch.tensor([[2], [1]]), TOY_PARENTS).shape == (2, 1, 2)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_levels=st.integers(1, 4))
def test_consistent_decode_matches_brute_force(seed, n_levels):
    rng = np.random.default_rng(seed)
    sizes = random_sizes(rng, n_levels)
    parents = random_parents(rng, sizes)
    logits = random_logits(rng, sizes, 4)
    decoded = consistent_decode(logits, parents)
    assert decoded.shape == (4, n_levels)
    for b in range(4):
        _, best_path = brute_force_ranking(logits, parents, b)[0]
        assert tuple(decoded[b].tolist()) == best_path
        assert is_valid(best_path, parents)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(1, 6))
def test_topk_matches_brute_force(seed, k):
    rng = np.random.default_rng(seed)
    sizes = random_sizes(rng, 3)
    parents = random_parents(rng, sizes)
    logits = random_logits(rng, sizes, 3)
    paths, scores = consistent_topk(logits, parents, k=k)
    n_returned = min(k, sizes[-1])
    assert paths.shape == (3, n_returned, 3) and scores.shape == (3, n_returned)
    assert torch.all(scores[:, :-1] >= scores[:, 1:])
    assert torch.equal(paths[:, 0], consistent_decode(logits, parents))
    for b in range(3):
        ranking = brute_force_ranking(logits, parents, b)[:n_returned]
        assert [tuple(p) for p in paths[b].tolist()] == [path for _, path in ranking]
        assert np.allclose(scores[b].numpy(), [score for score, _ in ranking])


def test_consistent_decode_has_no_broken_links():
    rng = np.random.default_rng(11)
    sizes = [4, 9, 20, 31]
    parents = random_parents(rng, sizes)
    decoded = consistent_decode(random_logits(rng, sizes, 200), parents)
    for level in range(1, len(sizes)):
        assert torch.equal(parents[level][decoded[:, level]], decoded[:, level - 1])


def test_half_precision_and_numpy_parents():
    rng = np.random.default_rng(2)
    sizes = [3, 7]
    parents = random_parents(rng, sizes)
    logits = random_logits(rng, sizes, 5, dtype=torch.float32)
    as_numpy = [p.numpy() for p in parents]
    expected = consistent_decode(logits, parents)
    got = consistent_decode([z.bfloat16() for z in logits], as_numpy)
    # bf16 rounding may only flip near-ties; every path must still be valid.
    assert torch.equal(parents[1][got[:, 1]], got[:, 0])
    assert (got == expected).float().mean() > 0.5
    _, scores = consistent_topk([z.bfloat16() for z in logits], as_numpy, k=2)
    assert scores.dtype == torch.float32


def test_large_tree_runs():
    # B=64 over 10 / 500 / 10,000 nodes: the DP is a gather per level, no path loop.
    rng = np.random.default_rng(0)
    sizes = [10, 500, 10_000]
    parents = random_parents(rng, sizes)
    logits = random_logits(rng, sizes, 64, dtype=torch.float32)
    decoded = consistent_decode(logits, parents)
    assert decoded.shape == (64, 3)
    rows = torch.arange(64)
    best = sum(F.log_softmax(z, 1)[rows, decoded[:, lv]] for lv, z in enumerate(logits))
    # Independent check: score every leaf's path by indexing, take the best.
    leaf_scores = sum(
        F.log_softmax(z, 1)[:, leaf_to_path(torch.arange(sizes[-1]), parents)[:, lv]]
        for lv, z in enumerate(logits)
    )
    assert torch.allclose(best, leaf_scores.max(dim=1).values)
    paths, scores = consistent_topk(logits, parents, k=5)
    assert paths.shape == (64, 5, 3)
    assert torch.allclose(scores[:, 0], best)


def test_topk_rejects_nonpositive_k():
    logits = [torch.zeros(1, 2), torch.zeros(1, 3)]
    with pytest.raises(ValueError, match="k must be at least 1"):
        consistent_topk(logits, TOY_PARENTS, k=0)
