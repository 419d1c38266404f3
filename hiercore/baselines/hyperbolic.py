"""The Poincaré ball of curvature -c (c > 0): the maps and the distance LatHAdapter uses.

The ball is {x : c * |x|^2 < 1}, of radius 1/sqrt(c). Following Ganea et al., "Hyperbolic
Neural Networks" (NeurIPS 2018), with lambda_x = 2 / (1 - c |x|^2):

    exp_0(v) = tanh(sqrt(c) |v|) * v / (sqrt(c) |v|)            (tangent space at 0 -> ball)
    log_0(y) = artanh(sqrt(c) |y|) * y / (sqrt(c) |y|)          (its inverse)
    x (+) y  = ((1 + 2c<x,y> + c|y|^2) x + (1 - c|x|^2) y)
               / (1 + 2c<x,y> + c^2 |x|^2 |y|^2)                 (Möbius addition)
    d(x, y)  = (2 / sqrt(c)) * artanh(sqrt(c) |(-x) (+) y|)
             = (1 / sqrt(c)) * arcosh(1 + 2c |x - y|^2 / ((1 - c|x|^2)(1 - c|y|^2)))

`distance` uses the Möbius form (pointwise), `pairwise_distance` the arcosh form (one
matrix product for B x N pairs, written as 2 arsinh(sqrt(z)) = arcosh(1 + 2z), which stays
accurate for nearby points); the tests check that the two agree. Points are kept a
small margin inside the boundary, where float32 would otherwise round them onto it.
"""

from __future__ import annotations

import torch
from torch import Tensor

BOUNDARY_EPS = 1e-5
"""Relative margin kept from the boundary of the ball."""
_MIN_NORM = 1e-15


def _sqrt_c(c: float | Tensor, like: Tensor) -> Tensor:
    return torch.as_tensor(c, dtype=like.dtype, device=like.device).sqrt()


def project(x: Tensor, c: float | Tensor = 1.0, eps: float = BOUNDARY_EPS) -> Tensor:
    """Pull points that reached the boundary back to radius (1 - eps) / sqrt(c)."""
    max_norm = (1 - eps) / _sqrt_c(c, x)
    norm = x.norm(dim=-1, keepdim=True).clamp_min(_MIN_NORM)
    return torch.where(norm > max_norm, x / norm * max_norm, x)


def expmap0(v: Tensor, c: float | Tensor = 1.0) -> Tensor:
    """Exponential map at the origin: a tangent vector (Euclidean) to a point of the ball."""
    sc = _sqrt_c(c, v)
    norm = v.norm(dim=-1, keepdim=True).clamp_min(_MIN_NORM)
    return project(torch.tanh(sc * norm) * v / (sc * norm), c)


def logmap0(y: Tensor, c: float | Tensor = 1.0) -> Tensor:
    """Logarithmic map at the origin, the inverse of `expmap0`."""
    sc = _sqrt_c(c, y)
    norm = y.norm(dim=-1, keepdim=True).clamp_min(_MIN_NORM)
    scaled = (sc * norm).clamp_max(1 - BOUNDARY_EPS)
    return torch.atanh(scaled) * y / (sc * norm)


def mobius_add(x: Tensor, y: Tensor, c: float | Tensor = 1.0) -> Tensor:
    """Möbius addition x (+) y (broadcasts over leading dimensions)."""
    c = torch.as_tensor(c, dtype=x.dtype, device=x.device)
    xy = (x * y).sum(-1, keepdim=True)
    x2 = (x * x).sum(-1, keepdim=True)
    y2 = (y * y).sum(-1, keepdim=True)
    num = (1 + 2 * c * xy + c * y2) * x + (1 - c * x2) * y
    den = 1 + 2 * c * xy + c * c * x2 * y2
    return num / den.clamp_min(_MIN_NORM)


def distance(x: Tensor, y: Tensor, c: float | Tensor = 1.0) -> Tensor:
    """Geodesic distance between matching points of x and y (broadcasts), shape (...)."""
    sc = _sqrt_c(c, x)
    norm = mobius_add(-x, y, c).norm(dim=-1)
    return 2 / sc * torch.atanh((sc * norm).clamp_max(1 - BOUNDARY_EPS))


def distance0(x: Tensor, c: float | Tensor = 1.0) -> Tensor:
    """Distance from the origin, 2/sqrt(c) * artanh(sqrt(c) |x|): how 'specific' a point is."""
    sc = _sqrt_c(c, x)
    return 2 / sc * torch.atanh((sc * x.norm(dim=-1)).clamp_max(1 - BOUNDARY_EPS))


def pairwise_distance(x: Tensor, y: Tensor, c: float | Tensor = 1.0) -> Tensor:
    """Distances between every row of x (B, D) and every row of y (N, D), shape (B, N)."""
    c = torch.as_tensor(c, dtype=x.dtype, device=x.device)
    x2 = (x * x).sum(-1, keepdim=True)
    y2 = (y * y).sum(-1, keepdim=True).t()
    sq = (x2 + y2 - 2 * x @ y.t()).clamp_min(0)
    den = ((1 - c * x2) * (1 - c * y2)).clamp_min(_MIN_NORM)
    # arcosh(1 + 2z) = 2 arsinh(sqrt(z)): exact near d = 0, where arcosh has an infinite
    # slope; the floor under the square root keeps the gradient finite for equal points
    z = (c * sq / den).clamp_min(1e-30)
    return 2 * torch.asinh(z.sqrt()) / c.sqrt()
