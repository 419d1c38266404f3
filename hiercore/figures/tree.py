"""The taxonomy as a sunburst or a treemap, sized by labelled images.

Sector ids are node ids, so a click in the studio maps straight back to a node. The
virtual root is not drawn, and padding copies never appear: they exist only in the
per-level index, not in the tree. A label is one node at any depth, so a node's image
count is its own labels plus those of its subtree (`branchvalues="total"`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import plotly.graph_objects as go

from hiercore.figures.lineage import PATH_SEP, shown
from hiercore.figures.palette import ancestor_colors
from hiercore.taxonomy.tree import ROOT, Taxonomy

AUTO_MAXDEPTH_NODES = 2000
"""Above this many nodes a figure shows three rings at a time; clicking zooms in."""

DRAWN_SECTORS = 400
"""With `max_sectors`, the rings drawn at once hold about this many sectors; the deeper
rings sent with them show when a sector is clicked. Chromium draws 1,443 sectors of the
10k-leaf tree in about 0.4 s and their top 340 in 0.1 s (`benchmarks.bench_sunburst_draw`)."""


@dataclass
class TreeSectors:
    """Flat per-node arrays for a hierarchical Plotly trace, parents before children."""

    ids: list[str]
    labels: list[str]
    parents: list[str]
    paths: list[str]
    own: list[int]
    """Images labelled exactly at the node (partial labels on inner nodes)."""
    subtree: list[int]
    """Images labelled at the node or below it."""
    leaves: list[int]
    """Leaves at or below the node (1 for a leaf)."""
    colors: list[str]


def tree_sectors(tax: Taxonomy, counts: Mapping[str, int] | None = None) -> TreeSectors:
    """One entry per taxonomy node with its path, image counts and colour."""
    counts = counts or {}
    colors = ancestor_colors(tax)
    ids, labels, parents, paths = [], [], [], []
    # explicit stack keeps this linear for 10k-leaf trees (no per-node path walks)
    succ, nodes = tax.graph.succ, tax.graph.nodes  # direct adjacency: 16k nodes add up
    stack = [(child, ROOT, "") for child in reversed(list(succ[ROOT]))]
    while stack:
        node, parent, parent_path = stack.pop()
        name = nodes[node]["name"]
        path = f"{parent_path}{PATH_SEP}{name}" if parent_path else name
        ids.append(node)
        labels.append(name)
        parents.append("" if parent == ROOT else parent)
        paths.append(path)
        stack.extend((child, node, path) for child in reversed(list(succ[node])))
    position = {node: i for i, node in enumerate(ids)}
    own = [int(counts.get(node, 0)) for node in ids]
    subtree = list(own)
    leaves = [0] * len(ids)
    for i in range(len(ids) - 1, -1, -1):  # children come after parents
        if leaves[i] == 0:
            leaves[i] = 1
        if parents[i]:
            p = position[parents[i]]
            subtree[p] += subtree[i]
            leaves[p] += leaves[i]
    return TreeSectors(ids, labels, parents, paths, own, subtree, leaves, [colors[n] for n in ids])


def _values(sectors: TreeSectors, size_by: str) -> list[int]:
    if size_by == "images":
        return sectors.subtree
    if size_by == "leaves":
        return sectors.leaves
    raise ValueError(f'size_by must be "images" or "leaves", got {size_by!r}.')


def _pick_size(sectors: TreeSectors, size_by: str | None) -> str:
    # With no labelled image every sector would have size 0 and nothing would be drawn.
    if size_by is None:
        return "images" if any(sectors.own) else "leaves"
    return size_by


def bounded_sectors(
    sectors: TreeSectors, max_sectors: int, root: str | None = None
) -> tuple[TreeSectors, str]:
    """At most `max_sectors` entries: `root`'s subtree (the whole tree if None), ring by
    ring from the top, as many whole rings as fit; a first ring too large keeps its largest
    sectors. Values stay subtree totals of the whole tree. Also says what was left out."""
    n = len(sectors.ids)
    position = {node: i for i, node in enumerate(sectors.ids)}
    size = [1] * n  # nodes in each subtree: a subtree is a contiguous run in DFS order
    for i in range(n - 1, -1, -1):
        if sectors.parents[i]:
            size[position[sectors.parents[i]]] += size[i]
    depth = [0] * n
    for i in range(n):
        if sectors.parents[i]:
            depth[i] = depth[position[sectors.parents[i]]] + 1
    if root is None:
        start, stop = 0, n
    else:
        start = position[root]
        stop = start + size[start]
    top = depth[start]
    per_ring: dict[int, int] = {}
    for i in range(start, stop):
        per_ring[depth[i]] = per_ring.get(depth[i], 0) + 1
    rings, total = top, 0
    for d in sorted(per_ring):
        if total + per_ring[d] > max_sectors and d > top:
            break
        rings, total = d, total + per_ring[d]
    keep = [i for i in range(start, stop) if depth[i] <= rings]
    if len(keep) > max_sectors:  # only one ring, and too wide
        values = sectors.subtree if any(sectors.own) else sectors.leaves
        keep = sorted(sorted(keep, key=lambda i: -values[i])[:max_sectors])
    kept = set(keep)

    def pick(values: list) -> list:
        return [values[i] for i in keep]

    parents = [p if p and position[p] in kept else "" for p in pick(sectors.parents)]
    out = TreeSectors(
        pick(sectors.ids),
        pick(sectors.labels),
        parents,
        pick(sectors.paths),
        pick(sectors.own),
        pick(sectors.subtree),
        pick(sectors.leaves),
        pick(sectors.colors),
    )
    hidden = (stop - start) - len(keep)
    where = "" if root is None else f" of {sectors.paths[start]!r}"
    note = f"; showing {len(keep):,} nodes{where} ({hidden:,} deeper ones hidden)" if hidden else ""
    if root is not None and not hidden:
        note = f"; showing the subtree of {sectors.paths[start]!r}"
    return out, note


def rings_drawn(ids: list[str], parents: list[str], budget: int) -> int:
    """Plotly's `maxdepth` drawing the most whole rings that hold at most `budget` sectors
    (two rings at least), or -1 when every ring fits. Parents come before children; a
    parent not among `ids` (or "") puts its child in the first ring."""
    depth: dict[str, int] = {}
    per_ring: list[int] = []
    for node, parent in zip(ids, parents, strict=True):
        d = depth.get(parent, 0) + 1
        depth[node] = d
        if d > len(per_ring):
            per_ring.append(0)
        per_ring[d - 1] += 1
    total = 0
    for rings, count in enumerate(per_ring):
        total += count
        if total > budget and rings >= 2:
            return rings
    return -1


def _trace_args(
    tax: Taxonomy,
    counts: Mapping[str, int] | None,
    size_by: str | None,
    maxdepth: int | None,
    max_sectors: int | None = None,
    root: str | None = None,
) -> tuple[dict, str]:
    sectors = tree_sectors(tax, counts)
    all_nodes, total = len(sectors.ids), sum(sectors.own)
    note = ""
    size_by = _pick_size(sectors, size_by)
    if max_sectors is not None and (root is not None or all_nodes > max_sectors):
        sectors, note = bounded_sectors(sectors, max_sectors, root)
        if maxdepth is None:
            maxdepth = rings_drawn(sectors.ids, sectors.parents, min(DRAWN_SECTORS, max_sectors))
            if maxdepth != -1:
                note += "; click a sector for its deeper rings"
    if maxdepth is None:
        maxdepth = 3 if len(sectors.ids) > AUTO_MAXDEPTH_NODES else -1
    customdata = [
        [shown(path), sub, own, lv]
        for path, sub, own, lv in zip(
            sectors.paths, sectors.subtree, sectors.own, sectors.leaves, strict=True
        )
    ]
    args = dict(
        ids=sectors.ids,
        labels=[shown(label) for label in sectors.labels],
        parents=sectors.parents,
        values=_values(sectors, size_by),
        branchvalues="total",
        marker=dict(colors=sectors.colors),
        customdata=customdata,
        hovertemplate=(
            "%{customdata[0]}<br>%{customdata[1]} images in this subtree"
            "<br>%{customdata[2]} labelled at this node<br>%{customdata[3]} leaves"
            "<extra></extra>"
        ),
        maxdepth=maxdepth,
    )
    size_note = "sized by labelled images" if size_by == "images" else "sized by leaf count"
    title = f"Taxonomy: {all_nodes:,} nodes, {total:,} labelled images ({size_note}){note}"
    return args, title


def taxonomy_sunburst(
    tax: Taxonomy,
    counts: Mapping[str, int] | None = None,
    *,
    size_by: str | None = None,
    maxdepth: int | None = None,
    max_sectors: int | None = None,
    root: str | None = None,
) -> go.Figure:
    """A sunburst of the taxonomy; sector ids are node ids.

    `counts` maps node id to the images labelled at that node. `size_by` is "images"
    (subtree image counts) or "leaves"; by default images when any are labelled.
    `maxdepth` caps the rings drawn at once (-1: all; default all up to 2,000 nodes, else 3).
    `max_sectors` bounds what is sent at all (the studio's 10k-leaf trees: the top rings
    that fit), and `root` draws only that node's subtree (`bounded_sectors`).
    """
    args, title = _trace_args(tax, counts, size_by, maxdepth, max_sectors, root)
    fig = go.Figure(go.Sunburst(insidetextorientation="radial", **args))
    fig.update_layout(title=title, margin=dict(t=50, l=10, r=10, b=10))
    return fig


def taxonomy_treemap(
    tax: Taxonomy,
    counts: Mapping[str, int] | None = None,
    *,
    size_by: str | None = None,
    maxdepth: int | None = None,
) -> go.Figure:
    """A treemap of the taxonomy with the same ids, sizes and hover as `taxonomy_sunburst`."""
    args, title = _trace_args(tax, counts, size_by, maxdepth)
    fig = go.Figure(go.Treemap(**args))
    fig.update_layout(title=title, margin=dict(t=50, l=10, r=10, b=10))
    return fig
