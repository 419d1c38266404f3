"""Importing uploads into a project: loose images, class-folder zips, manifests, refusals."""

from __future__ import annotations

import zipfile

import pytest
from PIL import Image

from hiercore.errors import DataError
from hiercore.ingest import import_files
from hiercore.store import Workspace
from hiercore.taxonomy import Taxonomy


def png(path, color):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), color).save(path)
    return path


@pytest.fixture
def ws(tmp_path):
    with Workspace(tmp_path / "ws") as w:
        yield w


def labels(ws, pid):
    df = ws.images(pid)
    return dict(zip(df["name"], df["label"], strict=True))


def test_loose_images_take_the_given_label(ws, tmp_path):
    pid = ws.create_project("p")
    node = ws.add_node(pid, "Aves")
    files = [png(tmp_path / "a.png", "red"), png(tmp_path / "b.png", "blue")]
    s = import_files(ws, pid, files, label=node)
    assert (s.added, s.labelled, s.duplicates) == (2, 2, 0)
    assert labels(ws, pid) == {"a.png": "Aves", "b.png": "Aves"}
    again = import_files(ws, pid, files[:1])
    assert (again.added, again.duplicates) == (0, 1)


def test_zip_of_class_folders_adds_missing_nodes_in_one_undoable_edit(ws, tmp_path):
    pid = ws.create_project("p")
    ws.add_node(pid, "Aves")
    src = tmp_path / "src" / "birds"  # a lone top folder, as zip tools pack
    png(src / "Aves" / "Corvidae" / "raven.png", "black")
    png(src / "Aves" / "gull.png", "white")
    png(src / "Mammalia" / "cat.png", "orange")
    archive = tmp_path / "birds.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in src.rglob("*.png"):
            zf.write(p, p.relative_to(src.parent).as_posix())
    s = import_files(ws, pid, [archive])
    assert (s.added, s.labelled, s.nodes_added) == (3, 3, 2)
    assert labels(ws, pid) == {
        "raven.png": "Aves / Corvidae",
        "gull.png": "Aves",
        "cat.png": "Mammalia",
    }
    assert ws.undo(pid).startswith("add 2 label path")
    assert {ws.taxonomy(pid).name(n) for n in ws.taxonomy(pid).iter_dfs()} == {"Aves"}


def test_zip_escaping_its_folder_is_refused(ws, tmp_path):
    pid = ws.create_project("p")
    for bad in ("../evil.png", "/abs/evil.png"):
        archive = tmp_path / "bad.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr(bad, b"x")
        with pytest.raises(DataError, match=r"evil\.png"):
            import_files(ws, pid, [archive])
    assert ws.images(pid).empty


def test_manifest_uploaded_beside_its_images(ws, tmp_path):
    pid = ws.create_project("p")
    ws.set_taxonomy(
        pid,
        Taxonomy.from_nodes(
            [
                {"id": "a", "name": "Aves", "parent": None},
                {"id": "c", "name": "Corvidae", "parent": "a"},
            ]
        ),
    )
    # a browser puts each upload in its own folder, so the manifest's paths do not resolve
    img1 = png(tmp_path / "u1" / "raven.png", "black")
    img2 = png(tmp_path / "u2" / "bird.png", "gray")
    manifest = tmp_path / "u3" / "manifest.csv"
    manifest.parent.mkdir()
    manifest.write_text(
        "path,class,family,split\nimg/raven.png,Aves,Corvidae,val\nimg/bird.png,Aves,,\n"
        "img/lost.png,Aves,,\n"
    )
    s = import_files(ws, pid, [img1, img2, manifest])
    assert (s.added, s.labelled, s.nodes_added) == (2, 2, 0)
    assert s.rejected == [("img/lost.png", "listed in manifest.csv line 4 but not uploaded")]
    assert labels(ws, pid) == {"raven.png": "Aves / Corvidae", "bird.png": "Aves"}
    rows = ws.images(pid).set_index("name")
    assert rows.loc["raven.png", "node_id"] == "c"
    assert rows.loc["raven.png", "split"] == "val" and rows.loc["bird.png", "split"] is None


def test_unknown_labels_refused_when_not_adding_nodes(ws, tmp_path):
    pid = ws.create_project("p")
    image = png(tmp_path / "x.png", "red")
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,order\nx.png,Aves\n")
    with pytest.raises(DataError, match="'Aves' is not in the taxonomy"):
        import_files(ws, pid, [image, manifest], add_missing_nodes=False)
    assert ws.images(pid).empty


def test_other_files_are_listed_as_refused(ws, tmp_path):
    pid = ws.create_project("p")
    note = tmp_path / "notes.txt"
    note.write_text("hello")
    s = import_files(ws, pid, [note])
    assert s.added == 0 and s.rejected[0][0] == "notes.txt"
    assert "refused" in s.sentence()
