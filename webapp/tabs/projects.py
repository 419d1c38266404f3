"""Projects tab: create, open, rename and delete projects; open the built-in demo in one click."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import pandas as pd

from hiercore.demo import DEMO_PROJECT, open_demo_project
from webapp.feedback import ok, problem, user_errors
from webapp.state import Studio

COLUMNS = ["id", "name", "images", "labelled", "runs", "updated"]


@dataclass
class ProjectsTab:
    refresh_outputs: list
    refresh: object
    project_events: list
    """Events that change the open project (the app refreshes every tab after them)."""


def project_table(studio: Studio) -> pd.DataFrame:
    df = studio.workspace.list_projects()
    df["updated"] = df["updated"].str.slice(0, 16).str.replace("T", " ")
    return df[COLUMNS]


def project_choices(studio: Studio) -> list[tuple[str, int]]:
    df = studio.workspace.list_projects()
    return [(f"{n} (#{i})", int(i)) for i, n in zip(df["id"], df["name"], strict=True)]


def build(studio: Studio, project: gr.BrowserState) -> ProjectsTab:
    gr.Markdown(
        "A project holds one taxonomy, its images and labels, and its training runs. "
        "New here? Open the demo: an emoji taxonomy (category → subcategory → emoji) "
        "drawn in three art styles."
    )
    with gr.Row():
        demo_btn = gr.Button(f"Open the demo project ({DEMO_PROJECT})", variant="primary")
    demo_status = gr.Markdown()
    table = gr.Dataframe(
        headers=COLUMNS, interactive=False, label="Projects (click a row to open it)"
    )
    with gr.Row(equal_height=True):
        with gr.Column():
            new_name = gr.Textbox(label="New project name", placeholder="e.g. Birds of Europe")
            create_btn = gr.Button("Create project", variant="primary")
        with gr.Column():
            picker = gr.Dropdown(label="Open a project", choices=[], interactive=True)
            open_btn = gr.Button("Open")
    with gr.Accordion("Rename or delete the open project", open=False):
        with gr.Row(equal_height=True):
            rename_box = gr.Textbox(label="New name", scale=3)
            rename_btn = gr.Button("Rename", scale=1)
        with gr.Row(equal_height=True):
            confirm = gr.Checkbox(
                label="Yes, delete this project with its images, labels and runs", scale=3
            )
            delete_btn = gr.Button("Delete project", variant="stop", scale=1)
    status = gr.Markdown()

    def refresh(pid):
        try:
            pid = studio.project_id(pid)
            name = studio.workspace.get_project(pid)["name"]
        except Exception:
            pid, name = None, ""
        return project_table(studio), gr.update(choices=project_choices(studio), value=pid), name

    refresh_outputs = [table, picker, rename_box]

    @user_errors(3)
    def create(name):
        pid = studio.workspace.create_project(name)
        return ok(f"Created project {name.strip()!r}."), pid, ""

    events = [
        create_btn.click(create, new_name, [status, project, new_name], api_visibility="private"),
        new_name.submit(create, new_name, [status, project, new_name], api_visibility="private"),
    ]

    @user_errors(2)
    def open_project(pid):
        pid = studio.project_id(pid)
        return ok(f"Opened {studio.workspace.get_project(pid)['name']!r}."), pid

    events.append(open_btn.click(open_project, picker, [status, project], api_visibility="private"))

    def open_row(evt: gr.SelectData):
        row = evt.row_value or []
        return open_project(row[0] if row else None)

    events.append(table.select(open_row, None, [status, project], api_visibility="private"))

    @user_errors(2)
    def demo(progress=gr.Progress()):  # noqa: B008 - Gradio injects the tracker
        pid = open_demo_project(studio.workspace, progress=lambda f, m: progress(f, desc=m))
        return ok(f"Opened the demo project {DEMO_PROJECT!r}."), pid

    events.append(demo_btn.click(demo, None, [demo_status, project], api_visibility="private"))

    @user_errors(3)
    def rename(pid, name):
        pid = studio.project_id(pid)
        studio.workspace.rename_project(pid, name)
        return ok(f"Renamed to {name.strip()!r}."), *refresh(pid)[:2]

    rename_btn.click(
        rename, [project, rename_box], [status, table, picker], api_visibility="private"
    )

    @user_errors(3)
    def delete(pid, sure):
        pid = studio.project_id(pid)
        if not sure:
            return problem("Tick the box to confirm the deletion first."), gr.skip(), gr.skip()
        name = studio.workspace.get_project(pid)["name"]
        studio.workspace.delete_project(pid)
        return ok(f"Deleted {name!r}."), None, False

    events.append(
        delete_btn.click(
            delete, [project, confirm], [status, project, confirm], api_visibility="private"
        )
    )
    return ProjectsTab(refresh_outputs, refresh, events)
