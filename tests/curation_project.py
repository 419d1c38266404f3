"""A generated project with a finished run whose defects are known, built in code.

The project: A > {a1, a2, a3, p}, B > {b1, b2, b3}, C > {c1, c2}. Image embeddings are a
direction per top-level group plus one per leaf plus noise; text embeddings are what each
node means; logits are scaled cosines of the two, as CLIP computes them. Defects planted
(`defects=True`): a1 and a2 look and are named alike (indistinguishable), p looks like a
B (planted under the wrong parent), c1 holds two separated looks, and B's text points
nowhere (a poorly named node). Without them the same generator is a control.

`finished_run` stores it in a workspace as images, labels and a run folder written the
way training writes one, so the API and the studio read it like any run.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hiercore.config import RunConfig
from hiercore.evaluation import Collected, score
from hiercore.suggestions import RunEvidence
from hiercore.taxonomy import LevelIndex, Taxonomy

LEAVES = {"A": ["a1", "a2", "a3", "p"], "B": ["b1", "b2", "b3"], "C": ["c1", "c2"]}


def generated_run(defects: bool, per_leaf: int = 8, dim: int = 48, seed: int = 0) -> RunEvidence:
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(dim, dim)))[0]  # orthonormal directions
    directions = iter(basis)
    top = {t: next(directions) for t in LEAVES}
    look = {leaf: next(directions) for leaves in LEAVES.values() for leaf in leaves}
    second_c1 = next(directions)
    if defects:
        look["a2"] = look["a1"] + 0.02 * next(directions)
    tax = Taxonomy()
    ids = {}
    for t, leaves in LEAVES.items():
        ids[t] = tax.add(t, node_id=t)
        for leaf in leaves:
            ids[leaf] = tax.add(leaf, t, node_id=leaf)
    index = LevelIndex.build(tax)
    looks_like = {leaf: t for t, leaves in LEAVES.items() for leaf in leaves}
    if defects:
        looks_like["p"] = "B"
    feats, true = [], []
    for leaves in LEAVES.values():
        for leaf in leaves:
            for k in range(per_leaf * (2 if leaf == "c1" else 1)):
                second = defects and leaf == "c1" and k % 2 == 1
                x = top[looks_like[leaf]] + 0.8 * (second_c1 if second else look[leaf])
                feats.append(x + 0.08 * rng.normal(size=dim))
                true.append(index.target(leaf))
    feats = np.asarray(feats)
    text = {t: top[t] for t in LEAVES}
    if defects:
        text["B"] = next(directions)
    for leaf, t in looks_like.items():
        text[leaf] = top[t] + 0.8 * look[leaf]
    node_ids = list(text)
    node_feats = np.asarray([text[n] for n in node_ids])
    unit = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    logits = []
    for level in index.level_nodes:
        t = np.asarray([text[n] for n in level])
        logits.append(12 * unit @ (t / np.linalg.norm(t, axis=1, keepdims=True)).T)
    return RunEvidence(
        taxonomy=tax,
        index=index,
        true=np.asarray(true),
        logits=logits,
        image_feats=feats,
        node_feats=node_feats,
        node_ids=node_ids,
        image_keys=[f"img{i}.png" for i in range(len(feats))],
    )


def _png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def finished_run(ws, name: str = "generated", defects: bool = True) -> tuple[int, int, list[int]]:
    """(project id, run id, image id of every validation row) of a stored generated run.

    Both embedding maps are cached beside the run (the image map is `map_coords`), so no
    UMAP is fitted.
    """
    ev = generated_run(defects)
    pid = ws.create_project(name)
    ws.set_taxonomy(pid, ev.taxonomy)
    items = [
        (f"img{i}.png", _png(1000 + i), ev.index.node_of_path(list(row)), "val")
        for i, row in enumerate(ev.true)
    ]
    image_ids = ws.add_labelled_images(pid, items).added
    run_id = add_run(ws, pid, image_ids, ev, "generated run")
    return pid, run_id, image_ids


def add_run(ws, pid: int, image_ids: list[int], ev: RunEvidence, name: str, epochs: int = 1):
    """Store `ev` as a finished run of the project's generated images (row i: image i),
    with a validation history of `epochs` epochs; returns the run id."""
    paths = ws.images(pid).set_index("id").loc[image_ids, "path"].tolist()
    run_id = ws.create_run(pid, name, {"model": "tiny-random", "epochs": epochs})
    out = Path(ws.get_run(run_id)["out_dir"])
    out.mkdir(parents=True)
    RunConfig(model="tiny-random", epochs=epochs).save(out / "config.json")
    (out / "taxonomy.json").write_text(json.dumps(ev.taxonomy.to_dict()))
    parents = [torch.as_tensor(p) for p in ev.index.parents]
    collected = Collected(
        [z.astype(np.float32) for z in ev.logits], ev.true, ev.image_feats.astype(np.float32), paths
    )
    collected.save(
        out / "predictions.npz",
        parents,
        {
            "node_feats_before": ev.node_feats,
            "node_feats_after": ev.node_feats,
            "node_ids": np.asarray(ev.node_ids),
        },
    )
    metrics = score(collected, parents)
    (out / "metrics.json").write_text(json.dumps(metrics))
    history = [
        {"step": k, "epoch": k, "val": {"fpa": metrics["fpa"] * k / epochs, "tice": 0.0}}
        for k in range(1, epochs + 1)
    ]
    (out / "history.json").write_text(json.dumps(history))
    coords = map_coords(ev)
    np.savez(out / "map_images_0.npz", coords=coords, method="pca", note="generated")
    nodes = np.random.default_rng(2).normal(size=(2, len(ev.node_ids), 2))
    np.savez(
        out / "map_nodes_0.npz", before=nodes[0], after=nodes[1], method="pca", note="generated"
    )
    ws.update_run(run_id, state="finished", metrics=metrics)
    return run_id


def map_coords(ev: RunEvidence) -> np.ndarray:
    """Where each image sits on the cached image map: its leaf on a grid, jittered."""
    leaf_rows = ev.true[:, -1]
    rng = np.random.default_rng(1)
    grid = np.stack([leaf_rows % 3, leaf_rows // 3], axis=1).astype(np.float64) * 10
    return grid + rng.uniform(-1, 1, size=grid.shape)
