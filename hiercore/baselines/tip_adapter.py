"""Tip-Adapter and Tip-Adapter-F (Zhang et al., ECCV 2022), leaf-level, as in docs/method.md §6.

    logits = s * f W^T + a * exp(-b * (1 - f F^T)) L

W: frozen text embeddings of the leaves; F: normalised image features of the training
images (the cache keys); L: their one-hot leaf labels (the cache values). Images labelled
above the leaf level cannot be cache entries and are left out. Ancestors come from the
leaf scores (`levels_from_leaf_scores`).

a and b are chosen by a grid search on a validation part carved from the *training*
samples (stratified by leaf, `carve_rows`); the evaluation samples are never looked at.

- ``tip-adapter`` (training-free): the search uses a cache of the rest of the training
  images; the final cache holds all of them (with the searched a, b).
- ``tip-adapter-f``: F becomes a learnable parameter initialised from the cache of the
  rest, trained with leaf cross-entropy at (a, b) = (1, 5.5) for the run's budget; a and
  b are then searched on the carved part with the trained keys, which stay the cache.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from hiercore.baselines.frozen import frozen_features, optimise
from hiercore.baselines.registry import Method, register_method
from hiercore.baselines.result import MethodResult, levels_from_leaf_scores, save_weights
from hiercore.errors import DataError

A_GRID = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
B_GRID = (0.5, 1.0, 2.0, 3.5, 5.5, 7.0, 10.0, 15.0)
A_INIT, B_INIT = 1.0, 5.5


def cache_logits(
    f: torch.Tensor,
    text: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    scale: float | torch.Tensor,
    a: float,
    b: float,
) -> torch.Tensor:
    """s * f W^T + a * exp(-b * (1 - f F^T)) L for features f (B, D); returns (B, C)."""
    affinity = torch.exp(-b * (1 - f @ keys.t()))
    return scale * f @ text.t() + a * affinity @ values


def carve_rows(leaf: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (cache rows, validation rows) of the rows with a known leaf.

    Each leaf with at least two rows gives round(fraction * n) of them (at least one, and
    never all) to validation; a leaf seen once stays in the cache.
    """
    rng = np.random.default_rng(seed)
    keep, val = [], []
    for c in np.unique(leaf[leaf >= 0]):
        rows = rng.permutation(np.flatnonzero(leaf == c))
        n_val = min(len(rows) - 1, max(1, round(fraction * len(rows)))) if len(rows) > 1 else 0
        val.extend(rows[:n_val])
        keep.extend(rows[n_val:])
    return np.sort(np.asarray(keep, dtype=np.int64)), np.sort(np.asarray(val, dtype=np.int64))


def search_ab(
    f: torch.Tensor,
    leaf: torch.Tensor,
    text: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    scale: float | torch.Tensor,
) -> tuple[float, float, float]:
    """(a, b, accuracy) with the best leaf accuracy on (f, leaf); the first best wins."""
    best = (A_INIT, B_INIT, -1.0)
    if f.shape[0] == 0:
        return best
    clip = scale * f @ text.t()
    sims = f @ keys.t()
    for b in B_GRID:
        cache = torch.exp(-b * (1 - sims)) @ values
        for a in A_GRID:
            acc = float(((clip + a * cache).argmax(1) == leaf).float().mean())
            if acc > best[2]:
                best = (a, b, acc)
    return best


class TipAdapter(Method):
    def __init__(self, learn_keys: bool = False) -> None:
        self.learn_keys = learn_keys
        self.notes = (
            "frozen CLIP; learnable leaf cache keys; a, b searched on a part of the training "
            "set; leaf-only, ancestors of the best leaf"
            if learn_keys
            else "training-free leaf cache; a, b searched on a part of the training set; "
            "leaf-only, ancestors of the best leaf"
        )

    def fit(
        self, taxonomy, train_samples, val_samples, config, out_dir, progress=None, stop_event=None
    ) -> MethodResult:
        feats = frozen_features(config, taxonomy, train_samples, val_samples, progress)
        started = time.time()
        torch.manual_seed(config.seed)
        x, y = feats.tensors("train")
        labelled = torch.nonzero(y[:, -1] >= 0).flatten()
        if labelled.numel() == 0:
            raise DataError(f"{self.name} needs training images labelled down to the leaf level.")
        x, leaf = x[labelled], y[labelled, -1]
        text = feats.level_text()[-1]
        n_leaves = text.shape[0]
        scale = feats.model.logit_scale().detach()
        fraction = config.val_fraction or 0.2
        keep, hold = (
            torch.from_numpy(r).to(x.device)
            for r in carve_rows(leaf.cpu().numpy(), fraction, config.seed)
        )
        values = F.one_hot(leaf, n_leaves).float()
        state, steps, trainable = "finished", 0, 0
        if self.learn_keys:
            keys = torch.nn.Parameter(x[keep].clone())
            cache_x, cache_y = x[keep], leaf[keep]

            def step_loss(rows: torch.Tensor) -> dict:
                z = cache_logits(cache_x[rows], text, keys, values[keep], scale, A_INIT, B_INIT)
                ce = F.cross_entropy(z, cache_y[rows])
                return {"total": ce, "ce": ce}

            state, steps = optimise([keys], step_loss, len(keep), config, progress, stop_event)
            keys = keys.detach()
            trainable = keys.numel()
            a, b, acc = search_ab(x[hold], leaf[hold], text, keys, values[keep], scale)
            final_keys, final_values = keys, values[keep]
        else:
            a, b, acc = search_ab(x[hold], leaf[hold], text, x[keep], values[keep], scale)
            final_keys, final_values = x, values
        elapsed = feats.setup_s + time.time() - started
        with torch.no_grad():
            ex, ey = feats.tensors("eval")
            leaf_scores = cache_logits(ex, text, final_keys, final_values, scale, a, b)
        result = MethodResult(
            self.name,
            levels_from_leaf_scores(leaf_scores.cpu().numpy(), feats.parents_np),
            ey.cpu().numpy(),
            feats.parents_np,
            trainable_params=trainable,
            clip_params=feats.clip_params,
            train_time_s=elapsed,
            state=state,
            notes=self.notes,
            leaf_only=True,
            extra={
                "a": a,
                "b": b,
                "search_accuracy": acc if len(hold) else None,
                "cache_size": int(final_keys.shape[0]),
                "steps": steps,
            },
        )
        result.save(out_dir)
        if self.learn_keys:
            save_weights({"keys": final_keys, "values": final_values}, out_dir)
        return result


@register_method("tip-adapter")
def tip_adapter(**kw) -> Method:
    return TipAdapter(learn_keys=False, **kw)


@register_method("tip-adapter-f")
def tip_adapter_f(**kw) -> Method:
    return TipAdapter(learn_keys=True, **kw)
