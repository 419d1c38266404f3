"""Image import (folder trees, manifests, zips), splits and the dataset on generated images."""

from __future__ import annotations

import csv
import logging
import os
import stat
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import IMAGE_TREE, write_image
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from torch.utils.data import DataLoader

from hiercore.data import (
    ImageLabelDataset,
    Sample,
    check_images,
    extract_zip_safely,
    samples_from_folder_tree,
    samples_from_manifest,
    split_samples,
)
from hiercore.errors import DataError, HierTuneError
from hiercore.taxonomy import LevelIndex, Taxonomy
from hiercore.taxonomy.formats import load_taxonomy


def labels_by_file(tax: Taxonomy, samples: list[Sample], root: Path) -> dict[str, tuple]:
    return {
        Path(s.path).relative_to(root).as_posix(): tuple(tax.path_names(s.node_id))
        if s.node_id
        else ()
        for s in samples
    }


# ---------------------------------------------------------------------- folder trees
def test_folder_tree_labels_leaves_inner_nodes_and_ignores_the_rest(image_tree_dir):
    tax, samples = samples_from_folder_tree(image_tree_dir)
    assert labels_by_file(tax, samples, image_tree_dir) == IMAGE_TREE
    assert tax.find_by_path(["Mammalia", "Felidae", "Panthera"]) is not None  # empty class
    assert tax.max_depth == 3 and len(tax) == 10
    # the same ids as reading the folders as a taxonomy
    assert tax.to_dict() == load_taxonomy(image_tree_dir).to_dict()
    unsure = next(s for s in samples if s.path.endswith("unsure.png"))
    assert LevelIndex.build(tax).target(unsure.node_id)[2] == -1  # a partial label


def test_folder_tree_errors(tmp_path):
    with pytest.raises(DataError, match="is not a folder"):
        samples_from_folder_tree(tmp_path / "nope")
    write_image(tmp_path / "flat" / "a.png")
    with pytest.raises(DataError, match="no class sub-folders"):
        samples_from_folder_tree(tmp_path / "flat")


