"""Named API endpoints of the studio, for `gradio_client` and plain HTTP.

Each endpoint is a thin call into the same code the tabs use, so the API and the UI
cannot drift apart; a user mistake comes back as an error with one sentence. Projects
are named by id or by name. Endpoints (see the README for an example script):

- ``/create_project(name)`` -> {project_id, name}
- ``/import_taxonomy(project, file, drop_vanished_labels)`` -> {nodes, levels, leaves}
- ``/import_images(project, files, label)`` -> {added, labelled, duplicates, refused,
  refused_by_reason, rejected (the first 20 as [file, why]), ...}
- ``/start_training(project, config, run_name)`` -> {run_id, state}; `config` is a
  `RunConfig` as a dict (unset fields keep their defaults)
- ``/training_status(run_id)`` -> {state: queued|running|finished|failed|stopped, epoch,
  step, steps_total, eta_s, metrics, error, ...}
- ``/stop_training(run_id)`` -> {run_id, stopping, state}
- ``/run_metrics(run_id)`` -> the run's metrics.json
- ``/predict(project, image, run_id, k)`` -> {path, node_id, level_probs, topk, model}
- ``/relabel(images, path)`` -> {batch_id, project_id, labels}; `images` are image ids (a
  list or "3, 5"), `path` a node id or a ' / ' name path, partial or whole ('' clears)
- ``/undo_batch(batch_id)`` -> {batch_id, restored}
- ``/label_history(image)`` -> {image, name, label, history: [{old_label, new_label,
  source, batch_id, created, ...}]}
- ``/taxonomy_suggestions(run_id, limit)`` -> {merge, move, split, describe: [{title,
  score, evidence, image_ids, edit, ...}]}
"""

from __future__ import annotations

import functools
from pathlib import Path

import gradio as gr

from hiercore.config import RunConfig
from hiercore.errors import HierTuneError
from hiercore.images import open_rgb
from hiercore.ingest import import_files
from webapp import curation
from webapp.state import Studio, default_model, whole_number
from webapp.tabs.predict import predict_image
from webapp.tabs.results import metrics_of
from webapp.tabs.taxonomy import import_taxonomy_file
from webapp.tabs.train import start_run
from webapp.uploads import uploads_discarded


