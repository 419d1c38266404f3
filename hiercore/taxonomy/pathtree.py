"""Building a taxonomy from name paths or parent-child records, with located errors.

Every importer funnels into one of two builders so that the checks (and their one-sentence
messages) are the same for all formats:

- `PathTreeBuilder` for formats that name nodes by their path (wide CSV, Newick, Label
  Studio JSON, folder trees, image manifests). A node's id is derived from its name path
  (`path_id`), so importing the same file twice gives the same ids and the same name
  under two different parents is simply two nodes.
- `taxonomy_from_records` for formats that carry ids (edge CSV, native JSON): a node with
  two parents, an unknown parent, a cycle or two siblings with one name is an error.

`where` strings ("taxonomy.csv line 7", "tax.json at nodes[3]") prefix every message.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from hiercore.errors import TaxonomyError
from hiercore.taxonomy.tree import ROOT, Node, Taxonomy

MAX_DEPTH = 500
"""The most levels an imported taxonomy may have: far beyond any real taxonomy, and low
enough that per-level work (prompts, logits, paths) stays small."""


def path_id(names: Sequence[str]) -> str:
    """The stable id of the node reached by the name path `names` from the root."""
    key = "\x1f".join(names).encode("utf-8")
    return "p" + hashlib.blake2b(key, digest_size=8).hexdigest()


def check_name(name: str, where: str) -> str:
    """`name` stripped, or a `TaxonomyError` at `where` when it cannot name a node."""
    name = name.strip()
    if not name:
        raise TaxonomyError(f"{where}: a node has an empty name.")
    if "\n" in name or "\r" in name:
        raise TaxonomyError(f"{where}: the node name {name!r} contains a line break.")
    return name


class PathTreeBuilder:
    """Accumulates nodes addressed by name paths; `build()` returns the taxonomy."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.records: dict[str, Node] = {}
        self.names: dict[str, tuple[str, ...]] = {ROOT: ()}
        self.children: dict[str, dict[str, str]] = {ROOT: {}}
        self.first_seen: dict[str, str] = {}
        self.described_at: dict[str, str] = {}

    def child(
        self, parent: str, name: str, where: str, *, unique: bool = False, description: str = ""
    ) -> str:
        """The id of child `name` of `parent`, created if new.

        With `unique` a second child of that name is an error (nested formats list each
        node once, so a repeat is a mistake); otherwise it is the same node again.
        """
        name = check_name(name, where)
        existing = self.children[parent].get(name)
        if existing is not None:
            if unique:
                under = "at the top level" if parent == ROOT else f"under {self._name(parent)!r}"
                first = self.first_seen[existing]
                raise TaxonomyError(f"{where}: {name!r} appears twice {under} (first at {first}).")
            self.describe(existing, description, where)
            return existing
        names = (*self.names[parent], name)
        if len(names) > MAX_DEPTH:
            raise TaxonomyError(
                f"{where}: {name!r} is {len(names)} levels deep, "
                f"more than the {MAX_DEPTH} a taxonomy may have."
            )
        node_id = path_id(names)
        self.records[node_id] = Node(node_id, name, parent, "")
        self.names[node_id] = names
        self.children[parent][name] = node_id
        self.children[node_id] = {}
        self.first_seen[node_id] = where
        self.describe(node_id, description, where)
        return node_id

    def add_path(self, names: Sequence[str], where: str, description: str = "") -> str:
        """The id of the node at the end of `names`, creating the path as needed."""
        node = ROOT
        for i, name in enumerate(names):
            last = i == len(names) - 1
            node = self.child(node, name, where, description=description if last else "")
        return node

    def describe(self, node_id: str, description: str, where: str) -> None:
        description = description.strip()
        if not description:
            return
        rec = self.records[node_id]
        if rec.description and rec.description != description:
            raise TaxonomyError(
                f"{where}: {rec.name!r} already has a different description "
                f"(from {self.described_at[node_id]})."
            )
        self.records[node_id] = Node(rec.id, rec.name, rec.parent, description)
        self.described_at[node_id] = where

    def build(self, level_names: Sequence[str] | None = None) -> Taxonomy:
        if not self.records:
            raise TaxonomyError(f"{self.source}: no taxonomy nodes were found.")
        return _validated(self.source, list(self.records.values()), level_names)

    def _name(self, node_id: str) -> str:
        return self.records[node_id].name


@dataclass(frozen=True)
class Record:
    """One node as an id-carrying format lists it, with where it was read."""

    id: str
    name: str
    parent: str  # "" or ROOT for a first-level node
    description: str
    where: str


