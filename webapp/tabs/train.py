"""Train tab: the run form, Start/Stop/Resume, and live progress read from the database by a timer.

The form is a view of `hiercore.config.RunConfig`: one control per setting of
`FORM_FIELDS` (the rest are listed, with the reason, in `HIDDEN_IN_FORM`), its default,
help and choices read from the field. Start submits to the studio's
`TrainingQueue` (one run at a time, later ones wait); every open page polls the run's
row with a `gr.Timer`, so a run started in one tab is followed and stoppable from any
other, and survives a reload.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import gradio as gr
import pandas as pd
import torch

from hiercore.config import TARGETS, TOWERS, RunConfig, field_help
from hiercore.errors import HierTuneError
from hiercore.figures import training_curves_figure
from hiercore.history import History
from hiercore.models.prompts import check_templates
from hiercore.run_folder import HISTORY, RunFolder
from webapp.feedback import ok, user_errors
from webapp.literal import md_text
from webapp.state import Studio, default_model

ACTIVE = ("queued", "running")
MODEL_CHOICES = ["default", "tiny-random", "ViT-B-32", "ViT-B-16", "ViT-L-14", "RN50"]
STATE_ICONS = {"queued": "⏳", "running": "🏃", "finished": "✅", "failed": "❌", "stopped": "⏹️"}


@dataclass
class TrainTab:
    refresh_outputs: list
    refresh: object


def demo_max_steps() -> int | None:
    """A step cap for quick demos and the browser test (HIERTUNE_DEMO_MAX_STEPS)."""
    value = os.environ.get("HIERTUNE_DEMO_MAX_STEPS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def default_form_config() -> dict:
    """What the form proposes on this machine: `RunConfig`'s defaults (the recipe chosen in
    results/recipe/), with the towers that train at interactive speed here: text LoRA
    re-encodes every node prompt at each step, which takes minutes per epoch on a CPU."""
    return RunConfig(lora="both" if torch.cuda.is_available() else "vision").to_dict()


FORM_FIELDS = (
    "model",
    "pretrained",
    "lora",
    "rank",
    "lora_alpha",
    "alpha",
    "lam",
    "eps",
    "templates",
    "epochs",
    "batch_size",
    "lr",
    "val_fraction",
    "max_steps",
    "seed",
    "flat",
    "tpkl_temperature",
    "tpkl_size_correction",
    "lora_targets",
    "lora_dropout",
    "grad_accum",
    "weight_decay",
    "warmup_ratio",
    "prototypes",
)
"""The `RunConfig` settings the Train form has a control for, in the order `start` reads them."""

HIDDEN_IN_FORM = {
    "ce_weight": "a control of the claim study; the comparison's ce-scaled row trains it",
    "balance": "a control of the claim study; the comparison's ce-balance row trains it",
    "device": "the studio trains where it runs: on its GPU when it has one",
    "eval_every_epoch": "the live validation curve is the form's progress display",
    "style_augment": "a recipe setting measured in results/recipe; the default is the measured one",
    "logit_scale": "a recipe setting measured in results/recipe; the default is the measured one",
    "learn_logit_scale": "a recipe setting measured in results/recipe; the default is the "
    "measured one",
    "negatives": "for taxonomies of many thousand nodes, from the command line (README, Speed)",
}
"""Settings deliberately left out of the form (they keep their RunConfig default), and why."""

LABELS = {
    "model": "Model",
    "pretrained": "Pretrained tag or checkpoint file",
    "lora": "Adapt tower(s)",
    "rank": "Rank",
    "lora_alpha": "LoRA alpha",
    "alpha": "α: Tree-Path KL weight",
    "lam": "λ: HiSCE weight",
    "eps": "ε: HiSCE sibling smoothing",
    "templates": "Prompt templates (one per line; empty = the model's own)",
    "epochs": "Epochs",
    "batch_size": "Batch size",
    "lr": "Learning rate",
    "val_fraction": "Validation share",
    "max_steps": "Max steps (0 or empty: all)",
    "seed": "Seed",
    "flat": "Flat: leaf level only (the flat CE baseline)",
    "tpkl_temperature": "TP-KL temperature",
    "tpkl_size_correction": "TP-KL level-size correction",
    "lora_targets": "LoRA targets",
    "lora_dropout": "LoRA dropout",
    "grad_accum": "Gradient accumulation",
    "weight_decay": "Weight decay",
    "warmup_ratio": "Warm-up share",
    "prototypes": "w: image prototypes",
}


def form_values(config: dict) -> dict:
    """The form's control values for a run config dict (text boxes hold text, not None)."""
    values = {name: config[name] for name in FORM_FIELDS}
    values["pretrained"] = config["pretrained"] or ""
    values["templates"] = "\n".join(config["templates"] or [])
    return values


