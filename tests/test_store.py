"""Tests of the workspace store: projects, taxonomy edits with label migration, undo, images,
labels, runs, transactions and concurrent writers."""

from __future__ import annotations

import contextlib
import io
import random
import sqlite3
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from imagegen import png_bytes
from PIL import Image

from hiercore.errors import DataError, HierTuneError, TaxonomyError
from hiercore.store import INTERRUPTED, Workspace
from hiercore.taxonomy import ROOT, EditReport, Taxonomy


@pytest.fixture
def ws(tmp_path):
    with Workspace(tmp_path / "ws") as workspace:
        yield workspace


@pytest.fixture
def birds(ws):
    """A project: Aves > {Corvus > {corax, corone}, Parus > {major, corone}}, Mammalia > Canis.

    Returns (project id, {name path: node id}, {image name: image id}) with images
    labelled at several depths, two per labelled node, and two unlabelled.
    """
    pid = ws.create_project("birds")
    ids = {}
    ids["Aves"] = ws.add_node(pid, "Aves")
    ids["Corvus"] = ws.add_node(pid, "Corvus", ids["Aves"])
    ids["corax"] = ws.add_node(pid, "corax", ids["Corvus"])
    ids["Corvus/corone"] = ws.add_node(pid, "corone", ids["Corvus"])
    ids["Parus"] = ws.add_node(pid, "Parus", ids["Aves"])
    ids["major"] = ws.add_node(pid, "major", ids["Parus"])
    ids["Parus/corone"] = ws.add_node(pid, "corone", ids["Parus"])
    ids["Mammalia"] = ws.add_node(pid, "Mammalia")
    ids["Canis"] = ws.add_node(pid, "Canis", ids["Mammalia"])
    images = {}
    seed = 0
    for key in ["Aves", "Corvus", "corax", "Corvus/corone", "major", "Parus/corone", "Canis"]:
        for k in range(2):
            name = f"{key.replace('/', '-')}-{k}.png"
            result = ws.add_images(pid, [(name, png_bytes(seed))], node_id=ids[key])
            images[name] = result.added[0]
            seed += 1
    for k in range(2):
        images[f"none-{k}.png"] = ws.add_images(pid, [(f"none-{k}.png", png_bytes(seed))]).added[0]
        seed += 1
    return pid, ids, images


def label_rows(ws: Workspace) -> dict[int, tuple]:
    """Every label exactly as stored: image id -> (node id, source, updated)."""
    with sqlite3.connect(ws.db_path) as conn:
        rows = conn.execute("SELECT image_id, node_id, source, updated FROM labels").fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


def state(ws: Workspace, pid: int) -> tuple:
    return ws.taxonomy(pid).to_dict(), label_rows(ws), len(ws.history(pid))


def labels_of(ws: Workspace, pid: int) -> dict[int, str | None]:
    df = ws.images(pid)
    pairs = zip(df["id"], df["node_id"], strict=True)
    return {int(i): (n if isinstance(n, str) else None) for i, n in pairs}


# ---------------------------------------------------------------------- projects
def test_project_crud(ws):
    a = ws.create_project("  Birds ")
    b = ws.create_project("Dogs")
    assert ws.get_project(a)["name"] == "Birds"
    assert list(ws.list_projects()["name"]) == ["Birds", "Dogs"]
    with pytest.raises(HierTuneError, match="already exists"):
        ws.create_project("birds")  # names are unique regardless of case
    with pytest.raises(HierTuneError, match="non-empty name"):
        ws.create_project("   ")
    ws.rename_project(a, "Corvids")
    assert ws.find_project("corvids") == a
    assert ws.find_project("Birds") is None
    with pytest.raises(HierTuneError, match="already exists"):
        ws.rename_project(b, "CORVIDS")
    ws.rename_project(a, "corvids")  # a change of case of its own name is fine
    ws.add_images(b, [("x.png", png_bytes(1))])
    folder = ws.project_dir(b)
    assert any(folder.rglob("*.png"))
    ws.delete_project(b)
    assert not folder.exists()
    assert list(ws.list_projects()["id"]) == [a]
    with pytest.raises(HierTuneError, match="no project with id"):
        ws.get_project(b)
    with sqlite3.connect(ws.db_path) as conn:  # cascade removed every row of the project
        for table in ("images", "taxonomy_versions", "runs"):
            n = conn.execute(f"SELECT COUNT(*) FROM {table} WHERE project_id = ?", (b,))
            assert n.fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM labels").fetchone()[0] == 0


