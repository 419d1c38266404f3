"""Per-level logits from a CLIP model over a taxonomy (docs/method.md §2).

    z^(l)_c = s * <f, g_c>,   s = exp(logit_scale)

f is the normalised image embedding; g_c the normalised mean of the normalised text
embeddings of node c's prompts. A padding copy of a leaf (levels below its depth) shares
the leaf's text embedding, so each distinct node is encoded once and gathered per level.

With image prototypes (docs/method.md §2.1, set by `set_prototypes` after a fine-tune) each
node's logit also gets the image evidence of its subtree:

    z^(l)_c += w * s * max over leaves c' under c of <f, p_c'>,

p_c' the normalised mean image embedding of the training images labelled c' (its text
embedding when none is).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hiercore.models.loading import ClipBundle
from hiercore.models.prompts import check_templates, nodes_prompts
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
        for i, ps in enumerate(nodes_prompts(taxonomy, self.node_ids, self.templates)):
            prompts.extend(ps)
            owner.extend([i] * len(ps))
        self.prompts = prompts
        # tokenised on first use: a predictor that reuses cached prompt features needs
        # only the prompts it has not seen (32k prompts take seconds to tokenise)
        self.register_buffer("_tokens", None, persistent=False)
        self.register_buffer("prompt_owner", torch.tensor(owner), persistent=False)
        for lvl, g in enumerate(gathers):
            self.register_buffer(f"gather_{lvl}", g, persistent=False)
        self.register_buffer(
            "parents_buf",
            torch.cat([torch.as_tensor(p) for p in self.index.parents]),
            persistent=False,
        )
        self.prototype_weight = 0.0
        self.register_buffer("proto_feats", None, persistent=False)
        self.register_buffer("proto_known", None, persistent=False)

    @property
    def tokens(self) -> torch.Tensor:
        """Every prompt tokenised, (N_prompts, context), on the model's device."""
        if self._tokens is None:
            self._tokens = self.bundle.tokenizer(self.prompts).to(self.parents_buf.device)
        return self._tokens

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

    def set_prototypes(
        self, feats: torch.Tensor | None, counts: torch.Tensor | None = None, weight: float = 1.0
    ) -> None:
        """Add the image-prototype evidence (module docstring) to every level's logits:
        `feats` (C_L, D) one normalised prototype per node of the last level, `counts` how
        many training images each was made from (0: the node's text embedding stands in).
        `feats=None` or `weight=0` turns it off. Training losses see the logits without it
        (the training loop sets it only to score)."""
        if feats is None or weight == 0:
            self.prototype_weight, self.proto_feats, self.proto_known = 0.0, None, None
            return
        n_leaves = self.index.sizes[-1]
        if feats.shape != (n_leaves, self.clip.text_projection.shape[1]):
            raise ValueError(
                f"prototypes must be ({n_leaves}, D) for this taxonomy, not {tuple(feats.shape)}"
            )
        device = self.parents_buf.device
        counts = torch.ones(n_leaves) if counts is None else counts
        self.proto_feats = F.normalize(feats.float(), dim=-1).to(device)
        self.proto_known = (counts > 0).to(device)
        self.prototype_weight = float(weight)

    def level_logits(
        self, image_feats: torch.Tensor, node_feats: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """z^(l) for every level from normalised image features (B, D)."""
        scale = self.logit_scale()
        texts = self.node_embeddings(node_feats)
        logits = [scale * image_feats @ g.t() for g in texts]
        if self.proto_feats is None:
            return logits
        leaf = torch.where(self.proto_known[:, None], self.proto_feats, texts[-1].float())
        # in float32 whatever the autocast: the max is a scatter, the sum small
        scores = scale.float() * image_feats.float() @ leaf.t().float()
        evidence = subtree_max(scores, self.parents(), self.index.sizes)
        return [z + self.prototype_weight * e for z, e in zip(logits, evidence, strict=True)]

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self.level_logits(self.encode_images(images))


def subtree_max(
    leaf_scores: torch.Tensor, parents: list[torch.Tensor], sizes: list[int]
) -> list[torch.Tensor]:
    """Per level, each node's best score among the last-level nodes under it, (B, C_l) each,
    from `leaf_scores` (B, C_L); `parents[l]` maps level l to level l - 1, `sizes[l]` is
    C_l. A shallow leaf's padding copies carry its own score up to it."""
    out = [leaf_scores]
    for parent_of, n_up in zip(reversed(parents[1:]), reversed(sizes[:-1]), strict=True):
        below = out[0]
        index = parent_of.to(below.device).expand(below.shape[0], -1)
        up = below.new_full((below.shape[0], n_up), float("-inf"))
        out.insert(0, up.scatter_reduce(1, index, below, "amax"))
    return out
