"""The fine-tuning loop: LoRA on CLIP with CE + alpha * TP-KL + lambda * HiSCE (docs/method.md §3).

Read it top to bottom: build the model, freeze it and add adapters, cache whatever is
frozen (image features when the vision tower has no adapters, node text features when
the text tower has none) and the decoded training images (`hiercore.image_cache`), then a
plain AdamW loop (fused where torch has it) with a warm-up + cosine schedule, gradient
accumulation and bf16 autocast on GPU. One micro-batch is `hiercore.train_step.StepLoss`;
under torchrun it runs in `DistributedDataParallel` (`hiercore.distributed`) and only
rank 0 writes files. Losses are read back to the host only when they are reported (every
step on CPU, every `LOG_EVERY` steps on GPU), so a GPU step never waits for the host.
Hooks: `progress(event)` after every reported optimiser step, `stop_event` checked before
every micro-batch (cancel within one step), a checkpoint after every epoch (adapter
weights as safetensors, optimiser state) and `resume=True` to continue from it.

Files written to `out_dir` (their layout is `hiercore.run_folder.RunFolder`'s):
config.json, taxonomy.json, history.json, metrics.json, adapter.safetensors,
predictions.npz (validation logits, paths, embeddings), status.json (training,
evaluating, done: finished or stopped) and checkpoint/ (what resume needs). A checkpoint
survives a kill at any instant: its files carry their epoch in their names and are
written whole (temp file, fsync, rename) before state.json, which names them, is
replaced; only then do the previous epoch's files go.
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
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from pickle import UnpicklingError

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from hiercore.config import RunConfig
from hiercore.data import ImageLabelDataset, Sample
from hiercore.distributed import join, leave
from hiercore.errors import DataError, HierTuneError
from hiercore.evaluation import autocast, collect, epoch_score, score
from hiercore.history import History
from hiercore.image_cache import DecodedImages
from hiercore.models import HierClip, apply_lora, count_parameters, load_clip, lora_state_dict
from hiercore.models.loading import pick_device
from hiercore.prototypes import PrototypeSums, from_features
from hiercore.run_folder import RunFolder, TrainingStatus
from hiercore.taxonomy import Taxonomy
from hiercore.train_step import NodeText, StepLoss, loss_options

log = logging.getLogger(__name__)

LOG_EVERY = 10
"""Optimiser steps between loss reports on a GPU (each report waits for the device)."""


@dataclass
class ProgressEvent:
    """What a training run reports after each optimiser step and each evaluation."""

    phase: str
    """'setup', 'train', 'eval' (an epoch's validation), 'final' (the loop has ended:
    the final scoring of the validation images) or 'done'."""
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
    image_cache: bool = True,
) -> RunResult:
    """Fine-tune, evaluate on `val_samples`, write the run folder; see module docstring.

    `image_cache=False` reads the training images from their files every epoch."""
    config.validate()
    out = Path(out_dir)
    procs, device = join(pick_device(config.device))
    folder = RunFolder(out).create() if procs.is_main else RunFolder(out)
    emit = (progress if procs.is_main else None) or (lambda e: None)
    stop = stop_event or threading.Event()
    started = time.time()
    emit(ProgressEvent("setup", epochs=config.epochs, message="loading model"))

    model = build_model(config, taxonomy, device)
    index = model.index
    parents = model.parents()
    trainable, total = count_parameters(model.clip)
    if procs.is_main:
        folder.write_config(config)
        folder.write_taxonomy(taxonomy)
        folder.write_status(TrainingStatus("training"))

    train_set = ImageLabelDataset(train_samples, index, model.bundle.preprocess_train)
    if len(train_set) == 0:
        raise DataError("There are no readable labelled training images.")
    vision_trains = config.lora in ("vision", "both")
    text_trains = config.lora in ("text", "both")

    with torch.no_grad(), autocast(device):
        node_feats_before = NodeText(model).encode().float()
    frozen_nodes = None if text_trains else node_feats_before
    step_loss = StepLoss(
        model,
        loss_options(config),
        vision_trains,
        text_trains,
        frozen_nodes,
        negatives=config.negatives,
        seed=config.seed,
    )

    if vision_trains:
        dataset = train_set
        if image_cache:
            emit(ProgressEvent("setup", epochs=config.epochs, message="decoding the images"))
            dataset = (
                DecodedImages.build(
                    train_set.samples, train_set.targets, model.bundle.preprocess_train, config.seed
                )
                or train_set
            )
    else:  # encode the images once: the frozen tower gives the same features every epoch
        emit(ProgressEvent("setup", epochs=config.epochs, message="caching image features"))
        cached = collect(model, train_set.samples, config.batch_size, device, frozen_nodes)
        dataset = TensorDataset(torch.from_numpy(cached.image_feats), torch.from_numpy(cached.true))
    # one shuffled order per epoch, shared by the processes (each reads its share of it)
    sampler = DistributedSampler(
        dataset, num_replicas=procs.world, rank=procs.rank, shuffle=True, seed=config.seed
    )
    # on a GPU, crops and decoding run in worker processes so the device does not wait
    # for them (each epoch starts new workers, which read the dataset's new epoch)
    workers = min(8, os.cpu_count() or 1) if device.type == "cuda" and vision_trains else 0
    loader = DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=sampler,
        pin_memory=device.type == "cuda",
        num_workers=workers,
    )
    if device.type == "cuda" and vision_trains and os.environ.get("HIERTUNE_COMPILE") == "1":
        model.clip.visual.compile()  # in place: the adapter names stay the same
    net = step_loss
    if procs.distributed:
        net = torch.nn.parallel.DistributedDataParallel(
            step_loss,
            device_ids=[device.index] if device.type == "cuda" else None,
            broadcast_buffers=False,
        )

    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise HierTuneError("This run has nothing to train: choose LoRA on vision, text or both.")
    # the logit scale (when it learns) is one temperature, not a weight to shrink: no decay
    decayed = [p for p in params if p is not model.clip.logit_scale]
    groups = [{"params": decayed}]
    if len(decayed) < len(params):
        groups.append({"params": [model.clip.logit_scale], "weight_decay": 0.0})
    optimizer = adamw(groups, config.lr, config.weight_decay, device)
    steps_per_epoch = math.ceil(len(loader) / config.grad_accum)
    steps_total = steps_per_epoch * config.epochs
    if config.max_steps:
        steps_total = min(steps_total, config.max_steps)
    warmup = int(config.warmup_ratio * steps_total)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, warmup, steps_total)
    )

    history = History()
    start_epoch, step = 0, 0
    if resume and folder.has_checkpoint():
        start_epoch, step, history = _load_checkpoint(folder, model, optimizer, schedule, config)
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

    sums = None
    scored_each_epoch = bool(config.eval_every_epoch and val_samples and procs.is_main)
    if config.prototypes > 0 and scored_each_epoch:  # this epoch's features, for its score
        sums = PrototypeSums(index.sizes[-1], model.bundle.embed_dim, device)
        step_loss.prototype_sums = sums
    level_mask = _flat_mask(index.depth) if config.flat else None
    t_loop, steps_done_here = time.time(), 0
    state = "finished"
    last_epoch = start_epoch
    log_every = LOG_EVERY if device.type == "cuda" else 1
    net.train()
    for epoch in range(start_epoch, config.epochs):
        last_epoch = epoch + 1
        micro = 0
        sampler.set_epoch(epoch)
        if sums is not None:
            sums.reset()
        if isinstance(dataset, DecodedImages):
            dataset.set_epoch(epoch)
        for batch in loader:
            if stop.is_set() or (config.max_steps and step >= config.max_steps):
                break
            x = batch[0]
            if config.style_augment and vision_trains:  # on the CPU, where the loader left it
                x = restyle(x, model.clip.visual)
            x = x.to(device, non_blocking=True)
            targets = batch[1].to(device, non_blocking=True)
            if level_mask is not None:
                targets = targets.masked_fill(~level_mask.to(device), -1)
            micro += 1
            steps_now = micro % config.grad_accum == 0 or micro == len(loader)
            # between optimiser steps the processes keep their gradients to themselves
            local = net.no_sync() if procs.distributed and not steps_now else nullcontext()
            with local:
                with autocast(device):
                    terms = net(x, targets)
                (terms["total"] / config.grad_accum).backward()
            if not steps_now:
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
            if step % log_every and step != steps_total:
                continue
            rate = (time.time() - t_loop) / steps_done_here
            losses = {k: float(v.detach()) for k, v in terms.items()}
            history.add_step(step, epoch + 1, losses)
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
        if scored_each_epoch:
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
            nodes = eval_node_features(step_loss, device)
            if sums is not None:
                model.set_prototypes(*sums.result(), weight=config.prototypes)
            val = epoch_score(
                collect(model, val_samples, config.batch_size * 2, device, nodes), parents
            )
            model.set_prototypes(None)
            history.add_val(step, epoch + 1, val)
            emit(ProgressEvent("eval", epoch + 1, config.epochs, step, steps_total, val=val))
        if procs.is_main:
            _save_checkpoint(folder, model, optimizer, schedule, epoch + 1, step, history, config)
        if config.max_steps and step >= config.max_steps:
            break

    leave(procs)
    if not procs.is_main:  # rank 0 evaluates and writes the run folder
        return RunResult(state, {}, out)
    trained = TrainingStatus(
        "evaluating", state == "stopped", step, last_epoch, time.time() - started
    )
    folder.write_history(history)
    folder.write_adapter(save(lora_state_dict(model.clip)))
    folder.write_status(trained)
    emit(
        ProgressEvent(
            "final", last_epoch, config.epochs, step, steps_total, message="final evaluation"
        )
    )
    node_feats_after = eval_node_features(step_loss, device)
    if config.prototypes > 0:
        step_loss.prototype_sums = None
        feats, leaf = training_features(model, dataset, train_set, config.batch_size * 2, device)
        prototypes = from_features(feats, leaf, index.sizes[-1])
        folder.write_prototypes(*prototypes)
        model.set_prototypes(*prototypes, weight=config.prototypes)
    val_pass = collect(model, val_samples, config.batch_size * 2, device, node_feats_after)
    metrics = score(val_pass, parents) if val_pass.true.shape[0] else {"n_val": 0}
    val_pass.save(
        folder.predictions_file,
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
    folder.write_metrics(metrics)
    folder.write_status(replace(trained, phase="done"))
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


@torch.no_grad()
def training_features(
    model: HierClip, dataset, train_set: ImageLabelDataset, batch_size: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Image features (N, D) of the training images under the evaluation transform, with
    their last-level index (N,): from the frozen features when the image tower did not
    train, from the decoded image cache without its crops, else read again from disk."""
    if isinstance(dataset, TensorDataset):
        feats, true = dataset.tensors
        return feats.float(), true[:, -1]
    if isinstance(dataset, DecodedImages):
        was_training = model.training
        model.eval()
        parts = []
        with autocast(device):
            for start in range(0, len(dataset), batch_size):
                x = dataset.plain(start, start + batch_size).to(device)
                parts.append(model.encode_images(x).float().cpu())
        model.train(was_training)
        return torch.cat(parts), dataset.targets[:, -1]
    passed = collect(model, train_set.samples, batch_size, device)
    return torch.from_numpy(passed.image_feats).float(), torch.from_numpy(passed.true[:, -1])


