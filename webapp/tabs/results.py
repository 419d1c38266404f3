"""Results tab: headline metrics, per-level accuracy, tree-coloured confusion with drill-down,
the inconsistency breakdown, embedding maps and the comparison of the project's runs.

Gradio's Plot component has no click event, so drill-down goes through a cell picker
(true and predicted class at the confusion's grouping level) and a "top confusions"
table whose row selection fills the gallery; a small script also forwards a click on a
confusion cell to the picker (see `webapp.app.CLICK_JS`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd

from hiercore.config import RunConfig
from hiercore.errors import HierTuneError
from hiercore.figures import (
    comparison_table_figure,
    confusion_cell_members,
    group_level,
    image_embedding_figure,
    inconsistency_pairs_figure,
    inconsistency_subtree_figure,
    level_accuracy_figure,
    node_embedding_figure,
    top_confusions,
    tree_confusion_figure,
)
from hiercore.figures.lineage import entry_label, level_names_for, path_label
from hiercore.run_folder import METRICS, RESULT_FILES, RunFolder
from webapp.feedback import ok, user_errors
from webapp.literal import md_text
from webapp.run_jobs import is_comparison, submit_comparison
from webapp.state import Studio, default_model
from webapp.tabs import curation as curation_tab
from webapp.tabs import demo_effect, run_compare
from webapp.tabs.train import state_label

MAX_CLASSES = 60
MAX_GALLERY = 60
TOP_COLUMNS = ["true_path", "predicted_path", "count", "lca_height"]
SUBTREE_COLUMNS = ["subtree", "level", "n", "n_inconsistent", "rate"]
SUBTREE_ROWS = 200
"""Rows of the per-subtree inconsistency table sent (the most inconsistent first)."""
SUBTREE_LABEL = "Inconsistent predictions per subtree (click a row for examples)"


@dataclass
class ResultsTab:
    refresh_outputs: list
    refresh: object


def finished_runs(studio: Studio, pid: int, with_stopped: bool = False) -> list[tuple[str, int]]:
    """Finished fine-tuning runs, newest first (comparisons have no single model).

    `with_stopped` adds runs stopped part way whose folder holds scored results (a
    stopped run scores its validation images), labelled as partial."""
    runs = studio.workspace.list_runs(pid)
    out = []
    for r in runs.itertuples():
        if is_comparison(r.config):
            continue
        if r.state == "finished":
            out.append((f"#{r.id} {r.name}", int(r.id)))
        elif (
            with_stopped
            and r.state == "stopped"
            and r.out_dir
            and not RunFolder(r.out_dir).missing(RESULT_FILES)
        ):
            out.append((f"#{r.id} {r.name} ({PARTIAL})", int(r.id)))
    return out[::-1]


def headline(res) -> str:
    m = res.metrics
    c = m.get("consistent") or {}

    def pct(v):
        return "n/a" if v is None else f"{100 * v:.1f}%"

    sev = m.get("mistake_severity")
    return (
        f"### FPA {pct(m.get('fpa'))} · TICE {pct(m.get('tice'))}\n"
        f"Full-path accuracy and tree inconsistency of independent decoding (per-level "
        f"argmax) on {m.get('n_val', res.n)} validation images. Consistent decoding: "
        f"FPA **{pct(c.get('fpa'))}**, TICE **{pct(c.get('tice'))}**. "
        f"HCA **{pct(m.get('hca'))}**"
        + (f", mistake severity **{sev:.2f}**" if sev is not None else "")
        + f". Trained {m.get('trainable_pct', 0):.2f}% of the parameters in "
        f"{m.get('train_time_s', 0):.0f} s ({m.get('steps', '?')} steps, "
        f"{md_text(res.config.model)})."
        + (
            f" **A {PARTIAL}**: stopped before its last epoch, so these are not the "
            "scores of a finished run."
            if m.get("state") == "stopped"
            else ""
        )
    )


def gallery_items(res, rows, decoding: str, names: dict[str, str] | None = None) -> dict:
    """The gallery, shown, with (image, caption) pairs: name, then true → predicted path."""
    pred = res.pred(decoding)
    items = []
    for r in list(rows)[:MAX_GALLERY]:
        true = " / ".join(res.path_names(res.true[r])) or "(unlabelled)"
        guess = " / ".join(res.path_names(pred[r]))
        name = (names or {}).get(res.paths[r], Path(res.paths[r]).name)
        items.append((res.paths[r], f"{name}: {true} → {guess}"))
    return gr.update(value=items, visible=True)


def image_names(studio: Studio, run_id) -> dict[str, str]:
    """Stored image path -> the name it was imported under, for a run's project."""
    pid = studio.workspace.get_run(int(run_id))["project_id"]
    df = studio.workspace.images(pid)
    return dict(zip(df["path"], df["name"], strict=True))


