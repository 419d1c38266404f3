"""Frozen-backbone support: image features encoded once, and a small loop that trains on them.

Zero-shot, CHiLS, CoOp, CLIP-Adapter, Tip-Adapter(-F) and LatHAdapter never change the
image tower, so the training and evaluation images are encoded once with
`hiercore.evaluation.collect` and the result is shared by every such method of a
comparison: inside `with sharing():` one model and the sample sets it encoded stay in
memory, keyed by the model, the seed of a random model, the prompts, the taxonomy and the
sample lists; outside it nothing is kept after a method's `fit`. Each method still
reports the time that loading the model and encoding its training images took, as if it
had done so itself, so that the training times of the table stay comparable.

`optimise` is the loop those methods share: AdamW with a linear warm-up and cosine decay
over epochs x ceil(N / (batch_size * grad_accum)) steps (capped by `max_steps`), the
same budget a LoRA run of the same `RunConfig` gets, a `ProgressEvent` after every step
and the stop event checked before every step.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from hiercore.baselines.result import MethodResult, save_weights
from hiercore.config import RunConfig
from hiercore.errors import DataError
from hiercore.evaluation import Collected, collect
from hiercore.models import HierClip, count_parameters, load_clip
from hiercore.models.loading import pick_device
from hiercore.taxonomy import Taxonomy
from hiercore.training import ProgressEvent, lr_factor


@dataclass
class FrozenFeatures:
    """A frozen CLIP bound to the taxonomy, with both sample sets encoded."""

    model: HierClip
    train: Collected
    eval: Collected
    node_feats: torch.Tensor
    """(N_nodes, D) normalised text embeddings of the distinct nodes, on `device`."""
    device: torch.device
    clip_params: int
    setup_s: float
    """Seconds spent loading the model and encoding the training images."""

    @property
    def parents(self) -> list[torch.Tensor]:
        return self.model.parents()

    @property
    def parents_np(self) -> list[np.ndarray]:
        return [np.asarray(p) for p in self.model.index.parents]

    def tensors(self, which: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(features (N, D), targets (N, L)) of 'train' or 'eval' on the device."""
        c = self.train if which == "train" else self.eval
        return (
            torch.from_numpy(c.image_feats).float().to(self.device),
            torch.from_numpy(c.true).long().to(self.device),
        )

    def level_text(self, node_feats: torch.Tensor | None = None) -> list[torch.Tensor]:
        return self.model.node_embeddings(self.node_feats if node_feats is None else node_feats)


# One frozen model and the sample sets it encoded, reused across the methods of a comparison.
_model_cache: dict[str, tuple] = {}
_encoded_cache: dict[str, tuple[Collected, float]] = {}
_sharing = 0


@contextmanager
def sharing() -> Iterator[None]:
    """Keep the frozen model and its features between `fit` calls until the block ends."""
    global _sharing
    _sharing += 1
    try:
        yield
    finally:
        _sharing -= 1
        if _sharing == 0:
            clear_cache()


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _model_key(config: RunConfig, taxonomy: Taxonomy) -> str:
    seed = config.seed if config.model == "tiny-random" else None
    return _digest(
        [config.model, config.pretrained, seed, config.templates, config.device, taxonomy.to_dict()]
    )


def _frozen_model(config: RunConfig, taxonomy: Taxonomy):
    key = _model_key(config, taxonomy)
    if key not in _model_cache:
        _model_cache.clear()  # keep one model in memory, and the features it made
        _encoded_cache.clear()
        device = pick_device(config.device)
        started = time.time()
        bundle = load_clip(config.model, config.pretrained, device="cpu", seed=config.seed)
        for p in bundle.model.parameters():
            p.requires_grad_(False)
        model = HierClip(bundle, taxonomy, config.templates).to(device).eval()
        with torch.no_grad():
            node_feats = model.encode_nodes().float()
        clip_params = count_parameters(bundle.model)[1]
        entry = (model, node_feats, device, clip_params, time.time() - started)
        if not _sharing:
            return key, entry
        _model_cache[key] = entry
    return key, _model_cache[key]


def _encoded(key: str, model, samples: list, config: RunConfig, device, node_feats):
    skey = key + _digest([(s.path, s.node_id) for s in samples])
    if skey not in _encoded_cache:
        started = time.time()
        c = collect(model, samples, config.batch_size * 2, device, node_feats)
        if not _sharing:
            return c, time.time() - started
        _encoded_cache[skey] = (c, time.time() - started)
    return _encoded_cache[skey]


