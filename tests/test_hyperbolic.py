"""Poincaré-ball maths of LatHAdapter against hand-computed values and its own identities."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hiercore.baselines.hyperbolic import (
    distance,
    distance0,
    expmap0,
    logmap0,
    mobius_add,
    pairwise_distance,
    project,
)


def t(*xs: float) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.float64)


def close(a, b, tol: float = 1e-6) -> bool:
    a = torch.as_tensor(a, dtype=torch.float64)
    return torch.allclose(a, torch.as_tensor(b, dtype=torch.float64), atol=tol)


def test_exp_map_hand_values():
    # c = 1: exp_0(v) = tanh(|v|) v / |v|
    assert close(expmap0(t(0.5, 0.0)), t(math.tanh(0.5), 0.0))
    assert close(expmap0(t(3.0, 4.0)), t(0.6, 0.8) * math.tanh(5.0))
    # c = 4 (radius 1/2): tanh(2 * 0.5) * 0.5 / (2 * 0.5)
    assert close(expmap0(t(0.5, 0.0), 4.0), t(0.5 * math.tanh(1.0), 0.0))


def test_log_map_hand_values():
    assert close(logmap0(t(0.5, 0.0)), t(math.atanh(0.5), 0.0))
    assert close(logmap0(t(0.0, 0.25), 4.0), t(0.0, math.atanh(0.5) / 2))


def test_distance_hand_values():
    # through the origin, distances add: 2 artanh(1/2) = ln 3 on each side
    assert close(distance0(t(0.5, 0.0)), math.log(3.0))
    assert close(distance(t(0.5, 0.0), t(-0.5, 0.0)), math.log(9.0))
    # (-x) (+) y = (-0.625, 0.375) / 1.0625 for x = (.5, 0), y = (0, .5); then 2 artanh(|.|)
    m = mobius_add(t(-0.5, 0.0), t(0.0, 0.5))
    assert close(m, t(-0.625, 0.375) / 1.0625)
    expected = 2 * math.atanh(math.hypot(-0.625, 0.375) / 1.0625)
    assert close(distance(t(0.5, 0.0), t(0.0, 0.5)), expected)
    # closed form arcosh(1 + 2|x-y|^2 / ((1-|x|^2)(1-|y|^2))) = arcosh(1 + 1 / 0.5625)
    assert close(expected, math.acosh(1 + 2 * 0.5 / 0.5625))
    # curvature 4: d(0, x) = (2 / 2) artanh(2 * 0.25)
    assert close(distance0(t(0.25, 0.0), 4.0), math.atanh(0.5))


def test_boundary_points_are_pulled_inside():
    x = t(3.0, 4.0) * 100
    for c in (1.0, 4.0):
        assert float(expmap0(x, c).norm()) < 1 / math.sqrt(c)
        assert float(project(x, c).norm()) < 1 / math.sqrt(c)
        assert torch.isfinite(distance(expmap0(x, c), expmap0(-x, c), c))


vectors = st.lists(
    st.floats(-2.0, 2.0, allow_nan=False, allow_infinity=False), min_size=3, max_size=3
)
curvatures = st.sampled_from([0.5, 1.0, 2.0])


@settings(max_examples=60, deadline=None)
@given(vectors, curvatures)
def test_log_inverts_exp_and_points_stay_in_the_ball(v, c):
    v = torch.tensor(v, dtype=torch.float64)
    y = expmap0(v, c)
    assert float(y.norm()) < 1 / math.sqrt(c)
    assert close(logmap0(y, c), v, 1e-6)
    assert close(expmap0(logmap0(y, c), c), y, 1e-9)
    # the distance from the origin is 2 |v| (the exponential map at 0 is radial, factor 2)
    assert close(distance0(y, c), 2 * v.norm(), 1e-6)


@settings(max_examples=60, deadline=None)
@given(vectors, vectors, vectors, curvatures)
def test_distance_is_a_metric_and_both_forms_agree(a, b, z, c):
    x, y, w = (expmap0(torch.tensor(p, dtype=torch.float64) / 2, c) for p in (a, b, z))
    dxy, dyx = distance(x, y, c), distance(y, x, c)
    assert close(dxy, dyx, 1e-8)
    assert float(dxy) >= 0
    assert float(distance(x, x, c)) < 1e-6
    assert float(pairwise_distance(x[None], x[None], c)) < 1e-6
    assert float(dxy) <= float(distance(x, w, c) + distance(w, y, c)) + 1e-7
    both = pairwise_distance(torch.stack([x, y]), torch.stack([y, w]), c)
    assert close(both[0, 0], dxy, 1e-5)
    assert close(both[1, 1], distance(y, w, c), 1e-5)
    assert close(distance(torch.zeros_like(x), x, c), distance0(x, c), 1e-8)


def test_gradients_stay_finite_for_equal_points():
    x = torch.tensor([[0.1, 0.2], [0.3, 0.1]], requires_grad=True)
    (pairwise_distance(x, x).sum() + distance(x, x).sum()).backward()
    assert torch.isfinite(x.grad).all()