def build_config(values: dict) -> RunConfig:
    """The run config of the form's values (by field name); one sentence naming a bad field."""
    settings = dict(values)
    for name, value in settings.items():
        if name in ("max_steps", "seed") or isinstance(value, bool | str | list):
            continue
        if value is None or (isinstance(value, float) and math.isnan(value)):
            raise HierTuneError(f"Give a value for {LABELS[name].lower()}.")
    lines = [t.strip() for t in (settings.get("templates") or "").splitlines() if t.strip()]
    settings["templates"] = check_templates(lines) if lines else None
    settings["model"] = (settings.get("model") or "default").strip()
    settings["pretrained"] = (settings.get("pretrained") or "").strip() or None
    max_steps = settings.get("max_steps")
    settings["max_steps"] = None if max_steps is None or max_steps == 0 else max_steps
    settings["seed"] = 0 if settings.get("seed") is None else settings["seed"]
    # numbers go to RunConfig as given: it refuses NaN, infinities, fractions of whole
    # numbers and out-of-range values in one sentence (int(inf) here would raise instead)
    return RunConfig(**settings)


def start_run(studio: Studio, pid: int, config: RunConfig, name: str = "") -> int:
    """Check the project can train, then queue the run; its id."""
    ws = studio.workspace
    tax = ws.taxonomy(pid)
    if len(tax) == 0:
        raise HierTuneError("The taxonomy is empty: add or import classes before training.")
    labelled = ws.list_projects().set_index("id").loc[pid, "labelled"]
    if labelled < 2:
        raise HierTuneError(
            f"The project has {labelled} labelled image(s); label at least two to train."
        )
    n_runs = len(ws.list_runs(pid))
    name = (name or "").strip() or f"run {n_runs + 1} ({config.model}, {config.lora} LoRA)"
    return studio.queue.submit(pid, name, config.to_dict())


RUN_COLUMNS = ["id", "name", "state", "FPA", "TICE", "started"]


def project_runs(studio: Studio, pid: int | None) -> pd.DataFrame:
    if pid is None:
        return pd.DataFrame(columns=RUN_COLUMNS)
    rows = []
    for r in studio.workspace.list_runs(pid).itertuples():
        m = r.metrics or {}
        progress = r.progress or {}
        status = {"state": r.state, "step": progress.get("step"), "metrics": m}
        status["stopping"] = r.state == "running" and progress.get("stopping")
        # a stopped run's metrics are of a model trained part way: say so beside them
        partial = " (partial)" if r.state == "stopped" else ""
        rows.append(
            {
                "id": r.id,
                "name": r.name,
                "state": f"{STATE_ICONS.get(r.state, '')} {state_label(status)}",
                "FPA": _pct(m.get("fpa")) + partial if m.get("fpa") is not None else "",
                "TICE": _pct(m.get("tice")) + partial if m.get("tice") is not None else "",
                "started": (r.started or "")[:19].replace("T", " "),
            }
        )
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def watched_run(studio: Studio, pid: int, chosen) -> int | None:
    """The run to show: the chosen one, else the project's active run, else its latest."""
    runs = studio.workspace.list_runs(pid)
    if chosen and int(chosen) in set(runs["id"]):
        return int(chosen)
    if runs.empty:
        return None
    active = runs[runs["state"].isin(ACTIVE)]
    return int((active if not active.empty else runs)["id"].iloc[-1])


