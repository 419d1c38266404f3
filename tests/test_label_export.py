"""Label export: CSV manifest, Hugging Face imagefolder and FiftyOne classification JSON."""

from __future__ import annotations

import csv
import io
import json
import zipfile

import pytest
from imagegen import png_bytes
from PIL import Image

from hiercore.errors import HierTuneError
from hiercore.label_export import export_labels_zip
from hiercore.store import Workspace
from hiercore.taxonomy import Taxonomy


@pytest.fixture
def project(tmp_path):
    """family > genus: Corvidae > Corvus, Laridae > Larus, and a family =HYPERLINK(1);
    images labelled at a leaf, at a family (partial), not at all, one pinned to
    validation and one named like a formula."""
    with Workspace(tmp_path / "ws") as ws:
        pid = ws.create_project("p")
        tax = Taxonomy(["family", "genus"])
        corvidae = tax.add("Corvidae", node_id="corvidae")
        tax.add("Corvus", corvidae, node_id="corvus")
        tax.add("=HYPERLINK(1)", node_id="evil")
        tax.add("Larus", tax.add("Laridae", node_id="laridae"), node_id="larus")
        ws.set_taxonomy(pid, tax)
        items = [
            ("crow 1.png", png_bytes(0), "corvus", None),
            ("family.png", png_bytes(1), "corvidae", None),
            ("none.png", png_bytes(2), None, None),
            ("gull.png", png_bytes(3), "larus", "val"),
            ("@cmd.png", png_bytes(4), "evil", None),
        ]
        ids = ws.add_labelled_images(pid, items).added
        ws.tag_images(pid, ids[:1], "blurry")
        yield ws, pid, ids


def read_zip(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def test_csv_manifest_has_levels_tags_and_guarded_cells(project, tmp_path):
    ws, pid, ids = project
    files = read_zip(export_labels_zip(ws, pid, "csv", tmp_path / "x.zip"))
    assert list(files) == ["labels.csv"]
    rows = list(csv.DictReader(io.StringIO(files["labels.csv"].decode())))
    by_name = {r["name"]: r for r in rows}
    assert len(rows) == 5
    assert by_name["crow 1.png"]["genus"] == "Corvidae / Corvus"
    assert by_name["crow 1.png"]["tags"] == "blurry"
    assert (by_name["family.png"]["family"], by_name["family.png"]["genus"]) == ("Corvidae", "")
    assert by_name["none.png"]["label"] == ""
    evil = by_name["'@cmd.png"]
    assert (evil["family"], evil["label"]) == ("'=HYPERLINK(1)", "'=HYPERLINK(1)")
    assert by_name["gull.png"]["split"] == "val"
    assert by_name["crow 1.png"]["image_id"] == str(ids[0])


def jsonl(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.decode().splitlines()]


def test_imagefolder_layout_with_metadata_per_split(project, tmp_path):
    ws, pid, _ = project
    files = read_zip(export_labels_zip(ws, pid, "imagefolder", tmp_path / "x.zip"))
    for split, count in (("train", 4), ("validation", 1)):
        meta = jsonl(files[f"{split}/metadata.jsonl"])
        assert len(meta) == count
        for row in meta:
            image = files[f"{split}/{row['file_name']}"]
            assert Image.open(io.BytesIO(image)).size == (8, 8)
            # one type per key in every split: text is "" where there is none
            assert all(isinstance(row[k], str) for k in row if k != "image_id")
    meta = jsonl(files["validation/metadata.jsonl"])
    assert meta[0]["label"] == "Laridae / Larus" and meta[0]["family"] == "Laridae"
    by_label = {r["node_id"]: r for r in jsonl(files["train/metadata.jsonl"])}
    assert by_label["evil"]["family"] == "=HYPERLINK(1)"  # JSON: names exactly as typed
    assert by_label["corvidae"]["genus"] == ""  # a partial label stops at its family


def test_imagefolder_export_loads_in_hugging_face_datasets(project, tmp_path, monkeypatch):
    """The train split has a tag and a partial label, validation neither: with one
    metadata.csv per split `datasets` read the empty columns as numbers there and refused
    the splits' different features."""
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ws, pid, ids = project
    with zipfile.ZipFile(export_labels_zip(ws, pid, "imagefolder", tmp_path / "x.zip")) as zf:
        zf.extractall(tmp_path / "out")
    ds = datasets.load_dataset(
        "imagefolder", data_dir=str(tmp_path / "out"), cache_dir=str(tmp_path / "cache")
    )
    assert {k: len(v) for k, v in ds.items()} == {"train": 4, "validation": 1}
    rows = {r["image_id"]: r for split in ds.values() for r in split}
    assert set(rows) == set(ids)
    crow = rows[ids[0]]
    assert (crow["family"], crow["genus"], crow["tags"]) == (
        "Corvidae",
        "Corvidae / Corvus",
        "blurry",
    )
    assert crow["image"].size == (8, 8)
    assert rows[ids[1]]["genus"] == "" and rows[ids[2]]["label"] == ""
    assert rows[ids[3]]["label"] == "Laridae / Larus" and rows[ids[3]]["tags"] == ""
    assert rows[ids[4]]["family"] == "=HYPERLINK(1)"


def test_fiftyone_classification_json_per_level(project, tmp_path):
    ws, pid, ids = project
    files = read_zip(export_labels_zip(ws, pid, "fiftyone", tmp_path / "x.zip"))
    family = json.loads(files["labels_family.json"])
    genus = json.loads(files["labels_genus.json"])
    assert json.loads(files["labels.json"]) == genus
    assert family["classes"] == ["=HYPERLINK(1)", "Corvidae", "Laridae"]  # JSON: no guard
    assert genus["classes"] == ["Corvidae / Corvus", "Laridae / Larus"]
    stems = {n.split("/", 1)[1].rsplit(".", 1)[0] for n in files if n.startswith("data/")}
    assert set(family["labels"]) == set(genus["labels"]) == stems
    stem_of = {ids[0]: "crow_1", ids[1]: "family", ids[2]: "none"}
    key = {i: f"{i}-{s}" for i, s in stem_of.items()}
    assert genus["classes"][genus["labels"][key[ids[0]]]] == "Corvidae / Corvus"
    assert family["classes"][family["labels"][key[ids[1]]]] == "Corvidae"
    assert genus["labels"][key[ids[1]]] is None  # a partial label stops at its family
    assert family["labels"][key[ids[2]]] is None


def test_unknown_format_is_one_sentence(project, tmp_path):
    ws, pid, _ = project
    with pytest.raises(HierTuneError, match="must be one of csv, imagefolder, fiftyone"):
        export_labels_zip(ws, pid, "coco", tmp_path / "x.zip")
    assert not (tmp_path / "x.zip").exists()
