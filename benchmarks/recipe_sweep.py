"""The sweep behind the studio's default recipe (issue #8 D): demo fine-tunes, one per
setting, through the studio's own queue, each timed from Start to finished.

Every row is the form's defaults with a few overrides; the table it writes says what each
reached on the held-out OpenMoji style and how long it took on this machine.

    python -m benchmarks.recipe_sweep --out results/recipe
    python -m benchmarks.recipe_sweep --only vision-r8-lr2e-3 --out /tmp/sweep
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from benchmarks.demo_finetune import finetune_demo

_R16 = {"lr": 1e-2, "rank": 16, "lora_alpha": 32}

# name -> overrides of the form's defaults (zero-shot figures come from `hiercore eval`)
SETTINGS: dict[str, dict] = {
    "vision-r8-lr5e-4-3ep": {"lr": 5e-4, "epochs": 3},
    "vision-r8-lr2e-3-3ep": {"lr": 2e-3, "epochs": 3},
    "vision-r8-lr2e-3-5ep": {"lr": 2e-3, "epochs": 5},
    "vision-r16-lr2e-3-5ep": {"lr": 2e-3, "epochs": 5, "rank": 16, "lora_alpha": 32},
    "vision-r8-lr2e-3-5ep-ce": {"lr": 2e-3, "epochs": 5, "alpha": 0.0, "lam": 0.0},
    "vision-r32-lr5e-3-5ep": {"lr": 5e-3, "epochs": 5, "rank": 32, "lora_alpha": 64},
    "vision-r16-lr1e-2-5ep": {"lr": 1e-2, "epochs": 5, "rank": 16, "lora_alpha": 32},
    "vision-r16-lr1e-2-10ep-ce": {
        "lr": 1e-2,
        "epochs": 10,
        "rank": 16,
        "lora_alpha": 32,
        "alpha": 0.0,
        "lam": 0.0,
    },
    "vision-r16-lr1e-2-5ep-ce": {
        "lr": 1e-2,
        "epochs": 5,
        "rank": 16,
        "lora_alpha": 32,
        "alpha": 0.0,
        "lam": 0.0,
    },
    "text-r8-lr2e-3-3ep-b128": {"lr": 2e-3, "epochs": 3, "lora": "text", "batch_size": 128},
    "both-r8-lr2e-3-3ep-b128": {"lr": 2e-3, "epochs": 3, "lora": "both", "batch_size": 128},
    # the logit scale (FINDINGS §2: fixed at the model's 26.7 so far)
    "vision-r16-lr1e-2-10ep-ce-learnscale": {
        **_R16,
        "epochs": 10,
        "alpha": 0.0,
        "lam": 0.0,
        "learn_logit_scale": True,
    },
    "vision-r16-lr1e-2-10ep-ce-scale50": {
        **_R16,
        "epochs": 10,
        "alpha": 0.0,
        "lam": 0.0,
        "logit_scale": 50.0,
    },
    "vision-r16-lr1e-2-10ep": {**_R16, "epochs": 10},
    "vision-r16-lr1e-2-10ep-ce-style": {
        **_R16,
        "epochs": 10,
        "alpha": 0.0,
        "lam": 0.0,
        "style_augment": True,
    },
    "vision-r16-lr1e-2-20ep-ce": {**_R16, "epochs": 20, "alpha": 0.0, "lam": 0.0},
    "both-r16-lr1e-2-10ep-ce": {**_R16, "epochs": 10, "alpha": 0.0, "lam": 0.0, "lora": "both"},
    "vision-r16-lr1e-2-20ep-ce-learnscale": {
        **_R16,
        "epochs": 20,
        "alpha": 0.0,
        "lam": 0.0,
        "learn_logit_scale": True,
    },
    "vision-r16-lr1e-2-20ep-learnscale": {**_R16, "epochs": 20, "learn_logit_scale": True},
}
# every row above was measured before the image prototypes (docs/method.md §2.1) existed:
# they stay text-only, as recorded
SETTINGS = {name: {**overrides, "prototypes": 0.0} for name, overrides in SETTINGS.items()}
# the image-prototype weight w on the studio's default fine-tune, and the losses beside it
SETTINGS.update(
    {
        "default-w2": {},
        "default-w1": {"prototypes": 1.0},
        "default-w4": {"prototypes": 4.0},
        "default-w2-ce": {"alpha": 0.0, "lam": 0.0},
    }
)

COLUMNS = [
    "setting",
    "wall_s",
    "fpa",
    "fpa_consistent",
    "tice",
    "acc_category",
    "acc_subcategory",
    "acc_emoji",
    "overrides",
]


def row(name: str, result: dict, overrides: dict) -> dict:
    m = result["metrics"]
    acc = m.get("level_accuracy") or [float("nan")] * 3
    return {
        "setting": name,
        "wall_s": result["wall_s"],
        "fpa": round(m.get("fpa", float("nan")), 4),
        "fpa_consistent": round(m.get("consistent", {}).get("fpa", float("nan")), 4),
        "tice": round(m.get("tice", float("nan")), 4),
        "acc_category": round(acc[0], 4),
        "acc_subcategory": round(acc[1], 4),
        "acc_emoji": round(acc[-1], 4),
        "overrides": " ".join(f"{k}={v}" for k, v in overrides.items()),
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--only", nargs="*", help="names of SETTINGS to run (default: all)")
    p.add_argument("--model", default=None, help="a model other than the form's default")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = out / "sweep.csv"
    new = not table.is_file()
    with open(table, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        if new:
            w.writeheader()
        for name, overrides in SETTINGS.items():
            if args.only and name not in args.only:
                continue
            if args.model:
                overrides = {**overrides, "model": args.model}
            result = finetune_demo(overrides)
            w.writerow(row(name, result, overrides))
            f.flush()
            print(name, result["wall_s"], "s", result["metrics"].get("fpa"), flush=True)


if __name__ == "__main__":
    main()
