"""The run configuration is written once (`RunConfig`): the CLI flags and the studio's Train
form are made from its fields, the recorded method follows the losses, and the CLI starts
without torch."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from hiercore.cli import SET_BY_COMPARE_ROWS, build_parser, config_from_args
from hiercore.config import RunConfig

ROOT = Path(__file__).resolve().parents[1]
NAMES = [f.name for f in fields(RunConfig)]


def _flags(command: str) -> dict[str, object]:
    """dest -> argparse action of a subcommand's options."""
    sub = build_parser()._subparsers._group_actions[0].choices[command]
    return {a.dest: a for a in sub._actions if a.option_strings}


def test_every_setting_has_a_train_flag_with_the_fields_help():
    flags = _flags("train")
    for f in fields(RunConfig):
        assert f.name in flags, f"RunConfig.{f.name} has no `train` flag"
        assert f.metadata["help"].replace("%", "%%") in flags[f.name].help
        assert f.metadata["help"].endswith("."), f.name


def test_compare_has_every_setting_but_those_its_rows_set():
    flags = _flags("compare")
    assert SET_BY_COMPARE_ROWS.issubset(NAMES)
    for name in NAMES:
        assert (name in flags) != (name in SET_BY_COMPARE_ROWS), name


def test_flags_make_the_config_and_unset_ones_keep_its_defaults():
    argv = ["train", "--data", "d", "--out", "o", "--alpha", "0", "--lam", "0", "--flat"]
    argv += ["--lora-targets", "attn,mlp", "--template", "a {name}.", "--template", "b {name}."]
    argv += ["--no-eval-every-epoch", "--max-steps", "7", "--lora", "vision"]
    config = config_from_args(build_parser().parse_args(argv))
    expected = RunConfig(
        alpha=0.0,
        lam=0.0,
        flat=True,
        lora_targets=["attn", "mlp"],
        templates=["a {name}.", "b {name}."],
        eval_every_epoch=False,
        max_steps=7,
        lora="vision",
    )
    assert config == expected
    assert config_from_args(build_parser().parse_args(["train", "--data", "d", "--out", "o"])) == (
        RunConfig()
    )


def test_a_bad_flag_value_is_one_sentence(capsys):
    from hiercore.cli import main

    assert main(["train", "--data", "nowhere", "--out", "o", "--lr", "1e300"]) == 2
    assert "lr=1e+300 is out of range" in capsys.readouterr().err


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


COMMANDS = ["", "train", "eval", "predict", "compare", "claim-study", "pretrain-default"]


def test_help_imports_neither_torch_nor_open_clip():
    for command in COMMANDS:
        argv = [sys.executable, "-X", "importtime", "-m", "hiercore", *command.split(), "--help"]
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr[-2000:]
        imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines()}
        assert not imported & {"torch", "open_clip", "gradio", "pandas"}, command