def test_workspace_reopens_with_its_data(tmp_path):
    with Workspace(tmp_path) as ws:
        pid = ws.create_project("p")
        node = ws.add_node(pid, "A")
        image = ws.add_images(pid, [("a.png", png_bytes(0))], node_id=node).added[0]
    with Workspace(tmp_path) as ws:
        assert ws.taxonomy(pid).name(node) == "A"
        assert labels_of(ws, pid) == {image: node}
        with sqlite3.connect(ws.db_path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(HierTuneError, match="newer HierTune"):
        Workspace(tmp_path)


# ---------------------------------------------------------------------- edits
def test_rename_and_move_keep_labels_and_describe_the_edit(ws, birds):
    pid, ids, _ = birds
    before = labels_of(ws, pid)
    report = ws.rename_node(pid, ids["Corvus"], "Ravens")
    assert ws.history(pid)[-1]["description"] == "rename 'Corvus' → 'Ravens'"
    assert set(report.affected) == {ids["Corvus"], ids["corax"], ids["Corvus/corone"]}
    ws.move_node(pid, ids["Canis"], ids["Aves"])
    assert ws.history(pid)[-1]["description"] == "move 'Canis' under 'Aves'"
    tax = ws.taxonomy(pid)
    assert tax.path_names(ids["Canis"]) == ["Aves", "Canis"]
    assert labels_of(ws, pid) == before
    df = ws.images(pid).set_index("name")
    assert df.loc["corax-0.png", "label"] == "Aves / Ravens / corax"
    assert df.loc["Canis-1.png", "label"] == "Aves / Canis"
    assert df.loc["none-0.png", "label"] == ""
    assert ws.undo(pid) == "move 'Canis' under 'Aves'"
    assert ws.taxonomy(pid).path_names(ids["Canis"]) == ["Mammalia", "Canis"]


def test_merge_moves_labels_recursively_and_undo_restores_them(ws, birds):
    pid, ids, images = birds
    before = state(ws, pid)
    ws.set_label(images["Corvus-0.png"], ids["Corvus"], "model")  # a source that must survive
    before = state(ws, pid)
    report = ws.merge_nodes(pid, ids["Corvus"], ids["Parus"])
    assert report.label_moves == {
        ids["Corvus/corone"]: ids["Parus/corone"],
        ids["Corvus"]: ids["Parus"],
    }
    tax = ws.taxonomy(pid)
    assert ids["Corvus"] not in tax and ids["Corvus/corone"] not in tax
    assert tax.path_names(ids["corax"]) == ["Aves", "Parus", "corax"]
    labels = labels_of(ws, pid)
    expected = {
        "Corvus-0.png": ids["Parus"],
        "Corvus-1.png": ids["Parus"],
        "Corvus-corone-0.png": ids["Parus/corone"],
        "Corvus-corone-1.png": ids["Parus/corone"],
        "corax-0.png": ids["corax"],
        "Parus-corone-0.png": ids["Parus/corone"],
        "none-0.png": None,
    }
    for name, node in expected.items():
        assert labels[images[name]] == node, name
    assert label_rows(ws)[images["Corvus-0.png"]][1] == "model"
    assert ws.history(pid)[-1]["labels_moved"] == 4
    assert ws.history(pid)[-1]["description"] == "merge 'Corvus' into 'Parus'"

    assert ws.undo(pid) == "merge 'Corvus' into 'Parus'"
    assert state(ws, pid) == before


@pytest.mark.parametrize("migrate", ["parent", None, "Canis"])
def test_delete_migrates_labels_and_undo_brings_every_label_back(ws, birds, migrate):
    pid, ids, images = birds
    before = state(ws, pid)
    dest = {"parent": ids["Aves"], None: None, "Canis": ids["Canis"]}[migrate]
    ws.delete_node(pid, ids["Corvus"], ids["Canis"] if migrate == "Canis" else migrate)
    tax = ws.taxonomy(pid)
    assert all(n not in tax for n in (ids["Corvus"], ids["corax"], ids["Corvus/corone"]))
    labels = labels_of(ws, pid)
    for name in ["Corvus-0.png", "corax-1.png", "Corvus-corone-0.png"]:
        assert labels[images[name]] == dest
    assert labels[images["major-0.png"]] == ids["major"]
    assert labels[images["Aves-0.png"]] == ids["Aves"]
    if migrate is None:  # a dropped label also loses its source
        assert label_rows(ws)[images["corax-0.png"]][:2] == (None, None)
    assert ws.undo(pid).startswith("delete 'Corvus'")
    assert state(ws, pid) == before


def test_delete_at_first_level_with_parent_migration_drops_labels(ws, birds):
    pid, ids, images = birds
    ws.delete_node(pid, ids["Mammalia"])
    assert labels_of(ws, pid)[images["Canis-0.png"]] is None


def test_undo_keeps_a_label_changed_after_the_edit(ws, birds):
    pid, ids, images = birds
    ws.merge_nodes(pid, ids["Corvus"], ids["Parus"])
    ws.set_label(images["Corvus-1.png"], ids["Canis"])
    extra = ws.add_node(pid, "Felis", ids["Mammalia"])
    ws.set_label(images["none-0.png"], extra)
    assert ws.undo(pid) == "add 'Felis' under 'Mammalia'"
    # The label on the undone node goes to its surviving parent.
    assert labels_of(ws, pid)[images["none-0.png"]] == ids["Mammalia"]
    assert ws.undo(pid) == "merge 'Corvus' into 'Parus'"
    labels = labels_of(ws, pid)
    assert labels[images["Corvus-0.png"]] == ids["Corvus"]
    assert labels[images["Corvus-1.png"]] == ids["Canis"]  # the later human label wins


def test_undo_of_the_first_version_does_nothing(ws):
    pid = ws.create_project("p")
    assert ws.undo(pid) is None
    ws.add_node(pid, "A")
    assert ws.undo(pid) == "add 'A'"
    assert len(ws.taxonomy(pid)) == 0
    assert ws.undo(pid) is None
    assert [h["description"] for h in ws.history(pid)] == ["create project"]


def test_invalid_edit_changes_nothing(ws, birds):
    pid, ids, _ = birds
    before = state(ws, pid)
    with pytest.raises(TaxonomyError, match="own subtree"):
        ws.move_node(pid, ids["Aves"], ids["corax"])
    with pytest.raises(TaxonomyError, match="already exists"):
        ws.rename_node(pid, ids["Parus"], "Corvus")
    with pytest.raises(TaxonomyError, match="Unknown node"):
        ws.merge_nodes(pid, "nope", ids["Parus"])
    assert state(ws, pid) == before


def test_edit_that_raises_after_partly_working_leaves_the_database_unchanged(ws, birds):
    pid, ids, _ = birds
    before = state(ws, pid)

    def half_edit(tax: Taxonomy) -> EditReport:
        tax.delete(ids["Corvus"])
        tax.rename(ids["Parus"], "Tits")
        raise RuntimeError("crash in the middle of an edit")

    with pytest.raises(RuntimeError):
        ws.apply_edit(pid, "half", half_edit)
    assert state(ws, pid) == before


def test_crash_while_migrating_labels_rolls_back_everything(ws, birds, monkeypatch):
    pid, ids, _ = birds
    before = state(ws, pid)
    original = Workspace._move_label
    calls = []

    def failing_move(self, *args):
        calls.append(args)
        if len(calls) == 3:
            raise OSError("disk full")
        return original(self, *args)

    monkeypatch.setattr(Workspace, "_move_label", failing_move)
    with pytest.raises(OSError):
        ws.delete_node(pid, ids["Corvus"])
    assert len(calls) == 3  # two labels had already moved inside the transaction
    assert state(ws, pid) == before
    monkeypatch.undo()
    ws.delete_node(pid, ids["Corvus"])  # and the workspace still works
    assert state(ws, pid) != before


def test_edit_removing_a_labelled_node_without_a_move_is_refused(ws, birds):
    pid, ids, _ = birds
    before = state(ws, pid)

    def sloppy(tax: Taxonomy) -> EditReport:
        tax.graph.remove_node(ids["major"])  # removes the node but reports no label move
        return EditReport("delete")

    with pytest.raises(TaxonomyError, match="without saying where"):
        ws.apply_edit(pid, "sloppy", sloppy)
    assert state(ws, pid) == before


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 99), st.integers(0, 99)), max_size=8))
def test_any_edit_sequence_undoes_back_through_every_state(ops):
    """Undo after n random edits passes back through each stored state, exactly."""
    with tempfile.TemporaryDirectory() as tmp, Workspace(tmp) as ws:
        pid = ws.create_project("p")
        nodes = []
        for name, parent in [("A", None), ("B", None), ("a1", 0), ("a2", 0), ("b1", 1), ("x", 2)]:
            nodes.append(ws.add_node(pid, name, ROOT if parent is None else nodes[parent]))
        files = [(f"{i}.png", png_bytes(i)) for i in range(12)]
        image_ids = ws.add_images(pid, files).added
        ws.set_labels(
            [(img, nodes[i % len(nodes)] if i % 5 else None) for i, img in enumerate(image_ids)],
            "human",
        )
        snapshots = [state(ws, pid)]
        for kind, i, j in ops:
            current = list(ws.taxonomy(pid).iter_dfs())
            a = current[i % len(current)] if current else "missing"
            b = current[j % len(current)] if current else "missing"
            try:
                if kind == 0:
                    ws.add_node(pid, f"new{i}", b)
                elif kind == 1:
                    ws.rename_node(pid, a, f"r{j}")
                elif kind == 2:
                    ws.move_node(pid, a, b if j % 3 else ROOT)
                elif kind == 3:
                    ws.merge_nodes(pid, a, b)
                else:
                    ws.delete_node(pid, a, [None, "parent", b][j % 3] if kind == 4 else "parent")
            except TaxonomyError:
                assert state(ws, pid) == snapshots[-1]
                continue
            snapshots.append(state(ws, pid))
            tax = ws.taxonomy(pid)
            assert all(n is None or n in tax for n in labels_of(ws, pid).values())
        for expected in reversed(snapshots[:-1]):
            assert ws.undo(pid) is not None
            assert state(ws, pid) == expected


