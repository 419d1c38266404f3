"""Generated image sets whose classes a tiny CLIP can learn in a few steps.

Every leaf of a 3-level tree (2 x 2 x 2) gets its own look: the first level picks the
background colour, the second the shape's colour, the third the shape (square or bar),
so each level is visible in the pixels and a model can beat chance quickly.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
from PIL import Image

TREE = {
    "warm": {"reds": ["square", "bar"], "oranges": ["square", "bar"]},
    "cool": {"blues": ["square", "bar"], "greens": ["square", "bar"]},
}
BACKGROUND = {"warm": (250, 230, 200), "cool": (200, 220, 250)}
INK = {
    "reds": (200, 20, 20),
    "oranges": (240, 140, 0),
    "blues": (20, 40, 200),
    "greens": (20, 160, 40),
}


def draw(top: str, mid: str, leaf: str, size: int = 32, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    img = np.zeros((size, size, 3), dtype=np.float32) + BACKGROUND[top]
    ink = np.asarray(INK[mid], dtype=np.float32)
    c = size // 2 + int(rng.integers(-2, 3))
    r = size // 4
    if leaf == "square":
        img[c - r : c + r, c - r : c + r] = ink
    else:
        img[c - r // 3 : c + r // 3, 2 : size - 2] = ink
    img += rng.normal(0, 8, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def write_tree(root: Path, per_leaf: int = 6, size: int = 32) -> Path:
    """A nested class-folder tree: root/top/mid/leaf/*.png."""
    k = 0
    for top, mids in TREE.items():
        for mid, leaves in mids.items():
            for leaf in leaves:
                folder = root / top / mid / f"{mid}-{leaf}"
                folder.mkdir(parents=True, exist_ok=True)
                for i in range(per_leaf):
                    draw(top, mid, leaf, size, seed=k).save(folder / f"{i}.png")
                    k += 1
    return root


def write_manifest(root: Path, per_leaf: int = 6, size: int = 32) -> Path:
    """The same set as a CSV manifest (path, then one column per level)."""
    write_tree(root / "img", per_leaf, size)
    path = root / "manifest.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "group", "colour", "shape"])
        for png in sorted((root / "img").rglob("*.png")):
            top, mid, leaf = png.relative_to(root / "img").parts[:3]
            w.writerow([png.relative_to(root).as_posix(), top, mid, leaf])
    return path


def png_bytes(seed: int, size: int = 8) -> bytes:
    """A small PNG whose pixels (so whose hash) depend on `seed`."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()