def cell_choices(res, level: int) -> list[tuple[str, int]]:
    glevel = group_level(res.index, level, MAX_CLASSES)
    return [
        (path_label(res.taxonomy, res.index.node_at(glevel - 1, i)), i)
        for i in range(res.index.sizes[glevel - 1])
    ]


COMPARISON_COLUMNS = [
    "run",
    "state",
    "method",
    "FPA",
    "TICE",
    "consistent FPA",
    "HCA",
    "severity",
    "trainable %",
]


def comparison_frame(studio: Studio, pid: int) -> pd.DataFrame:
    """One row per finished or stopped run (and per compared method) with the headline
    metrics; a stopped run's "state" says it is partial (`is_partial`)."""
    rows = []
    for r in studio.workspace.list_runs(pid).itertuples():
        m = r.metrics or {}
        if r.state not in ("finished", "stopped") or not m:
            continue
        state = "finished"
        if r.state == "stopped":
            label = state_label(
                {"state": "stopped", "step": (r.progress or {}).get("step"), "metrics": m}
            )
            state = f"⏹️ {label} ({PARTIAL})"
        if not is_comparison(r.config):
            rows.append(_comparison_row(f"#{r.id} {r.name}", state, run_method(r.config), m))
        for method, mm in (m.get("comparison") or {}).items():
            rows.append(_comparison_row(f"#{r.id} {method}", state, method, mm))
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


PARTIAL = "partial run"


def is_partial(frame: pd.DataFrame) -> list[bool]:
    """Rows of `comparison_frame` whose metrics come from a run stopped part way."""
    return [state != "finished" for state in frame["state"]]


def run_method(config: dict | None) -> str | None:
    """The method a run's losses amount to; runs stored before it was derived from the
    losses all say "tpkl-hisce", so it is worked out again rather than read."""
    try:
        return RunConfig.from_dict(config or {}).method
    except HierTuneError:  # a config this version no longer reads: show what it says
        return (config or {}).get("method")


def _comparison_row(name: str, state: str, method: str, m: dict) -> dict:
    c = m.get("consistent") or {}
    return {
        "run": name,
        "state": state,
        "method": method or m.get("method", ""),
        "FPA": m.get("fpa"),
        "TICE": m.get("tice"),
        "consistent FPA": c.get("fpa"),
        "HCA": m.get("hca"),
        "severity": m.get("mistake_severity"),
        "trainable %": m.get("trainable_pct"),
    }


