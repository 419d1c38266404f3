"""Training images decoded once into one uint8 tensor, augmented as batches are drawn.

Decoding and resizing a file costs every epoch what it cost the first time; the cache pays
it once. Each image is stored at the model's input size (shortest side resized, bicubic,
then centre-cropped: the evaluation transform's geometry) as uint8, 3 × S × S bytes, and
`DecodedImages.build` declines when they would take more than `max_bytes` or when the
training transform is not the random-resized-crop + normalise that open_clip makes (then
training reads the files as before).

The random crop is drawn from a generator seeded by (seed, epoch, image), so an image gets
the same crop in a run on one process and in the same run split over several
(`hiercore.distributed`); a tensor crop of the stored image is close to, not the same as,
PIL's crop of the original file.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from hiercore.errors import DataError
from hiercore.images import open_rgb

log = logging.getLogger(__name__)

MAX_BYTES = 2 * 1024**3
"""Largest cache a training run builds (2 GiB: 170,000 images at 64 px, 14,000 at 224)."""


class DecodedImages(Dataset):
    """(augmented, normalised image tensor, target) pairs from decoded uint8 images."""

    def __init__(
        self,
        pixels: torch.Tensor,
        targets: torch.Tensor,
        crop: v2.RandomResizedCrop | object,
        mean: Sequence[float],
        std: Sequence[float],
        seed: int = 0,
    ) -> None:
        self.pixels, self.targets = pixels, targets
        self.size = pixels.shape[-1]
        self.scale, self.ratio = tuple(crop.scale), tuple(crop.ratio)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1) * 255
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1) * 255
        self.seed, self.epoch = seed, 0

    @classmethod
    def build(
        cls,
        samples: Sequence,
        targets: torch.Tensor,
        preprocess_train,
        seed: int = 0,
        max_bytes: int = MAX_BYTES,
    ) -> DecodedImages | None:
        """The cache of `samples` (with their `targets` rows), or None where it does not apply."""
        parts = _crop_and_normalise(preprocess_train)
        if parts is None:
            return None
        crop, normalise = parts
        size = crop.size[0] if isinstance(crop.size, Sequence) else int(crop.size)
        if len(samples) * 3 * size * size > max_bytes:
            return None
        pixels = torch.empty(len(samples), 3, size, size, dtype=torch.uint8)
        keep = []
        for i, sample in enumerate(samples):
            try:
                pixels[len(keep)] = _decode(sample.path, size)
            except (DataError, OSError, SyntaxError, ValueError) as exc:
                log.warning("Skipping image %s that failed to load: %s", sample.path, exc)
                continue
            keep.append(i)
        if not keep:
            raise DataError("None of the images in the dataset can be read any more.")
        return cls(pixels[: len(keep)], targets[keep], crop, normalise.mean, normalise.std, seed)

    @property
    def nbytes(self) -> int:
        return self.pixels.numel()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.pixels.shape[0]

    def plain(self, start: int, stop: int) -> torch.Tensor:
        """Images `start:stop` normalised without a random crop: what the evaluation
        transform gives (a shortest-side resize and centre crop, as they were decoded)."""
        return self._normalised(self.pixels[start:stop])

    def _normalised(self, pixels: torch.Tensor) -> torch.Tensor:
        return (pixels.float() - self.mean) / self.std

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(hash((self.seed, self.epoch, int(i))) & (2**63 - 1))
        top, left, h, w = _crop_box(self.size, self.scale, self.ratio, g)
        image = TF.resized_crop(
            self.pixels[i],
            top,
            left,
            h,
            w,
            [self.size, self.size],
            interpolation=v2.InterpolationMode.BICUBIC,
            antialias=True,
        )
        return self._normalised(image), self.targets[i]


def _crop_and_normalise(transform):
    """(RandomResizedCrop, Normalize) when `transform` is exactly crop, to-tensor, normalise."""
    steps = getattr(transform, "transforms", None)
    if not steps:
        return None
    names = [type(t).__name__ for t in steps]
    plain = {"MaybeConvertMode", "MaybeToTensor", "ToTensor"}
    if names[0] != "RandomResizedCrop" or names[-1] != "Normalize":
        return None
    if not set(names[1:-1]) <= plain:
        return None
    return steps[0], steps[-1]


def _decode(path: str, size: int) -> torch.Tensor:
    image = open_rgb(path)
    w, h = image.size
    scale = size / min(w, h)
    image = image.resize(
        (max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.BICUBIC
    )
    w, h = image.size
    left, top = (w - size) // 2, (h - size) // 2
    image = image.crop((left, top, left + size, top + size))
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)


def _crop_box(size: int, scale, ratio, g: torch.Generator) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop box on a square image, drawn from `g`."""
    area = size * size
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        u = torch.rand(2, generator=g).tolist()
        target = area * (scale[0] + u[0] * (scale[1] - scale[0]))
        aspect = math.exp(log_ratio[0] + u[1] * (log_ratio[1] - log_ratio[0]))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= size and 0 < h <= size:
            top = int(torch.randint(0, size - h + 1, (1,), generator=g))
            left = int(torch.randint(0, size - w + 1, (1,), generator=g))
            return top, left, h, w
    return 0, 0, size, size
