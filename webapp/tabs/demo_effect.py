"""The demo project's "does the method work here?" panel (issue #8 F), inside Results.

It shows, before anything is trained, the shipped demo study (`results/claim/demo`):
zero-shot, CE and the paper's CE + TP-KL + HiSCE on the held-out OpenMoji style, every
seed a dot, mean with a 95% interval. One button measures the same three rows on the
user's own copy of the demo through the studio's comparison job; a second click finds
that comparison already measured (same methods, same settings) and shows it instead of
training again. The panel is hidden for every other project.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pandas as pd

from hiercore.config import RunConfig
from hiercore.demo import DEMO_PROJECT, EFFECT_METHODS, cached_comparison, demo_study_runs
from hiercore.errors import HierTuneError
from hiercore.figures.effect import METHOD_LABELS, method_effect_figure
from webapp.feedback import ok, user_errors
from webapp.run_jobs import submit_comparison
from webapp.state import Studio

STUDY_NOTE = (
    "**Does the method work on this demo?** Measured on the held-out OpenMoji style "
    "(671 images never seen in training) with the studio's default recipe, "
    "{seeds} seeds. Reproduce with `{command}`; `results/claim/demo/summary.md` holds "
    "the table with paired differences to CE."
)
STUDY_COMMAND = (
    "python -m hiercore claim-study --setting demo --seeds 5 --out results/claim/demo "
    "--model default --lora vision --methods zero-shot level-ce hisce tpkl tpkl-hisce"
)


@dataclass
class DemoEffect:
    box: gr.Accordion
    note: gr.Markdown
    plot: gr.Plot
    live_plot: gr.Plot

    @property
    def outputs(self) -> list:
        return [self.box, self.note, self.plot, self.live_plot]


def is_demo(studio: Studio, pid: int) -> bool:
    return studio.workspace.get_project(pid)["name"] == DEMO_PROJECT


def demo_recipe() -> RunConfig:
    """The settings of the one-click comparison: the Train form's defaults here, with the
    form's step cap where HIERTUNE_DEMO_MAX_STEPS sets one (the button said "the Train
    form's default settings" but trained every epoch of three methods under a cap)."""
    from webapp.tabs.train import default_form_config, demo_max_steps

    config = default_form_config()
    if demo_max_steps() is not None:
        config["max_steps"] = demo_max_steps()
    return RunConfig.from_dict(config)


def shipped_view(runs: pd.DataFrame | None) -> tuple[str, object]:
    """(note, figure) of the shipped study; a sentence instead where it is missing."""
    if runs is None:
        return (
            "The demo study has not been measured in this copy (no "
            f"`results/claim/demo/runs.csv`); run `{STUDY_COMMAND}` or the button below.",
            None,
        )
    seeds = runs["seed"].nunique()
    shown = [m for m in EFFECT_METHODS if m in set(runs["method"])]
    extra = [m for m in dict.fromkeys(runs["method"]) if m not in shown]
    fig = method_effect_figure(
        runs, shown + extra, title="The demo study: zero-shot, CE and the hierarchy-aware losses"
    )
    return STUDY_NOTE.format(seeds=seeds, command=STUDY_COMMAND), fig


def live_view(studio: Studio, pid: int):
    """The figure of this project's cached one-click comparison, or None."""
    run = cached_comparison(studio.workspace.list_runs(pid), EFFECT_METHODS)
    if run is None:
        return None
    table = Path(run.out_dir) / "comparison_runs.csv"
    if not table.is_file():
        return None
    return method_effect_figure(
        pd.read_csv(table),
        list(EFFECT_METHODS),
        title=f"Measured here: comparison run #{run.id} (one seed)",
    )


def measure_demo_effect(studio: Studio, pid: int) -> tuple[str, bool]:
    """Queue the one-click comparison unless it is already measured: (message, queued)."""
    recipe = demo_recipe()
    done = cached_comparison(studio.workspace.list_runs(pid), EFFECT_METHODS, recipe.to_dict())
    if done is not None:
        return (
            f"Already measured as comparison run #{done.id} with these settings: shown "
            "below, and its rows are in the table.",
            False,
        )
    job = submit_comparison(studio, pid, recipe, list(EFFECT_METHODS))
    return (
        f"Queued as run #{job} with the Train form's default settings; follow it in the "
        "Train tab. It appears here when it finishes.",
        True,
    )


def build(studio: Studio, project: gr.BrowserState) -> tuple[DemoEffect, object]:
    """The panel and its refresh(pid) -> values of `DemoEffect.outputs`."""
    with gr.Accordion("The method on this demo", open=True, visible=False) as box:
        note = gr.Markdown()
        plot = gr.Plot(label="Shipped demo study", elem_id="demo-effect-plot")
        names = ", ".join(METHOD_LABELS[m] for m in EFFECT_METHODS)
        button = gr.Button(f"Measure {names} on this project", elem_id="demo-effect-run")
        status = gr.Markdown()
        live_plot = gr.Plot(label="Measured in this studio", visible=True)
    panel = DemoEffect(box, note, plot, live_plot)

    def refresh(pid):
        try:
            pid = studio.project_id(pid)
        except HierTuneError:
            return gr.update(visible=False), "", None, None
        if not is_demo(studio, pid):
            return gr.update(visible=False), "", None, None
        text, fig = shipped_view(demo_study_runs())
        return gr.update(visible=True), text, fig, live_view(studio, pid)

    @user_errors(2)
    def measure(pid):
        pid = studio.project_id(pid)
        message, queued = measure_demo_effect(studio, pid)
        return ok(message), gr.skip() if queued else live_view(studio, pid)

    button.click(measure, [project], [status, live_plot], api_visibility="private")
    return panel, refresh