# ---------------------------------------------------------------------- manifests
def write_manifest(path: Path, rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    return path


def test_manifest_builds_the_taxonomy_and_keeps_splits(image_tree_dir):
    rows = [["path", "class", "family", "genus", "split"]]
    for rel, names in IMAGE_TREE.items():
        split = "val" if rel.endswith("l2.webp") else ""
        rows.append([f"images/{rel}", *names, *[""] * (3 - len(names)), split])
    manifest = write_manifest(image_tree_dir.parent / "manifest.csv", rows)
    tax, samples = samples_from_manifest(manifest)
    assert tax.level_names == ["class", "family", "genus"]
    assert labels_by_file(tax, samples, image_tree_dir) == IMAGE_TREE
    assert all(Path(s.path).is_file() for s in samples)  # relative to the CSV's folder
    assert [s.split for s in samples].count("val") == 1
    assert samples[0].extra["line"] == 2
    # given the taxonomy, the rows are resolved against it
    folder_tax, _ = samples_from_folder_tree(image_tree_dir)
    same_tax, again = samples_from_manifest(manifest, folder_tax)
    assert same_tax is folder_tax
    assert [s.node_id for s in again] == [s.node_id for s in samples]


@pytest.mark.parametrize(
    ("rows", "fragments"),
    [
        ([["file", "a"], ["x.png", "A"]], ["m.csv line 1", "'path'"]),
        ([["path", "a", "b"], ["x.png", "", "B"]], ["m.csv line 2", "'a' is blank", "'b'"]),
        ([["path", "a"], ["x.png", "A"], ["", "A"]], ["m.csv line 3", "'path' cell is blank"]),
        ([["path", "a", "split"], ["x.png", "A", "test"]], ["m.csv line 2", "'test'"]),
        ([["path", "a"], ["x.png", "A", "extra"]], ["m.csv line 2", "more cells"]),
        ([["path", "a"], ["x.png", ""]], ["m.csv", "no row has a label"]),
    ],
)
def test_manifest_errors_name_the_line(tmp_path, rows, fragments):
    with pytest.raises(DataError) as exc:
        samples_from_manifest(write_manifest(tmp_path / "m.csv", rows))
    msg = str(exc.value)
    assert "\n" not in msg and msg.endswith(".")
    for fragment in fragments:
        assert fragment in msg, (fragment, msg)


def test_manifest_against_a_taxonomy_refuses_unknown_paths(tmp_path, small_taxonomy):
    rows = [
        ["path", "class", "family"],
        ["a.png", "Aves", "Corvidae"],
        ["b.png", "Aves", "Hirundo"],  # not in the small taxonomy
    ]
    with pytest.raises(DataError, match=r"m\.csv line 3: 'Aves / Hirundo' is not a path"):
        samples_from_manifest(write_manifest(tmp_path / "m.csv", rows), small_taxonomy)


# ---------------------------------------------------------------------- splits
def leaf_samples(sizes: dict[str, int]) -> tuple[LevelIndex, list[Sample]]:
    tax = Taxonomy()
    top = tax.add("top", node_id="top")
    samples = []
    for leaf, n in sizes.items():
        tax.add(leaf, top, node_id=leaf)
        samples += [Sample(f"{leaf}/{i:03d}.png", leaf) for i in range(n)]
    return LevelIndex.build(tax), samples


def test_split_by_hand():
    index, samples = leaf_samples({"big": 10, "mid": 5, "one": 1})
    train, val = split_samples(samples, index, 0.2, seed=0)
    # quotas 2, 1, 0.2 -> floors 2, 1, 0; round(16 * 0.2) = 3 places, all taken by floors
    assert Counter(s.node_id for s in val) == {"big": 2, "mid": 1}
    assert len(train) == 13 and "one" in {s.node_id for s in train}
    index, samples = leaf_samples({"a": 3, "b": 3, "c": 3})
    train, val = split_samples(samples, index, 0.5, seed=0)
    # quotas 1.5 each -> floors 1; round(4.5) = 4, so one class gives a second sample
    assert sorted(Counter(s.node_id for s in val).values()) == [1, 1, 2]


def test_split_is_deterministic_order_free_and_honours_fixed_splits():
    index, samples = leaf_samples({"a": 7, "b": 4, "c": 2})
    samples[0].split = "val"
    samples[1].split = "train"
    samples.append(Sample("none.png", None))
    train, val = split_samples(samples, index, 0.3, seed=4)
    assert samples[0] in val and samples[1] in train and samples[-1] in train
    again = split_samples(list(reversed(samples)), index, 0.3, seed=4)
    assert {s.path for s in again[1]} == {s.path for s in val}
    assert val == [s for s in samples if s in val]  # input order kept
    others = {
        frozenset(s.path for s in split_samples(samples, index, 0.3, seed=k)[1]) for k in range(8)
    }
    assert len(others) > 1  # the seed matters


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 12), min_size=1, max_size=6),
    fraction=st.floats(0.0, 0.9),
    seed=st.integers(0, 3),
)
def test_split_counts(sizes, fraction, seed):
    index, samples = leaf_samples({f"leaf{k}": n for k, n in enumerate(sizes)})
    train, val = split_samples(samples, index, fraction, seed)
    assert sorted(s.path for s in train + val) == sorted(s.path for s in samples)
    per_leaf = Counter(s.node_id for s in val)
    # each class gives its floor share plus at most one, and keeps a training sample
    capacity = sum(min(int(n * fraction) + 1, n - 1) for n in sizes)
    assert len(val) == min(round(len(samples) * fraction), capacity)
    for k, n in enumerate(sizes):
        got = per_leaf[f"leaf{k}"]
        assert got <= n - 1  # every class keeps a training sample
        assert int(n * fraction) <= got <= int(n * fraction) + 1  # stratified


def test_split_errors():
    index, samples = leaf_samples({"a": 3})
    with pytest.raises(HierTuneError, match="fraction"):
        split_samples(samples, index, 1.0)
    with pytest.raises(DataError, match="not in the taxonomy"):
        split_samples([Sample("x.png", "ghost")], index)
    with pytest.raises(DataError, match="'test'"):
        split_samples([Sample("x.png", "a", split="test")], index)


# ---------------------------------------------------------------------- images
def test_dataset_yields_images_and_targets(image_tree_dir):
    tax, samples = samples_from_folder_tree(image_tree_dir)
    index = LevelIndex.build(tax)
    data = ImageLabelDataset(samples, index)
    assert len(data) == len(samples) and data.bad == []
    for i, s in enumerate(data.samples):
        image, target = data[i]
        assert image.shape == (3, 8, 8) and image.dtype == torch.float32
        assert image.min() >= 0.0 and image.max() <= 1.0
        assert target.dtype == torch.long and target.tolist() == index.target(s.node_id)
    images, targets = next(iter(DataLoader(data, batch_size=4)))
    assert images.shape == (4, 3, 8, 8) and targets.shape == (4, 3)


