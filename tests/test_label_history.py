"""Label history, batch relabel with undo, tags and review requests in the store."""

from __future__ import annotations

import itertools
import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from imagegen import png_bytes

from hiercore.errors import DataError, HierTuneError, TaxonomyError
from hiercore.store import Workspace
from hiercore.store.database import SCHEMA_VERSION


@pytest.fixture
def project(tmp_path):
    """Animals > {Birds > {crow, tit}, Cats}; images a0..a3 imported as crow, b0 unlabelled."""
    with Workspace(tmp_path / "ws") as ws:
        pid = ws.create_project("p")
        ids = {"Birds": ws.add_node(pid, "Birds")}
        ids["crow"] = ws.add_node(pid, "crow", ids["Birds"])
        ids["tit"] = ws.add_node(pid, "tit", ids["Birds"])
        ids["Cats"] = ws.add_node(pid, "Cats")
        crows = ws.add_images(pid, [(f"a{k}.png", png_bytes(k)) for k in range(4)], ids["crow"])
        free = ws.add_images(pid, [("b0.png", png_bytes(9))])
        yield ws, pid, ids, crows.added + free.added


def labels(ws, pid):
    return dict(zip(ws.images(pid)["id"], ws.images(pid)["node_id"], strict=True))


def test_relabel_two_images_then_undo_restores_them(project):
    ws, pid, ids, images = project
    ws.set_label(images[1], ids["tit"])  # a human label that the batch overwrites
    before = labels(ws, pid)
    batch = ws.relabel(pid, images[:2], "Birds / tit")
    after = labels(ws, pid)
    assert after[images[0]] == ids["tit"] and after[images[1]] == ids["tit"]
    assert {k: v for k, v in after.items() if k not in images[:2]} == {
        k: v for k, v in before.items() if k not in images[:2]
    }
    assert ws.last_batch(pid)["id"] == batch
    assert ws.undo_batch(batch) == 1  # images[1] already was tit: nothing to restore
    assert labels(ws, pid) == before
    assert ws.last_batch(pid) is None
    with pytest.raises(HierTuneError, match="already undone"):
        ws.undo_batch(batch)


def test_relabel_to_a_partial_path_and_clearing(project):
    ws, pid, ids, images = project
    batch = ws.relabel(pid, [images[0], images[4]], ["Birds"])
    assert labels(ws, pid)[images[4]] == ids["Birds"]
    assert ws.images(pid).set_index("id").loc[images[4], "source"] == "human"
    ws.relabel(pid, [images[0]], None)
    assert labels(ws, pid)[images[0]] is None
    # the second batch changed images[0] again: undoing the first leaves it alone
    assert ws.undo_batch(batch) == 1
    assert labels(ws, pid)[images[0]] is None and labels(ws, pid)[images[4]] is None


def test_history_of_an_image_lists_its_writes(project):
    ws, pid, ids, images = project
    ws.set_label(images[0], ids["Cats"])
    batch = ws.relabel(pid, [images[0]], ids["tit"])
    ws.undo_batch(batch)
    ws.merge_nodes(pid, ids["crow"], ids["tit"])  # images[0] is on Cats: untouched
    ws.set_label(images[0], ids["tit"])
    history = ws.label_history(images[0])
    assert [(h["source"], h["old_node"], h["new_node"]) for h in history] == [
        ("import", None, ids["crow"]),
        ("user", ids["crow"], ids["Cats"]),
        ("batch", ids["Cats"], ids["tit"]),
        ("undo", ids["tit"], ids["Cats"]),
        ("user", ids["Cats"], ids["tit"]),
    ]
    assert history[2]["batch_id"] == batch
    assert history[2]["new_label"] == "Birds / tit"
    # a taxonomy edit's migration and its undo are in the history of the images it moved
    moved = ws.label_history(images[1])
    assert [h["source"] for h in moved] == ["import", "taxonomy"]
    ws.undo(pid)
    assert [h["source"] for h in ws.label_history(images[1])][-1] == "undo"
    assert labels(ws, pid)[images[1]] == ids["crow"]


def test_suggestion_edits_are_recorded_as_suggestions(project):
    ws, pid, ids, images = project
    ws.apply_edit(
        pid, "merge crow into tit", lambda t: t.merge(ids["crow"], ids["tit"]), "suggestion"
    )
    assert ws.label_history(images[2])[-1]["source"] == "suggestion"


