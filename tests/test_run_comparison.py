"""Run comparison: differing settings, overlaid epoch curves and the per-node diff."""

from __future__ import annotations

import numpy as np
import pytest
from curation_project import finished_run

from hiercore.figures import overlaid_curves_figure
from hiercore.metrics import confusion_matrices
from hiercore.run_comparison import epoch_curves, node_accuracy, node_diff, settings_frame
from hiercore.run_results import RunResults
from hiercore.store import Workspace


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    with Workspace(tmp_path_factory.mktemp("ws")) as ws:
        _, bad, _ = finished_run(ws, "with defects", defects=True)
        _, good, _ = finished_run(ws, "control", defects=False)
        yield (
            RunResults.load(ws.get_run(bad)["out_dir"]),
            RunResults.load(ws.get_run(good)["out_dir"]),
        )


def test_node_accuracy_is_the_confusion_diagonal_over_its_rows(two_runs):
    res = two_runs[0]
    cm = confusion_matrices(res.pred("independent"), res.true, res.index.sizes)
    acc = node_accuracy(res)
    for level, nodes in enumerate(res.index.level_nodes):
        for c, node in enumerate(nodes):
            _, n, correct = acc[node]
            assert (n, correct) == (cm[level][c].sum(), cm[level][c, c])


def test_node_diff_puts_the_repaired_nodes_last(two_runs):
    bad, good = two_runs
    diff = node_diff(bad, good)
    assert len(diff) == 3 + 9
    # the badly named B and the confused a1 (2 of 8 right) are what the control repairs
    assert list(diff["node_id"].iloc[-2:]) == ["a1", "B"]
    assert diff.iloc[-2]["accuracy_a"] == pytest.approx(0.25)
    assert list(diff["change"]) == sorted(diff["change"])
    back = node_diff(good, bad)
    assert back.iloc[1]["node_id"] == "a1" and back.iloc[1]["change"] == pytest.approx(-0.75)


def test_settings_frame_keeps_only_what_differs():
    runs = [
        ("#1", {"epochs": 3, "lr": 0.01, "model": "m"}, {"fpa": 0.5, "consistent": {"fpa": 0.6}}),
        ("#2", {"epochs": 5, "lr": 0.01, "model": "m"}, {"fpa": 0.7}),
    ]
    frame = settings_frame(runs)
    assert list(frame.columns) == ["run", "epochs", "FPA", "TICE", "HCA", "consistent FPA"]
    assert list(frame["epochs"]) == [3, 5] and frame["consistent FPA"].iloc[0] == 0.6
    assert "lr" in settings_frame(runs[:1]).columns


def test_epoch_curves_overlay_one_line_per_run():
    from hiercore.history import History

    histories = {
        "#1": History.from_records(
            [{"epoch": 1, "val": {"fpa": 0.2}}, {"step": 3, "epoch": 1, "losses": {"total": 3.0}}]
        ),
        "#2": History.from_records(
            [{"epoch": 1, "val": {"fpa": 0.3}}, {"epoch": 2, "val": {"fpa": np.nan}}]
        ),
    }
    curves = epoch_curves(histories)
    assert curves.to_dict("records") == [
        {"run": "#1", "epoch": 1, "metric": "fpa", "value": 0.2},
        {"run": "#2", "epoch": 1, "metric": "fpa", "value": 0.3},
    ]
    fig = overlaid_curves_figure(curves, "fpa")
    assert [t.name for t in fig.data] == ["#1", "#2"]


def test_epoch_curves_read_a_loaded_runs_history(two_runs):
    # the studio passes RunResults.history (a History, not a list of records)
    bad, good = two_runs
    curves = epoch_curves({"A": bad.history, "B": good.history})
    fpa = curves[curves["metric"] == "fpa"]
    assert list(fpa["run"]) == ["A", "B"]
    assert list(fpa["value"]) == [bad.history.evals[0].val["fpa"], good.history.evals[0].val["fpa"]]


def test_prediction_filters_of_the_batch_box(two_runs):
    from webapp.curation import prediction_rows

    res = two_runs[0]
    pred = res.pred("independent")
    wrong2 = [r for r in range(res.n) if pred[r, 1] != res.true[r, 1]]
    assert prediction_rows(res, "wrong", 2) == wrong2 and len(wrong2) == 6 + 2 + 2  # a1, a2, c1
    wrong_any = prediction_rows(res, "wrong")
    right = prediction_rows(res, "right")
    assert sorted(wrong_any + right) == list(range(res.n)) and set(wrong2) <= set(wrong_any)
    assert prediction_rows(res, "disagree") == list(res.inconsistent_rows())


def test_an_untouched_level_field_filters_at_any_level(two_runs):
    # the browser sends the empty "at level" field as 0, which was refused
    from webapp.curation import prediction_rows
    from webapp.tabs.batch import chosen_level

    res = two_runs[0]
    assert [chosen_level(v) for v in (None, "", 0, 0.0, 2, 2.0)] == [None, None, None, None, 2, 2]
    assert prediction_rows(res, "wrong", chosen_level(0)) == prediction_rows(res, "wrong")
