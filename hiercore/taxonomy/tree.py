"""The taxonomy: a rooted tree of classes with stable node ids (docs/method.md §1).

The tree lives in a `networkx.DiGraph` whose edges point from parent to child. The root
is virtual (`ROOT`, not a class). Every other node carries a stable id that survives
renames and moves, a display name and an optional description used in prompts.

Edits (`add`, `rename`, `move`, `merge`, `delete`) validate before they change anything
and return an `EditReport` saying which labels they affect, so that the store can migrate
labels in the same transaction. Per-level indexing for the model lives in `levels.py`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import networkx as nx

from hiercore.errors import TaxonomyError

ROOT = "__root__"


@dataclass(frozen=True)
class Node:
    """One class of the taxonomy."""

    id: str
    name: str
    parent: str  # ROOT for first-level nodes
    description: str = ""


@dataclass
class EditReport:
    """What an edit did to the tree and what it means for existing labels.

    `label_moves` maps a node id whose labels must move to the node id that receives
    them (None: the labels are dropped). Renames and moves keep every label in place,
    so their `label_moves` is empty; `affected` lists the nodes whose path changed.
    """

    action: str
    affected: list[str] = field(default_factory=list)
    label_moves: dict[str, str | None] = field(default_factory=dict)


def new_node_id() -> str:
    """A fresh random node id (ids are opaque; only stability matters)."""
    return "n" + uuid.uuid4().hex[:12]


class Taxonomy:
    """A rooted class tree with per-node names and descriptions.

    `level_names` optionally names the ranks ("order", "family", ...); it is kept by the
    formats that carry rank names (wide CSV) and used as axis titles in figures.
    """

    def __init__(self, level_names: Iterable[str] | None = None) -> None:
        self.graph = nx.DiGraph()
        self.graph.add_node(ROOT, name="", description="")
        self.level_names: list[str] = list(level_names or [])

    # ------------------------------------------------------------------ building
    @classmethod
    def from_nodes(
        cls, nodes: Iterable[Node | dict], level_names: Iterable[str] | None = None
    ) -> Taxonomy:
        """Build and validate a taxonomy from (id, name, parent, description) records.

        Parents may be listed after their children. `parent` is ROOT, "" or None for a
        first-level node. Raises `TaxonomyError` naming the first problem found.
        """
        records = [n if isinstance(n, Node) else _node_from_dict(n) for n in nodes]
        if not records:
            raise TaxonomyError("The taxonomy has no nodes.")
        tax = cls(level_names)
        seen: dict[str, Node] = {}
        for rec in records:
            if rec.id == ROOT:
                raise TaxonomyError(f"Node id {ROOT!r} is reserved for the virtual root.")
            if not rec.id:
                raise TaxonomyError(f"Node {rec.name!r} has an empty id.")
            if rec.id in seen:
                other = seen[rec.id]
                if other.parent != rec.parent:
                    raise TaxonomyError(
                        f"Node {rec.id!r} ({rec.name!r}) has two parents: "
                        f"{other.parent!r} and {rec.parent!r}."
                    )
                raise TaxonomyError(f"Node id {rec.id!r} appears twice.")
            _check_name(rec.name, rec.id)
            seen[rec.id] = rec
        for rec in records:
            if rec.parent != ROOT and rec.parent not in seen:
                raise TaxonomyError(
                    f"Node {rec.name!r} ({rec.id!r}) has an unknown parent {rec.parent!r}."
                )
            tax.graph.add_node(rec.id, name=rec.name, description=rec.description)
        for rec in records:
            tax.graph.add_edge(rec.parent, rec.id)
        tax._check_tree()
        return tax

    def to_nodes(self) -> list[Node]:
        """All nodes in depth-first order (parents before children)."""
        return [self.node(n) for n in self.iter_dfs()]

    def to_dict(self) -> dict:
        """The native JSON form: rank names and a node list (parents first)."""
        return {
            "level_names": list(self.level_names),
            "nodes": [
                {"id": n.id, "name": n.name, "parent": n.parent, "description": n.description}
                for n in self.to_nodes()
            ],
        }

    @classmethod
    def from_dict(cls, data: dict) -> Taxonomy:
        if not isinstance(data, dict) or not isinstance(data.get("nodes"), list):
            raise TaxonomyError('A taxonomy JSON must be an object with a "nodes" list.')
        return cls.from_nodes(data["nodes"], data.get("level_names"))

    def copy(self) -> Taxonomy:
        other = Taxonomy(self.level_names)
        other.graph = self.graph.copy()
        return other

    # ------------------------------------------------------------------ queries
    def __contains__(self, node_id: object) -> bool:
        return node_id != ROOT and node_id in self.graph

    def __len__(self) -> int:
        return self.graph.number_of_nodes() - 1

    def node(self, node_id: str) -> Node:
        self._require(node_id)
        data = self.graph.nodes[node_id]
        return Node(node_id, data["name"], self.parent(node_id), data.get("description", ""))

    def name(self, node_id: str) -> str:
        self._require(node_id)
        return self.graph.nodes[node_id]["name"]

    def description(self, node_id: str) -> str:
        self._require(node_id)
        return self.graph.nodes[node_id].get("description", "")

    def parent(self, node_id: str) -> str:
        self._require(node_id)
        return next(iter(self.graph.predecessors(node_id)))

    def children(self, node_id: str = ROOT) -> list[str]:
        if node_id != ROOT:
            self._require(node_id)
        return list(self.graph.successors(node_id))

    def is_leaf(self, node_id: str) -> bool:
        return not self.children(node_id)

    def leaves(self) -> list[str]:
        return [n for n in self.iter_dfs() if self.graph.out_degree(n) == 0]

    def path(self, node_id: str) -> list[str]:
        """Node ids from the first level down to `node_id` inclusive."""
        self._require(node_id)
        out = []
        while node_id != ROOT:
            out.append(node_id)
            node_id = self.parent(node_id)
        return out[::-1]

    def path_names(self, node_id: str) -> list[str]:
        return [self.name(n) for n in self.path(node_id)]

    def depth(self, node_id: str) -> int:
        """1 for first-level nodes."""
        return len(self.path(node_id))

    @property
    def max_depth(self) -> int:
        """L, the number of levels after padding."""
        if len(self) == 0:
            return 0
        return max(nx.single_source_shortest_path_length(self.graph, ROOT).values())

    def descendants(self, node_id: str) -> list[str]:
        """The subtree below `node_id` (excluding it), parents before children."""
        self._require(node_id)
        return [n for n in nx.dfs_preorder_nodes(self.graph, node_id) if n != node_id]

    def iter_dfs(self) -> Iterator[str]:
        """Node ids depth-first, children in their stored order, root excluded."""
        for n in nx.dfs_preorder_nodes(self.graph, ROOT):
            if n != ROOT:
                yield n

    def is_ragged(self) -> bool:
        depth = self.max_depth
        return any(self.depth(leaf) < depth for leaf in self.leaves())

    def find(self, query: str, limit: int = 20) -> list[str]:
        """Node ids whose name or path contains `query` (case-insensitive), best first.

        Exact name matches rank first, then name prefixes, then substrings of the name,
        then substrings of the full path ("aves corv" style queries match word by word).
        """
        words = query.lower().split()
        if not words:
            return []
        ranked = []
        for n in self.iter_dfs():
            name = self.name(n).lower()
            path = " / ".join(self.path_names(n)).lower()
            if not all(w in path for w in words):
                continue
            q = " ".join(words)
            rank = 0 if name == q else 1 if name.startswith(q) else 2 if q in name else 3
            ranked.append((rank, self.depth(n), name, n))
        ranked.sort()
        return [r[-1] for r in ranked[:limit]]

    def find_by_path(self, names: list[str]) -> str | None:
        """The node reached by following child names from the root, or None."""
        node = ROOT
        for name in names:
            node = next((c for c in self.children(node) if self.name(c) == name), None)
            if node is None:
                return None
        return None if node == ROOT else node

    def same_structure(self, other: Taxonomy, *, descriptions: bool = True) -> bool:
        """True when both trees hold the same name paths (and descriptions if asked)."""

        def signature(t: Taxonomy) -> set:
            return {
                (tuple(t.path_names(n)), t.description(n) if descriptions else "")
                for n in t.iter_dfs()
            }

        return signature(self) == signature(other)

    # ------------------------------------------------------------------ edits
    def add(
        self,
        name: str,
        parent: str = ROOT,
        description: str = "",
        node_id: str | None = None,
    ) -> str:
        """Add a node under `parent` and return its id."""
        name = name.strip()
        _check_name(name, node_id or "new node")
        if parent != ROOT:
            self._require(parent)
        node_id = node_id or new_node_id()
        if node_id in self.graph:
            raise TaxonomyError(f"Node id {node_id!r} already exists.")
        self._check_sibling_name(parent, name)
        self.graph.add_node(node_id, name=name, description=description)
        self.graph.add_edge(parent, node_id)
        return node_id

    def rename(self, node_id: str, name: str, description: str | None = None) -> EditReport:
        """Rename a node (and optionally change its description); labels stay."""
        self._require(node_id)
        name = name.strip()
        _check_name(name, node_id)
        if name != self.name(node_id):
            self._check_sibling_name(self.parent(node_id), name)
        self.graph.nodes[node_id]["name"] = name
        if description is not None:
            self.graph.nodes[node_id]["description"] = description
        return EditReport("rename", [node_id, *self.descendants(node_id)])

    def move(self, node_id: str, new_parent: str) -> EditReport:
        """Move a node with its subtree under `new_parent`; labels stay on their nodes."""
        self._require(node_id)
        if new_parent != ROOT:
            self._require(new_parent)
        if new_parent == node_id or new_parent in self.descendants(node_id):
            raise TaxonomyError(
                f"Cannot move {self.name(node_id)!r} under its own subtree "
                f"({self.name(new_parent)!r})."
            )
        old_parent = self.parent(node_id)
        if new_parent == old_parent:
            return EditReport("move", [])
        self._check_sibling_name(new_parent, self.name(node_id))
        self.graph.remove_edge(old_parent, node_id)
        self.graph.add_edge(new_parent, node_id)
        return EditReport("move", [node_id, *self.descendants(node_id)])

    def merge(self, source: str, target: str) -> EditReport:
        """Merge `source` into `target`: its labels go to `target`, its children move under it.

        Children whose name already exists under `target` are merged recursively, so
        merging two genera that both contain a species "x" yields one "x".
        """
        self._require(source)
        self._require(target)
        if source == target:
            raise TaxonomyError(f"Cannot merge {self.name(source)!r} into itself.")
        if target in self.descendants(source):
            raise TaxonomyError(
                f"Cannot merge {self.name(source)!r} into its own descendant {self.name(target)!r}."
            )
        trial = self.copy()
        report = EditReport("merge")
        # Detach the source first: when the target is one of its ancestors, the source
        # (or a node of its subtree) must not be taken for the twin of one of its children.
        trial.graph.remove_edge(trial.parent(source), source)
        trial._merge_into(source, target, report)
        self.graph = trial.graph
        return report

    def _merge_into(self, source: str, target: str, report: EditReport) -> None:
        for child in self.children(source):
            twin = next(
                (c for c in self.children(target) if self.name(c) == self.name(child)), None
            )
            if twin is None:
                self.graph.remove_edge(source, child)
                self.graph.add_edge(target, child)
                report.affected.extend([child, *self.descendants(child)])
            else:
                self._merge_into(child, twin, report)
        report.label_moves[source] = target
        report.affected.append(target)
        self.graph.remove_node(source)

    def delete(self, node_id: str, migrate_to: str | None = "parent") -> EditReport:
        """Delete a node and its subtree.

        Labels on the removed nodes move to `migrate_to`: "parent" (default) makes them
        partial labels at the deleted node's parent (dropped when that is the root), a
        node id sends them there, None drops them.
        """
        self._require(node_id)
        removed = [node_id, *self.descendants(node_id)]
        if migrate_to == "parent":
            dest = self.parent(node_id)
            dest = None if dest == ROOT else dest
        elif migrate_to is None:
            dest = None
        else:
            self._require(migrate_to)
            if migrate_to in removed:
                raise TaxonomyError(
                    f"Labels of {self.name(node_id)!r} cannot move into the subtree being deleted."
                )
            dest = migrate_to
        self.graph.remove_nodes_from(removed)
        return EditReport("delete", removed, {n: dest for n in removed})

    # ------------------------------------------------------------------ checks
    def _require(self, node_id: str) -> None:
        if node_id == ROOT or node_id not in self.graph:
            raise TaxonomyError(f"Unknown node {node_id!r}.")

    def _check_sibling_name(self, parent: str, name: str) -> None:
        for sib in self.graph.successors(parent):
            if self.graph.nodes[sib]["name"] == name:
                where = "at the top level" if parent == ROOT else f"under {self.name(parent)!r}"
                raise TaxonomyError(f"A node named {name!r} already exists {where}.")

    def _check_tree(self) -> None:
        # Every node has one parent (from_nodes refuses a second), so a node on a cycle
        # cannot be reached from the root: the costly cycle search runs only then.
        unreachable = set(self.graph) - set(nx.descendants(self.graph, ROOT)) - {ROOT}
        if unreachable:
            try:
                cycle = nx.find_cycle(self.graph)
            except nx.NetworkXNoCycle:
                cycle = None
            if cycle:
                names = " -> ".join(self.graph.nodes[u]["name"] for u, _ in cycle)
                raise TaxonomyError(f"The taxonomy has a cycle: {names}.")
            some = sorted(unreachable)[0]
            raise TaxonomyError(f"Node {some!r} is not connected to the root.")
        for parent in self.graph:
            names: set[str] = set()
            for child in self.graph.successors(parent):
                name = self.graph.nodes[child]["name"]
                if name in names:
                    where = "at the top level" if parent == ROOT else f"under {self.name(parent)!r}"
                    raise TaxonomyError(f"Two sibling nodes are named {name!r} {where}.")
                names.add(name)


def _check_name(name: object, where: str) -> None:
    if not isinstance(name, str) or not name.strip():
        raise TaxonomyError(f"Node {where!r} has an empty name.")
    if "\n" in name or "\r" in name:
        raise TaxonomyError(f"Node name {name!r} contains a line break.")


def _node_from_dict(d: dict) -> Node:
    if not isinstance(d, dict) or "id" not in d or "name" not in d:
        raise TaxonomyError(f"Taxonomy node record {d!r} needs an 'id' and a 'name'.")
    parent = d.get("parent") or ROOT
    return Node(str(d["id"]), str(d["name"]), str(parent), str(d.get("description") or ""))
