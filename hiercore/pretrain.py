"""Pretraining HierTune's embedded default CLIP on the demo emoji (issue: embedded default).

No pretrained CLIP weights can be downloaded where HierTune must also run, so the studio
ships a small CLIP (`configs/hiertune-small.json`) trained from scratch by this script,
contrastively, on image–caption pairs built from the emoji of the TRAINING art styles
only (Twemoji and Noto); the held-out style (OpenMoji) is never seen.

Captions use the same templates the model card gives for prompting, over the names of
every node on the emoji's path (leaf, subcategory, category) and over its CLDR keywords.
Several images in a batch can share a caption (two styles of one emoji, or two emoji of
one subcategory), so the loss is CLIP's symmetric cross-entropy with soft targets spread
over every pair whose captions are identical instead of a one-hot diagonal.

Because the captions contain the taxonomy's names, "zero-shot" results of this model
mean "on an unseen art style", not "on unseen classes"; the card says so.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import random
import time
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torchvision.transforms import v2

from hiercore.images import open_rgb
from hiercore.models.loading import CONFIG_DIR, register_configs

ARCH = "hiertune-small"
TEMPLATES = ["an emoji of {name}.", "an emoji of {name}, a kind of {parent}."]
DEMO_DIR = Path(__file__).resolve().parents[1] / "assets" / "demo"


def caption_pool(row: dict, keywords: list[str]) -> list[str]:
    """Every caption an image of this emoji may be paired with."""
    cat, sub, leaf = row["category"], row["subcategory"], row["emoji"]
    caps = [
        TEMPLATES[0].format(name=leaf),
        TEMPLATES[1].format(name=leaf, parent=sub),
        TEMPLATES[0].format(name=sub),
        TEMPLATES[1].format(name=sub, parent=cat),
        TEMPLATES[0].format(name=cat),
    ]
    caps += [TEMPLATES[0].format(name=k) for k in keywords if k and k != leaf]
    return caps


def caption_weights(n_keywords: int) -> list[float]:
    # leaf captions most often, then the ranks above, then keywords (which are noisy)
    base = [0.3, 0.25, 0.1, 0.1, 0.1]
    if n_keywords:
        return base + [0.15 / n_keywords] * n_keywords
    return [b / 0.85 for b in base]


def load_pairs(demo_dir: Path) -> tuple[list[Path], list[list[str]], list[list[float]]]:
    keywords: dict[str, list[str]] = {}
    with open(demo_dir / "captions.csv", newline="") as f:
        for row in csv.DictReader(f):
            kws = [k.strip() for k in row.get("keywords", "").split("|") if k.strip()]
            keywords[row["emoji"]] = sorted(set(kws))[:8]
    paths, pools, weights = [], [], []
    with open(demo_dir / "manifest.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["split"] != "train":
                continue
            kws = [k for k in keywords.get(row["emoji"], []) if k != row["emoji"]]
            paths.append(demo_dir / row["path"])
            pools.append(caption_pool(row, kws))
            weights.append(caption_weights(len(pools[-1]) - 5))
    return paths, pools, weights


def pretrain(
    out_dir: Path,
    demo_dir: Path = DEMO_DIR,
    steps: int = 3000,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    device: str = "auto",
    log_every: int = 50,
    init: Path | None = None,
) -> dict:
    """Train the small CLIP and write it (fp16 safetensors + config + card) to `out_dir`.

    `init` continues from an earlier output of this function (its weights, with a fresh
    schedule); the card then records both phases.
    """
    register_configs()
    dev = torch.device(
        "cuda"
        if device == "auto" and torch.cuda.is_available()
        else ("cpu" if device == "auto" else device)
    )
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model, _, preprocess = open_clip.create_model_and_transforms(ARCH)
    tokenizer = open_clip.get_tokenizer(ARCH)
    earlier: list[dict] = []
    if init is not None:
        state = load_file(str(Path(init) / "open_clip_model.safetensors"))
        model.load_state_dict({k: v.float() for k, v in state.items()})
        card = json.loads((Path(init) / "open_clip_config.json").read_text())["hiertune"]
        earlier = card["training"].get("phases", [card["training"]])
    model = model.to(dev).train()
    paths, pools, weights = load_pairs(demo_dir)
    size = model.visual.image_size
    size = size[0] if isinstance(size, tuple | list) else size
    base = v2.Compose([v2.PILToTensor(), v2.Resize(size), v2.ToDtype(torch.float32, scale=True)])
    images = torch.stack([base(open_rgb(p)) for p in paths])
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    augment = v2.Compose(
        [
            v2.RandomResizedCrop(size, scale=(0.6, 1.0), ratio=(0.85, 1.18), antialias=True),
            v2.ColorJitter(0.2, 0.2, 0.2, 0.03),
        ]
    )
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}], lr=lr
    )
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            (s + 1) / warm
            if s < warm
            else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, steps - warm)))
        ),
    )
    t0 = time.time()
    log = []
    for step in range(steps):
        idx = rng.sample(range(len(paths)), min(batch_size, len(paths)))
        caps = [rng.choices(pools[i], weights[i])[0] for i in idx]
        x = torch.stack([augment(images[i]) for i in idx])
        x = ((x - mean) / std).to(dev)
        tokens = tokenizer(caps).to(dev)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            f = F.normalize(model.encode_image(x), dim=-1)
            g = F.normalize(model.encode_text(tokens), dim=-1)
            logits = model.logit_scale.exp() * f @ g.t()
        same = torch.tensor([[a == b for b in caps] for a in caps], dtype=torch.float32, device=dev)
        target = same / same.sum(1, keepdim=True)
        loss = 0.5 * (
            F.cross_entropy(logits.float(), target) + F.cross_entropy(logits.float().t(), target)
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        if step % log_every == 0 or step == steps - 1:
            el = time.time() - t0
            value = float(loss.detach())
            log.append({"step": step, "loss": round(value, 4), "elapsed_s": round(el, 1)})
            print(f"step {step}/{steps} loss {value:.3f} {el:.0f}s", flush=True)
    train_time = time.time() - t0
    phase = {
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "train_time_s": round(train_time, 1),
        "device": str(dev),
        "loss_log": log[-5:],
    }
    phases = [*earlier, phase]
    return _write(
        model.eval().cpu(),
        preprocess,
        out_dir,
        {
            "arch": ARCH,
            "n_train_images": len(paths),
            "steps": sum(p["steps"] for p in phases),
            "train_time_s": round(sum(p["train_time_s"] for p in phases), 1),
            "phases": phases,
        },
    )


def _write(model, preprocess, out_dir: Path, info: dict) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    weights = out_dir / "open_clip_model.safetensors"
    save_file(state, str(weights))
    model_cfg = json.loads((CONFIG_DIR / f"{ARCH}.json").read_text())
    config = {
        "model_cfg": model_cfg,
        "preprocess_cfg": {
            "mean": list(open_clip.OPENAI_DATASET_MEAN),
            "std": list(open_clip.OPENAI_DATASET_STD),
            "interpolation": "bicubic",
            "resize_mode": "shortest",
        },
        "hiertune": {"templates": TEMPLATES, "training": info},
    }
    (out_dir / "open_clip_config.json").write_text(json.dumps(config, indent=2) + "\n")
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    (out_dir / "SHA256SUMS").write_text(f"{digest}  open_clip_model.safetensors\n")
    return {**info, "sha256": digest}


def register_cli(sub) -> None:
    p = sub.add_parser("pretrain-default", help="pretrain the embedded small CLIP on the demo")
    p.add_argument("--out", default=str(DEMO_DIR.parent / "model"))
    p.add_argument("--demo", default=str(DEMO_DIR))
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--init", default=None, help="continue from an earlier output folder")
    p.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> int:
    info = pretrain(
        Path(args.out),
        Path(args.demo),
        args.steps,
        args.batch_size,
        args.lr,
        args.seed,
        args.device,
        init=Path(args.init) if args.init else None,
    )
    print(json.dumps({k: v for k, v in info.items() if k != "phases"}, indent=2))
    return 0
