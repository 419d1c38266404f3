"""A 10,000-leaf synthetic project shaped like iNaturalist 2021, for the scale benchmarks.

The tree has iNat 2021's seven ranks and rank sizes (3 kingdoms, 13 phyla, 51 classes,
273 orders, 1,103 families, 4,884 genera, 10,000 species: 16,327 nodes). Every node above
the species gets at least one child; the remaining children go to parents drawn with
heavy-tailed weights, so a few genera hold dozens of species as in the real tree.
Names are made up ("Genus 1234"); the ids are stable ("g1234") so runs are comparable.

`scale_workspace` also registers labelled image rows (all showing one small picture: the
Taxonomy tab, the label counts and the edits never open them) and `scale_predictions`
draws validation logits for a results view of that size.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from hiercore.taxonomy import ROOT, LevelIndex, Node, Taxonomy

INAT_RANKS = ("kingdom", "phylum", "class", "order", "family", "genus", "species")
INAT_SIZES = (3, 13, 51, 273, 1103, 4884, 10000)
"""iNaturalist 2021's nodes per rank (16,327 in all)."""


def inat_like_parents(sizes=INAT_SIZES, seed: int = 0) -> list[np.ndarray]:
    """`parents[l][c]`: the level l - 1 index of node c's parent (parents[0] is zeros)."""
    rng = np.random.default_rng(seed)
    parents = [np.zeros(sizes[0], dtype=np.int64)]
    for n_up, n_here in itertools.pairwise(sizes):
        weights = rng.pareto(1.5, n_up) + 0.1
        extra = rng.choice(n_up, n_here - n_up, p=weights / weights.sum())
        # sorted, so that siblings are contiguous like in a LevelIndex
        parents.append(np.sort(np.concatenate([np.arange(n_up), extra])))
    return parents


def inat_like_taxonomy(sizes=INAT_SIZES, seed: int = 0) -> Taxonomy:
    """The synthetic tree as a `Taxonomy` (ids like "s42": rank initial + index)."""
    parents = inat_like_parents(sizes, seed)
    ranks = INAT_RANKS[: len(sizes)]
    nodes = []
    for level, (rank, par) in enumerate(zip(ranks, parents, strict=True)):
        up = ranks[level - 1][0] if level else None
        for i, p in enumerate(par):
            parent = ROOT if up is None else f"{up}{p}"
            nodes.append(Node(f"{rank[0]}{i}", f"{rank.title()} {i}", parent, ""))
    return Taxonomy.from_nodes(nodes, ranks)


def scale_workspace(root: str | Path, n_images: int = 20000, seed: int = 0):
    """A workspace with one project holding the synthetic tree and `n_images` labelled rows.

    Returns (workspace, project id). The image rows all show one small picture: they exist
    so that label counts and label migration cost what they cost in a real project.
    """
    from hiercore.store import Workspace
    from hiercore.store.database import utc_now

    ws = Workspace(root)
    pid = ws.create_project("iNat-like 10k")
    tax = inat_like_taxonomy(seed=seed)
    ws.set_taxonomy(pid, tax)
    rng = np.random.default_rng(seed)
    leaves = [n for n in tax.leaves()]
    labels = rng.choice(len(leaves), n_images)
    now = utc_now()
    pixel = Path(root) / "pixel.png"  # every row shows this one image if a view opens it
    from PIL import Image

    Image.new("RGB", (8, 8), (40, 120, 60)).save(pixel)
    with ws._write() as conn:  # bulk rows; the files never exist
        for k, leaf in enumerate(labels):
            image_id = conn.execute(
                "INSERT INTO images (project_id, path, name, sha256, width, height, added) "
                "VALUES (?, ?, ?, ?, 1, 1, ?)",
                (pid, str(pixel), f"{k}.png", f"{k:064x}", now),
            ).lastrowid
            conn.execute(
                "INSERT INTO labels (image_id, node_id, source, updated) VALUES (?, ?, ?, ?)",
                (image_id, leaves[int(leaf)], "human", now),
            )
    return ws, pid


def scale_predictions(
    tax: Taxonomy, n: int = 5000, seed: int = 0
) -> tuple[list[np.ndarray], np.ndarray, LevelIndex]:
    """Float32 per-level logits (N, C_l) that favour the true path, and the true paths."""
    index = LevelIndex.build(tax)
    rng = np.random.default_rng(seed)
    leaf = rng.integers(0, index.sizes[-1], n)
    steps = [leaf]
    for level in range(index.depth - 1, 0, -1):
        steps.append(index.parents[level][steps[-1]])
    true = np.stack(steps[::-1], axis=1)
    logits = []
    for level, size in enumerate(index.sizes):
        z = rng.standard_normal((n, size), dtype=np.float32)
        z[np.arange(n), true[:, level]] += 3.0
        logits.append(z)
    return logits, true.astype(np.int64), index


def scale_run(ws, pid: int, n_val: int = 5000, seed: int = 0) -> int:
    """A finished run of the project with `scale_predictions` for `n_val` of its images, as
    `training.train` leaves it (config, taxonomy, predictions, metrics, history); returns
    its id. What the Results tab opens at 10,000 leaves."""
    import json

    import torch

    from hiercore.config import RunConfig
    from hiercore.evaluation import Collected, score

    tax = ws.taxonomy(pid)
    logits, true, index = scale_predictions(tax, n_val, seed)
    paths = ws.images(pid)["path"].iloc[:n_val].tolist()
    run_id = ws.create_run(pid, "scale run", {"model": "tiny-random", "epochs": 1})
    out = Path(ws.get_run(run_id)["out_dir"])
    out.mkdir(parents=True)
    RunConfig(model="tiny-random", epochs=1).save(out / "config.json")
    (out / "taxonomy.json").write_text(json.dumps(tax.to_dict()))
    parents = [torch.as_tensor(p) for p in index.parents]
    feats = np.zeros((n_val, 512), dtype=np.float32)
    collected = Collected(logits, true, feats, paths)
    collected.save(out / "predictions.npz", parents)
    metrics = score(collected, parents)
    (out / "metrics.json").write_text(json.dumps(metrics))
    history = [{"step": 1, "epoch": 1, "val": {"fpa": metrics["fpa"], "tice": metrics["tice"]}}]
    (out / "history.json").write_text(json.dumps(history))
    ws.update_run(run_id, state="finished", metrics=metrics)
    return run_id
