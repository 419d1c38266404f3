"""Shared fixtures: a small 3-level taxonomy and a generated class-folder tree of images."""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hiercore.taxonomy import Taxonomy

# The small taxonomy, as (id, name, parent id or "", description):
#   Aves (birds)
#     Corvidae: Corvus (crows and ravens), Pica
#     Laridae: Larus
#   Mammalia
#     Felidae: Felis, Panthera
SMALL_NODES = [
    ("aves", "Aves", "", "birds"),
    ("corvidae", "Corvidae", "aves", ""),
    ("corvus", "Corvus", "corvidae", "crows and ravens"),
    ("pica", "Pica", "corvidae", ""),
    ("laridae", "Laridae", "aves", ""),
    ("larus", "Larus", "laridae", ""),
    ("mammalia", "Mammalia", "", ""),
    ("felidae", "Felidae", "mammalia", ""),
    ("felis", "Felis", "felidae", ""),
    ("panthera", "Panthera", "felidae", ""),
]


@pytest.fixture(autouse=True)
def unfrozen_heap():
    """The studio's `launch` freezes the objects alive at start-up (`webapp.app`); in a test
    process those include earlier tests' apps, which would then never be collected."""
    yield
    gc.unfreeze()


@pytest.fixture
def small_taxonomy() -> Taxonomy:
    return Taxonomy.from_nodes(
        [{"id": i, "name": n, "parent": p, "description": d} for i, n, p, d in SMALL_NODES],
        level_names=["class", "family", "genus"],
    )


_PIL_FORMATS = {".jpg": "JPEG", ".webp": "WEBP", ".bmp": "BMP", ".gif": "GIF"}


def write_image(path: Path, colour: tuple[int, int, int] = (10, 120, 200), size: int = 8) -> Path:
    """A flat-colour image, in the format its extension names (PNG otherwise)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.zeros((size, size, 3), dtype=np.uint8) + np.asarray(colour, dtype=np.uint8)
    Image.fromarray(pixels).save(path, format=_PIL_FORMATS.get(path.suffix.lower(), "PNG"))
    return path


# Relative image paths of the generated tree and the name path each is labelled with
# (an image directly in an inner folder is a partial label; one at the root is unlabelled).
IMAGE_TREE = {
    "Aves/Corvidae/Corvus/c1.png": ("Aves", "Corvidae", "Corvus"),
    "Aves/Corvidae/Corvus/c2.PNG": ("Aves", "Corvidae", "Corvus"),
    "Aves/Corvidae/Pica/p1.jpg": ("Aves", "Corvidae", "Pica"),
    "Aves/Laridae/Larus/l1.png": ("Aves", "Laridae", "Larus"),
    "Aves/Laridae/Larus/l2.webp": ("Aves", "Laridae", "Larus"),
    "Aves/Corvidae/unsure.png": ("Aves", "Corvidae"),
    "Mammalia/Felidae/Felis/f1.bmp": ("Mammalia", "Felidae", "Felis"),
    "Mammalia/Felidae/Felis/f2.gif": ("Mammalia", "Felidae", "Felis"),
    "loose.png": (),
}


@pytest.fixture
def image_tree_dir(tmp_path) -> Path:
    """Class folders with tiny images of several formats, plus files that must be ignored."""
    root = tmp_path / "images"
    for k, rel in enumerate(IMAGE_TREE):
        write_image(root / rel, (30 * k, 200 - 20 * k, 90))
    (root / "Aves" / "Corvidae" / "Corvus" / "notes.txt").write_text("not an image")
    write_image(root / "Aves" / "Corvidae" / "Corvus" / ".hidden.png", (0, 0, 0))
    write_image(root / ".cache" / "thumb.png", (0, 0, 0))
    (root / "Mammalia" / "Felidae" / "Panthera").mkdir(parents=True)  # a class with no images
    return root
