"""Predicting taxonomy paths for new images with a saved run or a zero-shot model.

A `Predictor` is what the CLI's ``predict``, the studio's Predict tab, its model-assisted
labelling and the ``/predict`` API share: load once, then map images to the consistent
path (docs/method.md §4), per-level probabilities and the top-k valid paths.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from hiercore.decode import consistent_topk, independent_decode
from hiercore.errors import DataError
from hiercore.evaluation import autocast
from hiercore.images import open_rgb, size_problem, to_rgb
from hiercore.models import HierClip, apply_lora, load_clip
from hiercore.models.loading import pick_device
from hiercore.run_folder import MODEL_FILES, RunFolder
from hiercore.taxonomy import Taxonomy


@dataclass
class Prediction:
    """The model's answer for one image."""

    path: list[str]
    """Names of the consistent (valid) path, first level first."""
    node_id: str
    """The deepest node of that path (what a label would be)."""
    level_probs: list[float]
    """Softmax probability of the path's node at each level."""
    independent: list[str]
    """Names of the per-level argmax (may be an inconsistent path)."""
    consistent_with_independent: bool
    topk: list[dict]
    """The k best valid paths: {"path": [...], "node_id", "score"} with score = mean log-prob."""

    def to_dict(self) -> dict:
        return self.__dict__.copy()


class PromptFeatures:
    """Text embeddings of prompts already encoded by one frozen model, by prompt text.

    A zero-shot predictor is rebuilt after every taxonomy edit; with this cache only the
    prompts the edit changed (a renamed node's, its children's if they name the parent)
    are encoded again, not the 32k prompts of a 16k-node tree. Oldest entries go first
    beyond `max_prompts`.
    """

    def __init__(self, max_prompts: int = 200_000) -> None:
        self.max_prompts = max_prompts
        self.features: dict[str, torch.Tensor] = {}
        self.encoded = 0
        """Prompts encoded through this cache so far (what the cache saves is the rest)."""
        self.lock = threading.Lock()

    @torch.no_grad()
    def node_feats(self, model: HierClip, device: torch.device, chunk: int = 1024) -> torch.Tensor:
        """`model.encode_nodes()` for a frozen model, encoding only prompts not seen yet."""
        with self.lock:
            first = {p: i for i, p in reversed(list(enumerate(model.prompts)))}
            missing = sorted(i for p, i in first.items() if p not in self.features)
            with autocast(device):
                for start in range(0, len(missing), chunk):
                    rows = missing[start : start + chunk]
                    # only these prompts are tokenised (`model.tokens` would do them all)
                    texts = [model.prompts[i] for i in rows]
                    tokens = model.bundle.tokenizer(texts).to(model.parents_buf.device)
                    feats = F.normalize(model.clip.encode_text(tokens), dim=-1)
                    for text, f in zip(texts, feats.float().cpu(), strict=True):
                        self.features[text] = f
            self.encoded += len(missing)
            per_prompt = torch.stack([self.features[p] for p in model.prompts])
            while len(self.features) > self.max_prompts:
                self.features.pop(next(iter(self.features)))
        sums = torch.zeros(len(model.node_ids), per_prompt.shape[1])
        sums.index_add_(0, model.prompt_owner.cpu(), per_prompt)
        return F.normalize(sums, dim=-1).to(device)


