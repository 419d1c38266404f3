"""The review queue's scores and orders, against hand-computed values and brute force."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hiercore.errors import HierTuneError
from hiercore.review import review_order, review_scores

# level 1: A, B; level 2: a1, a2 (under A), b1 (under B)
PARENTS = [np.array([0, 0]), np.array([0, 0, 1])]
# per-level probabilities; log-probabilities are valid logits (softmax gives them back)
PROBS = [
    ([0.6, 0.4], [0.1, 0.2, 0.7]),  # paths .06 .12 .28; independent (A, b1) breaks a link
    ([0.9, 0.1], [0.5, 0.4, 0.1]),  # paths .45 .36 .01; consistent
    ([0.55, 0.45], [0.3, 0.3, 0.4]),  # paths .165 .165 .18; independent (A, b1) broken
    ([0.52, 0.48], [0.34, 0.33, 0.33]),  # paths .1768 .1716 .1584; consistent
]


def logits_of(probs):
    return [np.log(np.array([p[lvl] for p in probs])) for lvl in range(2)]


def test_scores_match_hand_computed_values():
    s = review_scores(logits_of(PROBS), PARENTS)
    np.testing.assert_allclose(s.confidence, [0.28, 0.45, 0.18, 0.1768], atol=1e-6)
    np.testing.assert_allclose(s.margin, [0.16, 0.09, 0.015, 0.0052], atol=1e-6)
    assert s.broken_links.tolist() == [1, 0, 1, 0]
    assert s.disagreement.tolist() == [1, 0, 1, 0]


def test_orders():
    s = review_scores(logits_of(PROBS), PARENTS)
    assert review_order(s, "margin").tolist() == [3, 2, 1, 0]
    assert review_order(s, "confidence").tolist() == [3, 2, 0, 1]
    assert review_order(s, "inconsistency").tolist() == [2, 0, 3, 1]
    with pytest.raises(HierTuneError, match="Review order"):
        review_order(s, "random")


def test_empty_and_single_leaf():
    s = review_scores([np.zeros((0, 2)), np.zeros((0, 3))], PARENTS)
    assert review_order(s).tolist() == []
    one = review_scores([np.zeros((2, 1))], [np.array([0])])
    np.testing.assert_allclose(one.confidence, [1.0, 1.0])
    np.testing.assert_allclose(one.margin, [1.0, 1.0])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-4, 4), min_size=5, max_size=5))
def test_confidence_and_margin_against_enumeration(values):
    z1 = np.array([values[:2]], dtype=np.float32)
    z2 = np.array([values[2:]], dtype=np.float32)
    s = review_scores([z1, z2], PARENTS)
    p1 = np.exp(z1 - np.log(np.exp(z1).sum()))[0]
    p2 = np.exp(z2 - np.log(np.exp(z2).sum()))[0]
    paths = sorted(
        (p1[PARENTS[1][leaf]] * p2[leaf] for leaf in range(3)),
        reverse=True,
    )
    assert s.confidence[0] == pytest.approx(paths[0], rel=1e-5)
    assert s.margin[0] == pytest.approx(paths[0] - paths[1], rel=1e-4, abs=1e-6)
    ind = (int(np.argmax(z1[0])), int(np.argmax(z2[0])))
    broken = int(PARENTS[1][ind[1]] != ind[0])
    assert s.broken_links[0] == broken
    best_leaf = max(range(3), key=lambda leaf: p1[PARENTS[1][leaf]] * p2[leaf])
    best = (int(PARENTS[1][best_leaf]), best_leaf)
    assert s.disagreement[0] == sum(a != b for a, b in zip(ind, best, strict=True))