def build(studio: Studio, project: gr.BrowserState) -> ResultsTab:
    with gr.Row(equal_height=True):
        run = gr.Dropdown(label="Run", choices=[], scale=4, elem_id="results-run")
        decoding = gr.Radio(
            [
                ("independent (per-level argmax)", "independent"),
                ("consistent (tree)", "consistent"),
            ],
            value="independent",
            label="Decoding for the confusion and galleries",
            scale=3,
        )
    status = gr.Markdown()
    head = gr.Markdown(elem_id="results-headline")
    acc_plot = gr.Plot(label="Accuracy per level")
    with gr.Tabs():
        with gr.Tab("Confusion"):
            level = gr.Dropdown(label="Level", choices=[], scale=1)
            confusion = gr.Plot(label="Confusion", elem_id="confusion-plot")
            with gr.Row(equal_height=True):
                cell_true = gr.Dropdown(label="True class", choices=[], elem_id="cell-true")
                cell_pred = gr.Dropdown(label="Predicted class", choices=[], elem_id="cell-pred")
                cell_btn = gr.Button("Show the images of this cell", elem_id="cell-show")
            gr.Markdown("Click a cell of the matrix, or pick its classes above, to see its images.")
            cell_click = gr.Textbox(visible="hidden", elem_id="cell-click")
            top = gr.Dataframe(
                pd.DataFrame(columns=TOP_COLUMNS),
                interactive=False,
                label="Top confusions at this level (click a row to see its images)",
                max_height=320,
            )
        with gr.Tab("Inconsistency"):
            pairs_plot = gr.Plot(label="Per level pair")
            subtree_plot = gr.Plot(label="Per subtree")
            subtree_table = gr.Dataframe(
                pd.DataFrame(columns=SUBTREE_COLUMNS),
                interactive=False,
                label=SUBTREE_LABEL,
                max_height=320,
            )
        with gr.Tab("Embedding maps"):
            with gr.Row(equal_height=True):
                map_btn = gr.Button("Compute the maps (UMAP, cached per run)", scale=2)
                map_level = gr.Dropdown(label="Colour images by level", choices=[], scale=1)
            nodes_plot = gr.Plot(label="Node text embeddings before vs after fine-tuning")
            images_plot = gr.Plot(
                label="Validation image embeddings (lasso or box-select images to act on them)",
                elem_id="image-map-plot",
            )
        with gr.Tab("Run comparison", elem_id="results-compare-tab"):
            effect, effect_refresh = demo_effect.build(studio, project)
            compare_plot = gr.Plot(label="Runs of this project")
            with gr.Row():
                compare_methods = gr.Dropdown(
                    method_names(),
                    multiselect=True,
                    label="Methods to compare (empty: all of them)",
                    scale=3,
                )
                compare_btn = gr.Button("Run the baseline comparison", scale=1)
            compare_status = gr.Markdown()
            run_compare.build_run_comparison(studio, project, run)
        curation_tab.build_suggestions(studio, run)
    gallery_note = gr.Markdown()
    gallery = gr.Gallery(
        label="Images behind the selection",
        columns=6,
        height=420,
        elem_id="drill-gallery",
        visible=False,  # shown once a cell, a row or a subtree is picked
    )
    curation_tab.build_selection(
        studio,
        project,
        run,
        level,
        decoding,
        cell_true,
        cell_pred,
        cell_btn,
        cell_click,
        top,
        subtree_table,
        (gallery_note, gallery),
    )

    def drilled(res, run_id, rows, dec, note: str):
        """(status, note, gallery) outputs of a drill-down to the images `rows`."""
        more = f" (showing the first {MAX_GALLERY})" if len(rows) > MAX_GALLERY else ""
        return "", note + more, gallery_items(res, rows, dec, image_names(studio, run_id))

    def load(run_id):
        if not run_id:
            raise HierTuneError("Pick a finished run.")
        return studio.results(int(run_id))

    def run_views(run_id, dec):
        if not run_id:  # no finished run yet: clear the views quietly
            empty = gr.update(choices=[], value=None)
            none = pd.DataFrame(columns=SUBTREE_COLUMNS)
            return "", "No finished run to show yet.", None, empty, empty, None, None, none
        res = load(run_id)
        names = level_names_for(res.taxonomy, res.depth, res.metrics.get("level_names"))
        levels = [(f"{i + 1}. {n}", i + 1) for i, n in enumerate(names)]
        return (
            ok(f"Showing run #{run_id}."),
            headline(res),
            level_accuracy_figure(res.metrics, names),
            gr.update(choices=levels, value=res.depth),
            gr.update(choices=levels, value=1),
            inconsistency_pairs_figure(res.metrics, names),
            *inconsistency_views(res, dec),
        )

    def inconsistency_views(res, dec):
        table = res.inconsistency_table(dec)
        shown = table[table["n_inconsistent"] > 0]  # most inconsistent first
        label = SUBTREE_LABEL
        if len(shown) > SUBTREE_ROWS:  # 10k leaves: 3,645 rows were 0.3 MB for every run
            label += f" — the {SUBTREE_ROWS} with most of {len(shown):,}"
        return (
            inconsistency_subtree_figure(table, res.index, res.taxonomy),
            gr.update(
                value=shown.head(SUBTREE_ROWS)[SUBTREE_COLUMNS].round({"rate": 3}), label=label
            ),
        )

    run_outputs = [status, head, acc_plot, level, map_level, pairs_plot, subtree_plot]
    run_outputs.append(subtree_table)

    @user_errors(5)
    def confusion_views(run_id, lvl, dec):
        if not run_id:
            empty = gr.update(choices=[], value=None)
            return "", None, empty, empty, pd.DataFrame(columns=TOP_COLUMNS)
        res = load(run_id)
        lvl = int(lvl or res.depth)
        fig = tree_confusion_figure(
            res.confusion(lvl, dec), res.index, res.taxonomy, lvl, MAX_CLASSES
        )
        choices = cell_choices(res, lvl)
        table = top_confusions(res.pred(dec), res.true, res.index, res.taxonomy, lvl, k=20)
        return (
            "",
            fig,
            gr.update(choices=choices, value=None),
            gr.update(choices=choices, value=None),
            table[TOP_COLUMNS],
        )

    conf_outputs = [status, confusion, cell_true, cell_pred, top]

    def run_and_confusion(run_id, dec):
        """A run's views and its leaf confusion in one answer: chained as two events, the
        confusion waited for a second round trip (about 0.2 s of the 10k-leaf view)."""
        views = run_views(run_id, dec)
        conf = confusion_views(run_id, views[3]["value"] if run_id else None, dec)
        return (conf[0] or views[0], *views[1:], *conf[1:])  # its own status if it failed

    run.change(
        user_errors(len(run_outputs) + len(conf_outputs) - 1)(run_and_confusion),
        [run, decoding],
        [*run_outputs, *conf_outputs[1:]],
        api_visibility="private",
    )
    # select, not input: a pick with the mouse fired input twice (on the pick and on the
    # blur), and the view was computed twice side by side
    level.select(confusion_views, [run, level, decoding], conf_outputs, api_visibility="private")
    decoding.change(confusion_views, [run, level, decoding], conf_outputs, api_visibility="private")

    @user_errors(3)
    def decoding_views(run_id, dec):
        return "", *inconsistency_views(load(run_id), dec)

    decoding.change(
        decoding_views,
        [run, decoding],
        [status, subtree_plot, subtree_table],
        api_visibility="private",
    )

    @user_errors(3)
    def show_cell(run_id, lvl, dec, t, p):
        res = load(run_id)
        if t is None or p is None:
            raise HierTuneError("Pick a true and a predicted class.")
        lvl = int(lvl or res.depth)
        glevel = group_level(res.index, lvl, MAX_CLASSES)
        rows = confusion_cell_members(
            res.pred(dec), res.true, lvl, [int(t), int(p), glevel], res.index
        )
        t_name = entry_label(res.index, res.taxonomy, glevel, int(t))
        p_name = entry_label(res.index, res.taxonomy, glevel, int(p))
        note = (
            f"**{len(rows)} images** with true {md_text(repr(t_name))} "
            f"predicted as {md_text(repr(p_name))}"
        )
        return drilled(res, run_id, rows, dec, note)

    cell_btn.click(
        show_cell,
        [run, level, decoding, cell_true, cell_pred],
        [status, gallery_note, gallery],
        api_visibility="private",
    )

    @user_errors(5)
    def clicked_cell(run_id, lvl, dec, payload):
        """A click on the confusion figure (customdata forwarded by `webapp.app.CLICK_JS`)."""
        try:
            t, p = json.loads(payload)[:2]
        except (ValueError, TypeError):
            return "", gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return (*show_cell(run_id, lvl, dec, int(t), int(p))[:3], int(t), int(p))

    cell_click.change(
        clicked_cell,
        [run, level, decoding, cell_click],
        [status, gallery_note, gallery, cell_true, cell_pred],
        api_visibility="private",
    )

    @user_errors(3)
    def show_top(run_id, lvl, dec, evt: gr.SelectData):
        res = load(run_id)
        lvl = int(lvl or res.depth)
        table = top_confusions(res.pred(dec), res.true, res.index, res.taxonomy, lvl, k=20)
        row = table.iloc[evt.index[0]]
        t, p = int(row["true_index"]), int(row["predicted_index"])
        rows = confusion_cell_members(res.pred(dec), res.true, lvl, [t, p, lvl], res.index)
        note = (
            f"**{len(rows)} images** of {md_text(repr(row['true_path']))} "
            f"predicted as {md_text(repr(row['predicted_path']))}"
        )
        return drilled(res, run_id, rows, dec, note)

    top.select(
        show_top,
        [run, level, decoding],
        [status, gallery_note, gallery],
        api_visibility="private",
        scroll_to_output=True,
    )

    @user_errors(3)
    def show_subtree(run_id, dec, evt: gr.SelectData):
        res = load(run_id)
        table = res.inconsistency_table(dec)
        row = table[table["n_inconsistent"] > 0].iloc[evt.index[0]]
        rows = res.inconsistent_rows(int(row["level"]), row["node_id"], dec)
        note = (
            f"**{len(rows)} images** of {md_text(repr(row['subtree']))} "
            f"whose level-{int(row['level'])} prediction is not a child of their level above"
        )
        return drilled(res, run_id, rows, dec, note)

    subtree_table.select(
        show_subtree,
        [run, decoding],
        [status, gallery_note, gallery],
        api_visibility="private",
        scroll_to_output=True,
    )

    @user_errors(3)
    def maps(run_id, lvl, progress=gr.Progress()):  # noqa: B008 - Gradio injects the tracker
        res = load(run_id)
        progress(0.1, desc="fitting the node map (the first UMAP call compiles for a while)")
        before, after, ids = res.node_maps()
        nodes_fig = node_embedding_figure(before, after, res.index, res.taxonomy, ids)
        progress(0.6, desc="fitting the image map")
        return "", nodes_fig, image_map_figure(res, lvl)

    map_btn.click(
        maps, [run, map_level], [status, nodes_plot, images_plot], api_visibility="private"
    )

    @user_errors(3)
    def recolour(run_id, lvl):
        res = load(run_id)
        if not res.has_image_map():  # recolouring waits for the maps button
            return "", gr.skip(), gr.skip()
        return "", gr.skip(), image_map_figure(res, lvl)

    map_level.select(
        recolour, [run, map_level], [status, nodes_plot, images_plot], api_visibility="private"
    )

    @user_errors(1)
    def compare(pid, run_id, methods):
        pid = studio.project_id(pid)
        if run_id:
            base = RunConfig.from_dict(studio.workspace.get_run(int(run_id))["config"])
        else:
            base = RunConfig(model=default_model())
        job = submit_comparison(studio, pid, base, methods or [])
        return ok(
            f"Comparison queued as run #{job} with the budget of "
            f"{'the selected run' if run_id else 'the default settings'}; follow it in the "
            "Train tab. Its rows join this table when it finishes."
        )

    compare_btn.click(
        compare,
        [project, run, compare_methods],
        compare_status,
        api_visibility="private",
    )

    def refresh(pid):
        panel = effect_refresh(pid)
        try:
            pid = studio.project_id(pid)
        except HierTuneError:
            return gr.update(choices=[], value=None), None, *panel
        choices = finished_runs(studio, pid, with_stopped=True)
        frame = comparison_frame(studio, pid)
        partial = is_partial(frame)
        fig = comparison_table_figure(frame, partial=partial) if not frame.empty else None
        return gr.update(choices=choices, value=choices[0][1] if choices else None), fig, *panel

    return ResultsTab([run, compare_plot, *effect.outputs], refresh)


def image_map_figure(res, level) -> object:
    """Validation images on their (cached) map, coloured at `level`, wrong ones marked."""
    labels = [res.label_node(i) for i in range(res.n)]
    pred = res.pred("consistent")
    correct = np.all((pred == res.true) | (res.true < 0), axis=1)
    return image_embedding_figure(
        res.image_map(), labels, res.taxonomy, int(level or 1), correct, res.paths
    )


def method_names() -> list[str]:
    from hiercore.baselines.registry import list_methods

    return list_methods()


def metrics_of(studio: Studio, run_id: int) -> dict:
    """A run's metrics as stored (for the API)."""
    run = studio.workspace.get_run(run_id)
    if run["metrics"]:
        return run["metrics"]
    folder = RunFolder(run["out_dir"] or "")
    if folder.has(METRICS):
        return folder.read_metrics()
    raise HierTuneError(f"Run #{run_id} has no metrics yet ({run['state']}).")
