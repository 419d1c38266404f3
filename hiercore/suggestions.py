"""Taxonomy suggestions from a finished run: what the model's errors say about the tree.

Four kinds, each ranked by its own score (highest first) and carrying its evidence:

- merge: sibling nodes the model cannot tell apart. Score: the mean probability the model
  gives the sibling on each one's validation images (confusion mass, averaged both ways),
  weighted by how alike their text embeddings are, `mass * (1 + max(cos, 0)) / 2`.
- move: a node whose images sit nearer another subtree than their own parent's. Score:
  cosine of the node's image centroid to the other parent's images minus its cosine to
  the rest of its own parent's images.
- split: a leaf whose images form two separated clusters (2-means on the normalised image
  embeddings). Score: the silhouette of that clustering (Rousseeuw, 1987).
- describe: an inner node whose prompt scores far below its children's (a poorly named
  node). Score: mean probability of the true child at the level below minus mean
  probability of the node itself at its level, on the node's images.

A suggestion converts to a taxonomy edit (`edit_of`) that the store applies through
its edit-with-migration path, so accepting one is undone like any other edit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from hiercore.errors import HierTuneError
from hiercore.taxonomy import EditReport, LevelIndex, Taxonomy

KINDS = ("merge", "move", "split", "describe")
MAX_EVIDENCE_IMAGES = 12


@dataclass
class Suggestion:
    """One proposed change to the taxonomy, with why."""

    kind: str
    """"merge", "move", "split" or "describe"."""
    score: float
    """How strongly the run supports it (comparable within a kind only)."""
    title: str
    """One sentence for the user."""
    nodes: list[str]
    """The node ids it is about."""
    evidence: dict
    """The numbers behind the score."""
    images: list = field(default_factory=list)
    """Keys (paths) of the images that show it best, most telling first."""
    edit: dict = field(default_factory=dict)
    """The taxonomy edit that accepts it (see `edit_of`)."""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RunEvidence:
    """What suggestions are computed from: a run's validation outputs as plain arrays."""

    taxonomy: Taxonomy
    index: LevelIndex
    true: np.ndarray
    """(N, L) true index paths, -1 where unknown."""
    logits: list[np.ndarray]
    """Per-level logits, (N, C_l) each."""
    image_feats: np.ndarray | None = None
    """(N, D) image embeddings (move and split need them)."""
    node_feats: np.ndarray | None = None
    """(M, D) text embeddings of the nodes in `node_ids` (merge weighs by them)."""
    node_ids: list[str] = field(default_factory=list)
    image_keys: list = field(default_factory=list)
    """What names image n in the evidence (its path); row numbers when empty."""

    @classmethod
    def from_run(cls, results) -> RunEvidence:
        """From a `hiercore.run_results.RunResults` (text embeddings after fine-tuning)."""
        return cls(
            taxonomy=results.taxonomy,
            index=results.index,
            true=results.true,
            logits=results.logits,
            image_feats=results.image_feats,
            node_feats=results.node_feats.get("after"),
            node_ids=list(results.node_ids),
            image_keys=list(results.paths),
        )


def taxonomy_suggestions(
    ev: RunEvidence, min_images: int = 3, limit: int = 10
) -> dict[str, list[Suggestion]]:
    """Every kind's suggestions, best first, at most `limit` each; a node needs
    `min_images` validation images (a split, twice that) to be judged."""
    probs = [_softmax(np.asarray(z, dtype=np.float64)) for z in ev.logits]
    out = {
        "merge": _merges(ev, probs, min_images),
        "move": _moves(ev, min_images) if ev.image_feats is not None else [],
        "split": _splits(ev, min_images) if ev.image_feats is not None else [],
        "describe": _descriptions(ev, probs, min_images),
    }
    return {k: sorted(v, key=lambda s: -s.score)[:limit] for k, v in out.items()}


# ---------------------------------------------------------------------- the four kinds
def _merges(ev: RunEvidence, probs: list[np.ndarray], min_images: int) -> list[Suggestion]:
    text = _node_vectors(ev)
    found = []
    for level, nodes in enumerate(ev.index.level_nodes):
        rows = _rows_per_entry(ev, level, min_images)
        siblings: dict[int, list[int]] = {}
        for c in rows:
            siblings.setdefault(int(ev.index.parents[level][c]), []).append(c)
        pairs = [
            (a, b)
            for group in siblings.values()
            for k, a in enumerate(group)
            for b in group[k + 1 :]
        ]
        for a, b in pairs:
            p_ab = probs[level][rows[a], b]
            p_ba = probs[level][rows[b], a]
            mass = float((p_ab.mean() + p_ba.mean()) / 2)
            sim = _cos(text.get(nodes[a]), text.get(nodes[b]))
            weight = 1.0 if sim is None else (1 + max(sim, 0.0)) / 2
            # the larger node keeps its name; the smaller one goes into it
            keep, drop = (a, b) if len(rows[a]) >= len(rows[b]) else (b, a)
            both = np.concatenate([rows[a], rows[b]])
            order = np.argsort(-np.concatenate([p_ab, p_ba]), kind="stable")
            name_keep, name_drop = _name(ev, nodes[keep]), _name(ev, nodes[drop])
            found.append(
                Suggestion(
                    kind="merge",
                    score=mass * weight,
                    title=(
                        f"Merge {name_drop!r} into {name_keep!r}: the model gives the other "
                        f"one {mass:.0%} of the probability on their images"
                        + ("" if sim is None else f", and their names embed alike ({sim:.2f})")
                        + "."
                    ),
                    nodes=[nodes[drop], nodes[keep]],
                    evidence={
                        "confusion_mass": mass,
                        "text_similarity": sim,
                        "images": {nodes[a]: len(rows[a]), nodes[b]: len(rows[b])},
                    },
                    images=_keys(ev, both[order]),
                    edit={"action": "merge", "source": nodes[drop], "target": nodes[keep]},
                )
            )
    return found


