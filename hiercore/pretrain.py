"""Pretraining HierTune's embedded default CLIP (issue #8 C; the model card is assets/model).

No pretrained CLIP weights can be downloaded where HierTune must also run, so the studio
ships a small CLIP trained from scratch by this module, contrastively, on image–caption
pairs. Two sources of pairs:

- a corpus built by `hiercore.corpus` (`pretrain-default --build-corpus DIR`): emoji in
  many open art styles plus named icons from the npm registry, listed in ``corpus.csv``;
- the demo set alone (its training split), as the first embedded model was trained.

The held-out art style of the demo (OpenMoji) is never a source: `load_corpus_pairs`
refuses a corpus that holds it.

Captions come from the templates the model card gives for prompting, over the names on
an emoji's path (emoji, subcategory, category), the inner nodes' human descriptions from
the demo taxonomy, and the emoji's CLDR keywords; icons are captioned by their name and
their icon set's category. Several images in a batch can share a caption, so the loss is
CLIP's symmetric cross-entropy with soft targets spread over every pair whose captions are
identical instead of a one-hot diagonal.

A run can be cut into chunks (`minutes`): it saves its whole state (weights, optimiser,
schedule position, random streams) and a later call with `resume` goes on with the same
schedule, so a long CPU pretraining survives the end of a session.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torchvision.transforms import v2

from hiercore.errors import DataError
from hiercore.images import open_rgb
from hiercore.models.loading import CONFIG_DIR, register_configs

ARCH = "hiertune-resnet"
EMOJI_TEMPLATES = (
    "an emoji of {name}.",
    "an emoji of {name}, a kind of {parent}.",
    "an emoji of {description} ({name}).",
)
ICON_TEMPLATES = ("an icon of {name}.", "an icon of {name}, a kind of {parent}.")
TEMPLATES = list(EMOJI_TEMPLATES)
"""The prompt templates the card recommends (the emoji ones: the demo is emoji)."""
HELD_OUT = "openmoji"
DEMO_DIR = Path(__file__).resolve().parents[1] / "assets" / "demo"
STATE_NAME = "pretrain-state.pt"


@dataclass
class Pair:
    """One image, the captions it may be paired with (drawn by weight each step), and the
    classes they name: `keys[i]` is the class of `captions[i]`, `labels` the image's own
    classes at the leaf, subcategory and category ranks (None where it has none)."""

    path: Path
    captions: list[str]
    weights: list[float]
    kind: str = "emoji"
    keys: list[str] = field(default_factory=list)
    labels: tuple[str | None, str | None, str | None] = (None, None, None)


RANKS = ("leaf", "sub", "cat")


def emoji_captions(
    leaf: str,
    sub: str,
    cat: str,
    keywords: list[str],
    describe: dict[str, str],
) -> tuple[list[str], list[float], list[str]]:
    """Captions of one emoji, their weights and the class each names: its name most often,
    then its ranks (by name and by their description), then its keywords (noisy, rarely)."""
    one, two, described = EMOJI_TEMPLATES
    leaf_key = f"leaf:emoji:{leaf}"
    weighted: list[tuple[str, float, str]] = [(one.format(name=leaf), 0.3, leaf_key)]
    # the ranks' captions are the prompts `models.prompts` builds for them from these
    # templates, so zero-shot prompts are sentences the text tower was trained on
    if sub:
        weighted.append((two.format(name=leaf, parent=sub), 0.2, leaf_key))
    for rank, up, w, key in ((sub, cat, 0.2, f"sub:{sub}"), (cat, "", 0.15, f"cat:emoji:{cat}")):
        if not rank:
            continue
        forms = [one.format(name=rank)]
        if up:
            forms.append(two.format(name=rank, parent=up))
        if describe.get(rank):
            forms.append(described.format(name=rank, description=describe[rank]))
        weighted += [(text, w / len(forms), key) for text in forms]
    kws = [k for k in keywords if k and k != leaf][:8]
    weighted += [(one.format(name=k), 0.15 / len(kws), leaf_key) for k in kws]
    return _normalised(weighted)


def icon_captions(name: str, category: str) -> tuple[list[str], list[float], list[str]]:
    one, two = ICON_TEMPLATES
    key = f"leaf:icon:{name}"
    weighted = [(one.format(name=name), 0.6, key)]
    if category:
        weighted += [
            (two.format(name=name, parent=category.lower()), 0.25, key),
            (one.format(name=category.lower()), 0.15, f"cat:icon:{category.lower()}"),
        ]
    return _normalised(weighted)


def _normalised(
    weighted: list[tuple[str, float, str]],
) -> tuple[list[str], list[float], list[str]]:
    merged: dict[str, float] = {}
    keys: dict[str, str] = {}
    for text, w, key in weighted:
        merged[text] = merged.get(text, 0.0) + w
        keys.setdefault(text, key)
    total = sum(merged.values())
    return list(merged), [w / total for w in merged.values()], list(keys.values())


def _emoji_pair(path: Path, leaf, sub, cat, keywords, describe) -> Pair:
    caps, weights, keys = emoji_captions(leaf, sub, cat, keywords, describe)
    labels = (
        f"leaf:emoji:{leaf}",
        f"sub:{sub}" if sub else None,
        f"cat:emoji:{cat}" if cat else None,
    )
    return Pair(path, caps, weights, "emoji", keys, labels)


def _icon_pair(path: Path, name: str, category: str) -> Pair:
    caps, weights, keys = icon_captions(name, category)
    cat = f"cat:icon:{category.lower()}" if category else None
    return Pair(path, caps, weights, "icon", keys, (f"leaf:icon:{name}", None, cat))


def node_descriptions(taxonomy_file: Path) -> dict[str, str]:
    """Name -> description of every described node of a taxonomy file (empty if none)."""
    from hiercore.taxonomy.formats import load_taxonomy

    if not taxonomy_file.is_file():
        return {}
    tax = load_taxonomy(taxonomy_file)
    out = {}
    for node in tax.iter_dfs():
        text = tax.description(node).strip()
        if text:
            out[tax.name(node)] = text
    return out


def _keywords(cell: str) -> list[str]:
    return sorted({k.strip() for k in (cell or "").split("|") if k.strip()})


def load_corpus_pairs(corpus_dir: Path, describe: dict[str, str]) -> list[Pair]:
    """Pairs of a corpus folder's ``corpus.csv`` (format: `hiercore.corpus`), without the
    share-alike rows; a corpus holding the held-out style is refused."""
    listing = corpus_dir / "corpus.csv"
    if not listing.is_file():
        raise DataError(f"{corpus_dir} has no corpus.csv; build one with --build-corpus.")
    pairs = []
    with open(listing, newline="") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            if HELD_OUT in (row["style"] + row["package"]).lower():
                raise DataError(
                    f"{listing}, line {line}: {row['package']} is the held-out style and must "
                    "never be used for pretraining."
                )
            if "-SA" in row["license"].upper():
                # share-alike art may be shipped as data under its own licence, but whether
                # weights trained on it must be share-alike too is unsettled: leave it out
                continue
            path = corpus_dir / row["path"]
            if row["kind"] == "icon":
                pairs.append(_icon_pair(path, row["name"], row["category"]))
            else:
                pairs.append(
                    _emoji_pair(
                        path,
                        row["name"],
                        row["subcategory"],
                        row["category"],
                        _keywords(row["keywords"]),
                        describe,
                    )
                )
    return pairs


def load_demo_pairs(demo_dir: Path) -> list[Pair]:
    """Pairs of the demo's training split (its manifest and captions.csv keywords)."""
    keywords: dict[str, list[str]] = {}
    with open(demo_dir / "captions.csv", newline="") as f:
        for row in csv.DictReader(f):
            keywords[row["emoji"]] = _keywords(row.get("keywords", ""))
    describe = node_descriptions(demo_dir / "taxonomy.csv")
    pairs = []
    with open(demo_dir / "manifest.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["split"] != "train":
                continue
            pairs.append(
                _emoji_pair(
                    demo_dir / row["path"],
                    row["emoji"],
                    row["subcategory"],
                    row["category"],
                    keywords.get(row["emoji"], []),
                    describe,
                )
            )
    return pairs


def load_images(paths: list[Path], size: int, cache_dir: Path | None) -> torch.Tensor:
    """All images as one uint8 tensor (N, 3, size, size), cached as .npy beside the state."""
    key = hashlib.sha256("\n".join(map(str, paths)).encode()).hexdigest()[:16]
    cache = cache_dir / f"images-{size}-{key}.npy" if cache_dir else None
    if cache is not None and cache.is_file():
        return torch.from_numpy(np.load(cache, allow_pickle=False))
    base = v2.Compose([v2.PILToTensor(), v2.Resize(size), v2.CenterCrop(size)])
    images = torch.stack([base(open_rgb(p)) for p in paths])
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, images.numpy(), allow_pickle=False)
    return images


