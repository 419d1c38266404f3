"""A finished run folder read back for analysis: what the results views are computed from.

`training.train` writes config.json, taxonomy.json, metrics.json, history.json and
predictions.npz (validation logits, true and decoded index paths, image paths, image and
node embeddings). `RunResults.load` reads them once; its methods answer the drill-down
questions of the results view (which images sit behind a confusion cell, which images
break the tree at a level pair or in a subtree) and cache the 2-D embedding maps beside
the run, since a UMAP fit takes seconds.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hiercore.config import RunConfig
from hiercore.errors import HierTuneError
from hiercore.history import History
from hiercore.metrics import confusion_at_level, inconsistency_by_subtree
from hiercore.run_folder import RESULT_FILES, RunFolder, write_durably
from hiercore.taxonomy import LevelIndex, Taxonomy

DECODINGS = ("independent", "consistent")
TOP_K_KEYS = ("topk_", "logsumexp_", "path_topk", "path_score")
OLD_RUN_TOP_K = 5
"""Classes `level_topk` gives from the logits of a run folder older than the top-k arrays."""
DENSE_CONFUSION_UP_TO = 1000
"""Levels with more classes get a sparse confusion matrix (8 MB dense at this size)."""


@dataclass
class RunResults:
    """Metrics and validation predictions of one run."""

    run_dir: Path
    config: RunConfig
    taxonomy: Taxonomy
    index: LevelIndex
    metrics: dict
    history: History
    true: np.ndarray
    """(N, L) true index paths, -1 where unknown."""
    predicted: dict[str, np.ndarray]
    """(N, L) index paths per decoding ("independent", "consistent")."""
    paths: list[str]
    image_feats: np.ndarray | None = None
    node_feats: dict[str, np.ndarray] = field(default_factory=dict)
    """"before" / "after" fine-tuning text embeddings of every distinct node."""
    node_ids: list[str] = field(default_factory=list)
    topk: dict[str, np.ndarray] = field(default_factory=dict)
    """`hiercore.evaluation.top_k_arrays` as saved (empty for run folders older than it)."""

    @classmethod
    def load(cls, run_dir: str | Path) -> RunResults:
        folder = RunFolder(run_dir)
        run = folder.path
        missing = folder.missing(RESULT_FILES)
        if missing:
            raise HierTuneError(f"Run {run.name} has no {missing[0]} yet: it has not finished.")
        taxonomy = folder.read_taxonomy()
        with np.load(folder.predictions_file, allow_pickle=False) as z:
            # Every level's logits are read only if asked for (`logits`): 10-12 s at 10k
            # leaves. Old run folders hold them all; newer ones keep the top-k.
            topk = {k: z[k] for k in z.files if k.startswith(TOP_K_KEYS)}
            predicted = {d: z[f"pred_{d}"].astype(np.int64) for d in DECODINGS}
            node_feats = {
                k: z[f"node_feats_{k}"].astype(np.float32)
                for k in ("before", "after")
                if f"node_feats_{k}" in z.files
            }
            return cls(
                run_dir=run,
                config=folder.read_config(),
                taxonomy=taxonomy,
                index=LevelIndex.build(taxonomy),
                metrics=folder.read_metrics(),
                history=folder.read_history(),
                true=z["true"].astype(np.int64),
                predicted=predicted,
                paths=[str(p) for p in z["paths"]],
                image_feats=z["image_feats"].astype(np.float32)
                if "image_feats" in z.files
                else None,
                node_feats=node_feats,
                node_ids=[str(n) for n in z["node_ids"]] if "node_ids" in z.files else [],
                topk=topk,
            )

    @functools.cached_property
    def logits(self) -> list[np.ndarray]:
        """Every level's validation logits (N, C_l), read on first use; a run whose logits
        were too large to keep has only `topk`, and this says so."""
        with np.load(RunFolder(self.run_dir).predictions_file, allow_pickle=False) as z:
            depth = sum(1 for k in z.files if k.startswith("logits_"))
            if depth == 0:
                raise HierTuneError(
                    f"Run {self.run_dir.name} kept only the top classes and paths "
                    "of each image, not every level's logits."
                )
            return [z[f"logits_{i}"].astype(np.float32) for i in range(depth)]

    def level_topk(self, level: int) -> tuple[np.ndarray, np.ndarray]:
        """(classes, softmax probabilities), (N, k) each, best first, at 1-based `level`."""
        key = f"topk_index_{level - 1}"
        if key in self.topk:
            lse = self.topk[f"logsumexp_{level - 1}"][:, None]
            return self.topk[key].astype(np.int64), np.exp(
                self.topk[f"topk_logit_{level - 1}"] - lse
            )
        z = self.logits[level - 1]  # an older run folder
        order = np.argsort(-z, axis=1, kind="stable")[:, :OLD_RUN_TOP_K]
        shifted = z - z.max(axis=1, keepdims=True)
        probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
        return order, np.take_along_axis(probs, order, axis=1)

    # ------------------------------------------------------------------ shape
    @property
    def n(self) -> int:
        return int(self.true.shape[0])

    @property
    def depth(self) -> int:
        return self.index.depth

    def parents(self) -> list[np.ndarray]:
        return [np.asarray(p) for p in self.index.parents]

    def pred(self, decoding: str = "independent") -> np.ndarray:
        if decoding not in self.predicted:
            raise HierTuneError(f"Decoding must be one of {', '.join(DECODINGS)}.")
        return self.predicted[decoding]

    # ------------------------------------------------------------------ views
    def confusion(self, level: int, decoding: str = "independent"):
        """Counts at 1-based `level`, true rows and predicted columns: only that level, and
        a `scipy.sparse.csr_matrix` above `DENSE_CONFUSION_UP_TO` classes."""
        size = self.index.sizes[level - 1]
        sparse = size > DENSE_CONFUSION_UP_TO
        return confusion_at_level(self.pred(decoding), self.true, level - 1, size, sparse)

    def label_node(self, row: int) -> str | None:
        """The node id an image was labelled with (its deepest known level)."""
        known = [int(i) for i in self.true[row] if i >= 0]
        return self.index.node_of_path(list(self.true[row])) if known else None

    def path_names(self, path: np.ndarray | list[int]) -> list[str]:
        """Names along an index path, padding copies and unknown levels left out."""
        names: list[str] = []
        seen: set[str] = set()
        for lvl, i in enumerate(path):
            if int(i) < 0:
                break
            node = self.index.node_at(lvl, int(i))
            if node not in seen:
                seen.add(node)
                names.append(self.taxonomy.name(node))
        return names

    def broken_links(self, decoding: str = "independent") -> np.ndarray:
        """(N, L-1) flags: the prediction at level l+1 is not a child of the one at l."""
        pred = self.pred(decoding)
        par = self.parents()
        cols = [par[lvl][pred[:, lvl]] != pred[:, lvl - 1] for lvl in range(1, self.depth)]
        return np.stack(cols, axis=1) if cols else np.zeros((self.n, 0), dtype=bool)

    def inconsistent_rows(
        self, level: int | None = None, subtree: str | None = None, decoding: str = "independent"
    ) -> np.ndarray:
        """Images whose prediction breaks the tree, optionally at the link into 1-based
        `level` (2..L) and for images whose true node one level up is `subtree`."""
        flags = self.broken_links(decoding)
        if flags.shape[1] == 0:
            return np.zeros(0, dtype=np.int64)
        if level is None:
            hit = flags.any(axis=1)
        else:
            if not 2 <= level <= self.depth:
                raise HierTuneError(f"Level must be between 2 and {self.depth}, not {level}.")
            hit = flags[:, level - 2].copy()
            if subtree is not None:
                parent_index = self.index.index_of(level - 2, subtree)
                hit &= self.true[:, level - 2] == parent_index
        return np.flatnonzero(hit)

    def inconsistency_table(self, decoding: str = "independent"):
        """`metrics.inconsistency_by_subtree` with the subtree's node id and path added."""
        table = inconsistency_by_subtree(self.pred(decoding), self.true, self.parents())
        nodes = [
            self.index.node_at(int(lv) - 2, int(pi))
            for lv, pi in zip(table["level"], table["parent_index"], strict=True)
        ]
        table.insert(0, "subtree", [" / ".join(self.taxonomy.path_names(n)) for n in nodes])
        table["node_id"] = nodes
        return table

    # ------------------------------------------------------------------ maps
    def node_maps(self, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """2-D maps of the node text embeddings before and after, fitted jointly (cached)."""
        if not {"before", "after"} <= set(self.node_feats):
            raise HierTuneError(f"Run {self.run_dir.name} saved no node embeddings.")
        from hiercore.embedding_map import Map2D, joint_umap

        cache = self.run_dir / f"map_nodes_{seed}.npz"
        if cache.is_file():
            with np.load(cache, allow_pickle=False) as z:
                note = str(z["note"])
                before = Map2D(z["before"], str(z["method"]), note)
                after = Map2D(z["after"], str(z["method"]), note)
                return before, after, self.node_ids
        before, after = joint_umap(self.node_feats["before"], self.node_feats["after"], seed)
        _save_atomically(cache, before=before, after=after, method=before.method, note=before.note)
        return before, after, self.node_ids

    def _image_map_file(self, seed: int) -> Path:
        return self.run_dir / f"map_images_{seed}.npz"

    def has_image_map(self, seed: int = 0) -> bool:
        """Whether the image map is cached (drawing it again is then instant)."""
        return self._image_map_file(seed).is_file()

    def image_map(self, seed: int = 0) -> np.ndarray:
        """A 2-D map of the validation image embeddings (cached)."""
        if self.image_feats is None or self.n == 0:
            raise HierTuneError(f"Run {self.run_dir.name} saved no image embeddings.")
        from hiercore.embedding_map import Map2D, umap_2d

        cache = self._image_map_file(seed)
        if cache.is_file():
            with np.load(cache, allow_pickle=False) as z:
                return Map2D(z["coords"], str(z["method"]), str(z["note"]))
        coords = umap_2d(self.image_feats, seed)
        _save_atomically(cache, coords=coords, method=coords.method, note=coords.note)
        return coords

    def precompute_maps(self, seed: int = 0) -> None:
        """Fit and cache both maps (what the studio does in the background after a run)."""
        if {"before", "after"} <= set(self.node_feats):
            self.node_maps(seed)
        if self.image_feats is not None and self.n:
            self.image_map(seed)


def _save_atomically(path: Path, **arrays) -> None:
    """The maps as one npz, written whole by `write_durably`: a reader never sees half a
    map (the background precompute and a click on the maps button may race)."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_durably(path, buf.getvalue())