def _moves(ev: RunEvidence, min_images: int) -> list[Suggestion]:
    feats = _unit(ev.image_feats)
    found = []
    for level in range(1, ev.index.depth):
        nodes = ev.index.level_nodes[level]
        up_nodes = ev.index.level_nodes[level - 1]
        rows = _rows_per_entry(ev, level, min_images)
        # image-embedding sums per node one level up, so that each centroid is one division
        up = ev.true[:, level - 1]
        known = up >= 0
        sums = np.zeros((len(up_nodes), feats.shape[1]))
        np.add.at(sums, up[known], feats[known])
        counts = np.bincount(up[known], minlength=len(up_nodes))
        # a leaf above the last level (a padding copy) is no parent to move under
        candidates = ~np.asarray(ev.index.padded[level - 1]) & (counts >= min_images)
        for v, v_rows in rows.items():
            own = int(ev.index.parents[level][v])
            centroid = _unit(feats[v_rows].mean(axis=0, keepdims=True))[0]
            rest = sums.copy()
            rest[own] -= feats[v_rows].sum(axis=0)  # the rest of its own parent's images
            allowed = candidates.copy()
            allowed[own] = candidates[own] and counts[own] - len(v_rows) >= min_images
            norms = np.linalg.norm(rest, axis=1)
            allowed &= norms > 0
            cos = rest @ centroid / np.where(norms > 0, norms, 1.0)
            sims = {int(q): float(cos[q]) for q in np.flatnonzero(allowed)}
            if own not in sims or len(sims) < 2:
                continue
            best = max(sims, key=sims.get)
            if best == own:
                continue
            gap = sims[best] - sims[own]
            node, target = nodes[v], up_nodes[best]
            found.append(
                Suggestion(
                    kind="move",
                    score=gap,
                    title=(
                        f"Move {_name(ev, node)!r} under {_name(ev, target)!r}: its images are "
                        f"nearer that subtree (cos {sims[best]:.2f}) than the rest of "
                        f"{_name(ev, up_nodes[own])!r} (cos {sims[own]:.2f})."
                    ),
                    nodes=[node, target],
                    evidence={
                        "similarity_to_own_parent": sims[own],
                        "similarity_to_target": sims[best],
                        "own_parent": up_nodes[own],
                        "images": len(v_rows),
                    },
                    images=_keys(ev, v_rows),
                    edit={"action": "move", "node": node, "parent": target},
                )
            )
    return found


def _splits(ev: RunEvidence, min_images: int) -> list[Suggestion]:
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    feats = _unit(ev.image_feats)
    found = []
    for level, nodes in enumerate(ev.index.level_nodes):
        for c, c_rows in _rows_per_entry(ev, level, 2 * min_images).items():
            if not ev.taxonomy.is_leaf(nodes[c]):
                continue
            x = feats[c_rows]
            if np.ptp(x, axis=0).max() < 1e-9:
                continue  # identical embeddings: nothing to cluster
            groups = KMeans(n_clusters=2, n_init=5, random_state=0).fit_predict(x)
            sizes = np.bincount(groups, minlength=2)
            if sizes.min() < min_images:
                continue
            score = float(silhouette_score(x, groups, metric="cosine"))
            name = _name(ev, nodes[c])
            found.append(
                Suggestion(
                    kind="split",
                    score=score,
                    title=(
                        f"Split {name!r}: its images form two groups ({sizes[0]} and "
                        f"{sizes[1]}) with silhouette {score:.2f}."
                    ),
                    nodes=[nodes[c]],
                    evidence={
                        "silhouette": score,
                        "group_sizes": sizes.tolist(),
                        "groups": [_keys(ev, c_rows[groups == g], None) for g in (0, 1)],
                    },
                    images=_keys(ev, c_rows),
                    edit={
                        "action": "split",
                        "node": nodes[c],
                        "names": [f"{name} (group 1)", f"{name} (group 2)"],
                    },
                )
            )
    return found


