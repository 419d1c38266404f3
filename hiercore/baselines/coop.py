"""CoOp (Zhou et al., IJCV 2022): learnable context vectors shared by every class name.

The prompt of a node is ``[SOT] v_1 ... v_M <name> . [EOT]``: M learnable vectors (16 by
default, initialised N(0, 0.02) as CoOp's generic context) take the place of a hand-made
template, in the token-embedding space of the text tower. The whole CLIP stays frozen;
only the M x width context trains, with the per-level cross-entropy (docs/method.md §3 with
alpha = lambda = 0) on cached image features. The context is shared by the nodes of every
level, so the method gives per-level logits z^(l) = s <f, g_c> like the zero-shot row.

Running the text tower on embeddings re-traces open_clip's ``encode_text`` with the token
embeddings replaced: add the positional embeddings, run the transformer with the causal
mask, apply the final layer norm, pool at the end-of-text token (moved M places right by
the context), project. With a causal mask nothing after that token matters, so sequences
are cut just after the latest one. If a long name pushes its end-of-text token past the
context length, the last position is pooled instead.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

from hiercore.baselines.frozen import frozen_features, frozen_result, optimise
from hiercore.baselines.registry import Method, register_method
from hiercore.baselines.result import MethodResult
from hiercore.errors import ModelError
from hiercore.evaluation import autocast
from hiercore.losses import level_cross_entropy


def text_tower(clip: nn.Module) -> nn.Module:
    """The module holding open_clip's text transformer parts (CLIP or CustomTextCLIP)."""
    tower = clip if hasattr(clip, "token_embedding") else getattr(clip, "text", None)
    needed = ("token_embedding", "positional_embedding", "transformer", "ln_final")
    if tower is None or not all(hasattr(tower, n) for n in needed):
        raise ModelError(
            "CoOp needs an open_clip text transformer (token embeddings); this model's text "
            "tower is a different kind."
        )
    if getattr(tower, "cls_emb", None) is not None or getattr(tower, "use_pad_mask", False):
        raise ModelError("CoOp does not support text towers with a class token or a pad mask.")
    return tower


class PromptLearner(nn.Module):
    """Shared learnable context before each class name; `forward` gives node embeddings."""

    def __init__(self, clip: nn.Module, tokenizer, names: list[str], n_ctx: int = 16) -> None:
        super().__init__()
        tower = text_tower(clip)
        self.tower = [tower]  # a list keeps the frozen tower out of this module's parameters
        tokens = tokenizer([f"{n}." for n in names]).to(tower.positional_embedding.device)
        length = tokens.shape[1]
        if n_ctx < 1 or n_ctx > length - 3:
            raise ModelError(f"CoOp context length must be 1..{length - 3}, not {n_ctx}.")
        pool = getattr(tower, "text_pool_type", getattr(tower, "pool_type", "argmax"))
        eos_id = getattr(tower, "text_eos_id", getattr(tower, "eos_id", None))
        if pool == "argmax":
            end = tokens.argmax(dim=-1)
        elif pool == "eos" and eos_id is not None:
            end = (tokens == eos_id).int().argmax(dim=-1)
        elif pool in ("first", "last"):
            at = 0 if pool == "first" else length - 1
            end = torch.full((len(names),), at, device=tokens.device)
        else:
            raise ModelError(f"CoOp does not support the text pooling {pool!r} of this model.")
        causal = tower.attn_mask is not None if hasattr(tower, "attn_mask") else False
        if pool in ("argmax", "eos"):
            end = (end + n_ctx).clamp_max(length - 1)
        used = int(end.max()) + 1 if causal and pool != "last" else length
        with torch.no_grad():
            emb = tower.token_embedding(tokens)
        self.register_buffer("prefix", emb[:, :1].clone(), persistent=False)
        self.register_buffer("suffix", emb[:, 1 : used - n_ctx].clone(), persistent=False)
        self.register_buffer("end", end.long(), persistent=False)
        self.used = used
        self.ctx = nn.Parameter(torch.randn(n_ctx, emb.shape[-1], device=emb.device) * 0.02)

    def forward(self) -> torch.Tensor:
        tower = self.tower[0]
        n = self.prefix.shape[0]
        x = torch.cat([self.prefix, self.ctx.expand(n, -1, -1), self.suffix], dim=1)
        x = x + tower.positional_embedding[: self.used]
        mask = getattr(tower, "attn_mask", None)
        x = tower.transformer(x, attn_mask=None if mask is None else mask[: self.used, : self.used])
        x = tower.ln_final(x)
        x = x[torch.arange(n, device=x.device), self.end]
        proj = tower.text_projection
        if proj is not None:
            x = proj(x) if isinstance(proj, nn.Linear) else x @ proj
        return F.normalize(x.float(), dim=-1)


class CoOp(Method):
    def __init__(self, n_ctx: int = 16) -> None:
        self.n_ctx = n_ctx
        self.notes = f"frozen CLIP; {n_ctx} shared context vectors at every level; per-level CE"

    def fit(
        self, taxonomy, train_samples, val_samples, config, out_dir, progress=None, stop_event=None
    ) -> MethodResult:
        feats = frozen_features(config, taxonomy, train_samples, val_samples, progress)
        started = time.time()
        torch.manual_seed(config.seed)
        model = feats.model
        names = [taxonomy.name(n) for n in model.node_ids]
        prompts = PromptLearner(model.clip, model.bundle.tokenizer, names, self.n_ctx)
        x, y = feats.tensors("train")
        scale = model.logit_scale().detach()

        def logits_of(f: torch.Tensor) -> list[torch.Tensor]:
            with autocast(feats.device):
                nodes = prompts()
            return [scale * f @ t.t() for t in feats.level_text(nodes)]

        def step_loss(rows: torch.Tensor) -> dict:
            ce = level_cross_entropy(logits_of(x[rows]), y[rows])
            return {"total": ce, "ce": ce}

        params = [prompts.ctx]
        state, steps = optimise(params, step_loss, x.shape[0], config, progress, stop_event)
        trainable = {"ctx": prompts.ctx}
        extra = {"n_ctx": self.n_ctx}
        return frozen_result(
            self, feats, logits_of, trainable, started, state, steps, out_dir, extra
        )


@register_method("coop")
def coop(**kw) -> Method:
    return CoOp(**kw)