def api_errors(fn):
    """A `HierTuneError` becomes a `gr.Error`: the client sees the sentence, not a trace."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except HierTuneError as exc:
            raise gr.Error(str(exc), print_exception=False) from None

    return wrapper


def build(studio: Studio) -> None:
    """Register the endpoints inside the current Blocks (file inputs use hidden components)."""
    ws = studio.workspace

    @api_errors
    def create_project(name: str) -> dict:
        """Create an empty project; returns its id and name."""
        pid = ws.create_project(name)
        return {"project_id": pid, "name": ws.get_project(pid)["name"]}

    gr.api(create_project, api_name="create_project")

    @api_errors
    def start_training(project: str, config: dict | None = None, run_name: str = "") -> dict:
        """Queue a fine-tuning run of the project's labelled images; returns its run id."""
        pid = studio.resolve_project(project)
        if config is not None and not isinstance(config, dict):
            raise HierTuneError('config must be an object of run settings, such as {"epochs": 3}.')
        settings = {"model": default_model(), **(config or {})}
        run_id = start_run(studio, pid, RunConfig.from_dict(settings), run_name)
        return {"run_id": run_id, "state": studio.queue.status(run_id)["state"]}

    gr.api(start_training, api_name="start_training")

    @api_errors
    def training_status(run_id: int) -> dict:
        """State (queued|running|finished|failed|stopped), epoch, step and metrics of a run."""
        return studio.queue.status(whole_number(run_id, "run_id"))

    gr.api(training_status, api_name="training_status")

    @api_errors
    def stop_training(run_id: int) -> dict:
        """Stop a running run within a step, or drop a queued one."""
        run_id = whole_number(run_id, "run_id")
        studio.workspace.get_run(run_id)  # one sentence for an unknown id
        stopping = studio.queue.stop(run_id)
        return {
            "run_id": run_id,
            "stopping": stopping,
            "state": studio.queue.status(run_id)["state"],
        }

    gr.api(stop_training, api_name="stop_training")

    @api_errors
    def run_metrics(run_id: int) -> dict:
        """The metrics of a finished run (FPA, TICE, per-level accuracy, consistent, ...)."""
        return metrics_of(studio, whole_number(run_id, "run_id"))

    gr.api(run_metrics, api_name="run_metrics")

    @api_errors
    def relabel(images: list[int] | str, path: str = "") -> dict:
        """Label images with a node id or a name path (partial or whole) as one undoable
        batch; '' clears their labels."""
        return curation.relabel(studio, images, path)

    gr.api(relabel, api_name="relabel")

    @api_errors
    def undo_batch(batch_id: int) -> dict:
        """Put back the labels a /relabel batch replaced."""
        return curation.undo_batch(studio, batch_id)

    gr.api(undo_batch, api_name="undo_batch")

    @api_errors
    def label_history(image: int) -> dict:
        """Every recorded write to an image's label, oldest first."""
        return curation.label_history(studio, image)

    gr.api(label_history, api_name="label_history")

    @api_errors
    def taxonomy_suggestions(run_id: int, limit: int = 10) -> dict:
        """Merges, moves, splits and descriptions a finished run suggests, best first."""
        limit = 10 if limit is None else whole_number(limit, "limit")
        return curation.run_suggestions(studio, run_id, max(1, limit))

    gr.api(taxonomy_suggestions, api_name="taxonomy_suggestions")

    # endpoints with file inputs need components, so that clients upload the files
    with gr.Column(visible=False):
        project_box = gr.Textbox()
        json_out = gr.JSON()
        tax_file = gr.File(file_count="single")
        drop_box = gr.Checkbox(False)
        tax_btn = gr.Button()
        image_files = gr.File(file_count="multiple")
        label_box = gr.Textbox()
        images_btn = gr.Button()
        image_file = gr.File(file_count="single")
        run_box = gr.Number(None, precision=0)
        k_box = gr.Number(3, precision=0)
        predict_btn = gr.Button()

    @api_errors
    def import_taxonomy(project: str, file: str, drop_vanished_labels: bool = False) -> dict:
        """Replace the project's taxonomy with an uploaded file (any supported format)."""
        pid = studio.resolve_project(project)
        if not file:
            raise HierTuneError("Upload a taxonomy file.")
        with uploads_discarded([file]):
            tax = import_taxonomy_file(studio, pid, file, drop_vanished_labels)
        return {"nodes": len(tax), "levels": tax.max_depth, "leaves": len(tax.leaves())}

    tax_btn.click(
        import_taxonomy, [project_box, tax_file, drop_box], json_out, api_name="import_taxonomy"
    )

    @api_errors
    def import_images(project: str, files: list[str] | None, label: str = "") -> dict:
        """Import images, zips and CSV manifests; `label` (a node id or a name path such as
        'Aves / Corvidae') labels the loose images."""
        pid = studio.resolve_project(project)
        node = _label_node(studio, pid, label)
        uploaded = [str(f) for f in files or []]
        with uploads_discarded(uploaded):  # Gradio would keep them until the server stops
            summary = import_files(ws, pid, uploaded, node)
        return {
            "added": summary.added,
            "labelled": summary.labelled,
            "duplicates": summary.duplicates,
            "nodes_added": summary.nodes_added,
            "refused": summary.refused,
            "refused_by_reason": summary.reasons,
            "rejected": [list(r) for r in summary.rejected],  # the first 20 refusals
            "message": summary.sentence(),
        }

    images_btn.click(
        import_images, [project_box, image_files, label_box], json_out, api_name="import_images"
    )

    @api_errors
    def predict(project: str, image: str, run_id: float | None = None, k: float = 3) -> dict:
        """The consistent path of an image with per-level probabilities and the top-k paths
        (by `run_id`, else the project's latest finished run, else zero-shot)."""
        pid = studio.resolve_project(project)
        if not image:
            raise HierTuneError("Upload an image.")
        run_id = None if run_id is None else whole_number(run_id, "run_id")
        k = 3 if k is None else whole_number(k, "k")
        picture = open_rgb(image, name=Path(image).name)  # no server temp path in errors
        studio_pred, what, _ = predict_image(studio, pid, picture, run_id)
        out = studio_pred.to_dict()
        out["topk"] = out["topk"][: max(1, k)]
        out["model"] = what
        out["image"] = Path(image).name
        return out

    predict_btn.click(
        predict, [project_box, image_file, run_box, k_box], json_out, api_name="predict"
    )


def _label_node(studio: Studio, pid: int, label: str) -> str | None:
    """A node id from an id or a ' / '-separated name path; None for no label."""
    label = (label or "").strip()
    if not label:
        return None
    tax = studio.workspace.taxonomy(pid)
    if label in tax:
        return label
    node = tax.find_by_path([p.strip() for p in label.split("/")])
    if node is None:
        raise HierTuneError(f"The label {label!r} is neither a node id nor a path of the taxonomy.")
    return node
