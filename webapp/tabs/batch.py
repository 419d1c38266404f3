"""The Data & labels tab's batch box (filter images, pick them in the queue grid, act on
all of them) and its label export box (CSV, Hugging Face imagefolder, FiftyOne)."""

from __future__ import annotations

import gradio as gr

from hiercore.errors import HierTuneError
from webapp import curation
from webapp.feedback import ok, user_errors
from webapp.pickers import node_picker
from webapp.state import Studio

EXPORT_CHOICES = [
    ("CSV manifest (labels only)", "csv"),
    ("Hugging Face imagefolder (images + metadata.jsonl)", "imagefolder"),
    ("FiftyOne classification JSON per level (images + labels)", "fiftyone"),
]


def export_labels(studio: Studio, pid: int, fmt: str):
    """The project's labels zipped in `fmt` under the workspace's exports folder."""
    from hiercore.label_export import export_labels_zip

    out_dir = studio.root / "exports" / str(pid)
    out_dir.mkdir(parents=True, exist_ok=True)
    return export_labels_zip(studio.workspace, pid, fmt, out_dir / f"labels-{fmt}.zip")


def build_export(studio: Studio, project: gr.BrowserState) -> None:
    """The label export box of the Data & labels tab."""
    with gr.Accordion("Export labels", open=False):
        with gr.Row(equal_height=True):
            fmt = gr.Dropdown(EXPORT_CHOICES, value="csv", label="Format", scale=3)
            export_btn = gr.Button("Export", scale=1, elem_id="labels-export")
        status = gr.Markdown()
        download = gr.File(label="Download", interactive=False)

    @user_errors(2)
    def export(pid, fmt_name):
        pid = studio.project_id(pid)
        path = export_labels(studio, pid, fmt_name)
        return ok(f"Exported {path.name}."), str(path)

    export_btn.click(export, [project, fmt], [status, download], api_visibility="private")


def chosen_level(value) -> int | None:
    """The batch box's "at level" field: a 1-based level, or None for any level.

    The browser shows an untouched empty number field as 0 and sends 0, so 0 means any
    level too (it was refused as "Level must be between 1 and 3, not 0")."""
    if value in (None, ""):
        return None
    return int(value) or None


SPLIT_FILTERS = [("any split", ""), ("train", "train"), ("val", "val"), ("not pinned", "unpinned")]
LABEL_FILTERS = [("labelled or not", ""), ("labelled", "yes"), ("unlabelled", "no")]
PREDICTION_CHOICES = [
    ("any", ""),
    ("wrong", "wrong"),
    ("right", "right"),
    ("levels disagree (breaks the tree)", "disagree"),
]


