"""The curation loop in the studio: act on a selection of images, see suggestions.

A selection comes from a confusion cell (a click or the cell picker), a top-confusion
row, an inconsistency row or a lasso/box on the image map (plotly's selection event,
forwarded by `SELECT_JS` like the confusion click). The panel then relabels the
selection to a node (a leaf or an inner node: a partial label), tags or untags it,
sends it to the review queue or removes it from the project; every relabel is one
batch that "Undo last relabel" puts back. The suggestions panel lists what a run says
about the taxonomy with its evidence, and applies one as an undoable taxonomy edit.
Everything here is a thin call into `webapp.curation` and `hiercore`.
"""

from __future__ import annotations

import json

import gradio as gr
import pandas as pd

from hiercore.errors import HierTuneError
from hiercore.figures import confusion_cell_members, group_level, top_confusions
from hiercore.suggestions import apply_suggestion
from webapp import curation
from webapp.feedback import ok, user_errors
from webapp.literal import md_text
from webapp.pickers import node_picker
from webapp.state import Studio

SELECTION_COLUMNS = ["id", "name", "label", "tags"]
SUGGESTION_COLUMNS = ["kind", "score", "title"]
MAX_CLASSES = 60  # as the Results tab groups its confusion

# Forwards a lasso or box selection on the image map (points' customdata[3] is the
# validation row) into a hidden textbox, as CLICK_JS does for a confusion cell.
SELECT_JS = """
() => {
  const hookMap = () => {
    const plot = document.querySelector('#image-map-plot .js-plotly-plot');
    if (!plot || plot.__hiertuneSelectHooked || typeof plot.on !== 'function') return;
    plot.__hiertuneSelectHooked = true;
    plot.on('plotly_selected', (ev) => {
      if (!ev || !ev.points) return;
      const rows = ev.points.map((pt) => pt.customdata && Number(pt.customdata[3]))
        .filter((r) => Number.isInteger(r));
      const box = document.querySelector('#map-select textarea, #map-select input');
      if (!box) return;
      box.value = JSON.stringify({ rows: rows, t: Date.now() });
      box.dispatchEvent(new Event('input', { bubbles: true }));
    });
  };
  new MutationObserver(hookMap).observe(document.body, { childList: true, subtree: true });
}
"""


def selection_view(studio: Studio, pid: int, ids: list[int]) -> tuple[str, pd.DataFrame]:
    """(note, table) of the selected images with their current labels and tags."""
    df = studio.workspace.images(pid).set_index("id")
    ids = [i for i in ids if i in df.index]
    tags = studio.workspace.image_tags(pid)
    table = pd.DataFrame(
        [
            {
                "id": i,
                "name": df.loc[i, "name"],
                "label": df.loc[i, "label"] or "(unlabelled)",
                "tags": ", ".join(tags.get(i, [])),
            }
            for i in ids
        ],
        columns=SELECTION_COLUMNS,
    )
    note = f"**{len(ids)} images selected**" if ids else "No images selected."
    return note, table


