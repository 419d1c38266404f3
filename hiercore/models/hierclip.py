"""Per-level logits from a CLIP model over a taxonomy (docs/method.md §2).

    z^(l)_c = s * <f, g_c>,   s = exp(logit_scale)

f is the normalised image embedding; g_c the normalised mean of the normalised text
embeddings of node c's prompts. A padding copy of a leaf (levels below its depth) shares
the leaf's text embedding, so each distinct node is encoded once and gathered per level.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hiercore.models.loading import ClipBundle
from hiercore.models.prompts import check_templates, node_prompts
from hiercore.taxonomy import LevelIndex, Taxonomy


class HierClip(nn.Module):
    """A CLIP model bound to a taxonomy: images in, one logit vector per level out."""

    def __init__(
        self,
        bundle: ClipBundle,
        taxonomy: Taxonomy,
        templates: list[str] | tuple[str, ...] | None = None,
        index: LevelIndex | None = None,
    ) -> None:
        super().__init__()
        self.bundle = bundle
        self.clip = bundle.model
        self.taxonomy = taxonomy
        self.index = index or LevelIndex.build(taxonomy)
        self.templates = check_templates(list(templates or bundle.templates))
        # distinct nodes in level order; per-level gather indices into them
        self.node_ids: list[str] = []
        position: dict[str, int] = {}
        gathers = []
        for level in self.index.level_nodes:
            for n in level:
                if n not in position:
                    position[n] = len(self.node_ids)
                    self.node_ids.append(n)
            gathers.append(torch.tensor([position[n] for n in level], dtype=torch.long))
        prompts, owner = [], []
        for i, n in enumerate(self.node_ids):
            ps = node_prompts(taxonomy, n, self.templates)
            prompts.extend(ps)
            owner.extend([i] * len(ps))
        self.prompts = prompts
        self.register_buffer("tokens", bundle.tokenizer(prompts), persistent=False)
        self.register_buffer("prompt_owner", torch.tensor(owner), persistent=False)
        for lvl, g in enumerate(gathers):
            self.register_buffer(f"gather_{lvl}", g, persistent=False)
        self.register_buffer(
            "parents_buf",
            torch.cat([torch.as_tensor(p) for p in self.index.parents]),
            persistent=False,
        )

    def train(self, mode: bool = True) -> HierClip:
        """Train mode for the adapters; batch-norm layers of a CNN tower stay in eval mode.

        Fine-tuning adapts a frozen backbone: its running statistics were fitted in
        pretraining, and a small fine-tuning batch would both use and overwrite them.
        """
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        return self

    @property
    def depth(self) -> int:
        return self.index.depth

    def parents(self) -> list[torch.Tensor]:
        """`parents` as tensors on the model's device (for losses and decoding)."""
        out, start = [], 0
        for size in self.index.sizes:
            out.append(self.parents_buf[start : start + size])
            start += size
        return out

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.clip.encode_image(images), dim=-1)

    def encode_nodes(self, chunk: int = 1024) -> torch.Tensor:
        """Normalised text embedding of every distinct node, (N_nodes, D)."""
        feats = []
        for start in range(0, self.tokens.shape[0], chunk):
            feats.append(
                F.normalize(self.clip.encode_text(self.tokens[start : start + chunk]), dim=-1)
            )
        per_prompt = torch.cat(feats)
        sums = torch.zeros(
            len(self.node_ids),
            per_prompt.shape[1],
            device=per_prompt.device,
            dtype=per_prompt.dtype,
        )
        sums.index_add_(0, self.prompt_owner, per_prompt)
        return F.normalize(sums, dim=-1)

    def node_embeddings(self, node_feats: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Per-level text embeddings (C_l, D), padding copies included."""
        if node_feats is None:
            node_feats = self.encode_nodes()
        return [node_feats[getattr(self, f"gather_{lvl}")] for lvl in range(self.depth)]

    def logit_scale(self) -> torch.Tensor:
        return self.clip.logit_scale.exp()

    def level_logits(
        self, image_feats: torch.Tensor, node_feats: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """z^(l) for every level from normalised image features (B, D)."""
        scale = self.logit_scale()
        return [scale * image_feats @ g.t() for g in self.node_embeddings(node_feats)]

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self.level_logits(self.encode_images(images))