def test_bad_relabels_change_nothing(project):
    ws, pid, ids, images = project
    before = labels(ws, pid)
    other = ws.create_project("other")
    stranger = ws.add_images(other, [("x.png", png_bytes(50))]).added[0]
    with pytest.raises(DataError, match=f"Image {stranger} is not in this project"):
        ws.relabel(pid, [images[0], stranger], ids["tit"])
    with pytest.raises(TaxonomyError, match="neither a node id nor a name path"):
        ws.relabel(pid, images[:2], "Birds / owl")
    with pytest.raises(DataError, match="at least one image"):
        ws.relabel(pid, [], ids["tit"])
    assert labels(ws, pid) == before
    assert ws.label_batches(pid) == []


def test_tags_and_review_requests(project):
    ws, pid, ids, images = project
    assert ws.tag_images(pid, images[:3], "blurry") == 3
    assert ws.tag_images(pid, images[:2], "blurry") == 0
    assert ws.untag_images(pid, [images[0]], "blurry") == 1
    assert ws.image_tags(pid) == {images[1]: ["blurry"], images[2]: ["blurry"]}
    with pytest.raises(DataError, match="non-empty"):
        ws.tag_images(pid, images, " ")
    assert ws.request_review(pid, images[3:], "confused with tit") == 2
    assert [r["image_id"] for r in ws.review_requests(pid)] == images[3:]
    ws.set_label(images[4], ids["Cats"])  # labelled by a person since its request
    assert [r["image_id"] for r in ws.review_requests(pid, pending_only=True)] == images[3:4]
    assert ws.resolve_review(pid, [images[3]]) == 1
    assert ws.remove_images(pid, [images[4]]) == 1
    assert ws.review_requests(pid) == []


def test_tag_and_review_changes_undo_exactly_what_they_changed(project):
    ws, pid, _ids, images = project
    ws.tag_images(pid, images[:1], "blurry")  # had it before the action to undo
    assert ws.tag_images(pid, images[:3], "blurry") == 2
    last = ws.last_selection_action(pid)
    assert (last["kind"], last["tag"], last["images"]) == ("tag", "blurry", 2)
    assert ws.undo_selection_action(pid, last["id"]) == 2
    assert ws.image_tags(pid) == {images[0]: ["blurry"]}  # the older tag stays
    with pytest.raises(HierTuneError, match="already undone"):
        ws.undo_selection_action(pid, last["id"])

    before = ws.image_tags(pid)
    ws.untag_images(pid, images, "blurry")
    assert ws.image_tags(pid) == {}
    assert ws.undo_selection_action(pid, ws.last_selection_action(pid)["id"]) == 1
    assert ws.image_tags(pid) == before

    ws.request_review(pid, images[:1], "first")
    ws.request_review(pid, images[:2], "second")  # images[0] is on the queue already
    assert ws.undo_selection_action(pid, ws.last_selection_action(pid)["id"]) == 1
    assert [(r["image_id"], r["reason"]) for r in ws.review_requests(pid)] == [(images[0], "first")]
    requests = ws.review_requests(pid)
    ws.resolve_review(pid, images[:1])
    assert ws.review_requests(pid) == []
    assert ws.undo_selection_action(pid, ws.last_selection_action(pid)["id"]) == 1
    assert ws.review_requests(pid) == requests  # the same reason and time


def test_an_undone_tag_keeps_what_a_later_change_did(project):
    ws, pid, _ids, images = project
    ws.tag_images(pid, images[:2], "check")
    tagged = ws.last_selection_action(pid)["id"]
    ws.untag_images(pid, images[:1], "check")
    ws.tag_images(pid, images[:1], "check")  # added again by a later action
    assert ws.undo_selection_action(pid, tagged) == 1  # only images[1]'s tag is its own
    assert ws.image_tags(pid) == {images[0]: ["check"]}
    # an action that changed nothing is not offered for undo
    ws.undo_selection_action(pid, ws.last_selection_action(pid)["id"])
    ws.untag_images(pid, images[2:], "check")
    assert ws.last_selection_action(pid)["kind"] == "untag"
    assert ws.last_selection_action(pid)["images"] == 1
    with pytest.raises(HierTuneError, match="no tag or review change"):
        ws.undo_selection_action(pid, 10_000)


