"""The studio's named API end to end with gradio_client, on a temp workspace and tiny-random.

create_project -> import_taxonomy -> import_images (a zip of class folders, and loose
files with a manifest) -> start_training -> training_status until finished ->
run_metrics -> predict; then a run stopped mid-way, and the errors a client sees.
"""

from __future__ import annotations

import csv
import socket
import time
import zipfile
from pathlib import Path

import pytest

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from imagegen import TREE, draw  # noqa: E402

WAIT_S = 150


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def studio_url(tmp_path_factory):
    from webapp.app import launch

    workspace = tmp_path_factory.mktemp("workspace")
    port = free_port()
    app, studio = launch(workspace, port=port, prevent_thread_lock=True)
    yield f"http://127.0.0.1:{port}/", studio
    app.close()
    studio.close()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A wide-CSV taxonomy, a zip of class folders and loose images with a manifest."""
    root = tmp_path_factory.mktemp("data")
    tax = root / "taxonomy.csv"
    with open(tax, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["group", "colour", "shape"])
        for top, mids in TREE.items():
            for mid, leaves in mids.items():
                for leaf in leaves:
                    w.writerow([top, mid, f"{mid}-{leaf}"])
    folders = root / "zipped" / "pictures"
    loose = root / "loose"
    loose.mkdir()
    rows = [["path", "group", "colour", "shape"]]
    k = 0
    for top, mids in TREE.items():
        for mid, leaves in mids.items():
            for leaf in leaves:
                target = folders / top / mid / f"{mid}-{leaf}"
                target.mkdir(parents=True)
                for i in range(4):
                    draw(top, mid, leaf, seed=k).save(target / f"{mid}-{leaf}-{i}.png")
                    k += 1
                for i in range(2):  # loose files with unique names; folders lost on upload
                    name = f"loose-{mid}-{leaf}-{i}.png"
                    draw(top, mid, leaf, seed=k).save(loose / name)
                    rows.append([f"somewhere/{name}", top, mid, f"{mid}-{leaf}"])
                    k += 1
    archive = root / "pictures.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(folders.rglob("*.png")):
            zf.write(p, p.relative_to(folders.parent).as_posix())
    manifest = root / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    evil = root / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../escape.png", b"x")
    return {
        "taxonomy": tax,
        "zip": archive,
        "loose": sorted(loose.glob("*.png")),
        "manifest": manifest,
        "evil": evil,
        "query": loose / "loose-blues-square-0.png",
    }


def wait_for(client: Client, run_id: int, states: set[str]) -> dict:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        status = client.predict(run_id, api_name="/training_status")
        assert status["state"] in {"queued", "running", "finished", "failed", "stopped"}
        if status["state"] in states:
            return status
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} did not reach {states} in {WAIT_S} s: {status}")


def test_api_end_to_end(studio_url, data):
    url, studio = studio_url
    client = Client(url, verbose=False)
    names = set(client.view_api(return_format="dict", print_info=False)["named_endpoints"])
    for endpoint in (
        "/create_project",
        "/import_taxonomy",
        "/import_images",
        "/start_training",
        "/training_status",
        "/stop_training",
        "/run_metrics",
        "/predict",
    ):
        assert endpoint in names

    created = client.predict("shapes", api_name="/create_project")
    pid = created["project_id"]
    assert created["name"] == "shapes"

    tax = client.predict(
        str(pid), handle_file(str(data["taxonomy"])), False, api_name="/import_taxonomy"
    )
    assert tax == {"nodes": 2 + 4 + 8, "levels": 3, "leaves": 8}

    zipped = client.predict(
        "shapes", [handle_file(str(data["zip"]))], "", api_name="/import_images"
    )
    assert (zipped["added"], zipped["labelled"], zipped["nodes_added"]) == (32, 32, 0)
    files = [handle_file(str(p)) for p in [*data["loose"], data["manifest"]]]
    listed = client.predict("shapes", files, "", api_name="/import_images")
    assert (listed["added"], listed["labelled"], listed["rejected"]) == (16, 16, [])
    images = studio.workspace.images(pid)
    assert len(images) == 48 and images["node_id"].notna().all()
    row = images.set_index("name").loc["loose-blues-square-0.png"]
    assert row["label"] == "cool / blues / blues-square"

    config = {"model": "tiny-random", "epochs": 1, "max_steps": 3, "batch_size": 8}
    started = client.predict("shapes", config, "api run", api_name="/start_training")
    run_id = started["run_id"]
    assert started["state"] in ("queued", "running")
    status = wait_for(client, run_id, {"finished", "failed", "stopped"})
    assert status["state"] == "finished", status.get("error")
    assert status["step"] == 3 and status["epoch"] == 1
    assert status["metrics"]["fpa"] is not None

    metrics = client.predict(run_id, api_name="/run_metrics")
    assert 0.0 <= metrics["fpa"] <= 1.0 and 0.0 <= metrics["tice"] <= 1.0
    assert len(metrics["level_accuracy"]) == 3
    assert metrics["consistent"]["tice"] == 0
    assert metrics["n_val"] + metrics["n_train"] == 48

    pred = client.predict("shapes", handle_file(str(data["query"])), run_id, 3, api_name="/predict")
    tax_now = studio.workspace.taxonomy(pid)
    assert tax_now.find_by_path(pred["path"]) == pred["node_id"]
    assert len(pred["path"]) == 3 and len(pred["level_probs"]) == 3
    assert all(0.0 <= p <= 1.0 for p in pred["level_probs"])
    assert len(pred["topk"]) == 3 and pred["topk"][0]["path"] == pred["path"]
    scores = [t["score"] for t in pred["topk"]]
    assert scores == sorted(scores, reverse=True)
    assert "api run" in pred["model"]


def test_stop_and_errors(studio_url, data):
    url, studio = studio_url
    client = Client(url, verbose=False)
    pid = client.predict("stoppable", api_name="/create_project")["project_id"]
    client.predict(pid, handle_file(str(data["taxonomy"])), False, api_name="/import_taxonomy")
    client.predict(pid, [handle_file(str(data["zip"]))], "", api_name="/import_images")
    config = {"model": "tiny-random", "epochs": 500, "batch_size": 4}
    run_id = client.predict(str(pid), config, "", api_name="/start_training")["run_id"]
    wait_for(client, run_id, {"running"})
    stopped = client.predict(run_id, api_name="/stop_training")
    assert stopped["stopping"] is True
    status = wait_for(client, run_id, {"stopped", "finished", "failed"})
    assert status["state"] == "stopped"
    assert client.predict(run_id, api_name="/stop_training")["stopping"] is False

    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="already exists"):
        client.predict("shapes", api_name="/create_project")
    with pytest.raises(AppError, match=r"points outside the folder"):
        client.predict(pid, [handle_file(str(data["evil"]))], "", api_name="/import_images")
    with pytest.raises(AppError, match="Unknown run setting 'epoch'"):
        client.predict(pid, {"epoch": 1}, "", api_name="/start_training")
    with pytest.raises(AppError, match="no project named"):
        client.predict("nope", {}, "", api_name="/start_training")
    empty = client.predict("empty", api_name="/create_project")["project_id"]
    with pytest.raises(AppError, match="taxonomy is empty"):
        client.predict(empty, {}, "", api_name="/start_training")
    assert Path(studio.workspace.root).is_dir()


def test_launch_keeps_the_startup_heap_out_of_garbage_collections(tmp_path):
    """Objects alive when the studio starts are frozen: a full collection no longer walks
    the ~700,000 that torch, Gradio and the app leave (0.45-0.55 s each, inside an edit)."""
    import gc

    from webapp.app import launch

    gc.unfreeze()
    before = [object()]  # a container alive before the launch
    assert any(o is before for o in gc.get_objects())
    app, studio = launch(tmp_path, port=free_port(), prevent_thread_lock=True)
    try:
        assert gc.get_freeze_count() > 100_000
        assert not any(o is before for o in gc.get_objects())  # no collection visits it
        after = [object()]
        assert any(o is after for o in gc.get_objects())  # later objects are collected as usual
    finally:
        app.close()
        studio.close()


def test_first_launch_opens_on_the_demo_project(tmp_path):
    """`python app.py` on an empty workspace starts with the demo; a second start adds nothing."""
    import urllib.request

    from webapp.app import launch

    for _ in range(2):
        port = free_port()
        app, studio = launch(tmp_path, port=port, prevent_thread_lock=True, open_demo=True)
        try:
            projects = studio.workspace.list_projects()
            assert list(projects["name"]) == ["Emoji demo"]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as page:
                assert page.status == 200
        finally:
            app.close()
            studio.close()
