"""Scoring a model on labelled images: logits, decoded paths and the docs/method.md §5 metrics.

`collect` runs a `HierClip` over a set of samples once and keeps what every results
view needs (per-level logits, true label vectors, image embeddings); `score` turns that
into the JSON-ready metrics of `hiercore.metrics.evaluate_predictions`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from hiercore.data import ImageLabelDataset, Sample
from hiercore.decode import consistent_decode, independent_decode
from hiercore.metrics import evaluate_predictions
from hiercore.models.hierclip import HierClip


@dataclass
class Collected:
    """One pass of a model over a sample set."""

    logits: list[np.ndarray]
    """Per-level logits, (N, C_l) each."""
    true: np.ndarray
    """(N, L) label vectors, -1 where unknown."""
    image_feats: np.ndarray
    """(N, D) normalised image embeddings."""
    paths: list[str]
    """Image path of each row."""

    def decoded(self, parents: list[torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
        lg = [torch.from_numpy(x) for x in self.logits]
        return independent_decode(lg).numpy(), consistent_decode(lg, parents).numpy()

    def save(self, path: Path, parents: list[torch.Tensor], extra: dict | None = None) -> None:
        """Write everything the results views read back to one .npz (plus `extra` arrays).

        Per level the `TOP_K` best classes (`topk_index_<l>`, `topk_logit_<l>`) and the
        level's log-sum-exp (`logsumexp_<l>`: softmax probabilities of those classes), and
        the `TOP_K` best valid paths with their summed log-probabilities (`path_topk`,
        `path_score`). Every level's logits (`logits_<l>`) only while they stay under
        `FULL_LOGITS_UP_TO` values: at 10k leaves they were 297 MB per 5,000 images.
        """
        ind, cons = self.decoded(parents)
        arrays = top_k_arrays(self.logits, parents)
        if sum(x.size for x in self.logits) <= FULL_LOGITS_UP_TO:
            arrays.update({f"logits_{i}": x for i, x in enumerate(self.logits)})
        arrays.update(
            true=self.true,
            pred_independent=ind,
            pred_consistent=cons,
            image_feats=self.image_feats.astype(np.float16),
            paths=np.asarray(self.paths),
        )
        arrays.update({k: np.asarray(v) for k, v in (extra or {}).items()})
        np.savez_compressed(path, **arrays)


TOP_K = 5
"""Classes per level and valid paths per image that a run's predictions.npz keeps."""
FULL_LOGITS_UP_TO = 20_000_000
"""A run keeps every level's logits while they hold at most this many values (80 MB)."""


def top_k_arrays(
    logits: list[np.ndarray], parents: list[torch.Tensor], k: int = TOP_K, chunk: int = 256
) -> dict[str, np.ndarray]:
    """Top-k classes per level and top-k valid paths of each row (see `Collected.save`)."""
    from hiercore.decode import consistent_topk

    n = logits[0].shape[0] if logits else 0
    out: dict[str, list[np.ndarray]] = {}
    cpu_parents = [p.cpu() for p in parents]
    for start in range(0, max(n, 1), chunk):  # bounded temporaries at 10k leaves
        zs = [torch.from_numpy(np.ascontiguousarray(z[start : start + chunk])) for z in logits]
        for lvl, z in enumerate(zs):
            top = z.topk(min(k, z.shape[1]), dim=1)
            out.setdefault(f"topk_index_{lvl}", []).append(top.indices.int().numpy())
            out.setdefault(f"topk_logit_{lvl}", []).append(top.values.float().numpy())
            lse = torch.logsumexp(z.float(), dim=1)
            out.setdefault(f"logsumexp_{lvl}", []).append(lse.numpy())
        paths, scores = consistent_topk(zs, cpu_parents, k=k)
        out.setdefault("path_topk", []).append(paths.int().numpy())
        out.setdefault("path_score", []).append(scores.float().numpy())
    return {key: np.concatenate(parts) for key, parts in out.items()}


def autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


@torch.no_grad()
def collect(
    model: HierClip,
    samples: list[Sample],
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    node_feats: torch.Tensor | None = None,
    on_batch=None,
) -> Collected:
    """Run `model` over `samples` (unreadable images are skipped and logged)."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    dataset = ImageLabelDataset(samples, model.index, model.bundle.preprocess)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    with autocast(device):
        if node_feats is None:
            node_feats = model.encode_nodes()
        logits: list[list[np.ndarray]] = [[] for _ in range(model.depth)]
        trues, feats = [], []
        for i, (images, targets) in enumerate(loader):
            f = model.encode_images(images.to(device))
            for lvl, z in enumerate(model.level_logits(f, node_feats)):
                logits[lvl].append(z.float().cpu().numpy())
            trues.append(targets.numpy())
            feats.append(f.float().cpu().numpy())
            if on_batch is not None:
                on_batch(i + 1, len(loader))
    model.train(was_training)
    if not trues:
        sizes = model.index.sizes
        return Collected(
            [np.zeros((0, c), np.float32) for c in sizes],
            np.zeros((0, model.depth), np.int64),
            np.zeros((0, model.bundle.embed_dim), np.float32),
            [],
        )
    return Collected(
        [np.concatenate(x) for x in logits],
        np.concatenate(trues),
        np.concatenate(feats),
        [s.path for s in dataset.samples],
    )


def epoch_score(collected: Collected, parents: list[torch.Tensor]) -> dict:
    """The three figures training plots after each epoch (fpa, tice, consistent_fpa),
    equal to `score`'s, without the rest of the metric set (that is for the end)."""
    from hiercore.metrics import DECODE_CHUNK, full_path_accuracy, tree_inconsistency_error

    par = [p.cpu() for p in parents]
    n = collected.true.shape[0]
    ind, cons = [], []
    for start in range(0, max(n, 1), DECODE_CHUNK):
        zs = [torch.from_numpy(z[start : start + DECODE_CHUNK]) for z in collected.logits]
        ind.append(independent_decode(zs))
        cons.append(consistent_decode(zs, par))
    ind_paths, cons_paths = torch.cat(ind), torch.cat(cons)
    val = {
        "fpa": full_path_accuracy(ind_paths, collected.true),
        "tice": tree_inconsistency_error(ind_paths, par),
        "consistent_fpa": full_path_accuracy(cons_paths, collected.true),
    }
    return {k: None if np.isnan(v) else float(v) for k, v in val.items()}  # as JSON keeps it


def score(collected: Collected, parents: list[torch.Tensor]) -> dict:
    """The metrics dict (independent and consistent decoding) of a collected pass."""
    metrics = evaluate_predictions(
        [torch.from_numpy(x) for x in collected.logits],
        torch.from_numpy(collected.true),
        [p.cpu() for p in parents],
    )
    metrics["n_val"] = int(collected.true.shape[0])
    return metrics
