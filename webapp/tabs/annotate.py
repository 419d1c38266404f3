"""Data & labels tab: import images, label them one at a time or from a grid, with the
model's top-3 consistent paths as one-click suggestions and a review queue ordered by
uncertainty or by inconsistency between levels.

Labels are written to the workspace the moment they are chosen. The queue being worked
through (which images, in which order, and where the cursor is) is per page and derived:
rebuilt from the workspace and the model at any time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import gradio as gr
import numpy as np

from hiercore.errors import HierTuneError
from hiercore.images import open_rgb
from hiercore.ingest import ImportSummary, import_files
from hiercore.review import review_order, review_scores
from webapp.feedback import ok, problem, user_errors
from webapp.literal import html_text, md_text
from webapp.pickers import attach_search, node_picker, project_search
from webapp.state import Studio
from webapp.tabs import batch, curation
from webapp.uploads import uploads_discarded

QUEUES = [
    ("unlabelled images", "unlabelled"),
    ("all images", "all"),
    ("review: uncertain first (small top-2 margin)", "margin"),
    ("review: least confident first", "confidence"),
    ("review: levels disagree first", "inconsistency"),
    ("review: sent by hand (Results or a batch)", "requested"),
]
REVIEW_MODES = ("margin", "confidence", "inconsistency")
PAGE = 24
REVIEW_LIMIT = 5000
BATCH = 64


@dataclass
class AnnotateTab:
    refresh_outputs: list
    refresh: object


def build_queue(studio: Studio, pid: int, mode: str, progress=None, images=None) -> list[int]:
    """Image ids in labelling order for a queue mode (`images`: `ws.images(pid)` if the
    caller has read it already; 0.2 s at 20,000 images)."""
    df = studio.workspace.images(pid) if images is None else images
    if mode == "unlabelled":
        return [int(i) for i in df.loc[df["node_id"].isna(), "id"]]
    if mode == "all":
        return [int(i) for i in df["id"]]
    if mode == "requested":
        requests = studio.workspace.review_requests(pid, pending_only=True)
        return [int(r["image_id"]) for r in requests]
    if mode not in REVIEW_MODES:
        raise HierTuneError(f"Unknown queue {mode!r}.")
    # review the images a person has not labelled yet (unlabelled or machine-labelled)
    pool = df[df["source"] != "human"].head(REVIEW_LIMIT)
    if pool.empty:
        return []
    predictor, _ = studio.predictor(pid)
    logits: list[list[np.ndarray]] = []
    paths = list(pool["path"])
    for start in range(0, len(paths), BATCH):
        if progress is not None:
            progress(start / len(paths), desc=f"scoring images {start}/{len(paths)}")
        batch = [open_rgb(p) for p in paths[start : start + BATCH]]
        logits.append([z.numpy() for z in predictor.level_logits(batch)])
    per_level = [np.concatenate([b[lvl] for b in logits]) for lvl in range(len(logits[0]))]
    scores = review_scores(per_level, [p.cpu().numpy() for p in predictor.parents])
    order = review_order(scores, mode)
    return [int(pool["id"].iloc[i]) for i in order]


def image_info(row) -> str:
    """The labelling view's line about one image (a row of `Workspace.images`)."""
    label = row["label"] or "(unlabelled)"
    src = f" ({row['source']})" if row["source"] else ""
    return (
        f"**{md_text(row['name'])}** · {row['width']}×{row['height']} · "
        f"label: **{md_text(label)}**{md_text(src)}"
    )


def suggestions(studio: Studio, pid: int, path: str) -> tuple[list[tuple[str, str]], str]:
    """([(button text, node id)] of the model's top-3 paths that exist now, model name)."""
    predictor, what = studio.predictor(pid)
    pred = predictor.predict([open_rgb(path)], k=3)[0]
    tax = studio.workspace.taxonomy(pid)
    out = []
    for t in pred.topk:
        node = tax.find_by_path(t["path"])  # the model may predate a taxonomy edit
        if node is not None:
            out.append((f"{' / '.join(t['path'])} — {math.exp(t['score']):.0%}", node))
    return out, what