def progress_html(status: dict | None) -> str:
    if not status:
        return ""
    total = status.get("steps_total") or 0
    step = status.get("step") or 0
    share = 1.0 if status["state"] == "finished" else (step / total if total else 0.0)
    return (
        f'<div class="progress-outer" title="{step}/{total} steps">'
        f'<div class="progress-inner" style="width:{100 * share:.1f}%"></div></div>'
    )


def status_text(status: dict | None) -> str:
    if not status:
        return "No run yet: set the options above and press **Start training**."
    state = status["state"]
    stopping = state == "running" and status.get("stopping")
    shown = state_label(status)
    icon = STATE_ICONS["stopped" if stopping else state] if state in STATE_ICONS else ""
    parts = [f"{icon} **{md_text(status['name'])}** — **{shown}**"]
    if state == "queued" and status.get("queue_position"):
        parts.append(f"position {status['queue_position']} in the queue")
    if status.get("epochs"):
        parts.append(f"epoch {status.get('epoch') or 0}/{status['epochs']}")
    if status.get("steps_total") and state != "stopped":
        parts.append(f"step {status.get('step') or 0}/{status['steps_total']}")
    progress = status.get("progress") or {}
    if stopping:
        parts.append("scoring the validation images of the partial run")
    elif state == "running":
        if progress.get("message"):
            parts.append(md_text(progress["message"]))
        if status.get("eta_s") is not None:
            parts.append(f"ETA {_duration(status['eta_s'])}")
        losses = progress.get("losses") or {}
        if losses:
            parts.append("loss " + ", ".join(f"{k} {v:.3f}" for k, v in losses.items()))
    val = History.from_progress(progress).last_val
    metrics = status.get("metrics") or {}
    if metrics.get("fpa") is not None:
        partial = "partial run: " if state == "stopped" else ""
        parts.append(f"{partial}FPA {_pct(metrics['fpa'])}, TICE {_pct(metrics.get('tice'))}")
    elif val:
        parts.append(f"val FPA {_pct(val.get('fpa'))}, TICE {_pct(val.get('tice'))}")
    if status.get("error"):
        parts.append(f"error: {md_text(status['error'])}")
    return " · ".join(parts)


def state_label(status: dict) -> str:
    """A run's state as the status line and the runs table say it: a run told to stop
    says "stopping…" while it winds down, then "stopped after N steps"."""
    state = status["state"]
    if state == "running" and status.get("stopping"):
        return "stopping…"
    if state == "stopped":
        steps = status.get("step")
        if steps is None:
            steps = (status.get("metrics") or {}).get("steps")
        return "stopped" if steps is None else f"stopped after {steps} steps"
    return state


NO_RUN_KEY = ("no run",)


def curve_key(run_id: int | None, status: dict | None) -> tuple:
    """What the training curves show, so a tick redraws them only when it changes.

    With no run the key is `NO_RUN_KEY`, never None (the value the tab starts and every
    project switch refreshes with): a None key made a project with no runs skip the
    redraw and keep showing the previous project's curves.
    """
    if status is None:
        return NO_RUN_KEY
    evals = len(History.from_progress(status.get("progress")).evals)
    return (run_id, status["state"], status.get("step"), status.get("stopping"), evals)


def live_history(studio: Studio, status: dict | None) -> History:
    """Loss and validation points of a run for `training_curves_figure`.

    A run that has ended has its full history.json; a running one has the history its
    progress keeps in the database.
    """
    if not status:
        return History()
    if status["state"] in ("finished", "stopped"):
        folder = RunFolder(studio.workspace.get_run(status["run_id"])["out_dir"] or "")
        if folder.has(HISTORY):
            return folder.read_history()
    return History.from_progress(status.get("progress"))


