"""Results > Run comparison: the settings that differ between runs with their metrics,
their validation curves overlaid, and a per-node accuracy diff of two runs."""

from __future__ import annotations

import gradio as gr

from hiercore.errors import HierTuneError
from webapp.feedback import user_errors
from webapp.state import Studio

CURVE_METRICS = [("FPA", "fpa"), ("TICE", "tice"), ("FPA (consistent)", "consistent_fpa")]


def build_run_comparison(studio: Studio, project: gr.BrowserState, run) -> None:
    """Settings, overlaid curves and a per-node diff of the project's finished runs."""
    from hiercore.figures import overlaid_curves_figure
    from hiercore.run_comparison import epoch_curves, node_diff, settings_frame
    from webapp.tabs.results import finished_runs

    ws = studio.workspace
    gr.Markdown("#### Compare runs: what differs, how they learnt, which nodes changed")
    with gr.Row(equal_height=True):
        picked = gr.Dropdown(
            label="Runs to compare", choices=[], multiselect=True, scale=3, elem_id="compare-runs"
        )
        metric = gr.Dropdown(CURVE_METRICS, value="fpa", label="Curve", scale=1)
        compare_btn = gr.Button("Compare the runs", scale=1, elem_id="compare-runs-btn")
    status = gr.Markdown()
    settings = gr.Dataframe(
        interactive=False, label="Settings that differ, and the metrics", elem_id="compare-settings"
    )
    curves = gr.Plot(label="Validation per epoch")
    with gr.Row(equal_height=True):
        run_a = gr.Dropdown(label="Run A (before)", choices=[], scale=2)
        run_b = gr.Dropdown(label="Run B (after)", choices=[], scale=2)
        diff_btn = gr.Button("Per-node diff (B - A)", scale=1)
    diff = gr.Dataframe(
        interactive=False,
        max_height=360,
        label="Node accuracy in A and B, most worsened first",
        elem_id="compare-diff",
    )

    def choices(pid, _run):
        try:
            pid = studio.project_id(pid)
        except HierTuneError:
            return (gr.update(choices=[], value=[]), *[gr.update(choices=[], value=None)] * 2)
        runs = finished_runs(studio, pid)
        first = runs[1][1] if len(runs) > 1 else None
        return (
            gr.update(choices=runs, value=[r[1] for r in runs[:3]]),
            gr.update(choices=runs, value=first),
            gr.update(choices=runs, value=runs[0][1] if runs else None),
        )

    run.change(choices, [project, run], [picked, run_a, run_b], api_visibility="private")

    @user_errors(3)
    def compare(run_ids, metric_name):
        if not run_ids:
            raise HierTuneError("Pick at least one finished run to compare.")
        records = [ws.get_run(int(r)) for r in run_ids]
        named = [(f"#{r['id']} {r['name']}", r) for r in records]
        frame = settings_frame([(n, r["config"], r["metrics"]) for n, r in named])
        histories = {n: studio.results(int(r["id"])).history for n, r in named}
        figure = overlaid_curves_figure(epoch_curves(histories), metric_name or "fpa")
        return "", frame.round(4), figure

    @user_errors(2)
    def per_node(a, b):
        if not a or not b or int(a) == int(b):
            raise HierTuneError("Pick two different finished runs as A and B.")
        frame = node_diff(studio.results(int(a)), studio.results(int(b)))
        return "", frame.drop(columns="node_id").round(3)

    private = {"api_visibility": "private"}
    compare_btn.click(compare, [picked, metric], [status, settings, curves], **private)
    diff_btn.click(per_node, [run_a, run_b], [status, diff], **private)
