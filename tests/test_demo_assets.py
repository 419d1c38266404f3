"""Checks on the shipped emoji demo dataset under assets/demo (built by assets/build_demo.py).

The files are read with the csv module and PIL only, independently of the
build script, so a broken or hand-edited output is caught whatever produced it.
"""

from __future__ import annotations

import csv
import hashlib
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from PIL import Image, ImageStat

DEMO = Path(__file__).resolve().parent.parent / "assets" / "demo"
RANKS = ["category", "subcategory", "emoji"]
# Styles drawn for every leaf, and those that may lack some (an iconify set without the
# glyph), with the split of each style: OpenMoji is the held-out validation style.
FULL_STYLES = {"twemoji": "train", "noto": "train", "openmoji": "val"}
PARTIAL_STYLES = {
    "fluent-color": "train",
    "fluent-flat": "train",
    "fluent-hc": "train",
    "emojione": "train",
    "emojione-v1": "train",
    "noto-v1": "train",
}
STYLES = {**FULL_STYLES, **PARTIAL_STYLES}
# A partial style still draws most leaves, or it would be a style of a few subcategories.
MIN_PARTIAL_COVERAGE = 0.6
IMAGE_SIZE = (64, 64)
MAX_DEMO_BYTES = 25 * 1024 * 1024
# Everything shipped under assets/ (demo, embedded model, scripts) stays below this.
MAX_ASSETS_BYTES = 60 * 1024 * 1024


def read_rows(name: str) -> tuple[list[str], list[dict[str, str]]]:
    with (DEMO / name).open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


@pytest.fixture(scope="module")
def taxonomy_rows() -> list[dict[str, str]]:
    header, rows = read_rows("taxonomy.csv")
    assert header == [*RANKS, "description"]
    return rows


@pytest.fixture(scope="module")
def taxonomy(taxonomy_rows) -> list[dict[str, str]]:
    """The leaf rows (the others describe a category or subcategory)."""
    return [row for row in taxonomy_rows if row["emoji"]]


@pytest.fixture(scope="module")
def manifest() -> list[dict[str, str]]:
    header, rows = read_rows("manifest.csv")
    assert header == ["path", "style", "split", *RANKS]
    return rows


@pytest.fixture(scope="module")
def captions() -> list[dict[str, str]]:
    header, rows = read_rows("captions.csv")
    assert header == ["unified", "emoji", "category", "subcategory", "keywords"]
    return rows


def leaf_of(row: dict[str, str]) -> tuple[str, str, str]:
    return (row["category"], row["subcategory"], row["emoji"])


def test_taxonomy_has_no_blank_or_repeated_leaf(taxonomy):
    leaves = [leaf_of(row) for row in taxonomy]
    assert all(all(part.strip() for part in leaf) for leaf in leaves)
    repeated = [leaf for leaf, n in Counter(leaves).items() if n > 1]
    assert not repeated


def test_no_name_repeated_among_siblings(taxonomy):
    children: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for row in taxonomy:
        children[(row["category"], row["subcategory"])].append(row["emoji"])
    subcategories: dict[str, set[str]] = defaultdict(set)
    for category, subcategory in children:
        subcategories[category].add(subcategory)
    for parent, names in children.items():
        assert len(names) == len(set(names)), f"repeated leaf under {parent}"
    # A subcategory name appearing under two categories would be two nodes
    # sharing a name in one level, which the wide CSV cannot tell apart.
    owners = Counter(sub for subs in subcategories.values() for sub in subs)
    assert max(owners.values()) == 1


def test_taxonomy_scale_suits_a_small_cpu_model(taxonomy):
    categories = {row["category"] for row in taxonomy}
    subcategories = {(row["category"], row["subcategory"]) for row in taxonomy}
    assert 6 <= len(categories) <= 8
    assert 40 <= len(subcategories) <= 80
    assert 400 <= len(taxonomy) <= 900
    assert "Flags" not in categories and "Component" not in categories


def test_every_inner_node_has_a_description_and_no_leaf_has_one(taxonomy_rows, taxonomy):
    described = {}
    for row in taxonomy_rows:
        if row["emoji"]:
            assert not row["description"], row
            continue
        node = (row["category"], row["subcategory"])
        assert node not in described, f"{node} described twice"
        assert row["description"].strip(), node
        described[node] = row["description"]
    categories = {(row["category"], "") for row in taxonomy}
    subcategories = {(row["category"], row["subcategory"]) for row in taxonomy}
    assert set(described) == categories | subcategories
    # A description says it in other words, not the node's own name again.
    assert all(desc != node[1] and desc != node[0] for node, desc in described.items())


def test_hiercore_reads_the_descriptions(taxonomy):
    from hiercore.taxonomy.formats import load_taxonomy

    tax = load_taxonomy(DEMO / "taxonomy.csv")
    assert len(tax.leaves()) == len(taxonomy)
    bird = tax.find_by_path(["Animals & Nature", "animal-bird"])
    assert tax.description(bird) == "birds"
    food = tax.find_by_path(["Food & Drink"])
    assert tax.description(food) == "food and drink"


