"""How much of a demo fine-tune's gain is the image prototypes alone (docs/method.md §2.1)?

The control: the embedded model with no training at all, its prototypes made from the
demo's training images (the eight training styles), scored on the held-out OpenMoji
style at a few weights w. Compare with the fine-tune rows of results/recipe/sweep.csv,
which add the same prototypes to a LoRA-trained image tower.

    python -m benchmarks.prototype_control [--weights 0 1 2 4] [--model default]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from hiercore.data import load_data
from hiercore.evaluation import collect, score
from hiercore.models import HierClip, load_clip
from hiercore.prototypes import from_features

DEMO = Path(__file__).resolve().parents[1] / "assets" / "demo"


def control(model: str, weights: list[float], demo: Path = DEMO) -> list[dict]:
    taxonomy, samples = load_data(str(demo / "manifest.csv"), str(demo / "taxonomy.csv"))
    train = [s for s in samples if s.split == "train" and s.node_id]
    val = [s for s in samples if s.split == "val" and s.node_id]
    net = HierClip(load_clip(model), taxonomy).eval()
    parents = net.parents()
    seen = collect(net, train, batch_size=256)
    prototypes = from_features(
        torch.from_numpy(seen.image_feats).float(),
        torch.from_numpy(seen.true[:, -1]),
        net.index.sizes[-1],
    )
    rows = []
    for w in weights:
        net.set_prototypes(*prototypes, weight=w)
        m = score(collect(net, val, batch_size=256), parents)
        rows.append(
            {
                "w": w,
                "fpa": round(m["fpa"], 4),
                "fpa_consistent": round(m["consistent"]["fpa"], 4),
                "tice": round(m["tice"], 4),
                "level_accuracy": [round(a, 4) for a in m["level_accuracy"]],
            }
        )
    return rows


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="default")
    p.add_argument("--weights", type=float, nargs="+", default=[0.0, 1.0, 2.0, 4.0])
    args = p.parse_args()
    print("no training; prototypes of the training styles; held-out OpenMoji")
    for row in control(args.model, args.weights):
        print(row)


if __name__ == "__main__":
    main()
