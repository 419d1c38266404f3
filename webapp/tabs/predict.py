"""Export & predict tab: download a run's bundle; predict the path of a new image."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pandas as pd
import plotly.graph_objects as go
from PIL import Image

from hiercore.bundle import build_bundle
from hiercore.errors import HierTuneError
from hiercore.figures.lineage import level_names_for
from hiercore.images import open_rgb
from hiercore.predict import Prediction
from webapp.feedback import ok, user_errors
from webapp.literal import md_text
from webapp.state import Studio
from webapp.tabs.results import finished_runs


@dataclass
class PredictTab:
    refresh_outputs: list
    refresh: object


def bundle_for_run(studio: Studio, run_id: int):
    run = studio.workspace.get_run(int(run_id))
    if run["state"] != "finished":
        raise HierTuneError(f"Run #{run_id} has not finished ({run['state']}): nothing to export.")
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in run["name"])[:60]
    out = studio.root / "exports" / str(run["project_id"]) / f"hiertune-run{run_id}-{safe}.zip"
    return build_bundle(run["out_dir"], out)


def probability_figure(pred: Prediction, level_names: list[str]) -> go.Figure:
    """Per-level probability of the predicted path's node, one bar per level."""
    labels = [
        f"{level_names[i] if i < len(level_names) else f'level {i + 1}'}: "
        f"{pred.path[min(i, len(pred.path) - 1)]}"
        for i in range(len(pred.level_probs))
    ]
    fig = go.Figure(
        go.Bar(
            x=pred.level_probs,
            y=labels,
            orientation="h",
            text=[f"{p:.1%}" for p in pred.level_probs],
            textposition="auto",
            marker_color="#2563eb",
            hovertemplate="%{y}: %{x:.1%}<extra></extra>",
        )
    )
    fig.update_layout(
        title="Probability of the predicted node at each level",
        xaxis=dict(range=[0, 1], tickformat=".0%"),
        yaxis=dict(autorange="reversed"),
        height=120 + 40 * len(labels),
        margin=dict(l=10, r=10, t=50, b=30),
    )
    return fig


def predict_image(studio: Studio, pid: int, image: Image.Image, run_id: int | None = None):
    """(Prediction, what model answered, level names) for one image."""
    predictor, what = studio.predictor(pid, int(run_id) if run_id else None)
    pred = predictor.predict([image], k=3)[0]
    tax = predictor.taxonomy
    return pred, what, level_names_for(tax, predictor.model.depth)


def predict_upload(path: str | None) -> Image.Image:
    """The uploaded file as an RGB image; one sentence naming the file (not the server's
    temp path) when it is missing, not an image or too large."""
    if not path:
        raise HierTuneError("Upload an image first.")
    return open_rgb(path, name=Path(path).name)


def build(studio: Studio, project: gr.BrowserState) -> PredictTab:
    run = gr.Dropdown(
        label="Run (empty: the latest finished run, else zero-shot)", choices=[], value=None
    )
    status = gr.Markdown()
    with gr.Row():
        with gr.Column(scale=1):
            gr.Markdown("#### Export")
            gr.Markdown(
                "One zip with the adapter weights (safetensors), the taxonomy (JSON), the "
                "prompts, the run config and the metrics. Unzipped, it is a run folder: "
                "`python -m hiercore predict --run <folder> image.png`."
            )
            export_btn = gr.Button("Build the bundle")
            bundle = gr.File(label="Bundle", interactive=False)
        with gr.Column(scale=2):
            gr.Markdown("#### Predict")
            # a file, not gr.Image: gr.Image decodes an upload before any handler runs, so a
            # non-image showed Pillow's error with the server's temp path; here the
            # project's reader opens it and a bad file is one sentence (predict_upload)
            image = gr.File(
                label="Image", file_types=["image"], type="filepath", elem_id="predict-image"
            )
            preview = gr.Image(label="Predicted image", height=260, interactive=False)
            predict_btn = gr.Button("Predict", variant="primary")
            answer = gr.Markdown(elem_id="predict-answer")
            probs = gr.Plot(label="Per-level probabilities")
            topk = gr.Dataframe(interactive=False, label="Top-3 consistent paths")

    @user_errors(2)
    def export(pid, run_id):
        pid = studio.project_id(pid)
        if not run_id:
            latest = studio.latest_finished_run(pid)
            if latest is None:
                raise HierTuneError("There is no finished run to export yet.")
            run_id = latest["id"]
        path = bundle_for_run(studio, run_id)
        return ok(f"Bundle of run #{run_id} ready: {path.name}."), str(path)

    export_btn.click(export, [project, run], [status, bundle], api_visibility="private")

    @user_errors(5)
    def predict(pid, run_id, path):
        pid = studio.project_id(pid)
        img = predict_upload(path)
        pred, what, names = predict_image(studio, pid, img, run_id)
        flag = (
            ""
            if pred.consistent_with_independent
            else (
                " (per-level argmax would give the inconsistent path "
                f"{md_text(' / '.join(pred.independent))})"
            )
        )
        text = f"### {md_text(' / '.join(pred.path))}\nby the {md_text(what)}{flag}"
        # score = mean per-level log-probability; exp gives the geometric mean probability
        table = pd.DataFrame(
            [
                {
                    "path": " / ".join(t["path"]),
                    "mean level probability": f"{math.exp(t['score']):.1%}",
                }
                for t in pred.topk
            ]
        )
        return ok("Predicted."), text, probability_figure(pred, names), table, img

    outputs = [status, answer, probs, topk, preview]
    predict_btn.click(predict, [project, run, image], outputs, api_visibility="private")
    image.upload(predict, [project, run, image], outputs, api_visibility="private")

    def refresh(pid):
        try:
            pid = studio.project_id(pid)
        except HierTuneError:
            return gr.update(choices=[], value=None)
        return gr.update(choices=finished_runs(studio, pid), value=None)

    return PredictTab([run], refresh)