def _pct(value) -> str:
    return "" if value is None else f"{100 * float(value):.1f}%"


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def build(studio: Studio, project: gr.BrowserState) -> TrainTab:
    d = form_values(default_form_config())
    if demo_max_steps() is not None:
        d["max_steps"] = demo_max_steps()
    c: dict[str, gr.components.Component] = {}

    def number(name: str, **kw) -> None:
        c[name] = gr.Number(d[name], label=LABELS[name], info=field_help(name), **kw)

    def slider(name: str, low: float, high: float, step: float) -> None:
        c[name] = gr.Slider(
            low, high, value=d[name], step=step, label=LABELS[name], info=field_help(name)
        )

    def checkbox(name: str) -> None:
        c[name] = gr.Checkbox(d[name], label=LABELS[name], info=field_help(name))

    with gr.Row():
        with gr.Column(scale=1):
            gr.Markdown("#### Backbone")
            c["model"] = gr.Dropdown(
                MODEL_CHOICES,
                value=default_model(),
                allow_custom_value=True,
                label=LABELS["model"],
                info=field_help("model"),
            )
            c["pretrained"] = gr.Textbox(
                d["pretrained"],
                label=LABELS["pretrained"],
                info=field_help("pretrained"),
                placeholder="e.g. laion2b_s34b_b79k or /path/to/weights.safetensors",
            )
            gr.Markdown("#### LoRA")
            c["lora"] = gr.Radio(
                [t for t in TOWERS if t != "none"],  # no adapter, nothing to train
                value=d["lora"],
                label=LABELS["lora"],
                info=field_help("lora") + " Vision is fast on a CPU; text and both re-encode "
                "every node's prompts at each step (the paper's setting, best on a GPU).",
            )
            with gr.Row():
                number("rank", precision=0, minimum=1)
                number("lora_alpha", minimum=0)
        with gr.Column(scale=1):
            gr.Markdown("#### Losses")
            slider("alpha", 0, 5, 0.1)
            slider("lam", 0, 5, 0.1)
            slider("eps", 0, 0.5, 0.01)
            slider("prototypes", 0, 8, 0.5)
            c["templates"] = gr.Textbox(
                d["templates"],
                label=LABELS["templates"],
                info=field_help("templates"),
                placeholder="a photo of a {name}.\na photo of a {name}, a kind of {parent}.",
                lines=3,
            )
        with gr.Column(scale=1):
            gr.Markdown("#### Schedule")
            with gr.Row():
                number("epochs", precision=0, minimum=1)
                number("batch_size", precision=0, minimum=1)
            with gr.Row():
                number("lr", minimum=0)
                slider("val_fraction", 0.05, 0.5, 0.05)
            with gr.Row():
                number("max_steps", precision=0, minimum=0)
                number("seed", precision=0)
            run_name = gr.Textbox(label="Run name (optional)")
    with gr.Accordion("More settings", open=False):
        with gr.Row():
            checkbox("flat")
            number("tpkl_temperature", minimum=0)
            checkbox("tpkl_size_correction")
            c["lora_targets"] = gr.CheckboxGroup(
                list(TARGETS),
                value=d["lora_targets"],
                label=LABELS["lora_targets"],
                info=field_help("lora_targets"),
            )
        with gr.Row():
            number("lora_dropout", minimum=0, maximum=0.99)
            number("grad_accum", precision=0, minimum=1)
            number("weight_decay", minimum=0)
            number("warmup_ratio", minimum=0, maximum=0.99)
    form = [c[name] for name in FORM_FIELDS]
    with gr.Row():
        start_btn = gr.Button("▶ Start training", variant="primary", elem_id="start-training")
        stop_btn = gr.Button("■ Stop", variant="stop", elem_id="stop-training")
        resume_btn = gr.Button("⟳ Resume", elem_id="resume-training")
    form_status = gr.Markdown()
    with gr.Group():
        run_pick = gr.Dropdown(label="Follow run (empty: the active or latest run)", choices=[])
        bar = gr.HTML(elem_id="train-progress")
        run_status = gr.Markdown(elem_id="train-status")
    curves = gr.Plot(label="Training curves")
    runs_table = gr.Dataframe(
        pd.DataFrame(columns=RUN_COLUMNS), interactive=False, label="Runs of this project"
    )
    timer = gr.Timer(1.5)
    # what the page shows (curve key, bar, status, table rows): a tick sends only what changed
    drawn = gr.State(None)

    def snapshot(pid, chosen, last):
        try:
            pid = studio.project_id(pid)
        except HierTuneError:
            return "", status_text(None), None, None, project_runs(studio, None)
        run_id = watched_run(studio, pid, chosen)
        status = studio.queue.status(run_id) if run_id else None
        key = curve_key(run_id, status)
        html, text = progress_html(status), status_text(status)
        table = project_runs(studio, pid)
        rows = tuple(table.itertuples(index=False))
        before = last or (None,) * 4  # None: a fresh page, or one that switched project
        same_curves = key == before[0]
        fig = gr.skip() if same_curves else training_curves_figure(live_history(studio, status))
        return (
            gr.skip() if html == before[1] else html,
            gr.skip() if text == before[2] else text,
            fig,
            (key, html, text, rows),
            gr.skip() if rows == before[3] else table,
        )

    live_outputs = [bar, run_status, curves, drawn, runs_table]
    timer.tick(
        snapshot,
        [project, run_pick, drawn],
        live_outputs,
        show_progress="hidden",
        api_visibility="private",
    )

    def refresh(pid):
        try:
            pid = studio.project_id(pid)
            runs = studio.workspace.list_runs(pid)
            choices = [(f"#{i} {n}", int(i)) for i, n in zip(runs["id"], runs["name"], strict=True)]
        except HierTuneError:
            choices = []
        return (gr.update(choices=choices, value=None), *snapshot(pid, None, None))

    @user_errors(2)
    def start(pid, name, *values):
        pid = studio.project_id(pid)
        config = build_config(dict(zip(FORM_FIELDS, values, strict=True)))
        run_id = start_run(studio, pid, config, name)
        where = "it starts now" if studio.queue.running() in (None, run_id) else "it is queued"
        return ok(f"Run #{run_id} submitted; {where}."), refresh(pid)[0]

    start_btn.click(
        start, [project, run_name, *form], [form_status, run_pick], api_visibility="private"
    ).then(snapshot, [project, run_pick, drawn], live_outputs, api_visibility="private")

    @user_errors(1)
    def stop(pid, chosen):
        pid = studio.project_id(pid)
        run_id = watched_run(studio, pid, chosen)
        if run_id is None or studio.queue.status(run_id)["state"] not in ACTIVE:
            raise HierTuneError("No queued or running run to stop.")
        studio.queue.stop(run_id)
        return ok(f"Stopping run #{run_id} (it ends within one step).")

    stop_btn.click(stop, [project, run_pick], form_status, api_visibility="private")

    @user_errors(1)
    def resume(pid, chosen):
        pid = studio.project_id(pid)
        run_id = watched_run(studio, pid, chosen)
        if run_id is None:
            raise HierTuneError("No run to resume: pick a stopped or failed run.")
        studio.queue.resume(run_id)
        return ok(f"Run #{run_id} queued again; it continues from its last finished epoch.")

    resume_btn.click(resume, [project, run_pick], form_status, api_visibility="private").then(
        snapshot, [project, run_pick, drawn], live_outputs, api_visibility="private"
    )
    run_pick.change(snapshot, [project, run_pick, drawn], live_outputs, api_visibility="private")
    return TrainTab([run_pick, *live_outputs], refresh)
