"""The demo's "does the method work here?" panel (issue #8 F): the shipped study drawn
with honest intervals, and a one-click comparison that is measured once and then cached."""

from __future__ import annotations

import math
import time

import pandas as pd
import pytest
from imagegen import write_tree
from scipy import stats

from hiercore.demo import EFFECT_METHODS, cached_comparison, demo_study_runs
from hiercore.figures.effect import interval, method_effect_figure
from hiercore.ingest import import_files
from webapp.state import Studio
from webapp.tabs import demo_effect


def runs_table() -> pd.DataFrame:
    rows = []
    for method, base in (("zero-shot", 0.1), ("level-ce", 0.3), ("tpkl-hisce", 0.28)):
        for seed in range(3):
            fpa = base + 0.01 * seed if method != "zero-shot" else base
            rows.append(
                {"method": method, "seed": seed, "fpa": fpa, "tice": 0.5, "acc_leaf": fpa + 0.1}
            )
    return pd.DataFrame(rows)


def test_interval_is_the_t_interval():
    values = pd.Series([0.30, 0.31, 0.35, 0.28])
    mean, half = interval(values)
    expected = stats.t.ppf(0.975, 3) * values.std(ddof=1) / math.sqrt(4)
    assert mean == pytest.approx(values.mean()) and half == pytest.approx(expected)
    assert interval(pd.Series([0.2]))[1] == 0.0  # one seed: no interval claimed
    assert interval(pd.Series([0.2, 0.2]))[1] == 0.0  # a deterministic row


def test_effect_figure_draws_every_method_with_its_seeds():
    runs = runs_table()
    fig = method_effect_figure(runs, list(EFFECT_METHODS))
    bars = [t for t in fig.data if t.type == "bar"]
    assert [b.name.split(" (")[0] for b in bars] == [
        "zero-shot",
        "CE per level",
        "CE + TP-KL + HiSCE",
    ]
    ce = bars[1]
    assert list(ce.x) == ["FPA", "TICE (lower is better)", "leaf accuracy"]
    assert ce.y[0] == pytest.approx(0.31)
    assert ce.error_y.array[0] == pytest.approx(interval(runs[runs.method == "level-ce"].fpa)[1])
    dots = [t for t in fig.data if t.type == "scatter"]
    assert sum(len(t.y) for t in dots) == len(runs) * 3  # every seed, every metric
    with pytest.raises(ValueError):
        method_effect_figure(runs.iloc[:0])


def test_demo_study_runs_reads_the_shipped_table(tmp_path):
    assert demo_study_runs(tmp_path) is None  # not measured: the panel says so
    runs_table().to_csv(tmp_path / "runs.csv", index=False)
    assert len(demo_study_runs(tmp_path)) == 9
    (tmp_path / "runs.csv").write_text("method,seed\n")
    assert demo_study_runs(tmp_path) is None
    text, fig = demo_effect.shipped_view(None)
    assert fig is None and "not been measured" in text


def test_cached_comparison_needs_every_method_and_the_same_settings():
    config = {"model": "tiny-random", "epochs": 1}
    other = {"model": "tiny-random", "epochs": 2}
    runs = pd.DataFrame(
        [
            {"id": 1, "state": "finished", "config": {**config, "compare_methods": ["zero-shot"]}},
            {"id": 2, "state": "finished", "config": {**other, "compare_methods": EFFECT_METHODS}},
            {"id": 3, "state": "failed", "config": {**config, "compare_methods": EFFECT_METHODS}},
            {"id": 4, "state": "finished", "config": {**config, "compare_methods": EFFECT_METHODS}},
            {"id": 5, "state": "finished", "config": config},  # a plain run
        ]
    )
    assert cached_comparison(runs, EFFECT_METHODS, config).id == 4
    assert cached_comparison(runs, EFFECT_METHODS, other).id == 2
    assert cached_comparison(runs, EFFECT_METHODS).id == 4  # the newest, any settings
    assert cached_comparison(runs, EFFECT_METHODS, {"model": "tiny-random", "epochs": 3}) is None


def test_one_click_comparison_runs_once_then_is_cached(tmp_path, monkeypatch):
    import shutil

    monkeypatch.setattr(
        demo_effect,
        "demo_recipe",
        lambda: demo_effect.RunConfig(
            model="tiny-random", lora="vision", epochs=1, max_steps=1, batch_size=8
        ),
    )
    studio = Studio(tmp_path / "ws")
    try:
        pid = studio.workspace.create_project(demo_effect.DEMO_PROJECT)
        tree = write_tree(tmp_path / "tree", per_leaf=3)
        archive = shutil.make_archive(str(tmp_path / "tree"), "zip", tree)
        import_files(studio.workspace, pid, [archive])
        message, queued = demo_effect.measure_demo_effect(studio, pid)
        assert queued and "Queued as run" in message
        deadline = time.monotonic() + 240
        while studio.queue.status(1)["state"] in ("queued", "running"):
            assert time.monotonic() < deadline
            time.sleep(0.3)
        assert studio.queue.status(1)["state"] == "finished"
        message, queued = demo_effect.measure_demo_effect(studio, pid)
        assert not queued and "Already measured as comparison run #1" in message
        fig = demo_effect.live_view(studio, pid)
        assert len([t for t in fig.data if t.type == "bar"]) == len(EFFECT_METHODS)
        assert demo_effect.is_demo(studio, pid)
        other = studio.workspace.create_project("birds")
        assert not demo_effect.is_demo(studio, other)
    finally:
        studio.close()


def test_the_one_click_comparison_keeps_the_forms_step_cap(monkeypatch):
    monkeypatch.delenv("HIERTUNE_DEMO_MAX_STEPS", raising=False)
    uncapped = demo_effect.demo_recipe()
    monkeypatch.setenv("HIERTUNE_DEMO_MAX_STEPS", "6")
    capped = demo_effect.demo_recipe()
    assert capped.max_steps == 6 and uncapped.max_steps != 6
    assert {**capped.to_dict(), "max_steps": uncapped.max_steps} == uncapped.to_dict()
