"""Tests of hiercore.losses: hand-computed values on a toy tree, loop re-implementations on
random trees, gradient checks and the identities the spec states."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from treegen import TOY_PARENTS, random_logits, random_parents, random_sizes, random_targets

from hiercore import losses
from hiercore.losses import hierarchical_loss, hisce, level_cross_entropy, tree_path_kl

LN = math.log


def toy_batch(dtype=torch.float64):
    """Same logits for four samples: p1 = (3/4, 1/4), p2 = (1/8, 2/8, 5/8)."""
    z1 = torch.tensor([[LN(3), 0.0]] * 4, dtype=dtype)
    z2 = torch.tensor([[0.0, LN(2), LN(5)]] * 4, dtype=dtype)
    targets = torch.tensor([[0, 1], [1, 2], [1, -1], [-1, -1]])
    return [z1, z2], targets


# ---- hand-computed values -------------------------------------------------------------


def test_level_cross_entropy_by_hand():
    logits, targets = toy_batch()
    s0 = (-LN(3 / 4) - LN(2 / 8)) / 2
    s1 = (-LN(1 / 4) - LN(5 / 8)) / 2
    s2 = -LN(1 / 4)  # only level 1 known; the unlabelled fourth sample is left out
    assert level_cross_entropy(logits, targets).item() == pytest.approx((s0 + s1 + s2) / 3)


def test_tree_path_kl_by_hand():
    logits, targets = toy_batch()
    # One softmax over exp-logits (3, 1 | 1, 2, 5), total 12.
    s0 = -LN(2) - (LN(3 / 12) + LN(2 / 12)) / 2
    s1 = -LN(2) - (LN(1 / 12) + LN(5 / 12)) / 2
    s2 = -LN(1 / 4)  # K = {level 1}: the softmax covers level 1 only
    assert tree_path_kl(logits, targets).item() == pytest.approx((s0 + s1 + s2) / 3)


def test_hisce_by_hand():
    logits, targets = toy_batch()
    eps = 0.1
    # s0: A has sibling B; a2 has sibling a1.
    s0 = (
        -((1 - eps) * LN(3 / 4) + eps * LN(1 / 4)) - ((1 - eps) * LN(2 / 8) + eps * LN(1 / 8))
    ) / 2
    # s1: B has sibling A; b1 is an only child, so its target stays one-hot.
    s1 = (-((1 - eps) * LN(1 / 4) + eps * LN(3 / 4)) - LN(5 / 8)) / 2
    s2 = -((1 - eps) * LN(1 / 4) + eps * LN(3 / 4))
    assert hisce(logits, targets, TOY_PARENTS, eps=eps).item() == pytest.approx((s0 + s1 + s2) / 3)


def test_hisce_spreads_eps_evenly_over_several_siblings():
    # Three first-level nodes: each sibling of the true node gets eps / 2.
    z = torch.tensor([[1.0, 2.0, -0.5]], dtype=torch.float64)
    log_p = F.log_softmax(z, dim=1)[0]
    eps = 0.3
    expected = -((1 - eps) * log_p[1] + eps / 2 * (log_p[0] + log_p[2])).item()
    got = hisce([z], torch.tensor([[1]]), [torch.zeros(3, dtype=torch.long)], eps=eps)
    assert got.item() == pytest.approx(expected)


def test_hierarchical_loss_combines_terms():
    logits, targets = toy_batch()
    out = hierarchical_loss(logits, targets, TOY_PARENTS, alpha=0.5, lam=2.0, eps=0.2)
    assert set(out) == {"ce", "tpkl", "hisce", "total"}
    assert out["ce"].item() == pytest.approx(level_cross_entropy(logits, targets).item())
    assert out["tpkl"].item() == pytest.approx(tree_path_kl(logits, targets).item())
    assert out["hisce"].item() == pytest.approx(hisce(logits, targets, TOY_PARENTS, 0.2).item())
    expected = out["ce"] + 0.5 * out["tpkl"] + 2.0 * out["hisce"]
    assert out["total"].item() == pytest.approx(expected.item())


def test_zero_weight_terms_are_skipped_but_reported(monkeypatch):
    def must_not_run(*args, **kwargs):
        raise AssertionError("a term with weight 0 was computed")

    monkeypatch.setattr(losses, "tree_path_kl", must_not_run)
    monkeypatch.setattr(losses, "hisce", must_not_run)
    logits, targets = toy_batch()
    out = losses.hierarchical_loss(logits, targets, TOY_PARENTS, alpha=0.0, lam=0.0)
    assert out["tpkl"].item() == 0.0 and out["hisce"].item() == 0.0
    assert out["total"].item() == pytest.approx(out["ce"].item())


# ---- samples without labels -----------------------------------------------------------


@pytest.mark.parametrize("name", ["ce", "tpkl", "hisce", "total"])
def test_batch_without_known_levels_gives_connected_zero(name):
    logits = [z.clone().requires_grad_(True) for z in toy_batch()[0]]
    targets = torch.full((4, 2), -1)
    value = hierarchical_loss(logits, targets, TOY_PARENTS)[name]
    assert value.item() == 0.0
    assert value.grad_fn is not None
    value.backward()
    for z in logits:
        assert z.grad is not None and torch.all(z.grad == 0)


def test_unlabelled_samples_do_not_change_the_loss():
    logits, targets = toy_batch()
    keep = [0, 1, 2]
    for loss in (
        level_cross_entropy,
        tree_path_kl,
        lambda z, t: hisce(z, t, TOY_PARENTS),
    ):
        full = loss(logits, targets)
        without = loss([z[keep] for z in logits], targets[keep])
        assert full.item() == pytest.approx(without.item())


def test_unlabelled_samples_get_no_gradient():
    logits = [z.clone().requires_grad_(True) for z in toy_batch()[0]]
    _, targets = toy_batch()
    hierarchical_loss(logits, targets, TOY_PARENTS)["total"].backward()
    assert all(torch.all(z.grad[3] == 0) for z in logits)
    assert all(torch.isfinite(z.grad).all() for z in logits)


# ---- loop re-implementations on random trees ------------------------------------------


def ref_level_ce(logits, targets):
    per_sample = []
    for b in range(targets.shape[0]):
        known = [lv for lv in range(len(logits)) if targets[b, lv] >= 0]
        if not known:
            continue
        terms = [-F.log_softmax(logits[lv][b], 0)[targets[b, lv]] for lv in known]
        per_sample.append(sum(terms) / len(known))
    return sum(per_sample) / len(per_sample) if per_sample else 0.0


def ref_tpkl(logits, targets):
    per_sample = []
    for b in range(targets.shape[0]):
        known = [lv for lv in range(len(logits)) if targets[b, lv] >= 0]
        if not known:
            continue
        q = torch.softmax(torch.cat([logits[lv][b] for lv in known]), 0)
        p = torch.zeros_like(q)
        offset = 0
        for lv in known:
            p[offset + targets[b, lv]] = 1.0 / len(known)
            offset += logits[lv].shape[1]
        support = p > 0
        per_sample.append((p[support] * (p[support] / q[support]).log()).sum())
    return sum(per_sample) / len(per_sample) if per_sample else 0.0


def ref_hisce(logits, targets, parents, eps):
    per_sample = []
    for b in range(targets.shape[0]):
        known = [lv for lv in range(len(logits)) if targets[b, lv] >= 0]
        if not known:
            continue
        total = 0.0
        for lv in known:
            y = int(targets[b, lv])
            n = logits[lv].shape[1]
            siblings = [
                c for c in range(n) if c != y and int(parents[lv][c]) == int(parents[lv][y])
            ]
            t = torch.zeros(n, dtype=torch.float64)
            t[y] = 1.0 - (eps if siblings else 0.0)
            for c in siblings:
                t[c] = eps / len(siblings)
            total = total - (t * F.log_softmax(logits[lv][b], 0)).sum()
        per_sample.append(total / len(known))
    return sum(per_sample) / len(per_sample) if per_sample else 0.0


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_levels=st.integers(1, 4),
    eps=st.floats(0.0, 0.9),
)
def test_losses_match_loop_reimplementations(seed, n_levels, eps):
    rng = np.random.default_rng(seed)
    sizes = random_sizes(rng, n_levels)
    parents = random_parents(rng, sizes)
    batch = int(rng.integers(1, 7))
    targets = random_targets(rng, parents, batch)
    logits = random_logits(rng, sizes, batch)
    assert float(level_cross_entropy(logits, targets)) == pytest.approx(
        float(ref_level_ce(logits, targets)), abs=1e-9
    )
    assert float(tree_path_kl(logits, targets)) == pytest.approx(
        float(ref_tpkl(logits, targets)), abs=1e-9
    )
    assert float(hisce(logits, targets, parents, eps)) == pytest.approx(
        float(ref_hisce(logits, targets, parents, eps)), abs=1e-9
    )


def test_any_negative_target_counts_as_unknown():
    rng = np.random.default_rng(3)
    sizes = [2, 4, 6]
    parents = random_parents(rng, sizes)
    logits = random_logits(rng, sizes, 5)
    # Non-prefix gaps: unknown levels in the middle or at the top.
    targets = random_targets(rng, parents, 5, partial=False)
    targets[0, 1] = -1
    targets[1, 0] = -1
    targets[2, 0] = -7
    assert float(tree_path_kl(logits, targets)) == pytest.approx(float(ref_tpkl(logits, targets)))
    assert float(hisce(logits, targets, parents)) == pytest.approx(
        float(ref_hisce(logits, targets, parents, 0.1))
    )


# ---- identities from the spec ---------------------------------------------------------


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_tpkl_with_one_level_equals_ce(seed):
    rng = np.random.default_rng(seed)
    size = int(rng.integers(1, 8))
    logits = random_logits(rng, [size], 6)
    targets = torch.as_tensor(rng.integers(0, size, (6, 1)))
    expected = F.cross_entropy(logits[0], targets[:, 0])
    assert float(tree_path_kl(logits, targets)) == pytest.approx(float(expected))
    assert float(level_cross_entropy(logits, targets)) == pytest.approx(float(expected))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_hisce_with_zero_eps_equals_ce(seed):
    rng = np.random.default_rng(seed)
    sizes = random_sizes(rng, 3)
    parents = random_parents(rng, sizes)
    logits = random_logits(rng, sizes, 6)
    targets = random_targets(rng, parents, 6)
    assert float(hisce(logits, targets, parents, eps=0.0)) == pytest.approx(
        float(level_cross_entropy(logits, targets))
    )


def test_tpkl_is_nonnegative_and_zero_only_at_the_target():
    # A softmax can only approach the target; make it very close with huge margins.
    targets = torch.tensor([[1, 0]])
    logits = [torch.tensor([[-50.0, 50.0]]), torch.tensor([[50.0, -50.0, -50.0]])]
    assert 0.0 <= tree_path_kl(logits, targets).item() < 1e-6
    rng = np.random.default_rng(0)
    parents = random_parents(rng, [3, 5])
    many = random_logits(rng, [3, 5], 20)
    assert tree_path_kl(many, random_targets(rng, parents, 20)).item() >= 0.0


# ---- gradients and dtypes -------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradcheck(seed):
    rng = np.random.default_rng(seed)
    sizes = [2, 4, 5]
    parents = random_parents(rng, sizes)
    targets = random_targets(rng, parents, 4)
    targets[0] = torch.tensor([-1, -1, -1])  # an unlabelled sample in the batch
    logits = tuple(z.requires_grad_(True) for z in random_logits(rng, sizes, 4))

    def all_terms(*zs):
        out = hierarchical_loss(list(zs), targets, parents, alpha=0.7, lam=1.3, eps=0.2)
        return out["ce"], out["tpkl"], out["hisce"], out["total"]

    assert torch.autograd.gradcheck(all_terms, logits)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_logits_are_computed_in_float32(dtype):
    rng = np.random.default_rng(5)
    sizes = [3, 6, 9]
    parents = random_parents(rng, sizes)
    targets = random_targets(rng, parents, 8)
    half = [z.to(dtype).requires_grad_(True) for z in random_logits(rng, sizes, 8)]
    widened = [z.detach().to(torch.float32) for z in half]
    out = hierarchical_loss(half, targets, parents)
    ref = hierarchical_loss(widened, targets, parents)
    for name in out:
        assert out[name].dtype == torch.float32
        assert out[name].item() == pytest.approx(ref[name].item(), rel=1e-6)
    out["total"].backward()
    assert all(z.grad is not None and z.grad.dtype == dtype for z in half)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    rng = np.random.default_rng(7)
    sizes = [3, 6, 9]
    parents = random_parents(rng, sizes)
    targets = random_targets(rng, parents, 8)
    logits = random_logits(rng, sizes, 8, dtype=torch.float32)
    cpu = hierarchical_loss(logits, targets, parents)
    gpu = hierarchical_loss(
        [z.cuda().bfloat16() for z in logits], targets.cuda(), [p.cuda() for p in parents]
    )
    for name in cpu:
        assert gpu[name].device.type == "cuda"
        assert gpu[name].item() == pytest.approx(cpu[name].item(), rel=2e-2)


def test_mismatched_shapes_are_rejected():
    logits, targets = toy_batch()
    with pytest.raises(ValueError, match="targets must have shape"):
        level_cross_entropy(logits, targets[:, :1])
    with pytest.raises(ValueError, match=r"logits\[1\]"):
        tree_path_kl([logits[0], logits[1][:2]], targets)
