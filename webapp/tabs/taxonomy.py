"""Taxonomy tab: see the tree, find a node, edit it with label migration, import, export, undo."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from hiercore.errors import HierTuneError
from hiercore.figures import taxonomy_sunburst
from hiercore.ingest import taxonomy_from_upload
from hiercore.store import Workspace
from hiercore.store.images import subtree_counts
from hiercore.taxonomy import ROOT, Taxonomy
from webapp.feedback import ok, user_errors
from webapp.literal import md_text
from webapp.pickers import attach_search, node_picker, project_search, text_tree
from webapp.state import Studio
from webapp.uploads import uploads_discarded

DELETE_DESTINATIONS = [
    ("move them to the deleted node's parent (partial labels)", "parent"),
    ("move them to another node (pick below)", "other"),
    ("drop them (the images become unlabelled)", "drop"),
]


@dataclass
class TaxonomyTab:
    refresh_outputs: list
    refresh: object


SUNBURST_MAX_SECTORS = 1500
"""The most sectors the tab's sunburst sends (the top rings, or the selection's subtree)."""


def exact_counts(studio: Studio, pid: int) -> dict[str, int]:
    """Images labelled exactly at each node (what the sunburst's counts mean)."""
    return exact_label_counts(studio.workspace, pid)


def exact_label_counts(ws: Workspace, pid: int) -> dict[str, int]:
    return ws.exact_label_counts(pid)


def taxonomy_view(ws: Workspace, pid: int, selected: str | None) -> dict:
    """What the tab shows for a project: sunburst, text tree, the three pickers, node info.

    Bounded at any tree size: the sunburst holds at most `SUNBURST_MAX_SECTORS` sectors
    (the selected node's neighbourhood when one is picked) and a picker on a large tree
    sends only its value (typing searches, see `webapp.pickers.attach_search`).
    """
    tax = ws.taxonomy(pid, copy=False)  # read only
    exact = exact_label_counts(ws, pid)
    search = project_search(ws, pid)
    focus = None
    if selected in tax and len(tax) > SUNBURST_MAX_SECTORS:
        focus = tax.parent(selected)
        focus = None if focus == ROOT else focus
    fig = (
        taxonomy_sunburst(tax, exact, max_sectors=SUNBURST_MAX_SECTORS, root=focus)
        if len(tax)
        else None
    )
    counts = subtree_counts(tax, exact)  # the same as ws.label_counts, without a second read
    return {
        "sunburst": fig,
        "tree": text_tree(tax, counts),
        "node": node_picker(tax, selected, search=search),
        "target": node_picker(tax, with_root=True, search=search),
        "delete_target": node_picker(tax, search=search),
        "node_info": node_text(tax, selected, counts, exact),
    }


EXPORTS = {
    "wide_csv": ("Wide CSV, one column per rank", "taxonomy.csv"),
    "edge_csv": ("Edge CSV: id, name, parent_id", "edges.csv"),
    "labelstudio": ("Label Studio taxonomy JSON", "labelstudio.json"),
    "labelstudio_xml": ("Label Studio labeling config (XML)", "labelstudio-config.xml"),
    "text_tree": ("Indented text tree", "taxonomy.txt"),
    "newick": ("Newick", "taxonomy.nwk"),
    "json": ("HierTune JSON (ids, descriptions)", "taxonomy.json"),
    "folder": ("Folder tree (zip of empty class folders)", "folders.zip"),
}


def export_formats() -> list[tuple[str, str]]:
    return [(label, name) for name, (label, _) in EXPORTS.items()]


def describe_node(studio: Studio, pid: int, tax: Taxonomy, node: str | None) -> str:
    if not node or node not in tax:
        return node_text(tax, node, {}, {})
    ws = studio.workspace
    return node_text(tax, node, ws.label_counts(pid), exact_label_counts(ws, pid))


def node_text(tax: Taxonomy, node: str | None, counts: dict, exact: dict) -> str:
    if not node or node not in tax:
        return "Pick a node to edit it (type to search, e.g. *corv*)."
    here = exact.get(node, 0)
    below = len(tax.descendants(node))
    return (
        f"**{md_text(' / '.join(tax.path_names(node)))}** — {counts.get(node, 0)} labelled "
        f"images in this subtree ({here} labelled exactly here), {below} nodes below it."
    )


def build(studio: Studio, project: gr.BrowserState) -> TaxonomyTab:
    ws = studio.workspace
    with gr.Row():
        with gr.Column(scale=3):
            sunburst = gr.Plot(label="Taxonomy")
        with gr.Column(scale=2):
            tree_box = gr.Textbox(
                label="Tree [labelled images in each subtree]",
                lines=22,
                max_lines=22,
                interactive=False,
                elem_classes="text-tree",
            )
    with gr.Row(equal_height=True):
        node = gr.Dropdown(
            label="Node (type to search)", choices=[], filterable=True, scale=4, elem_id="tax-node"
        )
        undo_btn = gr.Button("↶ Undo last edit", scale=1)
    node_info = gr.Markdown()
    status = gr.Markdown(elem_id="tax-status")
    with gr.Tabs():
        with gr.Tab("Add"):
            with gr.Row(equal_height=True):
                add_name = gr.Textbox(label="Name of the new node", scale=2)
                add_desc = gr.Textbox(label="Description (optional, used in prompts)", scale=3)
                add_where = gr.Radio(
                    [("under the selected node", "child"), ("at the top level", "top")],
                    value="child",
                    label="Where",
                    scale=2,
                )
            add_btn = gr.Button("Add node", variant="primary")
        with gr.Tab("Rename"):
            with gr.Row(equal_height=True):
                new_name = gr.Textbox(label="New name", scale=2)
                new_desc = gr.Textbox(label="Description (leave empty to keep)", scale=3)
            rename_btn = gr.Button("Rename node", variant="primary")
        with gr.Tab("Move / merge"):
            target = gr.Dropdown(label="Target node (type to search)", choices=[])
            with gr.Row():
                move_btn = gr.Button("Move the selected node under the target")
                merge_btn = gr.Button("Merge the selected node into the target")
            gr.Markdown(
                "Merging sends the node's labels to the target and moves its children under "
                "it (children with the same name are merged too)."
            )
        with gr.Tab("Delete"):
            delete_dest = gr.Radio(
                DELETE_DESTINATIONS,
                value="parent",
                label="The labels on the deleted node and its subtree should…",
            )
            delete_target = gr.Dropdown(label="…go to this node", choices=[])
            delete_btn = gr.Button("Delete the selected node and its subtree", variant="stop")
        with gr.Tab("Import / export"), gr.Row():
            with gr.Column():
                upload = gr.File(
                    label="Taxonomy file (wide CSV, edge CSV, Label Studio JSON, "
                    "Newick, HierTune JSON, or a zip of class folders)",
                    file_count="single",
                )
                drop_vanished = gr.Checkbox(
                    label="Drop labels on nodes the new taxonomy lacks", value=False
                )
                import_btn = gr.Button("Replace the taxonomy with this file", variant="primary")
            with gr.Column():
                fmt = gr.Dropdown(label="Export format", choices=[], value=None)
                export_btn = gr.Button("Export")
                download = gr.File(label="Download", interactive=False)
        with gr.Tab("History"):
            history = gr.Markdown()

    attach_search(node, studio, project)
    attach_search(target, studio, project, with_root=True)
    attach_search(delete_target, studio, project)

    def history_text(pid: int) -> str:
        rows = ws.history(pid)
        lines = [
            f"{i + 1}. {md_text(r['description'])}"
            + (f" ({r['labels_moved']} labels moved)" if r["labels_moved"] else "")
            for i, r in enumerate(rows)
        ]
        return "\n".join(lines[::-1]) or "No edits yet."

    def refresh(pid, selected=None):
        try:
            pid = studio.project_id(pid)
        except HierTuneError:
            empty = Taxonomy()
            return (
                None,
                text_tree(empty),
                node_picker(empty),
                node_picker(empty, with_root=True),
                node_picker(empty),
                "",
                "",
                gr.update(choices=export_formats()),
            )
        view = taxonomy_view(ws, pid, selected)
        return (
            *view.values(),
            history_text(pid),
            gr.update(choices=export_formats(), value=export_formats()[0][1]),
        )

    refresh_outputs = [sunburst, tree_box, node, target, delete_target, node_info, history, fmt]
    edit_outputs = [status, *refresh_outputs]

    def after_edit(pid: int, message: str, selected: str | None):
        return (ok(message), *refresh(pid, selected))

    def selected_node(tax: Taxonomy, value) -> str:
        if not value or value not in tax:
            raise HierTuneError("Pick a node first (type part of its name in the Node box).")
        return value

    @user_errors(len(edit_outputs))
    def add(pid, selected, name, desc, where):
        pid = studio.project_id(pid)
        tax = ws.taxonomy(pid, copy=False)
        parent = ROOT if where == "top" or len(tax) == 0 else selected_node(tax, selected)
        new = ws.add_node(pid, name, parent, desc or "")
        return after_edit(pid, f"Added {name.strip()!r}.", new)

    add_btn.click(
        add, [project, node, add_name, add_desc, add_where], edit_outputs, api_visibility="private"
    )
    add_name.submit(
        add, [project, node, add_name, add_desc, add_where], edit_outputs, api_visibility="private"
    )

    @user_errors(len(edit_outputs))
    def rename(pid, selected, name, desc):
        pid = studio.project_id(pid)
        n = selected_node(ws.taxonomy(pid, copy=False), selected)
        ws.rename_node(pid, n, name, desc.strip() or None)
        return after_edit(pid, f"Renamed to {name.strip()!r}; labels stay on the node.", n)

    rename_btn.click(
        rename, [project, node, new_name, new_desc], edit_outputs, api_visibility="private"
    )

    @user_errors(len(edit_outputs))
    def move(pid, selected, dest):
        pid = studio.project_id(pid)
        tax = ws.taxonomy(pid, copy=False)
        n = selected_node(tax, selected)
        if not dest:
            raise HierTuneError("Pick the target node (or '(top level)') to move it under.")
        ws.move_node(pid, n, dest)
        where = "the top level" if dest == ROOT else repr(tax.name(dest))
        return after_edit(pid, f"Moved {tax.name(n)!r} under {where}.", n)

    move_btn.click(move, [project, node, target], edit_outputs, api_visibility="private")

    @user_errors(len(edit_outputs))
    def merge(pid, selected, dest):
        pid = studio.project_id(pid)
        tax = ws.taxonomy(pid, copy=False)
        n = selected_node(tax, selected)
        if not dest or dest == ROOT:
            raise HierTuneError("Pick the node to merge into (not the top level).")
        moved = ws.label_counts(pid).get(n, 0)
        ws.merge_nodes(pid, n, dest)
        return after_edit(
            pid,
            f"Merged {tax.name(n)!r} into {tax.name(dest)!r}; {moved} labels now point there.",
            dest,
        )

    merge_btn.click(merge, [project, node, target], edit_outputs, api_visibility="private")

    @user_errors(len(edit_outputs))
    def delete(pid, selected, dest_kind, other):
        pid = studio.project_id(pid)
        tax = ws.taxonomy(pid, copy=False)
        n = selected_node(tax, selected)
        if dest_kind == "other":
            if not other:
                raise HierTuneError("Pick the node that should receive the labels.")
            migrate = other
        else:
            migrate = None if dest_kind == "drop" else "parent"
        labelled = ws.label_counts(pid).get(n, 0)
        parent = tax.parent(n)
        ws.delete_node(pid, n, migrate)
        if migrate is None or (migrate == "parent" and parent == ROOT):
            fate = "are now unlabelled"
        else:
            dest = parent if migrate == "parent" else migrate
            fate = f"moved to {tax.name(dest)!r}"
        return after_edit(
            pid,
            f"Deleted {tax.name(n)!r} with {len(tax.descendants(n))} nodes below it; "
            f"its {labelled} labelled images {fate}.",
            None,
        )

    delete_btn.click(
        delete, [project, node, delete_dest, delete_target], edit_outputs, api_visibility="private"
    )

    @user_errors(len(edit_outputs))
    def undo(pid, selected):
        pid = studio.project_id(pid)
        what = ws.undo(pid)
        if what is None:
            raise HierTuneError("There is no taxonomy edit to undo.")
        return after_edit(pid, f"Undid: {what}.", selected)

    undo_btn.click(undo, [project, node], edit_outputs, api_visibility="private")

    def show_node(pid, selected):
        try:
            pid = studio.project_id(pid)
        except HierTuneError:
            return ""
        return describe_node(studio, pid, ws.taxonomy(pid, copy=False), selected)

    node.change(show_node, [project, node], node_info, api_visibility="private")

    @user_errors(len(edit_outputs))
    def import_file(pid, file, drop):
        pid = studio.project_id(pid)
        if not file:
            raise HierTuneError("Choose a taxonomy file to import first.")
        with uploads_discarded([file], on_error=False):  # else kept until the server stops
            tax = import_taxonomy_file(studio, pid, file, drop)
        return after_edit(
            pid,
            f"Imported {Path(file).name}: {len(tax)} nodes, {tax.max_depth} levels.",
            None,
        )

    import_btn.click(
        import_file, [project, upload, drop_vanished], edit_outputs, api_visibility="private"
    )

    @user_errors(2)
    def export(pid, fmt_name):
        pid = studio.project_id(pid)
        path = export_taxonomy_file(studio, pid, fmt_name)
        return ok(f"Exported {path.name}."), str(path)

    export_btn.click(export, [project, fmt], [status, download], api_visibility="private")
    return TaxonomyTab(refresh_outputs, refresh)


def import_taxonomy_file(studio: Studio, pid: int, file: str, drop_vanished: bool) -> Taxonomy:
    """Replace the project's taxonomy with the one in `file` (any supported format)."""
    tax = taxonomy_from_upload(file)
    studio.workspace.set_taxonomy(
        pid, tax, f"import {Path(file).name}", drop_vanished_labels=bool(drop_vanished)
    )
    return tax


def export_taxonomy_file(studio: Studio, pid: int, fmt_name: str) -> Path:
    """Write the project's taxonomy in `fmt_name` under the workspace's exports folder."""
    import shutil
    import tempfile

    from hiercore.taxonomy.formats import save_taxonomy

    if fmt_name not in EXPORTS:
        raise HierTuneError("Choose an export format.")
    tax = studio.workspace.taxonomy(pid)
    if len(tax) == 0:
        raise HierTuneError("The taxonomy is empty: there is nothing to export.")
    out_dir = studio.root / "exports" / str(pid)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = studio.workspace.get_project(pid)["name"]
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "project"
    out = out_dir / f"{safe}-{EXPORTS[fmt_name][1]}"
    if fmt_name != "folder":
        return save_taxonomy(tax, out, fmt_name)
    with tempfile.TemporaryDirectory() as tmp:
        save_taxonomy(tax, Path(tmp) / safe, "folder")
        archive = shutil.make_archive(str(out.with_suffix("")), "zip", tmp)
    return Path(archive)
