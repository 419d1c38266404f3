"""The curation loop in the Results tab: act on a selection of images, see suggestions.

A selection comes from a confusion cell (a click or the cell picker), a top-confusion
row, an inconsistency row or a lasso/box on the image map (plotly's selection event,
forwarded by `SELECT_JS` like the confusion click). The panel then relabels the
selection to a node (a leaf or an inner node: a partial label), tags or untags it,
sends it to the review queue or removes it from the project; every relabel is one
batch that "Undo last relabel" puts back. The suggestions panel lists what a run says
about the taxonomy with its evidence, and applies one as an undoable taxonomy edit.
The Data & labels tab's batch box and export are in `webapp.tabs.batch`, the run
comparison in `webapp.tabs.run_compare`. Everything is a thin call into
`webapp.curation` and `hiercore`.
"""

from __future__ import annotations

import json

import gradio as gr
import pandas as pd

from hiercore.errors import HierTuneError
from hiercore.figures import confusion_cell_members, group_level, top_confusions
from hiercore.suggestions import apply_suggestion
from webapp import curation
from webapp.feedback import ok, problem, user_errors
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
            undo_tag_btn = gr.Button("Undo last tag / review", elem_id="selection-undo-tag")
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

    @user_errors(len(acted))
    def undo_tag(run_id, ids):
        if not run_id:
            raise HierTuneError("Pick a finished run.")
        pid = ws.get_run(int(run_id))["project_id"]
        return ok(curation.undo_selection_text(ws, pid)), *selection_view(studio, pid, ids)

    @user_errors(len(shown) + 1)
    def remove(run_id, ids, armed):
        """Removal deletes the files and cannot be undone: the first click only asks."""
        pid = project_of(run_id, ids)
        if armed != ids:
            warning = problem(
                f"Removing deletes these {len(ids)} images and their labels for good (no "
                "undo). Click Remove again to confirm."
            )
            return warning, gr.skip(), gr.skip(), gr.skip(), gr.skip(), list(ids)
        n = ws.remove_images(pid, ids)
        text, frame = selection_view(studio, pid, [])
        return ok(f"Removed {n} images from the project."), [], text, frame, gr.skip(), None

    relabel_btn.click(relabel, [run, selection, target], acted, **private)
    undo_btn.click(undo, [run, selection], acted, **private)
    undo_tag_btn.click(undo_tag, [run, selection], acted, **private)
    tag_btn.click(lambda r, s, w: tagging(r, s, w, True), [run, selection, tag], acted, **private)
    untag_btn.click(
        lambda r, s, w: tagging(r, s, w, False), [run, selection, tag], acted, **private
    )
    review_btn.click(review, [run, selection], acted, **private)
    remove_armed = gr.State(None)  # the selection a first Remove click asked about
    remove_btn.click(remove, [run, selection, remove_armed], [*shown, remove_armed], **private)


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
