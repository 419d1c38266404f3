"""Image prototypes of a fine-tuned model (docs/method.md §2.1).

A prototype is the normalised mean embedding of the training images labelled with one
node of the last level. `PrototypeSums` gathers them during an epoch from the features
the training step computes anyway (for the per-epoch score); `training_features` makes
the clean set at the end of training, with the evaluation transform. Validation images
never enter either: the training loop only passes training batches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save

from hiercore.errors import HierTuneError


class PrototypeSums:
    """Running sums of image features per last-level node."""

    def __init__(self, n_leaves: int, dim: int, device: torch.device | str = "cpu") -> None:
        self.sums = torch.zeros(n_leaves, dim, device=device)
        self.counts = torch.zeros(n_leaves, device=device)

    def reset(self) -> None:
        self.sums.zero_()
        self.counts.zero_()

    @torch.no_grad()
    def add(self, feats: torch.Tensor, leaf: torch.Tensor) -> None:
        """Add normalised features (B, D) of images whose last-level index is `leaf` (B,);
        -1 (an image labelled above the last level) is left out."""
        keep = leaf >= 0
        if not keep.any():
            return
        leaf = leaf[keep].to(self.sums.device)
        self.sums.index_add_(0, leaf, feats[keep].detach().float().to(self.sums.device))
        self.counts.index_add_(0, leaf, torch.ones_like(leaf, dtype=self.counts.dtype))

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(prototypes (C_L, D), counts (C_L,)); a node without images keeps a zero row
        and count 0 (`HierClip.set_prototypes` then uses its text embedding)."""
        return F.normalize(self.sums, dim=-1), self.counts.clone()


def from_features(
    feats: torch.Tensor, leaf: torch.Tensor, n_leaves: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prototypes and counts of a whole set of features (N, D) and last-level indices (N,)."""
    sums = PrototypeSums(n_leaves, feats.shape[1])
    sums.add(feats, leaf)
    return sums.result()


def to_bytes(feats: torch.Tensor, counts: torch.Tensor) -> bytes:
    """The run folder's prototypes.safetensors content."""
    tensors = {"prototypes": feats, "counts": counts}
    return save({k: v.float().cpu().contiguous() for k, v in tensors.items()})


def read(path) -> tuple[torch.Tensor, torch.Tensor]:
    """Prototypes and counts from a prototypes.safetensors file; one sentence if unreadable."""
    try:
        tensors = load_file(str(path))
        feats, counts = tensors["prototypes"], tensors["counts"]
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        raise HierTuneError(f"Cannot read the image prototypes {path}: {exc}.") from None
    if feats.ndim != 2 or counts.shape != (feats.shape[0],):
        raise HierTuneError(f"{path} does not hold one prototype and one count per leaf.")
    return feats, counts
