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
- **Sampled negatives, when asked for** (`negatives`): the one change to the math, an
  estimate of the loss from each level's labelled nodes, their siblings and a weighted
  sample of the rest (`hiercore.sampled_levels`); only the kept nodes are encoded.

`StepLoss` is a module so that `DistributedDataParallel` can wrap it (its forward is one
training micro-batch).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from hiercore.errors import HierTuneError
from hiercore.losses import hierarchical_loss
from hiercore.models.hierclip import HierClip
from hiercore.sampled_levels import sample_level

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
        # on the host, for encoding a subset of the nodes (`encode_subset`)
        self._unique, self._inverse = unique, inverse
        self._length = (unique != 0).sum(1)
        self._owner = model.prompt_owner.cpu()
        self._cut, self._chunk, self._device = cut, chunk, device

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

    def encode_subset(self, nodes: torch.Tensor, recompute: bool | None = None) -> torch.Tensor:
        """Normalised embeddings of `nodes` (sorted distinct node indices, on the host) only,
        row i for nodes[i]; equal to `encode()[nodes]`. `recompute=None` recomputes above
        `CHECKPOINT_PROMPTS` prompts."""
        prompts = torch.isin(self._owner, nodes).nonzero().squeeze(1)
        texts = torch.unique(self._inverse[prompts])
        texts = texts[self._length[texts].argsort(stable=True)]
        if recompute is None:
            recompute = len(texts) > CHECKPOINT_PROMPTS
        feats = []
        for s in range(0, len(texts), self._chunk):
            tokens = self._cut(self._unique[texts[s : s + self._chunk]]).to(self._device)
            if recompute and torch.is_grad_enabled():
                feats.append(checkpoint(self._encode, tokens, use_reentrant=False))
            else:
                feats.append(self._encode(tokens))
        rank = torch.empty(len(self._unique), dtype=torch.long)
        rank[texts] = torch.arange(len(texts))
        rows = rank[self._inverse[prompts]].to(self._device)
        owners = torch.searchsorted(nodes, self._owner[prompts]).to(self._device)
        per_prompt = torch.cat(feats)[rows]
        sums = per_prompt.new_zeros(len(nodes), per_prompt.shape[1])
        sums.index_add_(0, owners, per_prompt)
        return F.normalize(sums, dim=-1)

    def _encode(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.normalize(encode_text_trimmed(self.clip, tokens), dim=-1)


class StepLoss(nn.Module):
    """One micro-batch: images (or frozen image features) and targets in, loss terms out.

    `recompute_text` forces recomputation of text chunks on or off (default: above
    `CHECKPOINT_PROMPTS` prompts); `negatives` samples that many per level when the text
    tower trains, drawn from a generator seeded with `seed`.
    """

    def __init__(
        self,
        model: HierClip,
        loss_options: dict,
        vision_trains: bool,
        text_trains: bool,
        frozen_nodes: torch.Tensor | None = None,
        recompute_text: bool | None = None,
        chunk: int = CHUNK_PROMPTS,
        negatives: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if negatives is not None and loss_options.get("tpkl_size_correction"):
            raise HierTuneError(
                "Sampled negatives cannot be combined with TP-KL's size correction, which "
                "needs every level's full size; turn one of them off."
            )
        self.model = model
        self.text = NodeText(model, chunk)
        self.loss_options = loss_options
        self.vision_trains = vision_trains
        self.text_trains = text_trains
        if not text_trains and frozen_nodes is None:
            with torch.no_grad():
                frozen_nodes = self.text.encode().float()
        self.frozen_nodes = frozen_nodes
        self._recompute_choice = recompute_text
        if recompute_text is None:
            recompute_text = self.text.n_prompts > CHECKPOINT_PROMPTS
        self.recompute_text = recompute_text
        self.parents = model.parents()
        # sampled negatives (`hiercore.sampled_levels`) when the text tower trains
        self.negatives = negatives if text_trains else None
        self._generator = torch.Generator().manual_seed(seed)
        self._parents_cpu = [p.cpu() for p in self.parents]
        self._gathers_cpu = [getattr(model, f"gather_{lvl}").cpu() for lvl in range(model.depth)]
        self.prototype_sums = None
        """A `hiercore.prototypes.PrototypeSums` the step adds its image features to."""

    def forward(self, x: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.model.encode_images(x) if self.vision_trains else x
        if self.prototype_sums is not None:
            self.prototype_sums.add(feats, targets[:, -1])
        if self.negatives is not None:
            return self._sampled(feats, targets)
        if self.text_trains:
            node_feats = self.text.encode(self.recompute_text)
        else:
            node_feats = self.frozen_nodes.to(feats.dtype)
        logits = self.model.level_logits(feats, node_feats)
        return hierarchical_loss(logits, targets, self.parents, **self.loss_options)

    def _sampled(self, feats: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """The loss on each level's labelled nodes, their siblings and sampled negatives;
        only the nodes kept at some level are encoded."""
        host_targets = targets.cpu()
        levels = [
            sample_level(host_targets[:, lvl], parent_of, self.negatives, self._generator)
            for lvl, parent_of in enumerate(self._parents_cpu)
        ]
        nodes = [g[level.kept] for g, level in zip(self._gathers_cpu, levels, strict=True)]
        needed = torch.unique(torch.cat(nodes))
        node_feats = self.text.encode_subset(needed, self._recompute_choice)
        scale = self.model.logit_scale()
        device = feats.device
        logits = []
        for level, ids in zip(levels, nodes, strict=True):
            g = node_feats[torch.searchsorted(needed, ids).to(device)]
            weight = level.log_weight.to(device)
            logits.append(scale * feats @ g.t().to(feats.dtype) + weight)
        return hierarchical_loss(
            logits,
            torch.stack([level.targets for level in levels], 1).to(device),
            [level.families.to(device) for level in levels],
            n_families=[level.n_families for level in levels],
            **self.loss_options,
        )


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
