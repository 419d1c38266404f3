"""A no-learning sanity baseline for the demo: nearest class mean on raw pixels.

Each image is read like everywhere else (RGB on white), resized to 32×32 (bilinear) and
flattened; a class is the mean of its training images; a held-out image takes the class
of the nearest mean (Euclidean), separately at each level. A fine-tune or a pretrained
model that does not beat this at a level has not learned that level (FINDINGS §3).

    python -m benchmarks.pixel_baseline [--demo assets/demo]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hiercore.data import samples_from_manifest
from hiercore.images import open_rgb
from hiercore.taxonomy.formats import load_taxonomy


def pixels(paths: list[str], side: int = 32) -> torch.Tensor:
    rows = [np.asarray(open_rgb(p).resize((side, side), Image.BILINEAR), np.float32) for p in paths]
    return torch.from_numpy(np.stack(rows)).flatten(1) / 255


def level_accuracy(demo: Path) -> list[float]:
    tax = load_taxonomy(demo / "taxonomy.csv")
    _, samples = samples_from_manifest(demo / "manifest.csv", tax)
    train = [s for s in samples if s.split == "train"]
    val = [s for s in samples if s.split == "val"]
    x_train, x_val = pixels([s.path for s in train]), pixels([s.path for s in val])
    out = []
    for depth in range(1, tax.max_depth + 1):
        node = [tax.path(s.node_id)[depth - 1] for s in train]
        classes = sorted(set(node))
        y = torch.tensor([classes.index(n) for n in node])
        counts = torch.bincount(y, minlength=len(classes)).float()
        means = torch.zeros(len(classes), x_train.shape[1]).index_add_(0, y, x_train)
        means /= counts[:, None]
        guess = torch.cdist(x_val, means).argmin(1)
        truth = [tax.path(s.node_id)[depth - 1] for s in val]
        out.append(float(np.mean([classes[g] == t for g, t in zip(guess, truth, strict=True)])))
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--demo", default=str(Path(__file__).resolve().parents[1] / "assets" / "demo"))
    args = p.parse_args()
    acc = level_accuracy(Path(args.demo))
    print("pixel nearest-class-mean, held-out split, level accuracy:", [round(a, 3) for a in acc])


if __name__ == "__main__":
    main()