def test_a_version_4_workspace_gains_undoable_tags(tmp_path):
    with Workspace(tmp_path / "ws") as ws:
        pid = ws.create_project("p")
        image = ws.add_images(pid, [("a.png", png_bytes(0))]).added[0]
    conn = sqlite3.connect(tmp_path / "ws" / "hiertune.sqlite")
    conn.execute("DROP TABLE selection_changes")
    conn.execute("DROP TABLE selection_actions")
    conn.execute("ALTER TABLE tags DROP COLUMN action_id")
    conn.execute("ALTER TABLE review_requests DROP COLUMN action_id")
    conn.execute(
        "INSERT INTO tags (image_id, tag, added) VALUES (?, 'old', '2026-01-01')", (image,)
    )
    conn.execute("UPDATE schema_version SET version = 4")
    conn.commit()
    conn.close()
    with Workspace(tmp_path / "ws") as ws:
        ws.tag_images(pid, [image], "blurry")
        ws.undo_selection_action(pid, ws.last_selection_action(pid)["id"])
        assert ws.image_tags(pid) == {image: ["old"]}
        ws.untag_images(pid, [image], "old")  # a tag written before schema 5
        ws.undo_selection_action(pid, ws.last_selection_action(pid)["id"])
        assert ws.image_tags(pid) == {image: ["old"]}
    conn = sqlite3.connect(tmp_path / "ws" / "hiertune.sqlite")
    assert conn.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION == 5
    conn.close()


def test_a_version_2_workspace_gains_the_curation_tables(tmp_path):
    from hiercore.store.database import CURATION_SCHEMA, SCHEMA, SELECTION_SCHEMA

    root = tmp_path / "old"
    root.mkdir()
    conn = sqlite3.connect(root / "hiertune.sqlite")
    for statement in SCHEMA[: len(SCHEMA) - len(CURATION_SCHEMA) - len(SELECTION_SCHEMA)]:
        conn.execute(statement)
    conn.execute("INSERT INTO schema_version VALUES (2)")
    conn.commit()
    conn.close()
    with Workspace(root) as ws:
        pid = ws.create_project("p")
        node = ws.add_node(pid, "a")
        image = ws.add_images(pid, [("a.png", png_bytes(0))]).added[0]
        batch = ws.relabel(pid, [image], node)
        assert [h["batch_id"] for h in ws.label_history(image)] == [batch]
    conn = sqlite3.connect(root / "hiertune.sqlite")
    assert conn.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_find_images_by_subtree_tag_split_and_labelled(project):
    ws, pid, ids, images = project
    ws.set_label(images[3], ids["Cats"])
    ws.tag_images(pid, [images[0], images[3], images[4]], "check")
    assert ws.find_images(pid, subtree=ids["Birds"]) == images[:3]
    assert ws.find_images(pid, subtree=ids["crow"], tag="check") == images[:1]
    assert ws.find_images(pid, tag="check", labelled=False) == images[4:]
    assert ws.find_images(pid, split="unpinned") == images
    assert ws.find_images(pid, split="val") == []
    with pytest.raises(DataError, match="not in this project's taxonomy"):
        ws.find_images(pid, subtree="nope")


OPS = st.lists(
    st.tuples(
        st.sampled_from(["relabel", "label", "merge", "undo_edit", "undo_batch", "delete"]),
        st.lists(st.integers(0, 4), min_size=1, max_size=3),
        st.integers(0, 10),
    ),
    max_size=8,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=OPS)
def test_every_write_path_keeps_the_history_a_chain_ending_at_the_label(tmp_path, ops):
    """Whatever mix of labels, batches, taxonomy edits and undos: each image's history
    is a chain (each write starts where the previous ended) that ends at its label, so
    no write path changes a label without recording it."""
    import tempfile

    with Workspace(tempfile.mkdtemp(dir=tmp_path)) as ws:
        pid = ws.create_project("p")
        birds = ws.add_node(pid, "Birds")
        nodes = [birds, ws.add_node(pid, "crow", birds), ws.add_node(pid, "tit", birds)]
        nodes.append(ws.add_node(pid, "Cats"))
        images = ws.add_images(pid, [(f"{k}.png", png_bytes(k)) for k in range(5)], nodes[1]).added
        for op, picks, k in ops:
            alive = [n for n in nodes if n in ws.taxonomy(pid)]
            node = alive[k % len(alive)] if alive and k < 9 else None
            chosen = [images[i] for i in picks]
            if op == "relabel":
                ws.relabel(pid, chosen, node)
            elif op == "label":
                ws.set_label(chosen[0], node)
            elif op == "merge" and len(alive) > 1:
                src, dst = alive[k % len(alive)], alive[(k + 1) % len(alive)]
                tax = ws.taxonomy(pid)
                if dst not in tax.descendants(src):
                    ws.merge_nodes(pid, src, dst)
            elif op == "delete" and node is not None:
                ws.delete_node(pid, node)
            elif op == "undo_edit":
                ws.undo(pid)
            elif op == "undo_batch":
                batch = ws.last_batch(pid)
                if batch is not None:
                    ws.undo_batch(batch["id"])
        current = labels(ws, pid)
        for image_id in images:
            history = ws.label_history(image_id)
            for before, after in itertools.pairwise(history):
                assert after["old_node"] == before["new_node"]
            assert history[-1]["new_node"] == current[image_id]