def eval_node_features(step_loss: StepLoss, device: torch.device) -> torch.Tensor:
    """The node features in evaluation mode, through the step's cut prompt chunks."""
    model = step_loss.model
    was_training = model.training
    model.eval()
    with torch.no_grad(), autocast(device):
        feats = step_loss.text.encode().float()
    model.train(was_training)
    return feats


def adamw(groups: list[dict], lr: float, weight_decay: float, device: torch.device):
    """AdamW, fused into one kernel per step where this torch has it for `device`."""
    try:
        return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, ValueError):  # no fused kernel for this device or dtype
        return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)


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


def _save_checkpoint(folder: RunFolder, model, optimizer, schedule, epoch, step, history, config):
    """The epoch's checkpoint, written whole by `RunFolder.save_checkpoint`."""
    opt = io.BytesIO()
    torch.save({"optimizer": optimizer.state_dict(), "schedule": schedule.state_dict()}, opt)
    parts = {
        "adapter": save(lora_state_dict(model.clip)),
        "optimizer": opt.getvalue(),
        "history": json.dumps(history.to_records()).encode(),
    }
    folder.save_checkpoint(epoch, step, config.to_dict(), parts)


def _load_checkpoint(folder: RunFolder, model, optimizer, schedule, config: RunConfig):
    ckpt = folder.checkpoint_dir
    state, files = folder.checkpoint_state()
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
        load_adapter(model.clip, files["adapter"])
        opt = torch.load(files["optimizer"], map_location="cpu", weights_only=True)
        optimizer.load_state_dict(opt["optimizer"])
        schedule.load_state_dict(opt["schedule"])
        history = History.from_records(json.loads(files["history"].read_text()))
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
