"""What every comparison method returns, and how leaf-only scores become per-level logits.

A `MethodResult` holds per-level logits on the evaluation samples and their true label
vectors, so every row of the comparison table is scored by the same
`hiercore.metrics.evaluate_predictions` (independent and consistent decoding, docs/method.md §4-5).

Methods that score leaves only (CHiLS, Tip-Adapter, the flat CE baseline) predict a leaf
and map it to its ancestors. `levels_from_leaf_scores` writes that as per-level logits:
the logit of a node is the best leaf log-probability in its subtree (a max, not a
logsumexp). With the max, the ancestor of the best leaf is the argmax at every level,
so independent decoding and consistent decoding both return the best leaf's path (the
consistent path score is a sum of per-level terms that are each maximal on that path).
A logsumexp would give subtree marginals instead, whose best path can end at another
leaf, which is no longer "predict among leaves, map to ancestors".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from hiercore.metrics import evaluate_predictions
from hiercore.run_folder import METRICS, PREDICTIONS, write_durably


@dataclass
class MethodResult:
    """Per-level logits of one trained method on the evaluation samples."""

    method: str
    logits: list[np.ndarray]
    """(N, C_l) per level, on the evaluation samples."""
    true: np.ndarray
    """(N, L) true level indices, -1 where unknown."""
    parents: list[np.ndarray]
    """`parents[l][c]` of the taxonomy's level index (for decoding and metrics)."""
    trainable_params: int
    """Parameters the method trains (0 for zero-shot and training-free methods)."""
    clip_params: int
    """Parameters of the CLIP model itself (the denominator of the percentage)."""
    train_time_s: float
    """Wall time spent learning: model loading, encoding training images, optimisation."""
    state: str = "finished"
    """'finished' or 'stopped'."""
    notes: str = ""
    leaf_only: bool = False
    """Whether ancestors were derived from leaf scores (`levels_from_leaf_scores`)."""
    extra: dict = field(default_factory=dict)
    """Method-specific facts worth showing (searched hyper-parameters, steps, ...)."""

    @property
    def trainable_pct(self) -> float:
        return 100.0 * self.trainable_params / max(1, self.clip_params)

    def metrics(self) -> dict:
        """docs/method.md §5 metrics of these logits, plus the cost columns of the table."""
        m = evaluate_predictions(
            [torch.from_numpy(np.asarray(z, dtype=np.float32)) for z in self.logits],
            torch.from_numpy(np.asarray(self.true, dtype=np.int64)),
            [torch.from_numpy(np.asarray(p, dtype=np.int64)) for p in self.parents],
        )
        m.update(
            method=self.method,
            state=self.state,
            trainable_params=int(self.trainable_params),
            clip_params=int(self.clip_params),
            trainable_pct=self.trainable_pct,
            train_time_s=float(self.train_time_s),
            leaf_only=self.leaf_only,
            notes=self.notes,
            extra=self.extra,
        )
        return m

    def save(self, out_dir: str | Path) -> dict:
        """Write metrics.json and predictions.npz (logits and true labels); returns metrics."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        metrics = self.metrics()
        text = json.dumps(metrics, indent=2, default=str)
        write_durably(out / METRICS, text.encode())  # the run folder's names, written whole
        arrays = {f"logits_{i}": np.asarray(z, dtype=np.float32) for i, z in enumerate(self.logits)}
        np.savez_compressed(out / PREDICTIONS, true=self.true, **arrays)
        return metrics


def levels_from_leaf_scores(
    leaf_scores: np.ndarray | torch.Tensor,
    parents: list[np.ndarray] | list[torch.Tensor],
    marginal: bool = False,
) -> list[np.ndarray]:
    """Per-level logits from leaf scores (N, C_L): best leaf log-probability per subtree.

    With `marginal`, a node's logit is instead the log of its subtree's total leaf
    probability (parents marginalised), so every level is a proper distribution and the
    decodings may differ from the best leaf's path.
    """
    scores = torch.as_tensor(np.asarray(leaf_scores, dtype=np.float32))
    current = torch.log_softmax(scores, dim=1)
    out = [current]
    for level in range(len(parents) - 1, 0, -1):
        par = torch.as_tensor(np.asarray(parents[level], dtype=np.int64))
        # padding makes every node of level l-1 a parent at level l: no -inf remains
        index = par.expand(current.shape[0], -1)
        up = torch.full((current.shape[0], len(parents[level - 1])), -torch.inf)
        up = up.scatter_reduce(1, index, current, "amax")
        if marginal:  # log-sum-exp per subtree, shifted by its max so nothing underflows
            shifted = (current - up.gather(1, index)).exp()
            up = up + torch.zeros_like(up).scatter_add(1, index, shifted).log()
        out.append(up)
        current = up
    return [z.numpy() for z in out[::-1]]


def save_weights(tensors: dict[str, torch.Tensor], out_dir: str | Path) -> None:
    """The learned weights of a method as out_dir/method.safetensors."""
    state = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    save_file(state, str(Path(out_dir) / "method.safetensors"))
