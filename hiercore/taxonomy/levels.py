"""Per-level indexing of a taxonomy for the model (docs/method.md §1).

Level l (1..L) holds the nodes at depth l, indexed 0..C_l-1 in depth-first order so that
siblings are contiguous (figures rely on this: a subtree is a block of each axis).
A ragged tree is padded explicitly: a leaf at depth d < L also stands for itself at
levels d+1..L, as a *padding copy* with the same node id. `parents[l][c]` is the index at
level l-1 of the parent of entry c at level l (0 for the first level: the virtual root).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hiercore.errors import TaxonomyError
from hiercore.taxonomy.tree import ROOT, Taxonomy


@dataclass(frozen=True)
class LevelIndex:
    """The taxonomy flattened into L levels of indexed entries."""

    level_nodes: tuple[tuple[str, ...], ...]
    """Node id of every entry, per level (a padding copy repeats its leaf's id)."""
    padded: tuple[tuple[bool, ...], ...]
    """Whether an entry is a padding copy of a shallower leaf."""
    parents: tuple[np.ndarray, ...]
    """`parents[l][c]`: index at level l-1 of the parent of entry c of level l."""

    @classmethod
    def build(cls, taxonomy: Taxonomy) -> LevelIndex:
        if len(taxonomy) == 0:
            raise TaxonomyError("The taxonomy has no nodes.")
        depth = taxonomy.max_depth
        level_nodes: list[list[str]] = [list(taxonomy.children(ROOT))]
        padded: list[list[bool]] = [[False] * len(level_nodes[0])]
        parents: list[np.ndarray] = [np.zeros(len(level_nodes[0]), dtype=np.int64)]
        for _ in range(1, depth):
            nodes, pads, pars = [], [], []
            for i, (node, was_pad) in enumerate(zip(level_nodes[-1], padded[-1], strict=False)):
                kids = [] if was_pad else taxonomy.children(node)
                if kids:
                    nodes.extend(kids)
                    pads.extend([False] * len(kids))
                    pars.extend([i] * len(kids))
                else:  # a leaf above the last level stands for itself below
                    nodes.append(node)
                    pads.append(True)
                    pars.append(i)
            level_nodes.append(nodes)
            padded.append(pads)
            parents.append(np.asarray(pars, dtype=np.int64))
        return cls(
            tuple(tuple(n) for n in level_nodes),
            tuple(tuple(p) for p in padded),
            tuple(parents),
        )

    # ------------------------------------------------------------------ shape
    @property
    def depth(self) -> int:
        return len(self.level_nodes)

    @property
    def sizes(self) -> list[int]:
        return [len(n) for n in self.level_nodes]

    @property
    def n_padded(self) -> int:
        return sum(sum(p) for p in self.padded)

    # ------------------------------------------------------------------ lookups
    def _positions(self) -> list[dict[str, int]]:
        cache = self.__dict__.get("_pos")
        if cache is None:
            cache = [{n: i for i, n in enumerate(level)} for level in self.level_nodes]
            object.__setattr__(self, "_pos", cache)
        return cache

    def index_of(self, level: int, node_id: str) -> int:
        """Index of `node_id` at 0-based `level` (its padding copy below its depth)."""
        try:
            return self._positions()[level][node_id]
        except KeyError:
            raise TaxonomyError(f"Node {node_id!r} is not at level {level + 1}.") from None

    def target(self, node_id: str | None) -> list[int]:
        """The label vector of a sample labelled `node_id`: one index per level, -1 unknown.

        A leaf (at any depth) gives a full path through its padding copies; an inner node
        gives a partial label, known down to its depth. None gives all -1.
        """
        out = [-1] * self.depth
        if node_id is None:
            return out
        pos = self._positions()
        for level in range(self.depth):
            idx = pos[level].get(node_id)
            if idx is not None:
                # walk up from this entry to fill the known prefix
                out[level] = idx
                j = idx
                for up in range(level, 0, -1):
                    j = int(self.parents[up][j])
                    out[up - 1] = j
                for down in range(level + 1, self.depth):  # padding copies
                    nxt = pos[down].get(node_id)
                    if nxt is None:
                        break
                    out[down] = nxt
                return out
        raise TaxonomyError(f"Label {node_id!r} is not a node of the taxonomy.")

    def node_at(self, level: int, index: int) -> str:
        return self.level_nodes[level][index]

    def path_from_leaf(self, leaf_index: int) -> list[int]:
        """Indices at every level of the path ending at last-level entry `leaf_index`."""
        path = [int(leaf_index)]
        for level in range(self.depth - 1, 0, -1):
            path.append(int(self.parents[level][path[-1]]))
        return path[::-1]

    def node_of_path(self, path: list[int]) -> str:
        """The deepest known node id of a (possibly partial, -1 padded) index path."""
        known = [(lvl, i) for lvl, i in enumerate(path) if i >= 0]
        if not known:
            raise TaxonomyError("An empty path names no node.")
        lvl, i = known[-1]
        return self.level_nodes[lvl][i]

    def is_consistent(self, path: list[int]) -> bool:
        return all(
            int(self.parents[lvl][path[lvl]]) == path[lvl - 1] for lvl in range(1, self.depth)
        )