# ---------------------------------------------------------------------- import
def test_set_taxonomy_matches_by_id_then_path_and_refuses_to_drop_silently(ws, birds):
    pid, ids, images = birds
    before = state(ws, pid)
    # A re-imported tree with fresh ids: every node found again by its name path,
    # except Corvus/corone, which the new tree lacks.
    new = Taxonomy()
    aves = new.add("Aves")
    corvus = new.add("Corvus", aves)
    corax = new.add("corax", corvus)
    parus = new.add("Parus", aves)
    major = new.add("major", parus)
    parus_corone = new.add("corone", parus)
    new.add("Canis", new.add("Mammalia"))
    assert ws.vanished_labels(pid, new) == {ids["Corvus/corone"]: 2}
    with pytest.raises(TaxonomyError) as err:
        ws.set_taxonomy(pid, new)
    message = str(err.value)
    assert "'corone'" in message and "2 image label(s)" in message
    assert message.count(". ") == 0 and message.endswith(".")  # one sentence
    assert state(ws, pid) == before

    report = ws.set_taxonomy(pid, new, "import birds.csv", drop_vanished_labels=True)
    assert report.affected == [ids["Corvus/corone"]]
    assert ws.taxonomy(pid).to_dict() == new.to_dict()
    labels = labels_of(ws, pid)
    assert labels[images["Corvus-corone-0.png"]] is None
    assert labels[images["corax-1.png"]] == corax
    assert labels[images["Corvus-0.png"]] == corvus
    assert labels[images["major-0.png"]] == major
    assert labels[images["Parus-corone-1.png"]] == parus_corone
    assert ws.undo(pid) == "import birds.csv"
    assert state(ws, pid) == before


