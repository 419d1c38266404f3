"""The HierTune studio: one Gradio Blocks app with a tab per step, plus named API endpoints.

`build_app(studio)` places the tabs (`webapp/tabs/`) and the API (`webapp/api.py`);
`launch(...)` opens the workspace and serves it. Which project is open is the only
per-browser state, kept in local storage so a reload reopens it; when it changes, every
tab re-reads what it shows from the workspace.
"""

from __future__ import annotations

import gc
import logging
import os
import secrets
from pathlib import Path

import gradio as gr
import plotly.graph_objects as go

from hiercore.errors import HierTuneError
from hiercore.store.database import DB_NAME
from webapp import api
from webapp.auth import LoginThrottle, password_check
from webapp.literal import md_text
from webapp.state import Studio, model_notice
from webapp.tabs import annotate, curation, predict, projects, results, taxonomy, train

MAX_UPLOAD = "200mb"

CSS = """
.hiertune-header h1 { margin-bottom: 0; }
.text-tree textarea, .text-tree pre { font-family: ui-monospace, monospace; font-size: 13px; }
.progress-outer { width: 100%; background: #e5e7eb; border-radius: 6px; height: 18px; }
.progress-inner { background: #2563eb; height: 18px; border-radius: 6px; transition: width .4s; }
.suggestion button { white-space: normal; }
.plotly-warmup { display: none !important; }
"""


# Gradio's Plot has no click event: this forwards a click on a confusion cell (its
# customdata starts with true index, predicted index, group level) into a hidden textbox
# whose change event opens the cell's images; and it gives the labelling view keys
# (arrows move, 1-3 accept a suggestion) when no text field has the focus.
CLICK_JS = """
() => {
  const hookConfusion = () => {
    const plot = document.querySelector('#confusion-plot .js-plotly-plot');
    if (!plot || plot.__hiertuneHooked || typeof plot.on !== 'function') return;
    plot.__hiertuneHooked = true;
    plot.on('plotly_click', (ev) => {
      const pt = ev && ev.points && ev.points[0];
      if (!pt || !pt.customdata || pt.customdata.length < 3) return;
      const box = document.querySelector('#cell-click textarea, #cell-click input');
      if (!box) return;
      // the time makes a second click on the same cell a change too
      box.value = JSON.stringify([...pt.customdata.slice(0, 3).map(Number), Date.now()]);
      box.dispatchEvent(new Event('input', { bubbles: true }));
    });
  };
  new MutationObserver(hookConfusion).observe(document.body, { childList: true, subtree: true });
  document.addEventListener('keydown', (ev) => {
    const t = ev.target;
    if (t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.isContentEditable)) return;
    const view = document.querySelector('#label-image');
    if (!view || view.offsetParent === null) return;  // only while the labelling tab shows
    const ids = { ArrowRight: 'label-next', ArrowLeft: 'label-prev',
                  '1': 'suggestion-0', '2': 'suggestion-1', '3': 'suggestion-2' };
    const button = ids[ev.key] && document.getElementById(ids[ev.key]);
    if (button && button.offsetParent !== null) { button.click(); ev.preventDefault(); }
  });
}
"""


def header_text(studio: Studio, pid) -> str:
    try:
        pid = studio.project_id(pid)
    except HierTuneError:
        return "**No project open.** Create one or open the demo in the Projects tab."
    p = studio.workspace.get_project(pid)
    row = studio.workspace.list_projects().set_index("id").loc[pid]
    return (
        f"**Project: {md_text(p['name'])}** · {row['images']} images · "
        f"{row['labelled']} labelled · {row['runs']} runs"
    )


def build_app(studio: Studio) -> gr.Blocks:
    with gr.Blocks(title="HierTune studio") as app:
        project = gr.BrowserState(
            None, storage_key="hiertune-project", secret=browser_secret(studio.root)
        )
        with gr.Row(elem_classes="hiertune-header"):
            gr.Markdown(
                "# 🌳 HierTune studio\nHierarchy-aware fine-tuning of CLIP on your taxonomy."
            )
        header = gr.Markdown()
        # Gradio fetches and compiles plotly.js when a tab first shows a Plotly figure:
        # about 1.5 s on a 2-core laptop, which made opening the Taxonomy tab for the first
        # time take twice as long as later. An empty figure, never shown, starts that
        # at page load instead, while the Projects tab is read.
        gr.Plot(go.Figure(), elem_classes="plotly-warmup", show_label=False, container=False)
        notice = model_notice()
        if notice:
            gr.Markdown(notice)
        # (label, module, re-read when the tab is opened?): the labelling tab keeps its
        # cursor and the train tab polls, so they are refreshed on project change only
        layout = [
            ("Projects", projects, True),
            ("Taxonomy", taxonomy, True),
            ("Data & labels", annotate, False),
            ("Train", train, False),
            ("Results", results, True),
            ("Export & predict", predict, True),
        ]
        # the API first, so that its names win over UI handlers with the same function name
        api.build(studio)
        tabs, selectable = [], []
        with gr.Tabs():
            for label, module, on_select in layout:
                with gr.Tab(label, id=module.__name__.rsplit(".", 1)[-1]) as tab_block:
                    tabs.append(module.build(studio, project))
                if on_select:
                    selectable.append((tab_block, tabs[-1]))

        # A project is opened (or the page loaded) on the Projects tab. The other tabs that
        # are re-read whenever they are opened need nothing now: at 10k leaves refreshing
        # them here as well made opening a project 5-6 s instead of about 2.
        on_open = [
            tab
            for (label, _, on_select), tab in zip(layout, tabs, strict=True)
            if label == "Projects" or not on_select
        ]

        def refresh_all(pid):
            values = [header_text(studio, pid)]
            for tab in on_open:
                values.extend(_as_tuple(tab.refresh(pid)))
            return values

        outputs = [header]
        for tab in on_open:
            outputs.extend(tab.refresh_outputs)

        def check_project(pid):
            """The stored project if it still exists, else the most recently updated one."""
            try:
                return studio.project_id(pid)
            except HierTuneError:
                projects = studio.workspace.list_projects()
                if projects.empty:
                    return None
                return int(projects.sort_values("updated")["id"].iloc[-1])

        # image, label and run counts change from every tab and from the API
        gr.Timer(5).tick(
            lambda pid: header_text(studio, pid),
            project,
            header,
            show_progress="hidden",
            api_visibility="private",
        )
        for event in tabs[0].project_events:
            event.then(refresh_all, project, outputs, api_visibility="private")
        app.load(check_project, project, project, api_visibility="private").then(
            refresh_all, project, outputs, api_visibility="private"
        )
        for tab_block, tab in selectable:
            tab_block.select(
                lambda pid, tab=tab: (header_text(studio, pid), *_as_tuple(tab.refresh(pid))),
                project,
                [header, *tab.refresh_outputs],
                api_visibility="private",
                show_progress="hidden",
            )
    return app