def augment_batch(x: torch.Tensor) -> torch.Tensor:
    """Random views of a uint8 batch (B, 3, H, W) as floats in [0, 1], all on tensors.

    Style is what must not matter: colour, line weight and shading vary between art
    styles, so brightness, contrast, saturation, greyscale and blur vary strongly; crops
    stay mild (an emoji fills its square) and hue is kept (a red and a green apple are two
    emoji). One vectorised pass: a per-image Python loop of torchvision transforms cost
    more than the model's step on a CPU.
    """
    b = x.shape[0]
    x = x.float() / 255
    u = lambda lo, hi: torch.empty(b, device=x.device).uniform_(lo, hi)  # noqa: E731
    side = u(0.75, 1.0)
    aspect = u(0.9, 1.1)
    sx, sy = side * aspect.sqrt(), side / aspect.sqrt()
    flip = torch.where(torch.rand(b) < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = sx * flip, sy
    theta[:, 0, 2], theta[:, 1, 2] = (1 - sx) * u(-1, 1), (1 - sy) * u(-1, 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    jitter = (torch.rand(b) < 0.8).float()
    gray = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    bright = 1 + jitter * u(-0.4, 0.4)
    contrast = 1 + jitter * u(-0.4, 0.4)
    saturation = 1 + jitter * u(-0.4, 0.4)
    x = gray + (x - gray) * saturation.view(b, 1, 1, 1)
    mean = gray.mean((1, 2, 3), keepdim=True)
    x = (mean + (x - mean) * contrast.view(b, 1, 1, 1)) * bright.view(b, 1, 1, 1)
    to_gray = (torch.rand(b) < 0.2).view(b, 1, 1, 1)
    x = torch.where(to_gray, x.mean(1, keepdim=True).expand_as(x), x)
    blur = (torch.rand(b) < 0.2).view(b, 1, 1, 1)
    kernel = torch.tensor([1.0, 2.0, 1.0])
    kernel = (kernel[:, None] * kernel[None, :] / 16).expand(3, 1, 3, 3)
    blurred = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, groups=3)
    x = torch.where(blur, blurred, x)
    return x.clamp(0, 1)


def soft_clip_loss(logits: torch.Tensor, captions: list[str]) -> torch.Tensor:
    """CLIP's symmetric cross-entropy with targets spread over identical captions."""
    ids = {c: i for i, c in enumerate(dict.fromkeys(captions))}
    cid = torch.tensor([ids[c] for c in captions], device=logits.device)
    same = (cid[:, None] == cid[None, :]).float()
    target = same / same.sum(1, keepdim=True)
    logits = logits.float()
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


class Anchors(torch.nn.Module):
    """One learnable point per class of the corpus (every leaf, subcategory and category
    named by a caption or an image), on the joint sphere.

    With `objective="anchored"`, an image is classified among the anchors of each of its
    ranks and a caption among the anchors of its own rank, with the model's logit scale:
    images and texts meet at the anchors. Every step then contrasts against every class
    of the corpus, not only against the captions that happen to share a batch of 128,
    which is what a 2-core CPU's few thousand steps need to tell 671 emoji apart.
    """

    def __init__(self, pairs: list[Pair], dim: int) -> None:
        super().__init__()
        keys = {k for p in pairs for k in p.keys} | {k for p in pairs for k in p.labels if k}
        self.keys = sorted(keys)
        self.index = {k: i for i, k in enumerate(self.keys)}
        rank = torch.tensor([RANKS.index(k.split(":", 1)[0]) for k in self.keys])
        self.register_buffer("rank", rank)
        self.weight = torch.nn.Parameter(F.normalize(torch.randn(len(self.keys), dim), dim=-1))

    @torch.no_grad()
    def start_at_captions(self, pairs: list[Pair], model, tokenizer, device) -> None:
        """Move every anchor named by a caption to the mean of its captions' features under
        `model` (a continued phase's text tower), so that a new phase does not begin by
        pulling the features it inherits towards random points. Anchors no caption names
        (image-only classes) keep their random start."""
        texts: dict[str, str] = {}
        for p in pairs:
            for text, key in zip(p.captions, p.keys, strict=True):
                texts.setdefault(text, key)
        listed = sorted(texts)
        total = torch.zeros_like(self.weight)
        count = torch.zeros(len(self.keys), device=self.weight.device)
        was_training = model.training
        model.eval()
        for start in range(0, len(listed), 1024):
            chunk = listed[start : start + 1024]
            g = F.normalize(model.encode_text(tokenizer(chunk).to(device)).float(), dim=-1)
            ids = self.ids([texts[t] for t in chunk]).to(self.weight.device)
            total.index_add_(0, ids, g.to(total.dtype))
            count.index_add_(0, ids, torch.ones_like(ids, dtype=count.dtype))
        model.train(was_training)
        named = count > 0
        self.weight[named] = F.normalize(total[named] / count[named, None], dim=-1)

    def ids(self, keys: list[str | None]) -> torch.Tensor:
        return torch.tensor([self.index[k] if k else -1 for k in keys])

    def loss(self, feats: torch.Tensor, ids: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of normalised features against the anchors of each target's rank;
        rows with id -1 (no class at this rank) are left out."""
        keep = ids >= 0
        if not keep.any():
            return feats.sum() * 0
        feats, ids = feats[keep], ids[keep].to(feats.device)
        logits = scale * feats.float() @ F.normalize(self.weight, dim=-1).t()
        same_rank = self.rank[None, :] == self.rank[ids][:, None]
        return F.cross_entropy(logits.masked_fill(~same_rank, float("-inf")), ids)


RANK_WEIGHTS = (1.0, 0.5, 0.5)
"""Image loss weight of the leaf, subcategory and category anchors."""


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
    corpus: Path | None = None,
    arch: str = ARCH,
    icon_fraction: float = 0.25,
    state_dir: Path | None = None,
    minutes: float | None = None,
    resume: bool = False,
    objective: str = "anchored",
    anchors_at_captions: bool = False,
) -> dict:
    """Train the small CLIP and write it (fp16 safetensors + config + card) to `out_dir`.

    `init` continues from an earlier output of this function (its weights, with a fresh
    schedule; `anchors_at_captions` starts the anchors at its caption features, see
    `Anchors.start_at_captions`; off, they start random as the shipped model's did); the
    card then records both phases. With `minutes`, the run stops after that
    long, saves its state in `state_dir` and returns ``{"finished": False, ...}``; call it
    again with `resume` (and the same data) to go on with the same schedule.
    """
    register_configs()
    dev = torch.device(
        "cuda"
        if device == "auto" and torch.cuda.is_available()
        else ("cpu" if device == "auto" else device)
    )
    state_dir = Path(state_dir or out_dir.parent / f".{out_dir.name}-state")
    saved = _load_state(state_dir) if resume else None
    if saved is not None:
        arch, seed, steps, batch_size, lr = (saved["meta"][k] for k in _RESUMED)
        icon_fraction = saved["meta"]["icon_fraction"]
        objective = saved["meta"].get("objective", "clip")
    if objective not in OBJECTIVES:
        raise DataError(f"objective must be one of {', '.join(OBJECTIVES)}, not {objective!r}.")
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = open_clip.create_model(arch)
    tokenizer = open_clip.get_tokenizer(arch)
    earlier: list[dict] = []
    if init is not None and saved is None:
        state = load_file(str(Path(init) / "open_clip_model.safetensors"))
        model.load_state_dict({k: v.float() for k, v in state.items()})
        card = json.loads((Path(init) / "open_clip_config.json").read_text())["hiertune"]
        earlier = card["training"].get("phases", [card["training"]])
    model = model.to(dev).train()
    describe = node_descriptions(demo_dir / "taxonomy.csv")
    pairs = load_corpus_pairs(corpus, describe) if corpus else load_demo_pairs(demo_dir)
    size = model.visual.image_size
    size = size[0] if isinstance(size, tuple | list) else size
    images = load_images([p.path for p in pairs], size, state_dir)
    emoji = [i for i, p in enumerate(pairs) if p.kind != "icon"]
    icons = [i for i, p in enumerate(pairs) if p.kind == "icon"]
    n_icons = round(batch_size * icon_fraction) if icons else 0
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    anchors = Anchors(pairs, int(model.text_projection.shape[1])).to(dev)
    if anchors_at_captions and init is not None and saved is None and objective == "anchored":
        anchors.start_at_captions(pairs, model, tokenizer, dev)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    if objective == "anchored":
        rest += list(anchors.parameters())
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
    start, log, spent = 0, [], 0.0
    if saved is not None:
        model.load_state_dict(saved["model"])
        anchors.load_state_dict(saved["anchors"])
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        rng.setstate(_as_rng_state(saved["python_rng"]))
        torch.set_rng_state(saved["torch_rng"])
        start, log, spent = saved["step"], saved["meta"]["log"], saved["meta"]["spent_s"]
        earlier = saved["meta"]["earlier"]
    meta = {
        "arch": arch,
        "seed": seed,
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "icon_fraction": icon_fraction,
        "objective": objective,
        "earlier": earlier,
    }
    t0 = time.time()
    for step in range(start, steps):
        idx = rng.sample(emoji, min(batch_size - n_icons, len(emoji)))
        idx += rng.sample(icons, min(n_icons, len(icons)))
        drawn = [rng.choices(range(len(pairs[i].captions)), pairs[i].weights)[0] for i in idx]
        caps = [pairs[i].captions[j] for i, j in zip(idx, drawn, strict=True)]
        x = augment_batch(images[idx])
        x = ((x - mean) / std).to(dev)
        tokens = tokenizer(caps).to(dev)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            f = F.normalize(model.encode_image(x), dim=-1)
            g = F.normalize(model.encode_text(tokens), dim=-1)
            scale = model.logit_scale.exp()
            loss = soft_clip_loss(scale * f @ g.t(), caps)
        if objective == "anchored":
            keys = [pairs[i].keys[j] for i, j in zip(idx, drawn, strict=True)]
            loss = 0.5 * loss + anchors.loss(g, anchors.ids(keys), scale)
            for r, weight in enumerate(RANK_WEIGHTS):
                labels = anchors.ids([pairs[i].labels[r] for i in idx])
                loss = loss + weight * anchors.loss(f, labels, scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        elapsed = spent + time.time() - t0
        if step % log_every == 0 or step == steps - 1:
            value = float(loss.detach())
            log.append({"step": step, "loss": round(value, 4), "elapsed_s": round(elapsed, 1)})
            print(f"step {step}/{steps} loss {value:.3f} {elapsed:.0f}s", flush=True)
        out_of_time = minutes is not None and time.time() - t0 > 60 * minutes
        if out_of_time and step < steps - 1:
            _save_state(state_dir, model, anchors, opt, sched, step + 1, rng, meta, log, elapsed)
            # a loadable snapshot, to look at (or fall back on) before the run ends
            snapshot = {"arch": arch, "unfinished": f"step {step + 1} of {steps}", "log": log}
            _write(copy.deepcopy(model).eval().cpu(), arch, state_dir / "snapshot", snapshot)
            print(f"stopped at step {step + 1}/{steps}; go on with --resume", flush=True)
            return {"finished": False, "step": step + 1, "state": str(state_dir)}
    train_time = spent + time.time() - t0
    phase = {
        "arch": arch,
        "data": "corpus" if corpus else "demo training split",
        "n_images": len(pairs),
        "n_icons": len(icons),
        "steps": steps,
        "batch_size": batch_size,
        "icon_fraction": icon_fraction if icons else 0.0,
        "objective": objective,
        "lr": lr,
        "seed": seed,
        "train_time_s": round(train_time, 1),
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "loss_log": log[-5:],
    }
    phases = [*earlier, phase]
    info = _write(
        model.eval().cpu(),
        arch,
        out_dir,
        {
            "arch": arch,
            "n_train_images": len(pairs),
            "steps": sum(p["steps"] for p in phases),
            "train_time_s": round(sum(p["train_time_s"] for p in phases), 1),
            "phases": phases,
        },
    )
    (state_dir / STATE_NAME).unlink(missing_ok=True)
    return {"finished": True, **info}


_RESUMED = ("arch", "seed", "steps", "batch_size", "lr")
OBJECTIVES = ("anchored", "clip")


def _save_state(state_dir, model, anchors, opt, sched, step, rng, meta, log, spent) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = state_dir / (STATE_NAME + ".tmp")
    torch.save(
        {
            "model": model.state_dict(),
            "anchors": anchors.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "python_rng": list(_flatten_rng(rng.getstate())),
            "torch_rng": torch.get_rng_state(),
            "step": step,
            "meta": {**meta, "log": log, "spent_s": spent},
        },
        tmp,
    )
    tmp.replace(state_dir / STATE_NAME)


def _load_state(state_dir: Path) -> dict | None:
    path = state_dir / STATE_NAME
    if not path.is_file():
        raise DataError(f"Nothing to resume: {path} does not exist.")
    # our own file, and weights_only refuses anything but tensors and plain containers
    return torch.load(path, map_location="cpu", weights_only=True)


def _flatten_rng(state: tuple) -> list:
    version, internal, gauss = state
    return [version, *internal, gauss]


def _as_rng_state(flat: list) -> tuple:
    return (flat[0], tuple(flat[1:-1]), flat[-1])


def _write(model, arch: str, out_dir: Path, info: dict) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    weights = out_dir / "open_clip_model.safetensors"
    save_file(state, str(weights))
    model_cfg = json.loads((CONFIG_DIR / f"{arch}.json").read_text())
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