# ---------------------------------------------------------------------- images and labels
def test_add_images_keeps_the_good_ones_and_names_the_bad(tmp_path):
    big = png_bytes(7, size=64)  # noisy pixels do not compress: well over the cap below
    on_disk = tmp_path / "disk.png"
    on_disk.write_bytes(png_bytes(8))
    truncated = png_bytes(9, size=32)[:200]
    with Workspace(tmp_path / "ws", max_image_bytes=4000) as ws:
        assert len(big) > ws.max_image_bytes
        pid = ws.create_project("p")
        result = ws.add_images(
            pid,
            [
                ("good.png", png_bytes(1)),
                ("notes.txt", b"this is not an image"),
                ("big.png", big),
                ("cut.png", truncated),
                ("disk.png", on_disk),
                ("missing.png", tmp_path / "missing.png"),
                ("again.png", png_bytes(1)),
            ],
        )
        assert len(result.added) == 2
        rejected = dict(result.rejected)
        assert set(rejected) == {"notes.txt", "big.png", "cut.png", "missing.png"}
        assert "limit" in rejected["big.png"]
        assert "not a readable image" in rejected["notes.txt"]
        assert "not a readable image" in rejected["cut.png"]
        assert "cannot be read" in rejected["missing.png"]
        assert result.duplicates == [("again.png", result.added[0])]
        # Adding the same picture later is a duplicate too, not a second copy.
        again = ws.add_images(pid, [("copy.png", png_bytes(8))])
        assert again.added == [] and again.duplicates == [("copy.png", result.added[1])]
        df = ws.images(pid)
        assert list(df["name"]) == ["good.png", "disk.png"]
        assert list(df["width"]) == [8, 8]
        for path in df["path"]:
            assert Image.open(path).tobytes() in {
                Image.open(io.BytesIO(png_bytes(s))).tobytes() for s in (1, 8)
            }
        assert len(list((ws.project_dir(pid) / "images").iterdir())) == 2
        assert ws.remove_images(pid, [result.added[0]]) == 1
        assert len(list((ws.project_dir(pid) / "images").iterdir())) == 1