def build_selection(
    studio: Studio,
    project: gr.BrowserState,
    run,
    level,
    decoding,
    cell_true,
    cell_pred,
    cell_btn,
    cell_click,
    top,
    subtree_table,
    drill: tuple | None = None,
) -> None:
    """The selection panel of the Results tab, fed by its drill-down components; a map
    selection also fills the drill-down `(note, gallery)` with its images."""
    ws = studio.workspace
    selection = gr.State([])
    map_select = gr.Textbox(visible="hidden", elem_id="map-select")
    with gr.Accordion("Act on the selection", open=True, elem_id="selection-panel"):
        note = gr.Markdown("No images selected.", elem_id="selection-note")
        table = gr.Dataframe(
            pd.DataFrame(columns=SELECTION_COLUMNS),
            interactive=False,
            max_height=260,
            elem_id="selection-table",
        )
        with gr.Row(equal_height=True):
            target = gr.Dropdown(
                label="Relabel to (a leaf, or an inner node for a partial label)",
                choices=[],
                filterable=True,
                scale=3,
                elem_id="selection-target",
            )
            relabel_btn = gr.Button("Relabel", variant="primary", elem_id="selection-relabel")
            undo_btn = gr.Button("Undo last relabel", elem_id="selection-undo")
        with gr.Row(equal_height=True):
            tag = gr.Textbox(label="Tag", scale=2, elem_id="selection-tag")
            tag_btn = gr.Button("Tag")
            untag_btn = gr.Button("Untag")
            review_btn = gr.Button("Send to review")
            remove_btn = gr.Button("Remove from project", variant="stop")
        status = gr.Markdown(elem_id="selection-status")

    shown = [status, selection, note, table, target]

    def select(run_id, rows, what: str):
        if not run_id:
            raise HierTuneError("Pick a finished run.")
        pid = ws.get_run(int(run_id))["project_id"]
        ids = curation.run_rows_to_ids(studio, run_id, rows)
        text, frame = selection_view(studio, pid, ids)
        return (
            ok(f"Selected {len(ids)} images: {what}."),
            ids,
            text,
            frame,
            node_picker(ws.taxonomy(pid)),
        )

    def cell_rows(run_id, lvl, dec, t, p):
        res = studio.results(int(run_id))
        lvl = int(lvl or res.depth)
        glevel = group_level(res.index, lvl, MAX_CLASSES)
        return confusion_cell_members(
            res.pred(dec), res.true, lvl, [int(t), int(p), glevel], res.index
        )

    @user_errors(len(shown))
    def from_cell(run_id, lvl, dec, t, p):
        if t is None or p is None:
            return tuple(gr.skip() for _ in shown)
        return select(run_id, cell_rows(run_id, lvl, dec, t, p), "a confusion cell")

    @user_errors(len(shown))
    def from_click(run_id, lvl, dec, payload):
        try:
            t, p = json.loads(payload)[:2]
        except (ValueError, TypeError):
            return tuple(gr.skip() for _ in shown)
        return from_cell(run_id, lvl, dec, t, p)

    @user_errors(len(shown))
    def from_top(run_id, lvl, dec, evt: gr.SelectData):
        res = studio.results(int(run_id))
        lvl = int(lvl or res.depth)
        frame = top_confusions(res.pred(dec), res.true, res.index, res.taxonomy, lvl, k=20)
        row = frame.iloc[evt.index[0]]
        t, p = int(row["true_index"]), int(row["predicted_index"])
        rows = confusion_cell_members(res.pred(dec), res.true, lvl, [t, p, lvl], res.index)
        return select(run_id, rows, "a top confusion")

    @user_errors(len(shown))
    def from_subtree(run_id, dec, evt: gr.SelectData):
        res = studio.results(int(run_id))
        frame = res.inconsistency_table(dec)
        row = frame[frame["n_inconsistent"] > 0].iloc[evt.index[0]]
        rows = res.inconsistent_rows(int(row["level"]), row["node_id"], dec)
        return select(run_id, rows, "an inconsistency row")

    map_outputs = shown + list(drill or [])

    @user_errors(len(map_outputs))
    def from_map(run_id, dec, payload):
        try:
            rows = [int(r) for r in json.loads(payload)["rows"]]
        except (ValueError, TypeError, KeyError):
            return tuple(gr.skip() for _ in map_outputs)
        out = select(run_id, rows, "the image map")
        if drill is None:
            return out
        from webapp.tabs.results import gallery_items, image_names

        res = studio.results(int(run_id))
        images = gallery_items(res, rows, dec, image_names(studio, run_id))
        return (*out, f"**{len(rows)} images** selected on the image map", images)

    private = {"api_visibility": "private"}
    cell_click.change(from_click, [run, level, decoding, cell_click], shown, **private)
    cell_btn.click(from_cell, [run, level, decoding, cell_true, cell_pred], shown, **private)
    top.select(from_top, [run, level, decoding], shown, **private)
    subtree_table.select(from_subtree, [run, decoding], shown, **private)
    map_select.change(from_map, [run, decoding, map_select], map_outputs, **private)

    def project_of(run_id, ids) -> int:
        if not ids:
            raise HierTuneError(
                "Select images first: click a confusion cell, a row or lasso the map."
            )
        return ws.image_project(ids[0])

    acted = [status, note, table]

    @user_errors(len(acted))
    def relabel(run_id, ids, node):
        pid = project_of(run_id, ids)
        if not node:
            raise HierTuneError("Pick the label to give the selected images.")
        batch = ws.relabel(pid, ids, node)
        what = " / ".join(ws.taxonomy(pid).path_names(node))
        return ok(f"Labelled {len(ids)} images {what!r} (batch #{batch})."), *selection_view(
            studio, pid, ids
        )

    @user_errors(len(acted))
    def undo(run_id, ids):
        if not run_id:
            raise HierTuneError("Pick a finished run.")
        pid = ws.get_run(int(run_id))["project_id"]
        batch = ws.last_batch(pid)
        if batch is None:
            raise HierTuneError("There is no relabel batch to undo.")
        restored = ws.undo_batch(batch["id"])
        return ok(f"Undid {batch['description']!r}: {restored} labels restored."), *selection_view(
            studio, pid, ids
        )

    @user_errors(len(acted))
    def tagging(run_id, ids, word, on: bool):
        pid = project_of(run_id, ids)
        n = ws.tag_images(pid, ids, word) if on else ws.untag_images(pid, ids, word)
        verb = "Tagged" if on else "Untagged"
        return ok(f"{verb} {n} images {word.strip()!r}."), *selection_view(studio, pid, ids)

    @user_errors(len(acted))
    def review(run_id, ids):
        pid = project_of(run_id, ids)
        n = ws.request_review(pid, ids, "sent from the Results tab")
        return ok(f"Sent {n} images to the review queue."), *selection_view(studio, pid, ids)

    @user_errors(len(shown))
    def remove(run_id, ids):
        pid = project_of(run_id, ids)
        n = ws.remove_images(pid, ids)
        text, frame = selection_view(studio, pid, [])
        return ok(f"Removed {n} images from the project."), [], text, frame, gr.skip()

    relabel_btn.click(relabel, [run, selection, target], acted, **private)
    undo_btn.click(undo, [run, selection], acted, **private)
    tag_btn.click(lambda r, s, w: tagging(r, s, w, True), [run, selection, tag], acted, **private)
    untag_btn.click(
        lambda r, s, w: tagging(r, s, w, False), [run, selection, tag], acted, **private
    )
    review_btn.click(review, [run, selection], acted, **private)
    remove_btn.click(remove, [run, selection], shown, **private)


