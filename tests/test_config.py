"""The run configuration is written once (`RunConfig`): the recorded method follows the
losses, and the configuration imports no torch."""

from __future__ import annotations

import pytest

from hiercore.config import RunConfig


@pytest.mark.parametrize(
    ("settings", "method"),
    [
        ({}, "tpkl-hisce"),
        ({"alpha": 0, "lam": 0}, "level-ce"),
        ({"lam": 0}, "tpkl"),
        ({"alpha": 0}, "hisce"),
        ({"alpha": 0, "lam": 0, "flat": True}, "flat-ce"),
        ({"lam": 0, "tpkl_size_correction": True}, "tpkl-size"),
        ({"alpha": 0, "lam": 0, "ce_weight": 2.0}, "ce-scaled"),
        ({"alpha": 0, "lam": 0, "balance": 1.0}, "ce-balance"),
        ({"flat": True}, "flat-ce+tpkl-hisce"),
        ({"alpha": 0, "balance": 0.5}, "ce-balance+hisce"),
    ],
)
def test_the_recorded_method_follows_the_losses(settings, method):
    config = RunConfig(**settings)
    assert config.method == method
    saved = config.to_dict()
    assert saved["method"] == method
    # read back, the record is skipped: an old run saying "tpkl-hisce" keeps its losses
    assert RunConfig.from_dict({**saved, "method": "tpkl-hisce"}) == config


def test_the_loss_rows_of_the_comparison_record_their_own_name():
    from hiercore.baselines.registry import create_method

    rows = ["flat-ce", "level-ce", "tpkl", "hisce", "tpkl-hisce", "ce-scaled", "ce-balance"]
    for name in [*rows, "tpkl-size"]:
        assert create_method(name).run_config(RunConfig()).method == name
    # marginalising the parents happens after training: the run itself is flat CE
    assert create_method("flat-ce-marginal").run_config(RunConfig()).method == "flat-ce"