def test_add_images_refuses_too_many_pixels(ws, monkeypatch):
    import hiercore.store.images as images_module

    monkeypatch.setattr(images_module, "MAX_PIXELS", 8 * 8 - 1)
    pid = ws.create_project("p")
    result = ws.add_images(pid, [("small.png", png_bytes(0, 7)), ("big.png", png_bytes(1, 8))])
    assert len(result.added) == 1
    assert result.rejected == [("big.png", "8x8 pixels is more than the 63 limit")]


def test_add_images_can_pin_a_split(ws):
    pid = ws.create_project("p")
    ws.add_images(pid, [("a.png", png_bytes(0))], split="val")
    ws.add_images(pid, [("b.png", png_bytes(1))])
    assert [s.split for s in ws.samples(pid, labelled_only=False)] == ["val", None]
    with pytest.raises(DataError, match="split"):
        ws.add_images(pid, [("c.png", png_bytes(2))], split="test")
    assert len(ws.images(pid)) == 2


def test_add_images_with_unknown_label_adds_nothing(ws):
    pid = ws.create_project("p")
    with pytest.raises(TaxonomyError, match="not in this project"):
        ws.add_images(pid, [("a.png", png_bytes(0))], node_id="nope")
    assert len(ws.images(pid)) == 0
    assert not any((ws.project_dir(pid) / "images").iterdir())


