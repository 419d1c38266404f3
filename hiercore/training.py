"""The fine-tuning loop: LoRA on CLIP with CE + alpha * TP-KL + lambda * HiSCE (docs/method.md §3).

Read it top to bottom: build the model, freeze it and add adapters, cache whatever is
frozen (image features when the vision tower has no adapters, node text features when
the text tower has none), then a plain AdamW loop with a warm-up + cosine schedule,
gradient accumulation and bf16 autocast on GPU. Hooks: `progress(event)` after every
optimiser step, `stop_event` checked before every micro-batch (cancel within one step),
a checkpoint after every epoch (adapter weights as safetensors, optimiser state) and
`resume=True` to continue from it.

Files written to `out_dir`: config.json, taxonomy.json, history.json, metrics.json,
adapter.safetensors, predictions.npz (validation logits, paths, embeddings) and
checkpoint/ (what resume needs). A checkpoint survives a kill at any instant: its files
carry their epoch in their names and are written whole (temp file, fsync, rename) before
state.json, which names them, is replaced; only then do the previous epoch's files go.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from pickle import UnpicklingError

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch.utils.data import DataLoader, TensorDataset

from hiercore.config import RunConfig
from hiercore.data import ImageLabelDataset, Sample
from hiercore.errors import DataError, HierTuneError
from hiercore.evaluation import autocast, collect, epoch_score, score
from hiercore.losses import hierarchical_loss
from hiercore.models import HierClip, apply_lora, count_parameters, load_clip, lora_state_dict
from hiercore.models.loading import pick_device
from hiercore.taxonomy import Taxonomy

log = logging.getLogger(__name__)


@dataclass
class ProgressEvent:
    """What a training run reports after each optimiser step and each evaluation."""

    phase: str
    """'setup', 'train', 'eval' or 'done'."""
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    steps_total: int = 0
    losses: dict = field(default_factory=dict)
    lr: float = 0.0
    eta_s: float | None = None
    val: dict | None = None
    message: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RunResult:
    state: str
    """'finished' or 'stopped'."""
    metrics: dict
    out_dir: Path


ProgressFn = Callable[[ProgressEvent], None]


def build_model(config: RunConfig, taxonomy: Taxonomy, device: torch.device) -> HierClip:
    """The frozen CLIP with adapters, bound to the taxonomy."""
    torch.manual_seed(config.seed)
    bundle = load_clip(config.model, config.pretrained, device="cpu", seed=config.seed)
    apply_lora(bundle.model, config.lora_spec)
    scale = bundle.model.logit_scale
    if config.logit_scale is not None:
        with torch.no_grad():
            scale.fill_(math.log(config.logit_scale))
    scale.requires_grad_(config.learn_logit_scale)
    return HierClip(bundle, taxonomy, config.templates).to(device)


def restyle(x: torch.Tensor, visual: torch.nn.Module) -> torch.Tensor:
    """Pretraining's style augmentation (`hiercore.pretrain.augment_batch`) on a batch the
    model's preprocessing already normalised: undo the normalisation, augment, redo it."""
    from hiercore.pretrain import augment_batch

    mean = torch.tensor(getattr(visual, "image_mean", None) or (0.5, 0.5, 0.5), device=x.device)
    std = torch.tensor(getattr(visual, "image_std", None) or (0.5, 0.5, 0.5), device=x.device)
    mean, std = mean.view(1, 3, 1, 1), std.view(1, 3, 1, 1)
    pixels = ((x * std + mean).clamp(0, 1) * 255).round().to(torch.uint8)
    return ((augment_batch(pixels) - mean) / std).to(x.dtype)


