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


# ---------------------------------------------------------------- the studio's Train form


@pytest.fixture(scope="module")
def studio_app(tmp_path_factory):
    """A built (not launched) studio whose queue records runs without training them."""
    from webapp.app import build_app
    from webapp.state import Studio

    studio = Studio(tmp_path_factory.mktemp("studio"))
    studio.queue.train_fn = lambda *args: {}
    app = build_app(studio)
    yield studio, app
    studio.close()


def test_every_setting_has_a_form_control_or_is_hidden_on_purpose():
    from webapp.tabs.train import FORM_FIELDS, HIDDEN_IN_FORM

    assert len(set(FORM_FIELDS)) == len(FORM_FIELDS)
    assert not set(FORM_FIELDS) & set(HIDDEN_IN_FORM)
    assert set(FORM_FIELDS) | set(HIDDEN_IN_FORM) == set(NAMES)
    assert all(why.strip() for why in HIDDEN_IN_FORM.values())


def test_the_form_controls_show_the_fields_defaults_and_help(studio_app):
    from hiercore.config import field_help
    from webapp.tabs.train import FORM_FIELDS, default_form_config, form_values

    _, app = studio_app
    start = next(f for f in app.fns.values() if f.api_name == "start")
    controls = start.inputs[2:]  # after the project and the run name
    assert len(controls) == len(FORM_FIELDS)
    defaults = form_values(default_form_config())
    for name, control in zip(FORM_FIELDS, controls, strict=True):
        assert field_help(name) in control.info, name
        if name not in ("model", "max_steps"):  # the studio's model; a demo's step cap
            assert control.value == defaults[name], name


def test_a_studio_run_without_hierarchy_losses_is_recorded_as_ce(studio_app, tmp_path):
    from PIL import Image

    from webapp.tabs.train import FORM_FIELDS, default_form_config, form_values

    studio, app = studio_app
    start = next(f for f in app.fns.values() if f.api_name == "start").fn
    ws = studio.workspace
    pid = ws.create_project("ce")
    node = ws.add_node(pid, "cat")
    ws.add_node(pid, "dog")
    images = []
    for i in range(2):
        Image.new("RGB", (32, 32), (i * 90, 20, 20)).save(tmp_path / f"{i}.png")
        images.append((f"{i}.png", tmp_path / f"{i}.png"))
    ws.add_images(pid, images, node_id=node)
    recorded = {}
    for alpha, lam, flat in ((0.0, 0.0, False), (1.0, 1.0, False), (0.0, 0.0, True)):
        values = {**form_values(default_form_config()), "alpha": alpha, "lam": lam, "flat": flat}
        status, *_ = start(pid, "", *[values[n] for n in FORM_FIELDS])
        assert status.startswith("✅"), status
        run = ws.list_runs(pid)["id"].max()
        recorded[alpha, lam, flat] = ws.get_run(int(run))["config"]["method"]
    assert recorded == {
        (0.0, 0.0, False): "level-ce",
        (1.0, 1.0, False): "tpkl-hisce",
        (0.0, 0.0, True): "flat-ce",
    }


def test_results_name_an_old_run_by_its_losses_not_its_stale_record():
    from webapp.tabs.results import run_method

    stale = {**RunConfig(alpha=0.0, lam=0.0).to_dict(), "method": "tpkl-hisce"}
    assert run_method(stale) == "level-ce"
    assert run_method({"epochs": "many", "method": "tip-adapter"}) == "tip-adapter"
