"""CLIP-Adapter (Gao et al., IJCV 2023) as docs/method.md §6 states it.

    f* = r * A(f) + (1 - r) * f,   A = Linear(d, d/4) - ReLU - Linear(d/4, d) - ReLU,  r = 0.2

Only A trains (no biases, as in the original); the image and text towers stay frozen, so
the image features are encoded once. Our choice of text side: the frozen prompt
embeddings of the nodes of *every* level, so the adapted feature gives per-level logits
z^(l) = s <f*/|f*|, g_c> directly, and A is trained with the per-level cross-entropy
(docs/method.md §3 with alpha = lambda = 0). The row is then comparable with the per-level CE LoRA
row, and its TICE under independent decoding is a real measurement rather than 0 by
construction.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

from hiercore.baselines.frozen import frozen_features, frozen_result, optimise
from hiercore.baselines.registry import Method, register_method
from hiercore.baselines.result import MethodResult
from hiercore.losses import level_cross_entropy


class Adapter(nn.Module):
    """The bottleneck A and the residual mix with ratio r."""

    def __init__(self, dim: int, ratio: float = 0.2, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(1, dim // reduction)
        self.ratio = ratio
        self.net = nn.Sequential(
            nn.Linear(dim, hidden, bias=False),
            nn.ReLU(),
            nn.Linear(hidden, dim, bias=False),
            nn.ReLU(),
        )

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        mixed = self.ratio * self.net(f) + (1 - self.ratio) * f
        return F.normalize(mixed, dim=-1)


class ClipAdapter(Method):
    notes = "frozen CLIP; residual adapter on image features; per-level CE"

    def __init__(self, ratio: float = 0.2, reduction: int = 4) -> None:
        self.ratio = ratio
        self.reduction = reduction

    def fit(
        self, taxonomy, train_samples, val_samples, config, out_dir, progress=None, stop_event=None
    ) -> MethodResult:
        feats = frozen_features(config, taxonomy, train_samples, val_samples, progress)
        started = time.time()
        torch.manual_seed(config.seed)
        x, y = feats.tensors("train")
        adapter = Adapter(x.shape[1], self.ratio, self.reduction).to(feats.device)
        text = feats.level_text()
        scale = feats.model.logit_scale().detach()

        def logits_of(f: torch.Tensor) -> list[torch.Tensor]:
            g = adapter(f)
            return [scale * g @ t.t() for t in text]

        def step_loss(rows: torch.Tensor) -> dict:
            ce = level_cross_entropy(logits_of(x[rows]), y[rows])
            return {"total": ce, "ce": ce}

        params = list(adapter.parameters())
        state, steps = optimise(params, step_loss, x.shape[0], config, progress, stop_event)
        trainable = dict(adapter.named_parameters())
        extra = {"ratio": self.ratio}
        return frozen_result(
            self, feats, logits_of, trainable, started, state, steps, out_dir, extra
        )


@register_method("clip-adapter")
def clip_adapter(**kw) -> Method:
    return ClipAdapter(**kw)