def write_label(studio: Studio, cur: dict, shown_id, node: str | None) -> dict | None:
    """Save `node` (None clears) for the image the page shows; the cursor moved on to the
    next image, or None when nothing was written.

    One user action, one write: a pick with the mouse can fire the dropdown's event
    twice, and the second arrives after the first has moved the cursor on. Each event
    carries the id of the image the page showed when it fired (`shown_id`), so a write
    meant for an image that is no longer the current one is dropped instead of landing
    on the next image.
    """
    ids, pos = cur["ids"], cur["pos"]
    image_id = ids[pos] if 0 <= pos < len(ids) else None
    if image_id is None:
        raise HierTuneError("There is no image to label in this queue.")
    if shown_id in (None, "") or str(image_id) != str(shown_id).strip():
        return None
    studio.workspace.set_label(image_id, node or None)
    return {**cur, "pos": min(len(ids) - 1, pos + 1)}


def import_status_line(summary: ImportSummary) -> str:
    """The status line of an import: a success only when images came in and nothing was
    refused; a warning toast too when nothing came in (every file refused, or none there)."""
    if summary.added == 0 and summary.duplicates == 0:
        why = summary.refusals() if summary.refused else "the upload holds no image files"
        sentence = f"Nothing was imported: {why}."
        gr.Warning(html_text(sentence))
        return problem(sentence)
    return problem(summary.sentence()) if summary.refused else ok(summary.sentence())