def build_batch(
    studio: Studio, project: gr.BrowserState, queue_grid=None, cursor=None, page: int = 24
) -> None:
    """The Data & labels tab's batch box: filter the images, or click them in the queue
    grid (`queue_grid` shows page `page` of the `cursor`'s ids), then act on all of them."""
    ws = studio.workspace
    with gr.Accordion("Batch: filter images and act on them", open=False):
        with gr.Row(equal_height=True):
            subtree = gr.Dropdown(label="Label in subtree", choices=[], scale=3)
            tag = gr.Textbox(label="Tag", scale=1)
            split = gr.Dropdown(SPLIT_FILTERS, value="", label="Split", scale=1)
            labelled = gr.Dropdown(LABEL_FILTERS, value="", label="Labelled", scale=1)
            predicted = gr.Dropdown(
                PREDICTION_CHOICES,
                value="",
                label="Latest run's prediction (its validation images)",
                scale=2,
            )
            pred_level = gr.Number(None, precision=0, label="at level (0 or empty: any)", scale=1)
            find_btn = gr.Button("Find", scale=1, elem_id="batch-find")
        picking = gr.Checkbox(
            False,
            label="Clicking an image in the queue grid adds it to this selection (again: removes)",
        )
        note = gr.Markdown(elem_id="batch-note")
        grid = gr.Gallery(columns=10, height=200, allow_preview=False, visible=False)
        with gr.Row(equal_height=True):
            target = gr.Dropdown(label="Relabel all to", choices=[], filterable=True, scale=3)
            relabel_btn = gr.Button("Relabel", variant="primary")
            undo_btn = gr.Button("Undo last relabel")
            new_tag = gr.Textbox(label="Tag all with", scale=2)
            tag_btn = gr.Button("Tag")
            review_btn = gr.Button("Send to review")
            undo_tag_btn = gr.Button("Undo last tag / review")
        status = gr.Markdown()
    selection = gr.State([])

    @user_errors(6)
    def find(pid, node, word, where, has, kind, at_level):
        pid = studio.project_id(pid)
        ids = ws.find_images(
            pid,
            subtree=node or None,
            tag=(word or "").strip() or None,
            split=where or None,
            labelled={"yes": True, "no": False}.get(has),
        )
        if kind:
            run = studio.latest_finished_run(pid)
            if run is None:
                raise HierTuneError("Filtering by prediction needs a finished run.")
            level = chosen_level(at_level)
            rows = curation.prediction_rows(studio.results(run["id"]), kind, level)
            matching = set(curation.run_rows_to_ids(studio, run["id"], rows))
            ids = [i for i in ids if i in matching]
        return ("", *shown_selection(pid, ids, node))

    def shown_selection(pid, ids, node=None):
        df = ws.images(pid).set_index("id")
        ids = [i for i in ids if i in df.index]
        thumbs = [(df.loc[i, "path"], df.loc[i, "name"]) for i in ids[:60]]
        tax = ws.taxonomy(pid)
        return (
            ids,
            f"**{len(ids)} images selected**" + (" (showing 60)" if len(ids) > 60 else ""),
            gr.update(value=thumbs, visible=bool(ids)),
            node_picker(tax, node),
            node_picker(tax),
        )

    if queue_grid is not None and cursor is not None:

        @user_errors(6)
        def toggle(pid, cur, ids, on, evt: gr.SelectData):
            if not on:
                return tuple(gr.skip() for _ in range(6))
            pid = studio.project_id(pid)
            k = (cur["pos"] // page) * page + int(evt.index)
            if not 0 <= k < len(cur["ids"]):
                return tuple(gr.skip() for _ in range(6))
            image_id = cur["ids"][k]
            ids = [i for i in ids if i != image_id] if image_id in ids else [*ids, image_id]
            return ("", *shown_selection(pid, ids))

        queue_grid.select(
            toggle,
            [project, cursor, selection, picking],
            [status, selection, note, grid, subtree, target],
            api_visibility="private",
        )

    find_btn.click(
        find,
        [project, subtree, tag, split, labelled, predicted, pred_level],
        [status, selection, note, grid, subtree, target],
        api_visibility="private",
    )

    @user_errors(1)
    def relabel(pid, ids, node):
        pid = studio.project_id(pid)
        if not ids:
            raise HierTuneError("Find some images first.")
        if not node:
            raise HierTuneError("Pick the label to give them.")
        batch = ws.relabel(pid, ids, node)
        return ok(f"Labelled {len(ids)} images (batch #{batch}).")

    @user_errors(1)
    def undo(pid):
        pid = studio.project_id(pid)
        batch = ws.last_batch(pid)
        if batch is None:
            raise HierTuneError("There is no relabel batch to undo.")
        return ok(f"Undid {batch['description']!r}: {ws.undo_batch(batch['id'])} labels restored.")

    @user_errors(1)
    def tag_all(pid, ids, word):
        pid = studio.project_id(pid)
        if not ids:
            raise HierTuneError("Find some images first.")
        return ok(f"Tagged {ws.tag_images(pid, ids, word)} images {word.strip()!r}.")

    @user_errors(1)
    def review(pid, ids):
        pid = studio.project_id(pid)
        if not ids:
            raise HierTuneError("Find some images first.")
        return ok(f"Sent {ws.request_review(pid, ids, 'sent from a batch')} images to review.")

    @user_errors(1)
    def undo_tag(pid):
        pid = studio.project_id(pid)
        return ok(curation.undo_selection_text(ws, pid))

    def choices(pid, node):
        try:
            return node_picker(ws.taxonomy(studio.project_id(pid)), node)
        except HierTuneError:
            return gr.update(choices=[], value=None)

    private = {"api_visibility": "private"}
    # the tree may have changed in another tab: the pickers are filled when opened
    subtree.focus(choices, [project, subtree], subtree, **private)
    target.focus(choices, [project, target], target, **private)
    relabel_btn.click(relabel, [project, selection, target], status, **private)
    undo_btn.click(undo, project, status, **private)
    tag_btn.click(tag_all, [project, selection, new_tag], status, **private)
    review_btn.click(review, [project, selection], status, **private)
    undo_tag_btn.click(undo_tag, project, status, **private)