def frozen_features(
    config: RunConfig,
    taxonomy: Taxonomy,
    train_samples: list,
    eval_samples: list,
    progress: Callable[[ProgressEvent], None] | None = None,
) -> FrozenFeatures:
    """Load the frozen model and encode both sample sets (reused when nothing changed).

    An empty `train_samples` is allowed (zero-shot needs no training images).
    """
    emit = progress or (lambda e: None)
    emit(ProgressEvent("setup", epochs=config.epochs, message="loading the frozen model"))
    key, (model, node_feats, device, clip_params, load_s) = _frozen_model(config, taxonomy)
    emit(ProgressEvent("setup", epochs=config.epochs, message="encoding the training images"))
    train, train_s = _encoded(key, model, train_samples, config, device, node_feats)
    if train_samples and train.true.shape[0] == 0:
        raise DataError("There are no readable labelled training images.")
    emit(ProgressEvent("setup", epochs=config.epochs, message="encoding the evaluation images"))
    evals, _ = _encoded(key, model, eval_samples, config, device, node_feats)
    return FrozenFeatures(model, train, evals, node_feats, device, clip_params, load_s + train_s)


def optimise(
    params: list[torch.nn.Parameter],
    step_loss: Callable[[torch.Tensor], dict[str, torch.Tensor]],
    n_rows: int,
    config: RunConfig,
    progress: Callable[[ProgressEvent], None] | None = None,
    stop_event: threading.Event | None = None,
) -> tuple[str, int]:
    """Minimise `step_loss(row_indices)["total"]` over shuffled mini-batches of rows.

    Returns ('finished' | 'stopped', optimiser steps taken).
    """
    emit = progress or (lambda e: None)
    stop = stop_event or threading.Event()
    batch = config.batch_size * config.grad_accum
    per_epoch = max(1, math.ceil(n_rows / batch))
    total = per_epoch * config.epochs
    if config.max_steps:
        total = min(total, config.max_steps)
    warmup = int(config.warmup_ratio * total)
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, warmup, total))
    gen = torch.Generator().manual_seed(config.seed)
    device = params[0].device
    step, started = 0, time.time()
    for epoch in range(config.epochs):
        order = torch.randperm(n_rows, generator=gen).to(device)
        for start in range(0, n_rows, batch):
            if stop.is_set():
                return "stopped", step
            if step >= total:
                return "finished", step
            terms = step_loss(order[start : start + batch])
            optimizer.zero_grad(set_to_none=True)
            terms["total"].backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            step += 1
            rate = (time.time() - started) / step
            emit(
                ProgressEvent(
                    "train",
                    epoch + 1,
                    config.epochs,
                    step,
                    total,
                    {k: float(v.detach()) for k, v in terms.items()},
                    schedule.get_last_lr()[0],
                    rate * (total - step),
                )
            )
    return "finished", step


def frozen_result(
    method,
    feats: FrozenFeatures,
    logits_of: Callable[[torch.Tensor], list[torch.Tensor]],
    trainable: dict[str, torch.Tensor],
    started: float,
    state: str,
    steps: int,
    out_dir,
    extra: dict,
) -> MethodResult:
    """Score a method trained on frozen features on the evaluation images and save it.

    `logits_of` maps evaluation image features to per-level logits; `trainable` holds the
    tensors the method learned (counted as its trainable parameters and saved as its
    weights). Training time includes encoding the training images, so rows compare.
    """
    elapsed = feats.setup_s + time.time() - started
    with torch.no_grad():
        ex, ey = feats.tensors("eval")
        logits = [z.cpu().numpy() for z in logits_of(ex)]
    result = MethodResult(
        method.name,
        logits,
        ey.cpu().numpy(),
        feats.parents_np,
        trainable_params=sum(t.numel() for t in trainable.values()),
        clip_params=feats.clip_params,
        train_time_s=elapsed,
        state=state,
        notes=method.notes,
        extra={"steps": steps, **extra},
    )
    result.save(out_dir)
    save_weights(trainable, out_dir)
    return result


def clear_cache() -> None:
    """Forget the frozen model and its features."""
    _model_cache.clear()
    _encoded_cache.clear()