class Predictor:
    """A loaded model plus taxonomy, ready to label images."""

    def __init__(
        self, model: HierClip, device: torch.device, prompt_cache: PromptFeatures | None = None
    ) -> None:
        self.model = model.eval()
        self.device = device
        self.parents = model.parents()
        if prompt_cache is not None:
            self.node_feats = prompt_cache.node_feats(model, device)
        else:
            with torch.no_grad(), autocast(device):
                self.node_feats = model.encode_nodes()

    @classmethod
    def from_run(cls, run_dir: str | Path, device: str = "auto") -> Predictor:
        dev = pick_device(device)
        return cls(load_run_model(run_dir).to(dev), dev)

    @classmethod
    def zero_shot(
        cls,
        taxonomy: Taxonomy,
        model: str = "default",
        pretrained: str | None = None,
        templates: list[str] | None = None,
        device: str = "auto",
        prompt_cache: PromptFeatures | None = None,
        bundle=None,
    ) -> Predictor:
        """`prompt_cache` (for this model) keeps prompt embeddings across rebuilds, and a
        loaded `bundle` of this model saves loading it again."""
        dev = pick_device(device)
        bundle = bundle if bundle is not None else load_clip(model, pretrained)
        return cls(HierClip(bundle, taxonomy, templates).to(dev), dev, prompt_cache)

    @property
    def taxonomy(self) -> Taxonomy:
        return self.model.taxonomy

    @torch.no_grad()
    def level_logits(self, images: list[Image.Image]) -> list[torch.Tensor]:
        for im in images:  # decoded already (an upload), but resizing it could still explode
            problem = size_problem(*im.size)
            if problem is not None:
                raise DataError(f"The image is refused: {problem}.")
        batch = torch.stack([self.model.bundle.preprocess(to_rgb(im)) for im in images])
        with autocast(self.device):
            feats = self.model.encode_images(batch.to(self.device))
            return [z.float().cpu() for z in self.model.level_logits(feats, self.node_feats)]

    def predict(self, images: list[Image.Image], k: int = 3) -> list[Prediction]:
        if not images:
            return []
        logits = self.level_logits(images)
        parents = [p.cpu() for p in self.parents]
        paths, scores = consistent_topk(logits, parents, k=k)
        ind = independent_decode(logits)
        probs = [z.softmax(-1) for z in logits]
        index = self.model.index
        depth = index.depth
        out = []
        for b in range(len(images)):
            best = paths[b, 0].tolist()
            names = _path_names(self.taxonomy, index, best)
            topk = [
                {
                    "path": _path_names(self.taxonomy, index, paths[b, j].tolist()),
                    "node_id": index.node_of_path(paths[b, j].tolist()),
                    "score": float(scores[b, j]) / depth,
                }
                for j in range(paths.shape[1])
            ]
            out.append(
                Prediction(
                    path=names,
                    node_id=index.node_of_path(best),
                    level_probs=[float(probs[lvl][b, best[lvl]]) for lvl in range(depth)],
                    independent=[
                        self.taxonomy.name(index.node_at(lvl, int(ind[b, lvl])))
                        for lvl in range(depth)
                    ],
                    consistent_with_independent=bool(np.array_equal(ind[b].numpy(), best)),
                    topk=topk,
                )
            )
        return out

    def predict_files(self, paths: list[str | Path], k: int = 3) -> list[Prediction]:
        return self.predict([open_rgb(p) for p in paths], k=k)


def load_run_model(run_dir: str | Path) -> HierClip:
    """The adapted model of a run folder (or an unpacked bundle), on the CPU."""
    from hiercore.training import load_adapter

    folder = RunFolder(run_dir)
    folder.require(MODEL_FILES)
    config = folder.read_config()
    bundle = load_clip(config.model, config.pretrained)
    apply_lora(bundle.model, config.lora_spec)
    load_adapter(bundle.model, folder.adapter_file)
    model = HierClip(bundle, folder.read_taxonomy(), config.templates)
    prototypes = folder.read_prototypes() if config.prototypes > 0 else None
    if prototypes is not None:
        model.set_prototypes(*prototypes, weight=config.prototypes)
    return model


def _path_names(taxonomy: Taxonomy, index, path: list[int]) -> list[str]:
    """Names along an index path, without the repeated padding copies of a shallow leaf."""
    names: list[str] = []
    seen: set[str] = set()
    for lvl, i in enumerate(path):
        node = index.node_at(lvl, i)
        if node not in seen:
            seen.add(node)
            names.append(taxonomy.name(node))
    return names