def test_every_manifest_row_is_a_taxonomy_leaf(taxonomy, manifest):
    leaves = {leaf_of(row) for row in taxonomy}
    strays = [row["path"] for row in manifest if leaf_of(row) not in leaves]
    assert not strays


def test_every_leaf_has_one_image_per_full_style_and_at_most_one_per_other(taxonomy, manifest):
    counts = Counter((leaf_of(row), row["style"]) for row in manifest)
    assert max(counts.values()) == 1
    for row in taxonomy:
        for style in FULL_STYLES:
            assert counts[(leaf_of(row), style)] == 1, (leaf_of(row), style)
    per_style = Counter(row["style"] for row in manifest)
    assert set(per_style) == set(STYLES)
    for style in PARTIAL_STYLES:
        assert per_style[style] >= MIN_PARTIAL_COVERAGE * len(taxonomy), style


def test_every_style_draws_nearly_every_subcategory(taxonomy, manifest):
    # Fluent has no family glyphs and EmojiOne v1 no faces with hands; no style may lack more.
    subcategories = {row["subcategory"] for row in taxonomy}
    for style in STYLES:
        drawn = {row["subcategory"] for row in manifest if row["style"] == style}
        assert len(subcategories - drawn) <= 1, (style, subcategories - drawn)


def test_no_drawing_of_an_added_style_labels_two_leaves(manifest):
    # (Twemoji and Noto draw a few family emoji alike; they are kept as published.)
    seen: dict[tuple[str, str], str] = {}
    for row in manifest:
        if row["style"] in PARTIAL_STYLES:
            digest = hashlib.sha256((DEMO / row["path"]).read_bytes()).hexdigest()
            other = seen.setdefault((row["style"], digest), row["emoji"])
            assert other == row["emoji"], (row["style"], other, row["emoji"])


def test_openmoji_is_only_the_validation_split(manifest):
    """The held-out style is never trained on, and nothing else is held out."""
    val = {row["style"] for row in manifest if row["split"] == "val"}
    assert val == {"openmoji"}
    assert not [row for row in manifest if row["split"] == "train" and "openmoji" in row["path"]]


def test_splits_follow_the_style(manifest):
    for row in manifest:
        assert row["style"] in STYLES
        assert row["split"] == STYLES[row["style"]], row["path"]
        assert row["path"].startswith(f"images/{row['style']}/"), row["path"]


def test_paths_name_the_captioned_emoji(manifest, captions):
    unified_of = {leaf_of(row): row["unified"] for row in captions}
    for row in manifest:
        assert Path(row["path"]).name == f"{unified_of[leaf_of(row)]}.png"


def test_captions_cover_each_leaf_once_with_keywords(taxonomy, captions):
    assert sorted(leaf_of(row) for row in captions) == sorted(leaf_of(row) for row in taxonomy)
    assert len({row["unified"] for row in captions}) == len(captions)
    for row in captions:
        keywords = row["keywords"].split("|")
        assert all(word.strip() for word in keywords), row["unified"]
        # The leaf's own name leads its keywords, so a caption always names it.
        assert keywords[0] == row["emoji"]


def test_every_image_opens_as_a_drawn_rgb_picture(manifest):
    for row in manifest:
        path = DEMO / row["path"]
        assert path.is_file(), row["path"]
        with Image.open(path) as image:
            assert image.format == "PNG"
            assert image.mode == "RGB", row["path"]
            assert image.size == IMAGE_SIZE, row["path"]
            # Something is drawn: a failed render comes out as one flat colour.
            assert max(ImageStat.Stat(image).stddev) > 10, row["path"]


def test_transparency_was_flattened_onto_white(manifest):
    # Glyphs leave the top-left corner empty almost always (a few Twemoji
    # tiles fill their frame), so a style whose corners are mostly not white
    # had its alpha dropped onto black or left some other colour.
    white_corners: Counter[str] = Counter()
    for row in manifest:
        with Image.open(DEMO / row["path"]) as image:
            white_corners[row["style"]] += image.getpixel((0, 0)) == (255, 255, 255)
    per_style = Counter(row["style"] for row in manifest)
    for style, total in per_style.items():
        assert white_corners[style] >= 0.9 * total, style


def test_no_image_lies_outside_the_manifest(manifest):
    listed = {row["path"] for row in manifest}
    on_disk = {p.relative_to(DEMO).as_posix() for p in (DEMO / "images").rglob("*") if p.is_file()}
    assert on_disk == listed


def test_demo_fits_its_size_budget():
    total = sum(p.stat().st_size for p in DEMO.rglob("*") if p.is_file())
    assert total < MAX_DEMO_BYTES
    assets = DEMO.parent
    shipped = sum(p.stat().st_size for p in assets.rglob("*") if p.is_file())
    assert shipped < MAX_ASSETS_BYTES