def build_suggestions(studio: Studio, run) -> None:
    """The Suggestions sub-tab: what a run says about the taxonomy, applied in one click."""
    ws = studio.workspace
    with gr.Tab("Suggestions", elem_id="suggestions-tab"):
        gr.Markdown(
            "What the run's errors say about the taxonomy: sibling pairs it cannot tell apart "
            "(merge), nodes whose images sit in another subtree (move), leaves holding two "
            "kinds of image (split) and inner nodes whose name the model does not understand "
            "(describe). Applying one is a taxonomy edit: undo it in the Taxonomy tab or here."
        )
        with gr.Row():
            find_btn = gr.Button("Find suggestions", elem_id="suggestions-find")
            apply_btn = gr.Button("Apply the selected suggestion", variant="primary")
            undo_btn = gr.Button("Undo the last taxonomy edit")
        status = gr.Markdown(elem_id="suggestions-status")
        listing = gr.Dataframe(
            pd.DataFrame(columns=SUGGESTION_COLUMNS),
            interactive=False,
            max_height=320,
            label="Suggestions, best first per kind (click one for its evidence)",
            elem_id="suggestions-table",
        )
        evidence = gr.JSON(label="Evidence")
        images = gr.Gallery(label="Images that show it", columns=8, height=220)
    found = gr.State([])
    chosen = gr.State(None)

    @user_errors(3)
    def find(run_id):
        if not run_id:
            raise HierTuneError("Pick a finished run.")
        out = curation.run_suggestions(studio, run_id, with_paths=True)
        rows = [s for kind in ("merge", "move", "split", "describe") for s in out[kind][:5]]
        frame = pd.DataFrame(
            [{"kind": s["kind"], "score": round(s["score"], 3), "title": s["title"]} for s in rows],
            columns=SUGGESTION_COLUMNS,
        )
        return ok(f"{len(rows)} suggestions from run #{run_id}."), frame, rows

    @user_errors(4)
    def pick(rows, evt: gr.SelectData):
        s = rows[evt.index[0]]
        return "", s, {k: s[k] for k in ("title", "evidence", "edit")}, s["images"]

    @user_errors(1)
    def apply(run_id, s):
        if not s:
            raise HierTuneError("Click a suggestion first.")
        pid = ws.get_run(int(run_id))["project_id"]
        groups = s["evidence"].get("groups") if s["kind"] == "split" else None
        apply_suggestion(ws, pid, s, groups)
        return ok(f"Applied: {s['title']} (undo restores the tree and labels).")

    @user_errors(1)
    def undo(run_id):
        if not run_id:
            raise HierTuneError("Pick a finished run.")
        what = ws.undo(ws.get_run(int(run_id))["project_id"])
        return ok(f"Undid {what!r}." if what else "Nothing to undo.")

    find_btn.click(find, run, [status, listing, found], api_visibility="private")
    listing.select(pick, found, [status, chosen, evidence, images], api_visibility="private")
    apply_btn.click(apply, [run, chosen], status, api_visibility="private")
    undo_btn.click(undo, run, status, api_visibility="private")


def history_markdown(studio: Studio, shown_id) -> str:
    """An image's label history as lines, newest last (the labelling view shows it)."""
    try:
        image_id = int(shown_id)
    except (TypeError, ValueError):
        return ""
    try:
        history = studio.workspace.label_history(image_id)
    except HierTuneError:
        return ""
    if not history:
        return "_No label writes recorded for this image._"
    lines = ["**Label history**"]
    for h in history[-8:]:
        old = h["old_label"] or "(none)"
        new = h["new_label"] or "(none)"
        batch = f", batch #{h['batch_id']}" if h["batch_id"] else ""
        lines.append(
            f"- {h['created'][:19]} · {h['source']}{batch}: {md_text(old)} → {md_text(new)}"
        )
    return "\n".join(lines)


EXPORT_CHOICES = [
    ("CSV manifest (labels only)", "csv"),
    ("Hugging Face imagefolder (images + metadata.csv)", "imagefolder"),
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
    settings = gr.Dataframe(interactive=False, label="Settings that differ, and the metrics")
    curves = gr.Plot(label="Validation per epoch")
    with gr.Row(equal_height=True):
        run_a = gr.Dropdown(label="Run A (before)", choices=[], scale=2)
        run_b = gr.Dropdown(label="Run B (after)", choices=[], scale=2)
        diff_btn = gr.Button("Per-node diff (B - A)", scale=1)
    diff = gr.Dataframe(
        interactive=False, max_height=360, label="Node accuracy in A and B, most worsened first"
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
            pred_level = gr.Number(None, precision=0, label="at level (empty: any)", scale=1)
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
            level = None if at_level in (None, "") else int(at_level)
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