def train(
    config: RunConfig,
    taxonomy: Taxonomy,
    train_samples: list[Sample],
    val_samples: list[Sample],
    out_dir: str | Path,
    progress: ProgressFn | None = None,
    stop_event: threading.Event | None = None,
    resume: bool = False,
) -> RunResult:
    """Fine-tune, evaluate on `val_samples`, write the run folder; see module docstring."""
    config.validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    emit = progress or (lambda e: None)
    stop = stop_event or threading.Event()
    device = pick_device(config.device)
    started = time.time()
    emit(ProgressEvent("setup", epochs=config.epochs, message="loading model"))

    model = build_model(config, taxonomy, device)
    index = model.index
    parents = model.parents()
    trainable, total = count_parameters(model.clip)
    config.save(out / "config.json")
    (out / "taxonomy.json").write_text(json.dumps(taxonomy.to_dict(), indent=1))

    train_set = ImageLabelDataset(train_samples, index, model.bundle.preprocess_train)
    if len(train_set) == 0:
        raise DataError("There are no readable labelled training images.")
    vision_trains = config.lora in ("vision", "both")
    text_trains = config.lora in ("text", "both")

    with torch.no_grad(), autocast(device):
        node_feats_before = model.encode_nodes().float()
    frozen_nodes = None if text_trains else node_feats_before

    if vision_trains:
        loader = DataLoader(
            train_set,
            batch_size=config.batch_size,
            shuffle=True,
            drop_last=False,
            generator=torch.Generator().manual_seed(config.seed),
        )
    else:  # encode the images once: the frozen tower gives the same features every epoch
        emit(ProgressEvent("setup", epochs=config.epochs, message="caching image features"))
        cached = collect(model, train_set.samples, config.batch_size, device, frozen_nodes)
        loader = DataLoader(
            TensorDataset(torch.from_numpy(cached.image_feats), torch.from_numpy(cached.true)),
            batch_size=config.batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(config.seed),
        )

    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise HierTuneError("This run has nothing to train: choose LoRA on vision, text or both.")
    # the logit scale (when it learns) is one temperature, not a weight to shrink: no decay
    decayed = [p for p in params if p is not model.clip.logit_scale]
    groups = [{"params": decayed}]
    if len(decayed) < len(params):
        groups.append({"params": [model.clip.logit_scale], "weight_decay": 0.0})
    optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(loader) / config.grad_accum)
    steps_total = steps_per_epoch * config.epochs
    if config.max_steps:
        steps_total = min(steps_total, config.max_steps)
    warmup = int(config.warmup_ratio * steps_total)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, warmup, steps_total)
    )

    history: list[dict] = []
    start_epoch, step = 0, 0
    ckpt = out / "checkpoint"
    if resume and (ckpt / "state.json").is_file():
        start_epoch, step, history = _load_checkpoint(ckpt, model, optimizer, schedule, config)
        emit(
            ProgressEvent(
                "setup",
                start_epoch,
                config.epochs,
                step,
                steps_total,
                message=f"resumed after epoch {start_epoch}",
            )
        )

    level_mask = _flat_mask(index.depth) if config.flat else None
    t_loop, steps_done_here = time.time(), 0
    state = "finished"
    last_epoch = start_epoch
    model.train()
    for epoch in range(start_epoch, config.epochs):
        last_epoch = epoch + 1
        micro = 0
        for batch in loader:
            if stop.is_set() or (config.max_steps and step >= config.max_steps):
                break
            x = batch[0]
            if config.style_augment and vision_trains:  # on the CPU, where the loader left it
                x = restyle(x, model.clip.visual)
            x, targets = x.to(device), batch[1].to(device)
            if level_mask is not None:
                targets = targets.masked_fill(~level_mask.to(device), -1)
            with autocast(device):
                feats = model.encode_images(x) if vision_trains else x
                node_feats = model.encode_nodes() if text_trains else frozen_nodes
                logits = model.level_logits(feats, node_feats)
                terms = hierarchical_loss(
                    logits,
                    targets,
                    parents,
                    config.alpha,
                    config.lam,
                    config.eps,
                    ce_weight=config.ce_weight,
                    balance=config.balance,
                    tpkl_temperature=config.tpkl_temperature,
                    tpkl_size_correction=config.tpkl_size_correction,
                )
            (terms["total"] / config.grad_accum).backward()
            micro += 1
            if micro % config.grad_accum and micro < len(loader):
                continue
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            if config.learn_logit_scale:  # CLIP's bound: s <= 100
                with torch.no_grad():
                    model.clip.logit_scale.clamp_(0.0, math.log(100.0))
            optimizer.zero_grad(set_to_none=True)
            schedule.step()
            step += 1
            steps_done_here += 1
            rate = (time.time() - t_loop) / steps_done_here
            losses = {k: float(v.detach()) for k, v in terms.items()}
            history.append({"step": step, "epoch": epoch + 1, "losses": losses})
            emit(
                ProgressEvent(
                    "train",
                    epoch + 1,
                    config.epochs,
                    step,
                    steps_total,
                    losses,
                    schedule.get_last_lr()[0],
                    rate * (steps_total - step),
                )
            )
        if stop.is_set():
            state = "stopped"
            break
        if config.eval_every_epoch and val_samples:
            emit(
                ProgressEvent(
                    "eval",
                    epoch + 1,
                    config.epochs,
                    step,
                    steps_total,
                    message="scoring the validation images",
                )
            )
            val = epoch_score(collect(model, val_samples, config.batch_size * 2, device), parents)
            history.append({"step": step, "epoch": epoch + 1, "val": val})
            emit(ProgressEvent("eval", epoch + 1, config.epochs, step, steps_total, val=val))
        _save_checkpoint(ckpt, model, optimizer, schedule, epoch + 1, step, history, config)
        if config.max_steps and step >= config.max_steps:
            break

    (out / "history.json").write_text(json.dumps(history))
    write_durably(out / "adapter.safetensors", save(lora_state_dict(model.clip)))
    emit(
        ProgressEvent(
            "eval", last_epoch, config.epochs, step, steps_total, message="final evaluation"
        )
    )
    val_pass = collect(model, val_samples, config.batch_size * 2, device)
    metrics = score(val_pass, parents) if val_pass.true.shape[0] else {"n_val": 0}
    with torch.no_grad(), autocast(device):
        node_feats_after = model.encode_nodes().float()
    val_pass.save(
        out / "predictions.npz",
        [p.cpu() for p in parents],
        {
            "node_feats_before": node_feats_before.cpu().numpy(),
            "node_feats_after": node_feats_after.cpu().numpy(),
            "node_ids": np.asarray(model.node_ids),
        },
    )
    metrics.update(
        state=state,
        n_train=len(train_set),
        trainable_params=trainable,
        total_params=total,
        trainable_pct=100.0 * trainable / total,
        train_time_s=time.time() - started,
        steps=step,
        epochs_done=last_epoch,
        device=str(device),
        level_names=list(taxonomy.level_names),
    )
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    emit(
        ProgressEvent(
            "done",
            last_epoch,
            config.epochs,
            step,
            steps_total,
            val={"fpa": metrics.get("fpa"), "tice": metrics.get("tice")},
        )
    )
    return RunResult(state, metrics, out)


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Learning-rate multiplier: linear warm-up over `warmup` steps, then cosine to 0."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _flat_mask(depth: int) -> torch.Tensor:
    """Known-level mask of the flat baseline: the leaf level only."""
    mask = torch.zeros(depth, dtype=torch.bool)
    mask[-1] = True
    return mask