BROWSER_SECRET = "browser-secret"
"""File in the workspace root that holds the key of the browser's stored project."""


def browser_secret(workspace_root: str | Path) -> str:
    """The key the browser's remembered project is encrypted with, kept in the workspace.

    Gradio draws a new key at every start by default, so after a restart the browser's
    stored value no longer decrypted (a console error) and the studio opened the most
    recently updated project instead of the one the user had open.
    """
    path = Path(workspace_root) / BROWSER_SECRET
    try:
        return path.read_text().strip() or _new_secret(path)
    except FileNotFoundError:
        return _new_secret(path)


def _new_secret(path: Path) -> str:
    key = secrets.token_urlsafe(24)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key)
    return key


def served_paths(workspace_root: str | Path) -> tuple[list[str], list[str]]:
    """(allowed, blocked) folders for Gradio's file route: what the UI shows, never the rest.

    The UI shows project images (`projects/<id>/images/`) and hands out exports
    (`exports/<id>/`); Gradio copies what a handler returns into its own cache, and its
    file route serves the cache, uploads and the allowed folders. The workspace root is
    not allowed, and the database (with its WAL and shared-memory files) and the browser
    key are blocked outright, since Gradio lets blocked paths win over everything else.
    """
    root = Path(workspace_root).resolve()
    allowed = [str(root / "projects"), str(root / "exports")]
    blocked = [str(root / (DB_NAME + suffix)) for suffix in ("", "-wal", "-shm", "-journal")]
    return allowed, [*blocked, str(root / BROWSER_SECRET)]


def freeze_startup_heap() -> None:
    """Keep the objects that exist at start-up out of every later garbage collection.

    torch, open_clip, Gradio and the built app leave some 700,000 long-lived objects.
    Python's full collection walked all of them: 0.38-0.54 s on a 2-core laptop, run in
    whichever handler happened to allocate past the threshold; in the 10k-leaf browser
    benchmark it landed inside a rename. With them frozen a full collection takes
    0.03-0.05 s (`benchmarks.bench_scale_browser` against `--no-freeze`). Frozen objects
    are never collected, so this runs once, after a collection, when the app is built.
    """
    gc.collect()
    gc.freeze()


def _as_tuple(out) -> tuple:
    return tuple(out) if isinstance(out, tuple | list) else (out,)


def launch(
    workspace: str | Path,
    host: str = "127.0.0.1",
    port: int = 7860,
    share: bool = False,
    auth: tuple[str, str] | None = None,
    prevent_thread_lock: bool = False,
    open_demo: bool = False,
) -> tuple[gr.Blocks, Studio]:
    """Open the workspace and serve the studio; returns the app and its `Studio`.

    With `open_demo`, an empty workspace starts with the demo project (about a second),
    so a first visit lands on a project that can be fine-tuned with one click.
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    studio = Studio(workspace)
    if open_demo and studio.workspace.list_projects().empty:
        from hiercore.demo import open_demo_project

        open_demo_project(studio.workspace)
    app = build_app(studio)
    app.queue(default_concurrency_limit=4)
    freeze_startup_heap()
    allowed, blocked = served_paths(studio.root)
    app.launch(
        server_name=host,
        server_port=port,
        share=share,
        # Gradio does not limit login attempts: a username is refused for a growing while
        # after five wrong passwords (webapp.auth)
        auth=LoginThrottle(password_check(*auth)) if auth else None,
        max_file_size=MAX_UPLOAD,
        allowed_paths=allowed,
        blocked_paths=blocked,
        prevent_thread_lock=prevent_thread_lock,
        css=CSS,
        js=f"() => {{ ({CLICK_JS})(); ({curation.SELECT_JS})(); }}",
        theme=gr.themes.Soft(primary_hue="blue", secondary_hue="green"),
        footer_links=["api", "gradio", "settings"],
        show_error=True,
    )
    return app, studio
