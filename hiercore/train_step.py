"""The fine-tuning step: per-level logits and the hierarchical loss, computed cheaply.

The loss is the one of `hiercore.losses.hierarchical_loss` on `HierClip.level_logits`; only
the work done to get there changes, never the math:

- **Node text, each prompt once, trimmed.** Identical prompt texts are encoded once and
  shared. Prompts are sorted by token length and encoded in chunks, each chunk cut to its
  longest prompt: CLIP's text transformer is causal, so the padding after a prompt's end
  token never reaches the pooled output, and cutting it changes nothing but the cost
  (demo prompts average 12 of 32 tokens).
- **Bounded memory when the text tower trains.** Above `CHECKPOINT_PROMPTS` prompts each
  chunk is encoded under activation checkpointing (`torch.utils.checkpoint`): autograd keeps
  only the chunk's output and recomputes the chunk in the backward pass, so memory holds one
  chunk's activations instead of every prompt's. The gradients are the same ones, for the
  cost of a second forward pass over the text.
- **Frozen towers are not run.** Node features are computed once when the text tower has no
  adapters; image features are fed in precomputed when the vision tower has none.

`StepLoss` is a module so that `DistributedDataParallel` can wrap it (its forward is one
training micro-batch).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from hiercore.losses import hierarchical_loss
from hiercore.models.hierclip import HierClip

CHUNK_PROMPTS = 256
"""Prompts per text chunk (each chunk cut to its longest prompt)."""
CHECKPOINT_PROMPTS = 4096
"""With more prompts than this, a training text tower recomputes chunks in the backward."""


def can_trim(clip: nn.Module) -> bool:
    """Whether `clip`'s text tower is open_clip's causal one (padding never reaches the end
    token, so the context can be cut after it)."""
    from open_clip.model import CLIP

    return isinstance(clip, CLIP) and clip.attn_mask is not None


def trimmed(tokens: torch.Tensor) -> torch.Tensor:
    """`tokens` cut after the longest prompt's last token (read on the host: call it once)."""
    return tokens[:, : max(1, int((tokens != 0).sum(1).max()))]


def encode_text_trimmed(clip: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """`clip.encode_text(tokens)` on `tokens` cut to any length that keeps every prompt's end
    token (`trimmed`); a text tower that `can_trim` cannot gets the full context."""
    from open_clip.transformer import text_global_pool

    if not can_trim(clip):
        return clip.encode_text(tokens)
    length = tokens.shape[1]
    text = tokens
    cast_dtype = clip.transformer.get_cast_dtype()
    x = clip.token_embedding(text).to(cast_dtype)
    x = x + clip.positional_embedding[:length].to(cast_dtype)
    x = clip.transformer(x, attn_mask=clip.attn_mask[:length, :length])
    x = clip.ln_final(x)
    x = text_global_pool(
        x, text, clip.text_pool_type, eos_token_id=getattr(clip, "text_eos_id", None)
    )
    if clip.text_projection is not None:
        if isinstance(clip.text_projection, nn.Linear):
            x = clip.text_projection(x)
        else:
            x = x @ clip.text_projection
    return x


class NodeText:
    """The node prompts of a `HierClip`, deduplicated and sorted into length chunks, kept on
    the model's device (build it after moving the model)."""

    def __init__(self, model: HierClip, chunk: int = CHUNK_PROMPTS) -> None:
        self.clip = model.clip  # not a submodule: StepLoss holds the model once
        self.n_nodes = len(model.node_ids)
        unique, inverse = torch.unique(model.tokens.cpu(), dim=0, return_inverse=True)
        order = (unique != 0).sum(1).argsort(stable=True)
        cut = trimmed if can_trim(self.clip) else (lambda t: t)
        device = model.tokens.device
        self.chunks = [
            cut(unique[order[s : s + chunk]]).to(device) for s in range(0, len(order), chunk)
        ]
        # position of each unique prompt in the sorted order, then of each prompt
        rank = torch.empty_like(order)
        rank[order] = torch.arange(len(order))
        self.prompt_row = rank[inverse].to(device)
        self.prompt_owner = model.prompt_owner

    @property
    def n_prompts(self) -> int:
        return sum(len(c) for c in self.chunks)

    def encode(self, recompute: bool = False) -> torch.Tensor:
        """Normalised node embeddings (N_nodes, D), equal to `HierClip.encode_nodes()`."""
        feats = []
        for tokens in self.chunks:
            if recompute and torch.is_grad_enabled():
                feats.append(checkpoint(self._encode, tokens, use_reentrant=False))
            else:
                feats.append(self._encode(tokens))
        per_prompt = torch.cat(feats)[self.prompt_row]
        sums = per_prompt.new_zeros(self.n_nodes, per_prompt.shape[1])
        sums.index_add_(0, self.prompt_owner, per_prompt)
        return F.normalize(sums, dim=-1)

    def _encode(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.normalize(encode_text_trimmed(self.clip, tokens), dim=-1)


class StepLoss(nn.Module):
    """One micro-batch: images (or frozen image features) and targets in, loss terms out."""

    def __init__(
        self,
        model: HierClip,
        loss_options: dict,
        vision_trains: bool,
        text_trains: bool,
        frozen_nodes: torch.Tensor | None = None,
        recompute_text: bool | None = None,
        chunk: int = CHUNK_PROMPTS,
    ) -> None:
        super().__init__()
        self.model = model
        self.text = NodeText(model, chunk)
        self.loss_options = loss_options
        self.vision_trains = vision_trains
        self.text_trains = text_trains
        if not text_trains and frozen_nodes is None:
            with torch.no_grad():
                frozen_nodes = self.text.encode().float()
        self.frozen_nodes = frozen_nodes
        if recompute_text is None:
            recompute_text = self.text.n_prompts > CHECKPOINT_PROMPTS
        self.recompute_text = recompute_text
        self.parents = model.parents()

    def forward(self, x: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.model.encode_images(x) if self.vision_trains else x
        if self.text_trains:
            node_feats = self.text.encode(self.recompute_text)
        else:
            node_feats = self.frozen_nodes.to(feats.dtype)
        logits = self.model.level_logits(feats, node_feats)
        return hierarchical_loss(logits, targets, self.parents, **self.loss_options)


def loss_options(config) -> dict:
    """`hierarchical_loss`'s keyword arguments from a `RunConfig`."""
    return {
        "alpha": config.alpha,
        "lam": config.lam,
        "eps": config.eps,
        "ce_weight": config.ce_weight,
        "balance": config.balance,
        "tpkl_temperature": config.tpkl_temperature,
        "tpkl_size_correction": config.tpkl_size_correction,
    }