# the file names of a checkpoint written before they carried the epoch
_LEGACY_FILES = {
    "adapter": "adapter.safetensors",
    "optimizer": "optimizer.pt",
    "history": "history.json",
}


def _save_checkpoint(ckpt: Path, model, optimizer, schedule, epoch, step, history, config):
    """Write the epoch's checkpoint so that a kill at any moment leaves a whole one (the
    previous or this), never a truncated file; state.json is the commit point."""
    ckpt.mkdir(exist_ok=True)
    files = {
        "adapter": f"adapter-epoch{epoch}.safetensors",
        "optimizer": f"optimizer-epoch{epoch}.pt",
        "history": f"history-epoch{epoch}.json",
    }
    opt = io.BytesIO()
    torch.save({"optimizer": optimizer.state_dict(), "schedule": schedule.state_dict()}, opt)
    write_durably(ckpt / files["adapter"], save(lora_state_dict(model.clip)))
    write_durably(ckpt / files["optimizer"], opt.getvalue())
    write_durably(ckpt / files["history"], json.dumps(history).encode())
    state = {"epoch": epoch, "step": step, "config": config.to_dict(), "files": files}
    write_durably(ckpt / "state.json", json.dumps(state).encode())
    keep = {*files.values(), "state.json"}
    for old in ckpt.iterdir():  # the previous epoch's files and any half-written temp file
        if old.name not in keep and old.is_file():
            old.unlink(missing_ok=True)


def write_durably(path: Path, data: bytes) -> None:
    """Replace `path` with `data` atomically: a reader (or a crash) sees the old file or
    the new one, whole, never a truncated mix."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some systems cannot open a folder; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _load_checkpoint(ckpt: Path, model, optimizer, schedule, config: RunConfig):
    try:
        state = json.loads((ckpt / "state.json").read_text())
        files = state.get("files") or _LEGACY_FILES
    except (OSError, ValueError, AttributeError) as exc:
        raise HierTuneError(
            f"Cannot resume: {ckpt / 'state.json'} is unreadable ({exc})."
        ) from None
    # settings added after the checkpoint was written take their defaults
    saved = {**RunConfig().to_dict(), **state["config"]}
    now = config.to_dict()
    # "method" follows from the losses, compared below; older checkpoints recorded it wrong
    for key in ("epochs", "max_steps", "device", "eval_every_epoch", "method"):
        saved.pop(key, None)
        now.pop(key, None)
    if saved != now:
        diff = sorted(k for k in now if saved.get(k) != now[k])
        raise HierTuneError(
            f"Cannot resume: the checkpoint was made with different settings ({', '.join(diff)})."
        )
    try:
        load_adapter(model.clip, ckpt / files["adapter"])
        opt = torch.load(ckpt / files["optimizer"], map_location="cpu", weights_only=True)
        optimizer.load_state_dict(opt["optimizer"])
        schedule.load_state_dict(opt["schedule"])
        history = json.loads((ckpt / files["history"]).read_text())
    except HierTuneError:  # an adapter that does not fit says so itself
        raise
    except (
        OSError,
        EOFError,
        RuntimeError,
        ValueError,
        KeyError,
        UnpicklingError,
        SafetensorError,
    ) as exc:
        raise HierTuneError(
            f"Cannot resume: the checkpoint in {ckpt} is damaged ({type(exc).__name__}); "
            "start the run again without resuming."
        ) from None
    return int(state["epoch"]), int(state["step"]), history


def load_adapter(clip: torch.nn.Module, path: Path) -> None:
    """Load adapter weights saved by `lora_state_dict` into an adapted model."""
    weights = load_file(str(path))
    missing = [k for k in weights if k not in dict(clip.named_parameters())]
    if missing:
        raise HierTuneError(
            f"{path} does not fit this model (e.g. {missing[0]!r}); was it trained with "
            "another architecture or LoRA setting?"
        )
    clip.load_state_dict(weights, strict=False)