def taxonomy_from_records(
    records: Sequence[Record], source: str, level_names: Sequence[str] | None = None
) -> Taxonomy:
    """Validate id-carrying records (two parents, unknown parent, cycle, twin siblings)."""
    if not records:
        raise TaxonomyError(f"{source}: no taxonomy nodes were found.")
    by_id: dict[str, Record] = {}
    first_of = {}  # every id's first record, so messages can name parents listed later
    for rec in records:
        first_of.setdefault(rec.id, rec)
    for rec in records:
        if not rec.id.strip():
            raise TaxonomyError(f"{rec.where}: the node {rec.name!r} has no id.")
        if rec.id == ROOT:
            raise TaxonomyError(f"{rec.where}: the id {ROOT!r} is reserved for the virtual root.")
        check_name(rec.name, rec.where)
        first = by_id.get(rec.id)
        if first is not None:
            if _parent(first) != _parent(rec):
                raise TaxonomyError(
                    f"{rec.where}: {rec.name!r} appears under two different parents "
                    f"({_parent_label(first, first_of)!r} and {_parent_label(rec, first_of)!r})."
                )
            raise TaxonomyError(
                f"{rec.where}: the id {rec.id!r} appears twice (first at {first.where})."
            )
        by_id[rec.id] = rec
    for rec in records:
        parent = _parent(rec)
        if parent != ROOT and parent not in by_id:
            raise TaxonomyError(f"{rec.where}: {rec.name!r} has an unknown parent {parent!r}.")
    _check_no_cycle(records, by_id)
    _check_depth(records, by_id)
    siblings: dict[tuple[str, str], Record] = {}
    for rec in records:
        key = (_parent(rec), rec.name.strip())
        if key in siblings:
            where = "at the top level" if key[0] == ROOT else f"under {by_id[key[0]].name!r}"
            raise TaxonomyError(
                f"{rec.where}: two nodes {where} are named {key[1]!r} "
                f"(the other at {siblings[key].where})."
            )
        siblings[key] = rec
    nodes = [Node(r.id, r.name.strip(), _parent(r), r.description) for r in records]
    return _validated(source, nodes, level_names)


def _parent(rec: Record) -> str:
    return rec.parent.strip() or ROOT


def _parent_label(rec: Record, by_id: dict[str, Record]) -> str:
    parent = _parent(rec)
    if parent == ROOT:
        return "the root"
    return by_id[parent].name if parent in by_id else parent


def _check_no_cycle(records: Sequence[Record], by_id: dict[str, Record]) -> None:
    """A node that is its own ancestor is an error, named at its first record in the file.

    Linear in the number of records: each walk up stops at a node already known to reach
    the root, so every parent link is followed once (a per-node walk was cubic on a
    long chain, and a 5,000-node edge CSV held a worker for minutes).
    """
    order = {rec.id: i for i, rec in enumerate(records)}
    reaches_root: set[str] = set()
    for rec in records:
        path: list[str] = []
        on_path: set[str] = set()
        node = rec.id
        while node != ROOT and node not in reaches_root:
            if node in on_path:
                cycle = path[path.index(node) :]
                first = min(cycle, key=order.__getitem__)
                k = cycle.index(first)
                loop = [by_id[n].name for n in [*cycle[k:], *cycle[:k], first]]
                if len(loop) > 8:  # keep the sentence readable
                    loop = [*loop[:5], f"... ({len(cycle)} nodes in all)", loop[-1]]
                names = " -> ".join(loop)
                at = by_id[first]
                raise TaxonomyError(f"{at.where}: {at.name!r} is its own ancestor ({names}).")
            path.append(node)
            on_path.add(node)
            node = _parent(by_id[node])
        reaches_root.update(path)


def _check_depth(records: Sequence[Record], by_id: dict[str, Record]) -> None:
    """No node deeper than `MAX_DEPTH` (the tree is known to be acyclic); linear."""
    depth: dict[str, int] = {ROOT: 0}
    for rec in records:
        path = []
        node = rec.id
        while node not in depth:
            path.append(node)
            node = _parent(by_id[node])
        for n in reversed(path):
            depth[n] = depth[node] + 1
            node = n
        if depth[rec.id] > MAX_DEPTH:
            raise TaxonomyError(
                f"{rec.where}: {rec.name!r} is {depth[rec.id]} levels deep, "
                f"more than the {MAX_DEPTH} a taxonomy may have."
            )


def _validated(source: str, nodes: list[Node], level_names: Sequence[str] | None) -> Taxonomy:
    try:
        return Taxonomy.from_nodes(nodes, level_names)
    except TaxonomyError as exc:  # a check above should have caught it, with a location
        raise TaxonomyError(f"{source}: {exc}") from None
