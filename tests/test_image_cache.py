"""Decoded training images: one uint8 tensor, crops that depend on (seed, epoch, image) only."""

from __future__ import annotations

import torch
from imagegen import write_tree

from hiercore.data import ImageLabelDataset, samples_from_folder_tree
from hiercore.image_cache import DecodedImages
from hiercore.models import load_clip
from hiercore.taxonomy import LevelIndex


def dataset(tmp_path):
    tax, samples = samples_from_folder_tree(write_tree(tmp_path, per_leaf=2, size=40))
    bundle = load_clip("tiny-random")
    return ImageLabelDataset(samples, LevelIndex.build(tax), bundle.preprocess_train), bundle


def test_cache_holds_uint8_at_the_input_size_and_matches_the_file_transform(tmp_path):
    files, bundle = dataset(tmp_path)
    cache = DecodedImages.build(files.samples, files.targets, bundle.preprocess_train, seed=3)
    size = bundle.image_size
    assert cache.pixels.dtype == torch.uint8 and cache.pixels.shape == (len(files), 3, size, size)
    assert cache.nbytes == len(files) * 3 * size * size
    x, target = cache[5]
    assert torch.equal(target, files.targets[5])
    reference, _ = files[5]  # PIL's crop of the file: same geometry, same normalisation
    assert x.shape == reference.shape
    assert (x - reference).abs().mean() < 0.15 * reference.abs().mean()


def test_crops_repeat_for_an_epoch_and_change_between_epochs(tmp_path):
    files, bundle = dataset(tmp_path)
    a = DecodedImages.build(files.samples, files.targets, bundle.preprocess_train, seed=0)
    b = DecodedImages.build(files.samples, files.targets, bundle.preprocess_train, seed=0)
    assert torch.equal(a[2][0], b[2][0])  # another process draws the same crop
    first = [a[i][0] for i in range(len(a))]
    a.set_epoch(1)  # 32 px crops of 90-100% of the area: few boxes, some repeat
    assert any(not torch.equal(a[i][0], first[i]) for i in range(len(a)))


def test_cache_declines_what_it_cannot_hold_or_reproduce(tmp_path):
    files, bundle = dataset(tmp_path)
    assert (
        DecodedImages.build(files.samples, files.targets, bundle.preprocess_train, max_bytes=10)
        is None
    )
    assert DecodedImages.build(files.samples, files.targets, bundle.preprocess) is None