def build(studio: Studio, project: gr.BrowserState) -> AnnotateTab:
    ws = studio.workspace
    with gr.Accordion("Import images", open=True) as import_box:
        with gr.Row():
            uploads = gr.File(
                label="Images, zips (class folders or a manifest inside) or CSV manifests",
                file_count="multiple",
                scale=3,
                elem_id="image-upload",
            )
            with gr.Column(scale=2):
                import_label = gr.Dropdown(
                    label="Label for loose images (optional, type to search)", choices=[]
                )
                add_missing = gr.Checkbox(
                    value=True, label="Add label paths the taxonomy lacks (undoable)"
                )
                import_btn = gr.Button("Import", variant="primary")
        import_status = gr.Markdown()
    with gr.Row(equal_height=True):
        queue_mode = gr.Dropdown(QUEUES, value="unlabelled", label="Work through", scale=3)
        suggest_on = gr.Checkbox(value=True, label="Model suggestions", scale=1)
        rebuild_btn = gr.Button("↻ Rebuild the queue", scale=1)
    status = gr.Markdown()
    with gr.Row():
        with gr.Column(scale=2):
            image = gr.Image(
                label="Image", type="filepath", interactive=False, height=340, elem_id="label-image"
            )
            with gr.Row():
                prev_btn = gr.Button("← Previous", elem_id="label-prev")
                next_btn = gr.Button("Next →", elem_id="label-next")
            position = gr.Markdown()
        with gr.Column(scale=3):
            info = gr.Markdown(elem_id="label-info")
            history = gr.Markdown(elem_id="label-history")
            picker = gr.Dropdown(
                label="Label (type to search, Enter accepts and moves on)",
                choices=[],
                filterable=True,
                elem_id="label-picker",
            )
            with gr.Row():
                clear_btn = gr.Button("Clear label")
                skip_btn = gr.Button("Skip")
            suggestion_note = gr.Markdown()
            suggestion_btns = [
                gr.Button(visible=False, elem_classes="suggestion", elem_id=f"suggestion-{i}")
                for i in range(3)
            ]
    gallery = gr.Gallery(
        label="Queue (click an image to label it)",
        columns=8,
        height=300,
        allow_preview=False,
        object_fit="contain",
        elem_id="label-gallery",
    )
    cursor = gr.State({"ids": [], "pos": 0})
    batch.build_batch(studio, project, gallery, cursor, PAGE)
    batch.build_export(studio, project)
    suggested = gr.State([])
    # the id of the image on the page, sent with every labelling event (see write_label)
    shown = gr.Textbox(visible="hidden", elem_id="label-shown-id")

    def current(cur) -> int | None:
        ids, pos = cur["ids"], cur["pos"]
        return ids[pos] if 0 <= pos < len(ids) else None

    def picker_update(pid: int, tax) -> dict:
        return node_picker(tax, search=project_search(ws, pid))

    def view(pid, cur, with_suggestions, images=None):
        """Everything the labelling view shows for the cursor's image (`images` as in
        `build_queue`)."""
        hidden = [gr.update(visible=False)] * 3
        try:
            pid = studio.project_id(pid)
        except HierTuneError:
            return (None, "", node_picker_empty(), "", "", *hidden, [], [], "")
        tax = ws.taxonomy(pid, copy=False)  # read only
        df = (ws.images(pid) if images is None else images).set_index("id")
        ids = [i for i in cur["ids"] if i in df.index]
        cur["ids"] = ids
        cur["pos"] = min(cur["pos"], max(0, len(ids) - 1))
        start = (cur["pos"] // PAGE) * PAGE
        grid = [
            (df.loc[i, "path"], (df.loc[i, "label"] or "(unlabelled)").rsplit(" / ", 1)[-1])
            for i in ids[start : start + PAGE]
        ]
        image_id = current(cur)
        if image_id is None:
            msg = "Nothing to label in this queue." if not len(df) else "The queue is empty."
            return (None, msg, picker_update(pid, tax), "", "", *hidden, [], grid, "")
        row = df.loc[image_id]
        text = image_info(row)
        pos_text = f"Image {cur['pos'] + 1} of {len(ids)}"
        buttons, sugg, note = hidden, [], ""
        if with_suggestions and len(tax):
            pairs, what = suggestions(studio, pid, row["path"])
            note = f"Suggestions from the {what} (click, or press 1-3):" if pairs else ""
            buttons = [
                gr.update(visible=True, value=pairs[i][0]) if i < len(pairs) else hidden[0]
                for i in range(3)
            ]
            sugg = [p[1] for p in pairs]
        return (
            row["path"],
            text,
            picker_update(pid, tax),  # empty, so typing searches at once; the label is in `text`
            pos_text,
            note,
            *buttons,
            sugg,
            grid,
            str(image_id),
        )

    attach_search(picker, studio, project)  # a large tree is searched on the server
    view_outputs = [image, info, picker, position, suggestion_note, *suggestion_btns, suggested]
    view_outputs += [gallery, shown]

    shown_outputs = [status, cursor, *view_outputs]

    @user_errors(len(shown_outputs))
    def rebuild(pid, mode, with_suggestions, progress=gr.Progress()):  # noqa: B008
        pid = studio.project_id(pid)
        ids = build_queue(studio, pid, mode, progress)
        cur = {"ids": ids, "pos": 0}
        return ("", cur, *view(pid, cur, with_suggestions))

    queue_inputs = [project, queue_mode, suggest_on]
    rebuild_btn.click(rebuild, queue_inputs, shown_outputs, api_visibility="private")
    # select: input fires twice on a mouse pick (see the Results tab's level picker)
    queue_mode.select(rebuild, queue_inputs, shown_outputs, api_visibility="private")

    @user_errors(len(shown_outputs))
    def step(pid, cur, with_suggestions, delta):
        pid = studio.project_id(pid)
        cur = dict(cur)
        cur["pos"] = max(0, min(len(cur["ids"]) - 1, cur["pos"] + delta))
        return ("", cur, *view(pid, cur, with_suggestions))

    nav_inputs = [project, cursor, suggest_on]
    prev_btn.click(
        lambda p, c, s: step(p, c, s, -1), nav_inputs, shown_outputs, api_visibility="private"
    )
    next_btn.click(
        lambda p, c, s: step(p, c, s, 1), nav_inputs, shown_outputs, api_visibility="private"
    )
    skip_btn.click(
        lambda p, c, s: step(p, c, s, 1), nav_inputs, shown_outputs, api_visibility="private"
    )
    suggest_on.input(
        lambda p, c, s: step(p, c, s, 0), nav_inputs, shown_outputs, api_visibility="private"
    )

    @user_errors(len(shown_outputs))
    def label_and_next(pid, cur, with_suggestions, node, shown_id):
        pid = studio.project_id(pid)
        moved = write_label(studio, cur, shown_id, node)
        if moved is None:  # a second event of one action: the first one saved it
            return tuple(gr.skip() for _ in shown_outputs)
        tax = ws.taxonomy(pid)
        what = " / ".join(tax.path_names(node)) if node else "no label"
        return (ok(f"Saved: {what}."), moved, *view(pid, moved, with_suggestions))

    def pick_label(pid, cur, with_suggestions, node, shown_id):
        """The dropdown's pick; an empty value is the dropdown being reset, not a choice."""
        if not node:
            return tuple(gr.skip() for _ in shown_outputs)
        return label_and_next(pid, cur, with_suggestions, node, shown_id)

    label_inputs = [*nav_inputs, shown]
    # only `input` (a click or Enter on a choice; Enter fires no select event) saves:
    # `change` also fires when a handler resets the dropdown for the next image
    picker.input(
        pick_label,
        [project, cursor, suggest_on, picker, shown],
        shown_outputs,
        api_visibility="private",
    )
    clear_btn.click(
        lambda p, c, s, shown_id: label_and_next(p, c, s, None, shown_id),
        label_inputs,
        shown_outputs,
        api_visibility="private",
    )
    for i, btn in enumerate(suggestion_btns):
        btn.click(
            lambda p, c, s, shown_id, sugg, i=i: label_and_next(
                p, c, s, sugg[i] if i < len(sugg) else None, shown_id
            ),
            [*label_inputs, suggested],
            shown_outputs,
            api_visibility="private",
        )

    @user_errors(len(shown_outputs))
    def pick_from_grid(pid, cur, with_suggestions, evt: gr.SelectData):
        pid = studio.project_id(pid)
        cur = dict(cur)
        cur["pos"] = (cur["pos"] // PAGE) * PAGE + int(evt.index)
        return ("", cur, *view(pid, cur, with_suggestions))

    gallery.select(pick_from_grid, nav_inputs, shown_outputs, api_visibility="private")
    # the image's label history follows the image on the page (and its relabels)
    shown.change(
        lambda image_id: curation.history_markdown(studio, image_id),
        shown,
        history,
        api_visibility="private",
        show_progress="hidden",
    )

    @user_errors(3)
    def do_import(pid, files, label, add, mode, with_suggestions):
        pid = studio.project_id(pid)
        uploaded = [str(f) for f in files or []]
        with uploads_discarded(uploaded, on_error=False):  # else kept until the server stops
            summary = import_files(ws, pid, uploaded, label or None, add)
        ids = build_queue(studio, pid, mode if mode not in REVIEW_MODES else "unlabelled")
        return import_status_line(summary), {"ids": ids, "pos": 0}, None

    import_btn.click(
        do_import,
        [project, uploads, import_label, add_missing, queue_mode, suggest_on],
        [import_status, cursor, uploads],
        api_visibility="private",
    ).then(lambda p, c, s: step(p, c, s, 0), nav_inputs, shown_outputs, api_visibility="private")

    def refresh(pid):
        try:
            pid = studio.project_id(pid)
        except HierTuneError:
            empty = {"ids": [], "pos": 0}
            return (
                node_picker_empty(),
                gr.update(open=True),
                "unlabelled",
                empty,
                *view(None, empty, False),
            )
        tax = ws.taxonomy(pid, copy=False)  # read only
        images = ws.images(pid)  # read once for the queue and the view
        mode = "unlabelled"
        ids = build_queue(studio, pid, mode, images=images)
        if not ids:
            mode = "all"
            ids = build_queue(studio, pid, mode, images=images)
        cur = {"ids": ids, "pos": 0}
        has_images = bool(len(images))
        # no suggestions here: opening a project should not wait for a model to load
        return (
            picker_update(pid, tax),
            gr.update(open=not has_images),
            mode,
            cur,
            *view(pid, cur, False, images),
        )

    return AnnotateTab([import_label, import_box, queue_mode, cursor, *view_outputs], refresh)


def node_picker_empty():
    return gr.update(choices=[], value=None)