def test_corrupt_images_are_reported_and_skipped(image_tree_dir, caplog):
    folder = image_tree_dir / "Aves" / "Corvidae" / "Pica"
    (folder / "garbage.png").write_bytes(b"this is not a png at all")
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "full.png")
    whole = (folder / "full.png").read_bytes()
    (folder / "full.png").unlink()
    (folder / "truncated.png").write_bytes(whole[: len(whole) * 3 // 4])  # header intact
    tax, samples = samples_from_folder_tree(image_tree_dir)
    samples.append(Sample(folder / "deleted.png", samples[0].node_id))
    good, bad = check_images(samples)
    reasons = {Path(p).name: r for p, r in bad}
    assert set(reasons) == {"garbage.png", "truncated.png", "deleted.png"}
    assert "not an image" in reasons["garbage.png"]
    assert "corrupt or truncated" in reasons["truncated.png"]
    assert reasons["deleted.png"] == "The file does not exist."
    assert all(r.endswith(".") and "\n" not in r for r in reasons.values())
    assert len(good) == len(samples) - 3
    # paths work as well as samples
    assert check_images([folder / "garbage.png", folder / "p1.jpg"])[0] == [folder / "p1.jpg"]
    with caplog.at_level(logging.WARNING, logger="hiercore.data"):
        data = ImageLabelDataset(samples, LevelIndex.build(tax))
    assert len(data) == len(samples) - 3
    assert sorted(Path(p).name for p, _ in data.bad) == sorted(reasons)
    assert sum("garbage.png" in r.getMessage() for r in caplog.records) == 1
    for i in range(len(data)):
        data[i]


def test_image_that_breaks_after_the_check_is_replaced(image_tree_dir, caplog):
    tax, samples = samples_from_folder_tree(image_tree_dir)
    data = ImageLabelDataset(samples, LevelIndex.build(tax))
    Path(data.samples[0].path).write_bytes(b"broken later")
    with caplog.at_level(logging.WARNING, logger="hiercore.data"):
        _, target = data[0]
    assert target.tolist() == data.targets[1].tolist()
    assert any("failed to load" in r.getMessage() for r in caplog.records)


def test_dataset_refuses_labels_outside_the_taxonomy(image_tree_dir, small_taxonomy):
    _, samples = samples_from_folder_tree(image_tree_dir)
    with pytest.raises(DataError, match="not in the taxonomy"):
        ImageLabelDataset(samples, LevelIndex.build(small_taxonomy))


def test_sample_paths_are_strings():
    assert Sample(Path("a") / "b.png", None).path == os.path.join("a", "b.png")


# ---------------------------------------------------------------------- zips
def make_zip(path: Path, members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, target)
    return path


def test_zip_extracts_inside_dest(tmp_path, image_tree_dir):
    png = (image_tree_dir / "loose.png").read_bytes()
    archive = make_zip(
        tmp_path / "good.zip",
        {"Aves/Corvus/a.png": png, "Aves/b.png": png, "__MACOSX/._a.png": b"x", "./top.png": png},
    )
    dest = tmp_path / "out"
    files = extract_zip_safely(archive, dest)
    assert [p.relative_to(dest).as_posix() for p in files] == [
        "Aves/Corvus/a.png",
        "Aves/b.png",
        "top.png",
    ]
    assert all(p.read_bytes() == png for p in files)
    assert not (dest / "__MACOSX").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.zip", "images", "out"]
    tax, samples = samples_from_folder_tree(dest)
    assert len(samples) == 3 and tax.find_by_path(["Aves", "Corvus"]) is not None


@pytest.mark.parametrize(
    ("members", "symlinks", "limit", "fragment"),
    [
        ({"ok.png": b"x", "../evil.png": b"x"}, None, 10**6, "outside the folder"),
        ({"ok.png": b"x", "a/../../evil.png": b"x"}, None, 10**6, "outside the folder"),
        ({"ok.png": b"x", "/etc/evil": b"x"}, None, 10**6, "absolute path"),
        ({"ok.png": b"x", "C:/evil": b"x"}, None, 10**6, "absolute path"),
        ({"ok.png": b"x"}, {"link": "/etc/passwd"}, 10**6, "symbolic link"),
        ({"ok.png": b"x", "bomb.bin": b"\0" * 200_000}, None, 100_000, "zip bomb"),
    ],
)
def test_zip_refusals_write_nothing(tmp_path, members, symlinks, limit, fragment):
    archive = make_zip(tmp_path / "bad.zip", members, symlinks)
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(DataError) as exc:
        extract_zip_safely(archive, tmp_path / "out", max_total_bytes=limit)
    msg = str(exc.value)
    assert fragment in msg and "bad.zip" in msg and "\n" not in msg and msg.endswith(".")
    assert sorted(tmp_path.rglob("*")) == before


def test_zip_that_inflates_past_the_limit_is_cleaned_up(tmp_path, monkeypatch):
    # Python's zipfile never inflates past a member's declared size, so the running count
    # is a second line of defence: switch the first check off to see it clean up.
    from hiercore import data as data_module

    check = data_module._checked_members
    monkeypatch.setattr(
        data_module,
        "_checked_members",
        lambda archive, name, _, n, *note: check(archive, name, 10**12, n, *note),
    )
    archive = make_zip(tmp_path / "big.zip", {"a.bin": b"\0" * 50_000, "b.bin": b"\0" * 50_000})
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(DataError, match="inflates to more than"):
        extract_zip_safely(archive, tmp_path / "out", max_total_bytes=60_000)
    assert sorted(tmp_path.rglob("*")) == before


def test_zip_input_errors(tmp_path):
    (tmp_path / "not.zip").write_bytes(b"plain text")
    with pytest.raises(DataError, match="not a readable zip"):
        extract_zip_safely(tmp_path / "not.zip", tmp_path / "out")
    with pytest.raises(DataError, match="no such zip"):
        extract_zip_safely(tmp_path / "missing.zip", tmp_path / "out")
    archive = make_zip(tmp_path / "many.zip", {f"{i}.png": b"x" for i in range(5)})
    with pytest.raises(DataError, match="more than the limit of 3"):
        extract_zip_safely(archive, tmp_path / "out", max_files=3)
    assert not (tmp_path / "out").exists()


def test_manifest_metadata_columns_are_not_levels(tmp_path):
    """A `style` column (as in the demo manifest) is kept per sample, not read as a rank."""
    write_image(tmp_path / "a.png")
    write_image(tmp_path / "b.png")
    (tmp_path / "m.csv").write_text(
        "path,style,split,order,family\na.png,flat,train,Aves,Corvidae\nb.png,shaded,val,Aves,\n"
    )
    tax, samples = samples_from_manifest(tmp_path / "m.csv")
    assert tax.level_names == ["order", "family"]
    assert [s.extra["style"] for s in samples] == ["flat", "shaded"]
    assert [s.split for s in samples] == ["train", "val"]
    # with a taxonomy that names its ranks, any other column is metadata
    (tmp_path / "m2.csv").write_text("path,painter,order,family\na.png,Ann,Aves,Corvidae\n")
    _, again = samples_from_manifest(tmp_path / "m2.csv", tax)
    assert again[0].node_id == samples[0].node_id and again[0].extra["painter"] == "Ann"


def test_training_and_prediction_read_an_image_into_the_same_tensor(tmp_path):
    """One reader: a transparent PNG lands on white and an EXIF-rotated JPEG is turned
    upright, whether training's dataset or the predictor opens it."""
    from PIL import Image

    from hiercore.data import ImageLabelDataset, Sample
    from hiercore.images import open_rgb
    from hiercore.models import load_clip
    from hiercore.taxonomy import LevelIndex, Taxonomy

    png = Image.new("RGBA", (40, 20), (255, 0, 0, 0))
    png.paste((0, 0, 255, 255), (0, 0, 10, 20))
    png.save(tmp_path / "clear.png")
    jpg = Image.new("RGB", (40, 20), (0, 200, 0))
    exif = jpg.getexif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to view
    jpg.save(tmp_path / "turned.jpg", exif=exif)
    tax = Taxonomy()
    leaf = tax.add("thing")
    preprocess = load_clip("tiny-random").preprocess
    samples = [Sample(str(tmp_path / n), leaf) for n in ("clear.png", "turned.jpg")]
    dataset = ImageLabelDataset(samples, LevelIndex.build(tax), preprocess)
    for i, name in enumerate(("clear.png", "turned.jpg")):
        torch.testing.assert_close(dataset[i][0], preprocess(open_rgb(tmp_path / name)))
    assert open_rgb(tmp_path / "clear.png").getpixel((30, 10)) == (255, 255, 255)
    assert open_rgb(tmp_path / "turned.jpg").size == (20, 40)