def _descriptions(ev: RunEvidence, probs: list[np.ndarray], min_images: int) -> list[Suggestion]:
    found = []
    for level in range(ev.index.depth - 1):
        nodes = ev.index.level_nodes[level]
        for c in _rows_per_entry(ev, level, min_images):
            node = nodes[c]
            if ev.taxonomy.is_leaf(node):
                continue
            c_rows = np.flatnonzero((ev.true[:, level] == c) & (ev.true[:, level + 1] >= 0))
            if len(c_rows) < min_images:
                continue
            own = float(probs[level][c_rows, c].mean())
            children = float(probs[level + 1][c_rows, ev.true[c_rows, level + 1]].mean())
            gap = children - own
            if gap <= 0:
                continue
            kids = [ev.taxonomy.name(k) for k in ev.taxonomy.children(node)]
            listed = ", ".join(kids[:6]) + (", ..." if len(kids) > 6 else "")
            name = _name(ev, node)
            found.append(
                Suggestion(
                    kind="describe",
                    score=gap,
                    title=(
                        f"Describe {name!r}: its prompt gets {own:.0%} of the probability on "
                        f"its images where its children's get {children:.0%}."
                    ),
                    nodes=[node],
                    evidence={"node_probability": own, "children_probability": children},
                    images=_keys(ev, c_rows[np.argsort(probs[level][c_rows, c], kind="stable")]),
                    edit={
                        "action": "describe",
                        "node": node,
                        "description": f"{name}, such as {listed}",
                    },
                )
            )
    return found


# ---------------------------------------------------------------------- applying
def edit_of(
    suggestion: Suggestion | dict, taxonomy: Taxonomy | None = None
) -> tuple[str, Callable[[Taxonomy], EditReport]]:
    """(history description, taxonomy edit) that accepts a suggestion (or its dict).

    With `taxonomy` the description names the nodes as the user sees them ('mouth'), not
    by id, since it is what the taxonomy history and the undo message show.
    """
    edit = suggestion.edit if isinstance(suggestion, Suggestion) else suggestion.get("edit")
    action = edit.get("action") if isinstance(edit, dict) else None

    def shown(node: str) -> str:
        return repr(taxonomy.name(node)) if taxonomy is not None and node in taxonomy else node

    if action == "merge":
        src, dst = edit["source"], edit["target"]
        return f"suggestion: merge {shown(src)} into {shown(dst)}", lambda t: t.merge(src, dst)
    if action == "move":
        node, parent = edit["node"], edit["parent"]
        return (
            f"suggestion: move {shown(node)} under {shown(parent)}",
            lambda t: t.move(node, parent),
        )
    if action == "split":
        node, names = edit["node"], list(edit["names"])

        def split(t: Taxonomy) -> EditReport:
            return EditReport("add", [t.add(n, node) for n in names])

        return f"suggestion: split {shown(node)}", split
    if action == "describe":
        node, text = edit["node"], str(edit["description"])

        def describe(t: Taxonomy) -> EditReport:
            return t.rename(node, t.name(node), text)

        return f"suggestion: describe {shown(node)}", describe
    raise HierTuneError(f"A suggestion's edit must be one of {', '.join(KINDS)}, not {action!r}.")


def apply_suggestion(
    workspace,
    project_id: int,
    suggestion: Suggestion | dict,
    groups: Sequence[Sequence[int]] | None = None,
) -> EditReport:
    """Accept a suggestion as one taxonomy edit (undone by `workspace.undo`); labels it
    moves are recorded with source "suggestion".

    For a split, `groups` (image ids per cluster, as in its evidence) relabels each
    cluster's images to its new child, one undoable batch per child; the leaf's other
    images keep it as a partial label.
    """
    description, edit = edit_of(suggestion, workspace.taxonomy(project_id))
    report = workspace.apply_edit(project_id, description, edit, history_source="suggestion")
    if groups is not None and report.action == "add" and len(groups) == len(report.affected):
        for child, ids in zip(report.affected, groups, strict=True):
            if ids:
                workspace.relabel(project_id, ids, child, source="suggestion")
    return report


# ---------------------------------------------------------------------- helpers
def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def _cos(a: np.ndarray | None, b: np.ndarray | None) -> float | None:
    if a is None or b is None:
        return None
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else None


def _node_vectors(ev: RunEvidence) -> dict[str, np.ndarray]:
    if ev.node_feats is None or len(ev.node_ids) != len(ev.node_feats):
        return {}
    return {
        n: np.asarray(f, dtype=np.float64) for n, f in zip(ev.node_ids, ev.node_feats, strict=True)
    }


def _rows_per_entry(ev: RunEvidence, level: int, min_images: int) -> dict[int, np.ndarray]:
    """Entry index -> rows of the images labelled there (real nodes only, not padding)."""
    out = {}
    for c, padded in enumerate(ev.index.padded[level]):
        if padded:
            continue
        rows = np.flatnonzero(ev.true[:, level] == c)
        if len(rows) >= min_images:
            out[c] = rows
    return out


def _name(ev: RunEvidence, node: str) -> str:
    return ev.taxonomy.name(node)


def _keys(ev: RunEvidence, rows: Sequence[int], limit: int | None = MAX_EVIDENCE_IMAGES) -> list:
    rows = [int(r) for r in rows][:limit]
    return [ev.image_keys[r] for r in rows] if ev.image_keys else rows