def test_set_label_validates_and_counts_roll_up(ws, birds):
    pid, ids, images = birds
    with pytest.raises(TaxonomyError, match="not in this project"):
        ws.set_label(images["none-0.png"], "nope")
    with pytest.raises(DataError, match="no image with id"):
        ws.set_label(10_000, ids["Aves"])
    ws.set_label(images["none-0.png"], ids["corax"], "model")
    ws.set_label(images["Canis-0.png"], None)
    df = ws.images(pid).set_index("name")
    assert df.loc["none-0.png", "source"] == "model"
    assert df.loc["none-0.png", "node_id"] == ids["corax"]
    assert df.loc["Canis-0.png", "source"] is None
    counts = ws.label_counts(pid)
    # Hand count: two images per labelled node, plus none-0 at corax, minus Canis-0.
    assert counts[ids["corax"]] == 3
    assert counts[ids["Corvus"]] == 2 + 3 + 2
    assert counts[ids["Parus"]] == 4 and counts[ids["major"]] == 2
    assert counts[ids["Aves"]] == 2 + 7 + 4
    assert counts[ids["Canis"]] == 1 and counts[ids["Mammalia"]] == 1
    assert set(counts) == set(ids.values())
    samples = ws.samples(pid)
    assert len(samples) == 14
    by_path = {Path(s.path): s.node_id for s in samples}
    assert by_path[Path(df.loc["none-0.png", "path"])] == ids["corax"]
    assert all(Path(s.path).is_file() for s in samples)
    assert len(ws.samples(pid, labelled_only=False)) == 16
    tax, snapshot = ws.training_snapshot(pid)
    assert tax.to_dict() == ws.taxonomy(pid).to_dict()
    assert sorted((s.path, s.node_id) for s in snapshot) == sorted(
        (s.path, s.node_id) for s in samples
    )


# ---------------------------------------------------------------------- runs
def test_runs_record_and_recover_from_a_crash(tmp_path):
    with Workspace(tmp_path) as ws:
        pid = ws.create_project("p")
        a = ws.create_run(pid, "first", {"lr": 1e-3, "epochs": np.int64(3)})
        b = ws.create_run(pid, "second", {})
        c = ws.create_run(pid, "third", {})
        run = ws.get_run(a)
        assert run["state"] == "queued" and run["config"] == {"lr": 1e-3, "epochs": 3}
        assert Path(run["out_dir"]) == ws.project_dir(pid) / "runs" / str(a)
        ws.update_run(
            a, state="running", progress={"step": 4, "losses": {"total": np.float32(1.5)}}
        )
        assert ws.get_run(a)["progress"] == {"step": 4, "losses": {"total": 1.5}}
        ws.update_run(c, state="finished", metrics={"fpa": 0.5})
        with pytest.raises(HierTuneError, match="queued or running"):
            ws.delete_project(pid)
        with pytest.raises(ValueError, match="Unknown run state"):
            ws.update_run(a, state="exploded")
        with pytest.raises(HierTuneError, match="no run with id"):
            ws.update_run(999, state="failed")
        assert ws.queued_runs() == [b]
    with Workspace(tmp_path) as ws:  # the studio restarts after a crash
        assert ws.interrupted_runs_to_failed() == [a, b]
        runs = ws.list_runs(pid).set_index("id")
        assert runs.loc[a, "state"] == "failed" and runs.loc[a, "error"] == INTERRUPTED
        assert runs.loc[b, "state"] == "failed"
        assert runs.loc[c, "state"] == "finished" and runs.loc[c, "metrics"] == {"fpa": 0.5}
        assert runs.loc[a, "progress"]["step"] == 4
        ws.delete_project(pid)


