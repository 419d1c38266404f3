"""The difference between two versions of a taxonomy, small enough to store per edit.

A tree is fully given by its rank names, each node's (name, parent, description) and the
order of each parent's children (`Taxonomy.to_dict` lists nodes depth-first in that
order). A delta records only what an edit changed:

- ``set``: [id, name, parent, description] of every node added or changed;
- ``drop``: the ids of removed nodes;
- ``order``: the new child list of every parent ("__root__" included) whose list changed;
- ``level_names``: present only when the rank names changed.

`apply_delta(old, tree_delta(old, new))` rebuilds `new` exactly: same `to_dict()`, order
included. A renamed genus costs one record instead of the whole 16k-node tree.
"""

from __future__ import annotations

from hiercore.taxonomy.tree import ROOT, Taxonomy


def _children(tax: Taxonomy) -> dict[str, list[str]]:
    succ = tax.graph.succ
    return {n: list(succ[n]) for n in tax.graph}


def tree_delta(old: Taxonomy, new: Taxonomy) -> dict:
    """What turns `old` into `new` (JSON-ready)."""
    old_nodes, new_nodes = old.graph.nodes, new.graph.nodes
    old_pred, new_pred = old.graph.pred, new.graph.pred
    changed = []
    for n, data in new_nodes.items():
        if n == ROOT:
            continue
        parent = next(iter(new_pred[n]))
        record = [n, data["name"], parent, data.get("description", "")]
        if n not in old_nodes:
            changed.append(record)
            continue
        before = old_nodes[n]
        if (
            before["name"] != record[1]
            or before.get("description", "") != record[3]
            or next(iter(old_pred[n])) != parent
        ):
            changed.append(record)
    dropped = [n for n in old_nodes if n not in new_nodes]
    old_succ, new_succ = old.graph.succ, new.graph.succ
    order = {}
    for n in new_nodes:
        kids = list(new_succ[n])
        if n not in old_nodes or list(old_succ[n]) != kids:
            order[n] = kids
    delta: dict = {"set": changed, "drop": dropped, "order": order}
    if list(old.level_names) != list(new.level_names):
        delta["level_names"] = list(new.level_names)
    return delta


def delta_size(delta: dict) -> int:
    """How many records a delta carries (to decide when a full snapshot is cheaper)."""
    return len(delta["set"]) + len(delta["drop"]) + sum(len(v) for v in delta["order"].values())


def apply_delta(old: Taxonomy, delta: dict) -> Taxonomy:
    """The tree `delta` (from `tree_delta`) makes of `old`; `old` is left unchanged."""
    return apply_deltas(old, [delta])


def apply_deltas(old: Taxonomy, deltas: list[dict]) -> Taxonomy:
    """`old` with each delta applied in turn; the graph is built once, at the end."""
    records = {
        n: (d["name"], d.get("description", "")) for n, d in old.graph.nodes.items() if n != ROOT
    }
    children = _children(old)
    level_names = list(old.level_names)
    for delta in deltas:
        for n in delta["drop"]:
            records.pop(n, None)
            children.pop(n, None)
        for n, name, _parent, description in delta["set"]:
            records[n] = (name, description)
            children.setdefault(n, [])
        children.update(delta["order"])
        level_names = delta.get("level_names", level_names)
    tax = Taxonomy(level_names)
    graph = tax.graph
    # depth-first from the root, so that nodes and each parent's edges keep their order
    stack = [ROOT]
    while stack:
        parent = stack.pop()
        kids = children.get(parent, [])
        for child in kids:
            name, description = records[child]
            graph.add_node(child, name=name, description=description)
            graph.add_edge(parent, child)
        stack.extend(reversed(kids))
    return tax


__all__ = ["apply_delta", "apply_deltas", "delta_size", "tree_delta"]
