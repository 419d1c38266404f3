"""The curation endpoints with gradio_client: /relabel, /undo_batch, /label_history and
/taxonomy_suggestions, on a generated project whose run is written in code (no training)."""

from __future__ import annotations

import pytest

gradio_client = pytest.importorskip("gradio_client")
from curation_project import finished_run  # noqa: E402
from gradio_client import Client  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402
from test_webapp_api import free_port  # noqa: E402


@pytest.fixture(scope="module")
def studio_url(tmp_path_factory):
    from webapp.app import launch

    port = free_port()
    app, studio = launch(tmp_path_factory.mktemp("workspace"), port=port, prevent_thread_lock=True)
    yield f"http://127.0.0.1:{port}/", studio
    app.close()
    studio.close()


def test_relabel_history_undo_and_suggestions(studio_url):
    url, studio = studio_url
    ws = studio.workspace
    pid, run_id, image_ids = finished_run(ws)
    client = Client(url, verbose=False)
    names = set(client.view_api(return_format="dict", print_info=False)["named_endpoints"])
    assert {"/relabel", "/undo_batch", "/label_history", "/taxonomy_suggestions"} <= names

    first, second = image_ids[0], image_ids[1]  # both a1
    before = ws.images(pid).set_index("id")["node_id"].to_dict()
    done = client.predict([first, second], "B / b2", api_name="/relabel")
    assert done["labels"] == {str(first): "B / b2", str(second): "B / b2"}
    assert done["project_id"] == pid
    after = ws.images(pid).set_index("id")["node_id"].to_dict()
    assert after[first] == after[second] == "b2"
    assert {k: v for k, v in after.items() if k not in (first, second)} == {
        k: v for k, v in before.items() if k not in (first, second)
    }
    partial = client.predict(f"{first}", "A", api_name="/relabel")  # a partial label
    assert partial["labels"] == {str(first): "A"}

    history = client.predict(first, api_name="/label_history")
    assert history["label"] == "A"
    steps = [(h["source"], h["old_label"], h["new_label"]) for h in history["history"]]
    assert steps == [
        ("import", "", "A / a1"),
        ("batch", "A / a1", "B / b2"),
        ("batch", "B / b2", "A"),
    ]

    # undone newest first, every label comes back
    assert client.predict(partial["batch_id"], api_name="/undo_batch")["restored"] == 1
    assert ws.images(pid).set_index("id").loc[first, "node_id"] == "b2"
    assert client.predict(done["batch_id"], api_name="/undo_batch")["restored"] == 2
    assert ws.images(pid).set_index("id")["node_id"].to_dict() == before
    assert client.predict(first, api_name="/label_history")["history"][-1]["source"] == "undo"

    found = client.predict(run_id, 3, api_name="/taxonomy_suggestions")
    assert found["merge"][0]["edit"]["action"] == "merge"
    assert set(found["merge"][0]["nodes"]) == {"a1", "a2"}
    assert found["move"][0]["edit"] == {"action": "move", "node": "p", "parent": "B"}
    labelled = ws.images(pid).set_index("id")["node_id"]
    assert {labelled[i] for i in found["move"][0]["image_ids"]} == {"p"}
    assert len(found["merge"]) <= 3
    assert all("images" not in s for kind in ("merge", "move") for s in found[kind])

    with pytest.raises(AppError, match="neither a node id nor a name path"):
        client.predict([first], "A / nowhere", api_name="/relabel")
    with pytest.raises(AppError, match="There is no image with id 999999"):
        client.predict([999999], "A", api_name="/relabel")
    with pytest.raises(AppError, match="already undone"):
        client.predict(done["batch_id"], api_name="/undo_batch")
    with pytest.raises(AppError, match="There is no run with id 4242"):
        client.predict(4242, 3, api_name="/taxonomy_suggestions")