# ---------------------------------------------------------------------- concurrency
def test_concurrent_labellers_and_editor_lose_no_label(ws):
    """Four threads label images while a fifth edits the taxonomy; every write survives.

    Labellers own disjoint images and only use stable nodes, so each image's final label
    must be the last one its thread set. The editor owns the other images, whose labels
    only its edits move, so their final labels follow from replaying the edits. A third
    group is labelled onto nodes the editor deletes, racing it: each such label must end
    on a node that exists.
    """
    pid = ws.create_project("race")
    stable = [ws.add_node(pid, f"s{i}") for i in range(4)]
    vol_root = ws.add_node(pid, "V")
    vol = [ws.add_node(pid, f"v{i}", vol_root) for i in range(12)]
    images = ws.add_images(pid, [(f"{i}.png", png_bytes(i)) for i in range(64)]).added
    owned = {t: images[t * 8 : t * 8 + 8] for t in range(4)}
    editor_images = images[32:56]
    racing_images = images[56:]
    ws.set_labels([(img, vol[i % 12]) for i, img in enumerate(editor_images)])
    expected_editor = {img: vol[i % 12] for i, img in enumerate(editor_images)}
    last_set: dict[int, str] = {}
    errors: list[BaseException] = []
    order: list[str] = []  # who wrote when, to check that the writers did interleave
    barrier = threading.Barrier(5)

    def labeller(t: int) -> None:
        rng = random.Random(t)
        barrier.wait()
        try:
            for _ in range(50):
                img = rng.choice(owned[t])
                node = rng.choice(stable)
                ws.set_label(img, node)
                last_set[img] = node
                order.append("L")
                time.sleep(0.001)  # hand over the GIL so that the writers interleave
                if rng.random() < 0.2:
                    # Refused when its node was deleted a moment ago, never orphaned.
                    with contextlib.suppress(TaxonomyError):
                        ws.set_label(rng.choice(racing_images), rng.choice(vol))
        except BaseException as exc:
            errors.append(exc)

    def editor() -> None:
        barrier.wait()
        try:
            for k in range(0, 12, 3):
                a, b, c = vol[k], vol[k + 1], vol[k + 2]
                edits = [
                    (ws.merge_nodes, b, a),
                    (ws.rename_node, a, f"merged{k}"),
                    (ws.delete_node, c),  # labels go to V
                    (ws.move_node, a, stable[k // 3]),
                ]
                for edit, *args in edits:
                    edit(pid, *args)
                    order.append("E")
                    time.sleep(0.002)
                for img, node in expected_editor.items():
                    if node == b:
                        expected_editor[img] = a
                    elif node == c:
                        expected_editor[img] = vol_root
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=labeller, args=(t,)) for t in range(4)]
    threads.append(threading.Thread(target=editor))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    first, last = order.index("E"), len(order) - order[::-1].index("E")
    assert "L" in order[first:last]
    labels = labels_of(ws, pid)
    assert {img: labels[img] for img in last_set} == last_set
    assert {img: labels[img] for img in editor_images} == expected_editor
    tax = ws.taxonomy(pid)
    assert all(node is None or node in tax for node in labels.values())
    assert len(ws.history(pid)) == 1 + 4 + 1 + 12 + 16


def test_a_version_1_workspace_is_migrated(tmp_path):
    """Workspaces written before the pinned split column open and gain it."""
    import sqlite3

    from hiercore.store.database import SCHEMA

    root = tmp_path / "old"
    root.mkdir()
    conn = sqlite3.connect(root / "hiertune.sqlite")
    for statement in SCHEMA:
        conn.execute(
            statement.replace(
                "\n        split TEXT CHECK (split IN ('train', 'val')),"
                "  -- NULL: the run's own split decides",
                "",
            )
        )
    conn.execute("INSERT INTO schema_version VALUES (1)")
    conn.commit()
    assert "split" not in [r[1] for r in conn.execute("PRAGMA table_info(images)")]
    conn.close()
    with Workspace(root) as ws:
        pid = ws.create_project("p")
        ws.add_images(pid, [("a.png", png_bytes(0))], split="val")
        assert [s.split for s in ws.samples(pid, labelled_only=False)] == ["val"]
