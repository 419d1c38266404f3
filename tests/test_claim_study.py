"""The claim study: TP-KL's split into CE and B, the controls, and a tiny study run."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from treegen import random_parents

from hiercore.baselines.result import levels_from_leaf_scores
from hiercore.claim_study import (
    Condition,
    LossRow,
    ScaleRow,
    StudyConfig,
    claim_rows,
    gradient_evidence,
    level_logits,
    run_synthetic_study,
    score_logits,
    t_interval,
    train_row,
)
from hiercore.losses import hierarchical_loss, level_cross_entropy, mass_balance, tree_path_kl
from hiercore.synthetic_hierarchy import SyntheticSetting, make_synthetic


def _random_problem(seed: int, sizes=(7, 74, 671), batch: int = 32):
    gen = torch.Generator().manual_seed(seed)
    logits = [torch.randn(batch, c, generator=gen, dtype=torch.float64) * 4 for c in sizes]
    targets = torch.stack([torch.randint(0, c, (batch,), generator=gen) for c in sizes], 1)
    # partial labels: known down to a random depth, and a few rows with nothing known
    depth = torch.randint(0, len(sizes) + 1, (batch,), generator=gen)
    depth[:3] = torch.tensor([0, 1, len(sizes)])
    targets[torch.arange(len(sizes)).unsqueeze(0) >= depth.unsqueeze(1)] = -1
    return logits, targets


def _mean_log_k(targets: torch.Tensor) -> torch.Tensor:
    k = (targets >= 0).sum(1)
    return torch.log(k[k > 0].double()).mean()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tpkl_is_level_ce_plus_mass_balance(seed):
    logits, targets = _random_problem(seed)
    lhs = tree_path_kl(logits, targets)
    rhs = level_cross_entropy(logits, targets) + mass_balance(logits, targets)
    assert lhs.dtype == torch.float64
    assert abs(float(lhs - (rhs - _mean_log_k(targets)))) < 1e-12


@pytest.mark.parametrize(("temperature", "size_correction"), [(0.5, False), (1.0, True)])
def test_tpkl_variants_split_the_same_way(temperature, size_correction):
    logits, targets = _random_problem(3, sizes=(3, 9, 27))
    lhs = tree_path_kl(logits, targets, temperature, size_correction)
    ce = level_cross_entropy([z / temperature for z in logits], targets)
    b = mass_balance(logits, targets, temperature, size_correction)
    assert abs(float(lhs - (ce + b - _mean_log_k(targets)))) < 1e-12


def test_mass_balance_reads_no_label_and_is_least_when_levels_balance():
    logits, targets = _random_problem(4, sizes=(4, 16))
    other = targets.clone()
    other[other >= 0] = 0  # same known levels, other nodes
    assert torch.equal(mass_balance(logits, targets), mass_balance(logits, other))
    full = torch.zeros(5, 2, dtype=torch.long)
    # 4 nodes at logit log 4 and 16 at log 1: both levels hold mass 16, so B = log 2
    balanced = [torch.full((5, 4), math.log(4.0)), torch.zeros(5, 16)]
    assert float(mass_balance(balanced, full)) == pytest.approx(math.log(2), abs=1e-6)
    assert float(mass_balance([torch.zeros(5, 4), torch.zeros(5, 16)], full)) > math.log(2)
    # size correction makes uniform logits balanced
    uniform = [torch.zeros(5, 4), torch.zeros(5, 16)]
    corrected = mass_balance(uniform, full, size_correction=True)
    assert float(corrected) == pytest.approx(math.log(2), abs=1e-6)


def test_controls_are_their_definitions():
    logits, targets = _random_problem(5, sizes=(3, 9, 27))
    parents = random_parents(np.random.default_rng(0), [3, 9, 27])
    ce = level_cross_entropy(logits, targets)
    b = mass_balance(logits, targets)
    scaled = hierarchical_loss(logits, targets, parents, alpha=0, lam=0, ce_weight=1.5)
    assert float(scaled["total"]) == pytest.approx(1.5 * float(ce), rel=1e-12)
    balance = hierarchical_loss(logits, targets, parents, alpha=0, lam=0, balance=0.5)
    assert float(balance["total"]) == pytest.approx(float(ce + 0.5 * b), rel=1e-12)
    assert float(balance["balance"]) == pytest.approx(float(b), rel=1e-12)
    # and CE + alpha * TP-KL differs from (1 + alpha) * CE + alpha * B by a constant only
    paper = hierarchical_loss(logits, targets, parents, alpha=0.5, lam=0)["total"]
    both = hierarchical_loss(logits, targets, parents, 0, 0, ce_weight=1.5, balance=0.5)
    assert float(paper - both["total"]) == pytest.approx(-0.5 * float(_mean_log_k(targets)))
    assert set(hierarchical_loss(logits, targets, parents)) == {"ce", "tpkl", "hisce", "total"}


def test_registry_controls_set_the_loss_weights():
    from hiercore.baselines.registry import create_method
    from hiercore.config import RunConfig

    config = RunConfig(alpha=0.5, lam=2.0)
    scaled = create_method("ce-scaled").run_config(config)
    assert (scaled.ce_weight, scaled.alpha, scaled.lam, scaled.balance) == (1.5, 0, 0, 0)
    balance = create_method("ce-balance").run_config(config)
    assert (balance.ce_weight, balance.alpha, balance.lam, balance.balance) == (1, 0, 0, 0.5)
    sized = create_method("tpkl-size").run_config(config)
    assert sized.alpha == 0.5 and sized.tpkl_size_correction
    assert create_method("flat-ce-marginal").run_config(config).flat


def test_marginal_parents_are_subtree_probabilities():
    parents = [np.zeros(2, dtype=int), np.array([0, 0, 1])]
    scores = np.array([[1.0, 2.0, 3.0]])
    top, leaf = levels_from_leaf_scores(scores, parents, marginal=True)
    p = np.exp(scores) / np.exp(scores).sum()
    assert np.exp(top) == pytest.approx(np.array([[p[0, 0] + p[0, 1], p[0, 2]]]), rel=1e-5)
    assert np.exp(leaf) == pytest.approx(p, rel=1e-5)


def test_t_interval_matches_the_t_table():
    mean, half = t_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    assert mean == 3.0
    assert half == pytest.approx(2.776 * math.sqrt(2.5) / math.sqrt(5), rel=1e-4)
    assert math.isnan(t_interval([1.0])[1])


EASY = SyntheticSetting(branching=(3, 3, 3), dim=32, noise=0.5, train_per_leaf=6)


def test_a_learnable_setting_is_learnt_on_held_out_images():
    data = make_synthetic(EASY, seed=0)
    # start from uninformative prompts so that the accuracy is the training's doing
    data.prompts = [torch.nn.functional.normalize(torch.randn_like(p), dim=1) for p in data.prompts]
    row = LossRow("ce")
    head = train_row(data, row, ScaleRow("s", 20.0, False), StudyConfig(), 100, seed=0)
    logits, post = level_logits(head, row, data.test_x, data.parents)
    scores = score_logits(logits, post, data.test_y, data.parents)
    assert scores["acc_l3"] > 0.8  # chance is 1/27
    assert scores["fpa_consistent"] > 0.8
    assert scores["tice_consistent"] == 0.0


def test_gradient_evidence_splits_tpkl_into_ce_and_balance():
    data = make_synthetic(EASY, seed=1)
    head = train_row(data, LossRow("ce"), ScaleRow("s", 20.0, False), StudyConfig(), 1, 0)
    with torch.no_grad():
        logits = head(data.train_x)
    rows = gradient_evidence(logits, data.train_y, data.parents, eps=0.1)
    assert [r["level"] for r in rows] == [1, 2, 3]
    assert sum(r["mass_share"] for r in rows) == pytest.approx(1.0)
    for r in rows:  # triangle inequality on TP-KL = CE + B - log k
        assert r["grad_tpkl"] <= r["grad_ce"] + r["grad_balance"] + 1e-9


def test_tiny_study_writes_its_tables(tmp_path):
    rows = (LossRow("ce"), LossRow("tpkl a=1", alpha=1.0), LossRow("linear-probe", probe=True))
    config = StudyConfig(scales=(ScaleRow("fixed 20", 20.0, False),), rows=rows)
    condition = Condition("tiny", SyntheticSetting(branching=(2, 2, 2), dim=16), 5)
    summary = run_synthetic_study(2, tmp_path, (condition,), config)
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert len(runs) == 2 * 3
    for column in ("fpa", "fpa_consistent", "fpa_risk", "tice", "tice_consistent", "acc_l3"):
        assert column in runs
    assert (runs["tice_consistent"] == 0).all()
    for column in ("fpa_mean", "fpa_ci", "d_fpa_mean", "d_fpa_consistent_ci"):
        assert column in summary
    ce = summary[summary["method"] == "ce"].iloc[0]
    assert ce["d_fpa_mean"] == 0.0
    assert "ΔFPA cons. vs CE" in (tmp_path / "summary.md").read_text()
    assert "mass_share" in (tmp_path / "evidence.md").read_text()


def test_default_rows_hold_the_paper_rows_controls_and_baselines():
    names = [r.name for r in claim_rows()]
    for name in ("ce", "tpkl a=1", "hisce l=1", "tpkl-hisce a=1 l=1", "ce-scaled a=1"):
        assert name in names
    assert "ce-balance a=1" in names and "flat-ce-marginal" in names
    assert "linear-probe" in names


def test_demo_runner_summarises_registry_rows(image_tree_dir, tmp_path):
    from hiercore.claim_study import run_demo_study, single_thread
    from hiercore.config import RunConfig

    config = RunConfig(
        model="tiny-random", lora="text", epochs=1, batch_size=4, max_steps=1, device="cpu"
    )
    config.val_fraction = 0.4
    with single_thread():  # a tiny model: threads only contend on a shared CPU
        summary = run_demo_study(
            str(image_tree_dir), 2, tmp_path, config, methods=("level-ce", "ce-balance")
        )
    assert summary["method"].tolist() == ["level-ce", "ce-balance"]
    assert (summary["seeds"] == 2).all()
    assert summary.loc[0, "d_fpa_mean"] == 0.0 or math.isnan(summary.loc[0, "d_fpa_mean"])
    assert "vs level-ce" in (tmp_path / "summary.md").read_text()

    # a second call reads each seed's rows back instead of training again
    from hiercore.baselines import compare

    def refuse(*a, **k):
        raise AssertionError("a finished seed was trained again")

    original = compare.run_comparison
    compare.run_comparison = refuse
    try:
        again = run_demo_study(
            str(image_tree_dir), 2, tmp_path, config, methods=("level-ce", "ce-balance")
        )
    finally:
        compare.run_comparison = original
    assert again["fpa_mean"].tolist() == summary["fpa_mean"].tolist()
    assert sorted(p.name for p in tmp_path.glob("seed*")) == ["seed0", "seed1"]
