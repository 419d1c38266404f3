"""Tests of hiercore.figures and hiercore.embedding_map: figure structure on a small
ragged taxonomy, confusion aggregation and drill-down against direct numpy/tree
computations, top confusions against a manual count, and the UMAP/PCA maps."""

import time
from collections import Counter

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from hiercore import figures as F
from hiercore.embedding_map import Map2D, joint_umap, pca_2d, umap_2d
from hiercore.figures.palette import BASE_COLORS, UNKNOWN_COLOR
from hiercore.figures.tree import rings_drawn
from hiercore.taxonomy.levels import LevelIndex
from hiercore.taxonomy.tree import ROOT, Node, Taxonomy

# ---- fixtures ---------------------------------------------------------------------------


@pytest.fixture
def tax() -> Taxonomy:
    """Aves (Corvidae: raven, crow; Paridae: great tit), Mammalia (Felidae: lynx; Bat).

    Added in an interleaved order so that the LevelIndex order (grouped by parent) differs
    from insertion order; Bat is a leaf at depth 2, padded at level 3.
    """
    t = Taxonomy(["class", "family", "species"])
    t.add("Aves", node_id="aves")
    t.add("Mammalia", node_id="mam")
    t.add("Corvidae", "aves", node_id="corv")
    t.add("Felidae", "mam", node_id="fel")
    t.add("Paridae", "aves", node_id="par")
    t.add("raven", "corv", node_id="raven")
    t.add("lynx", "fel", node_id="lynx")
    t.add("great tit", "par", node_id="tit")
    t.add("crow", "corv", node_id="crow")
    t.add("Bat", "mam", node_id="bat")
    return t


@pytest.fixture
def index(tax) -> LevelIndex:
    return LevelIndex.build(tax)


def wide_taxonomy(tops: int = 4, mids: int = 5, leaves: int = 10) -> Taxonomy:
    nodes = []
    for a in range(tops):
        nodes.append(Node(f"t{a}", f"top {a}", ROOT))
        for b in range(mids):
            nodes.append(Node(f"t{a}m{b}", f"mid {b}", f"t{a}"))
            for c in range(leaves):
                nodes.append(Node(f"t{a}m{b}l{c}", f"leaf {c}", f"t{a}m{b}"))
    return Taxonomy.from_nodes(nodes)


def random_paths(index: LevelIndex, n: int, rng: np.random.Generator, partial: float = 0.0):
    """True label vectors (some partial) and independently drawn (inconsistent) predictions."""
    leaves = rng.integers(0, index.sizes[-1], n)
    true = np.array([index.path_from_leaf(int(leaf)) for leaf in leaves])
    cut = rng.random(n) < partial
    true[cut, -1] = -1  # known only down to the level above
    pred = np.stack([rng.integers(0, size, n) for size in index.sizes], axis=1)
    return pred, true


def count_matrix(pred, true, level, size):
    cm = np.zeros((size, size), dtype=np.int64)
    known = true[:, level - 1] >= 0
    np.add.at(cm, (true[known, level - 1], pred[known, level - 1]), 1)
    return cm


def main_heatmap(fig: go.Figure) -> go.Heatmap:
    return fig.data[0]


def band_color(trace: go.Heatmap, k: int) -> str:
    """Colour painted at position k of a discrete ancestor band."""
    z = np.asarray(trace.z, dtype=float).ravel()[k]
    return trace.colorscale[int(z - 0.5) * 2][1]


# ---- palette ------------------------------------------------------------------------------


def _brightness(color: str) -> int:
    return sum(int(color[i : i + 2], 16) for i in (1, 3, 5))


def test_ancestor_colors_one_hue_per_top_level(tax):
    colors = F.ancestor_colors(tax)
    assert set(colors) == set(tax.iter_dfs())
    assert colors["aves"] == BASE_COLORS[0] and colors["mam"] == BASE_COLORS[1]
    for node in tax.iter_dfs():
        if tax.depth(node) > 1:  # deeper nodes are lighter than their first-level ancestor
            assert _brightness(colors[node]) > _brightness(colors[tax.path(node)[0]])
    assert colors["corv"] != colors["par"]  # siblings alternate shades


def test_ancestor_colors_distinct_past_the_palette():
    t = Taxonomy()
    tops = [t.add(f"top {k}") for k in range(len(BASE_COLORS) + 3)]
    colors = F.ancestor_colors(t)
    assert len({colors[n] for n in tops}) == len(tops)


# ---- taxonomy sunburst / treemap ----------------------------------------------------------


def test_sunburst_ids_values_and_hover(tax):
    fig = F.taxonomy_sunburst(tax, {"raven": 3, "corv": 2, "lynx": 4, "bat": 1})
    assert isinstance(fig, go.Figure) and len(fig.data) == 1
    trace = fig.data[0]
    assert trace.type == "sunburst"
    ids = list(trace.ids)
    assert sorted(ids) == sorted(tax.iter_dfs())  # every node once, no root, no padding
    value = dict(zip(ids, trace.values, strict=True))
    parent = dict(zip(ids, trace.parents, strict=True))
    assert value == {
        "aves": 5, "corv": 5, "raven": 3, "crow": 0, "par": 0, "tit": 0,
        "mam": 5, "fel": 4, "lynx": 4, "bat": 1,
    }  # fmt: skip
    assert parent["aves"] == "" and parent["raven"] == "corv" and parent["bat"] == "mam"
    assert trace.branchvalues == "total"
    hover = {i: c for i, c in zip(ids, trace.customdata, strict=True)}
    assert hover["raven"][0] == "Aves / Corvidae / raven"
    assert hover["corv"][1:3] == [5, 2]  # subtree images, labelled at the node
    assert "10 labelled images" in fig.layout.title.text


def test_treemap_sized_by_leaves_without_counts(tax):
    fig = F.taxonomy_treemap(tax)
    trace = fig.data[0]
    assert trace.type == "treemap"
    value = dict(zip(trace.ids, trace.values, strict=True))
    assert value["aves"] == 3 and value["mam"] == 2 and value["bat"] == 1
    assert "leaf count" in fig.layout.title.text


def test_sunburst_handles_ten_thousand_leaves():
    big = wide_taxonomy(tops=10, mids=20, leaves=50)
    start = time.perf_counter()
    fig = F.taxonomy_sunburst(big, {"t3m4l7": 2})
    assert time.perf_counter() - start < 10
    trace = fig.data[0]
    assert len(trace.ids) == len(big) == 10 + 200 + 10_000
    assert trace.maxdepth == 3  # large trees show three rings at a time
    assert dict(zip(trace.ids, trace.values, strict=True))["t3"] == 2


def test_rings_drawn_fits_whole_rings_in_the_budget():
    # rings of 3, 10 and 100 sectors; "x" hangs off a parent that was not sent
    ids = ["a", "b", "c"] + [f"m{i}" for i in range(10)] + [f"l{i}" for i in range(100)]
    parents = ["", "", ""] + ["abc"[i % 3] for i in range(10)] + [f"m{i % 10}" for i in range(100)]
    assert rings_drawn(ids, parents, 113) == -1  # all fit
    assert rings_drawn(ids, parents, 112) == 2
    assert rings_drawn(ids, parents, 13) == 2
    assert rings_drawn(ids, parents, 1) == 2  # two rings at least
    # "x" hangs off a parent that was not sent: it is drawn in the first ring
    assert rings_drawn([*ids, "x"], [*parents, "gone"], 113) == 2
    assert rings_drawn([*ids, "x"], [*parents, "gone"], 114) == -1


# ---- confusion ---------------------------------------------------------------------------


def test_confusion_figure_small(tax, index):
    rng = np.random.default_rng(1)
    pred, true = random_paths(index, 80, rng)
    cm = count_matrix(pred, true, 3, index.sizes[2])
    fig = F.tree_confusion_figure(cm, index, tax, level=3)
    heat = main_heatmap(fig)
    z = np.asarray(heat.z)
    assert z.shape == (5, 5)
    rows = cm.sum(axis=1)
    np.testing.assert_allclose(z[rows > 0].sum(axis=1), 1.0)
    np.testing.assert_allclose(z, cm / np.maximum(rows, 1)[:, None])
    custom = np.asarray(heat.customdata, dtype=object)
    assert custom.shape == (5, 5, 7)
    assert [custom[2, 4, 0], custom[2, 4, 1], custom[2, 4, 2], custom[2, 4, 3]] == [
        2,
        4,
        3,
        cm[2, 4],
    ]
    # classes in LevelIndex order (grouped by parent), not insertion order
    expected = [tax.name(n) for n in index.level_nodes[2]]
    expected[-1] += " (padded)"
    assert list(fig.layout.xaxis.ticktext) == expected == list(fig.layout.yaxis.ticktext)
    assert expected[:3] == ["raven", "crow", "great tit"]
    assert (
        custom[0, 1, 5] == "Aves / Corvidae / raven" and custom[0, 1, 6] == "Aves / Corvidae / crow"
    )
    # two ancestor bands per axis (class, family), coloured by the ancestor of each class
    bands = fig.data[1:]
    assert len(bands) == 4
    colors = F.ancestor_colors(tax)
    for band_level, (rows_band, cols_band) in zip(
        (1, 2), zip(bands[::2], bands[1::2], strict=True), strict=True
    ):
        for k, node in enumerate(index.level_nodes[2]):
            ancestor = tax.path(node)[band_level - 1]
            assert band_color(rows_band, k) == colors[ancestor] == band_color(cols_band, k)
        assert rows_band.yaxis == "y" and cols_band.xaxis == "x"
    assert "grouped" not in fig.layout.title.text


def test_confusion_figure_rejects_bad_input(tax, index):
    with pytest.raises(ValueError):
        F.tree_confusion_figure(np.zeros((4, 4)), index, tax, level=3)
    with pytest.raises(ValueError):
        F.tree_confusion_figure(np.zeros((2, 2)), index, tax, level=0)


def _group_by_tree(tax, index, level, glevel, entry):
    """Independent of ancestor_indices: walk the taxonomy from the entry's node."""
    node = index.node_at(level - 1, int(entry))
    path = tax.path(node)
    ancestor = path[glevel - 1] if len(path) >= glevel else node
    return index.index_of(glevel - 1, ancestor)


def test_confusion_aggregates_by_subtree_and_drills_down():
    big = wide_taxonomy(tops=4, mids=5, leaves=10)  # 4 / 20 / 200 classes
    index = LevelIndex.build(big)
    rng = np.random.default_rng(7)
    pred, true = random_paths(index, 3000, rng, partial=0.1)
    cm = count_matrix(pred, true, 3, 200)
    fig = F.tree_confusion_figure(cm, index, big, level=3, max_classes=20)
    heat = main_heatmap(fig)
    custom = np.asarray(heat.customdata, dtype=object)
    counts = custom[..., 3].astype(np.int64)
    assert counts.shape == (20, 20)
    assert counts.sum() == cm.sum()
    assert "grouped into 20 subtrees" in fig.layout.title.text
    assert (custom[..., 2] == 2).all()
    assert len(fig.data) == 1 + 2  # one band level (the first) on each axis

    known = true[:, 2] >= 0
    t_group = np.array(
        [
            _group_by_tree(big, index, 3, 2, e) if k else -1
            for e, k in zip(true[:, 2], known, strict=True)
        ]
    )
    p_group = np.array([_group_by_tree(big, index, 3, 2, e) for e in pred[:, 2]])
    direct = np.zeros((20, 20), dtype=np.int64)
    np.add.at(direct, (t_group[known], p_group[known]), 1)
    np.testing.assert_array_equal(counts, direct)

    seen = []
    for i, j in [(0, 0), (3, 7), (19, 2), (11, 11)]:
        members = F.confusion_cell_members(pred, true, 3, list(custom[i, j]), index)
        expected = np.flatnonzero(known & (t_group == i) & (p_group == j))
        np.testing.assert_array_equal(members, expected)
        assert len(members) == counts[i, j]
        seen.append(members)
    # every known sample is in exactly one cell
    total = sum(
        len(F.confusion_cell_members(pred, true, 3, [i, j, 2], index))
        for i in range(20)
        for j in range(20)
    )
    assert total == known.sum()

    # one class fewer than the middle level: fall back to the first level
    coarse = F.tree_confusion_figure(cm, index, big, level=3, max_classes=19)
    assert np.asarray(main_heatmap(coarse).z).shape == (4, 4)
    assert len(coarse.data) == 1
    assert (
        np.asarray(main_heatmap(coarse).customdata, dtype=object)[..., 3].astype(int).sum()
        == cm.sum()
    )


def test_confusion_cell_members_ungrouped(tax, index):
    rng = np.random.default_rng(3)
    pred, true = random_paths(index, 60, rng, partial=0.2)
    cm = count_matrix(pred, true, 3, 5)
    custom = np.asarray(
        main_heatmap(F.tree_confusion_figure(cm, index, tax, 3)).customdata, dtype=object
    )
    for i in range(5):
        for j in range(5):
            members = F.confusion_cell_members(pred, true, 3, custom[i, j], index)
            np.testing.assert_array_equal(
                members, np.flatnonzero((true[:, 2] == i) & (pred[:, 2] == j))
            )


def test_top_confusions_match_a_manual_count(tax, index):
    rng = np.random.default_rng(5)
    pred, true = random_paths(index, 200, rng, partial=0.15)
    table = F.top_confusions(pred, true, index, tax, level=3, k=50)
    manual = Counter(
        (int(t), int(p)) for t, p in zip(true[:, 2], pred[:, 2], strict=True) if t >= 0 and t != p
    )
    assert len(table) == len(manual)
    assert list(table.columns[:4]) == ["true_path", "predicted_path", "count", "lca_height"]
    assert list(table["count"]) == sorted(table["count"], reverse=True)

    def chain(entry):  # node ids at levels 1..3, a padded leaf repeating itself
        path = tax.path(index.node_at(2, entry))
        return path + [path[-1]] * (3 - len(path))

    for row in table.itertuples():
        key = (row.true_index, row.predicted_index)
        assert row.count == manual[key]
        shared = sum(a == b for a, b in zip(chain(key[0]), chain(key[1]), strict=True))
        assert row.lca_height == 3 - shared
        assert row.true_path == " / ".join(tax.path_names(index.node_at(2, key[0])))
    # raven vs crow are siblings; raven vs lynx share only the root
    pair = table[(table.true_index == 0) & (table.predicted_index == 1)]
    if len(pair):
        assert pair.lca_height.iloc[0] == 1
    assert len(F.top_confusions(pred, true, index, tax, level=3, k=3)) == 3


# ---- accuracy and inconsistency ----------------------------------------------------------

METRICS = {
    "fpa": 0.5,
    "tice": 0.25,
    "level_accuracy": [0.9, 0.7, None],
    "level_macro_accuracy": [0.85, 0.6, 0.4],
    "mistake_severity": 1.5,
    "inconsistency_by_level_pair": [0.1, 0.2],
    "consistent": {
        "fpa": 0.55,
        "tice": 0.0,
        "level_accuracy": [0.92, 0.72, 0.58],
        "level_macro_accuracy": [0.9, 0.65, 0.5],
        "mistake_severity": 1.2,
        "inconsistency_by_level_pair": [0.0, 0.0],
    },
    "hca": 0.45,
    "n": 40,
}


def test_level_accuracy_figure():
    fig = F.level_accuracy_figure(METRICS, ["class", "family", "species"])
    assert [t.name for t in fig.data] == ["independent", "consistent"]
    assert list(fig.data[0].x) == ["class", "family", "species"]
    assert fig.data[0].y[:2] == (0.9, 0.7) and np.isnan(fig.data[0].y[2])
    assert fig.data[1].y == (0.92, 0.72, 0.58)
    note = fig.layout.annotations[0].text
    assert "independent: FPA 50.0%, TICE 25.0%" in note
    assert "consistent: FPA 55.0%, TICE 0.0%" in note
    assert "40 images" in fig.layout.title.text


def test_inconsistency_pairs_figure():
    fig = F.inconsistency_pairs_figure(METRICS, ["class", "family", "species"])
    assert [t.type for t in fig.data] == ["bar", "bar"]
    assert list(fig.data[0].x) == ["class → family", "family → species"]
    assert fig.data[0].y == (0.1, 0.2) and fig.data[1].y == (0.0, 0.0)
    assert "25.0%" in fig.layout.title.text


def test_inconsistency_subtree_figure(tax, index):
    df = pd.DataFrame(
        {
            "level": [3, 2, 3, 3],
            "parent_index": [0, 0, 2, 1],
            "n": [10, 20, 5, 8],
            "n_inconsistent": [6, 4, 0, 2],
            "rate": [0.6, 0.2, 0.0, 0.25],
        }
    )
    fig = F.inconsistency_subtree_figure(df, index, tax, top=2)
    bar = fig.data[0]
    assert bar.orientation == "h"
    # the top two, largest drawn at the top (last in a horizontal bar chart)
    assert list(fig.layout.yaxis.ticktext) == ["Aves → family", "Aves / Corvidae → species"]
    assert list(bar.x) == [0.2, 0.6]
    assert list(bar.text) == ["4/20", "6/10"]
    colors = F.ancestor_colors(tax)
    assert list(bar.marker.color) == [colors["aves"], colors["corv"]]
    everything = F.inconsistency_subtree_figure(df, index, tax)
    assert len(everything.data[0].x) == 3  # subtrees without inconsistency are left out


# ---- training curves ---------------------------------------------------------------------


def test_training_curves_figure():
    history = [
        {
            "step": s,
            "epoch": 1 + s // 5,
            "losses": {"total": 2.0 / s, "ce": 1.0 / s, "tpkl": 0.5, "hisce": 0.25},
        }
        for s in range(1, 11)
    ]
    history.insert(5, {"step": 5, "epoch": 1, "val": {"fpa": 0.3, "tice": 0.2}})
    history.append({"step": 10, "epoch": 2, "val": {"fpa": 0.5, "tice": None}})
    fig = F.training_curves_figure(history)
    names = [t.name for t in fig.data]
    assert names == ["total", "cross-entropy", "TP-KL", "HiSCE", "FPA", "TICE"]
    total = fig.data[0]
    assert total.xaxis == "x" and list(total.x) == list(range(1, 11))
    np.testing.assert_allclose(total.y, [2.0 / s for s in range(1, 11)])
    fpa, tice = fig.data[4], fig.data[5]
    assert fpa.xaxis == "x2" and list(fpa.x) == [1, 2] and list(fpa.y) == [0.3, 0.5]
    assert tice.y[0] == 0.2 and np.isnan(tice.y[1])
    empty = F.training_curves_figure([])
    assert len(empty.layout.annotations) >= 2
    # before the first validation the right panel still gets axes for its note to sit in
    assert [(t.xaxis, len(t.x)) for t in empty.data] == [("x2", 0)]
    steps_only = F.training_curves_figure(history[:3])
    assert any(t.xaxis == "x2" and t.showlegend is False for t in steps_only.data)


# ---- embeddings --------------------------------------------------------------------------


def test_pca_fallback_for_tiny_sets():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 12))
    coords = umap_2d(x)
    assert isinstance(coords, Map2D) and coords.shape == (5, 2)
    assert coords.method == "pca" and "PCA" in coords.note
    assert np.isfinite(coords).all()
    # against an independent PCA: the covariance eigenvectors of the normalised points
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    xc = xn - xn.mean(axis=0)
    _, vecs = np.linalg.eigh(xc.T @ xc)
    ref = xc @ vecs[:, ::-1][:, :2]
    np.testing.assert_allclose(np.abs(coords), np.abs(ref), atol=1e-8)
    assert umap_2d(x[:1]).shape == (1, 2) and umap_2d(x[:0]).shape == (0, 2)
    with pytest.raises(ValueError):
        umap_2d(np.full((3, 2), np.nan))
    b, a = joint_umap(x[:3], x[3:])
    assert b.shape == (3, 2) and a.shape == (2, 2) and b.method == a.method == "pca"
    np.testing.assert_allclose(np.vstack([b, a]), pca_2d(x))  # one map over both sets


def test_umap_maps_are_finite():
    """The one test that runs umap-learn (its first import compiles numba code)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 8))
    coords = umap_2d(x, seed=0)
    assert coords.method == "umap" and coords.shape == (60, 2) and np.isfinite(coords).all()
    before, after = joint_umap(x[:30], x[30:] + 0.1, seed=0, n_neighbors=10)
    assert before.shape == (30, 2) and after.shape == (30, 2)
    assert before.method == "umap" and np.isfinite(before).all() and np.isfinite(after).all()


def test_node_embedding_figure(tax, index):
    ids = F.distinct_node_ids(index)
    assert sorted(ids) == sorted(tax.iter_dfs())  # the padded Bat appears once
    rng = np.random.default_rng(2)
    before, after = rng.normal(size=(len(ids), 2)), rng.normal(size=(len(ids), 2))
    fig = F.node_embedding_figure(before, after, index, tax)
    edges = [t for t in fig.data if t.mode == "lines"]
    points = [t for t in fig.data if t.mode == "markers"]
    assert len(edges) == 2 and len(points) == 2 * 2  # two panels x two first-level groups
    for panel, xy in (("x", before), ("x2", after)):
        mine = [t for t in points if t.xaxis == panel]
        shown = [c[1] for t in mine for c in t.customdata]
        assert sorted(shown) == sorted(ids)
        for t in mine:
            for (x, y), c in zip(zip(t.x, t.y, strict=True), t.customdata, strict=True):
                assert (x, y) == tuple(xy[ids.index(c[1])])
    sizes = {c[1]: s for t in points[:2] for c, s in zip(t.customdata, t.marker.size, strict=True)}
    assert sizes["aves"] > sizes["corv"] > sizes["raven"]
    assert len(edges[0].x) == 3 * (len(ids) - 2)  # one segment per non-top node
    assert [t.showlegend for t in points] == [True, True, False, False]
    # per-level rows (padding copies included) are deduplicated the same way
    flat = [n for level in index.level_nodes for n in level]
    per_level = np.array([before[ids.index(n)] for n in flat])
    again = F.node_embedding_figure(per_level, per_level, index, tax)
    np.testing.assert_array_equal(again.data[1].x, fig.data[1].x)


def test_image_embedding_figure(tax):
    labels = ["raven", "crow", "lynx", "bat", "aves", "tit", None]
    coords = np.arange(14, dtype=float).reshape(7, 2)
    correct = [True, False, True, False, True, True, True]
    files = [f"/data/img_{i}.jpg" for i in range(7)]
    fig = F.image_embedding_figure(coords, labels, tax, level=2, correct=correct, paths=files)
    names = [t.name for t in fig.data]
    assert names == ["Aves", "Mammalia", "unlabelled", "wrong prediction"]
    colors = F.ancestor_colors(tax)
    by_image = {}
    for t in fig.data[:3]:
        for c, color, symbol in zip(t.customdata, t.marker.color, t.marker.symbol, strict=True):
            by_image[c[3]] = (c[0], c[1], color, symbol)
    assert by_image[0] == ("img_0.jpg", "Aves / Corvidae / raven", colors["corv"], "circle")
    assert by_image[1][2:] == (colors["corv"], "x")
    assert by_image[3][2:] == (colors["bat"], "x")  # a depth-2 leaf
    assert by_image[4][2] == UNKNOWN_COLOR  # partial label above level 2
    assert by_image[6][1] == "(unlabelled)"
    assert "family" in fig.layout.title.text
    plain = F.image_embedding_figure(coords, labels, tax)
    assert all(s == "circle" for t in plain.data for s in t.marker.symbol)


def test_comparison_table_figure():
    df = pd.DataFrame(
        {"run": ["zero-shot", "ce", "ours"], "fpa": [0.3, 0.5, 0.6], "tice": [0.3, 0.1, 0.2]}
    )
    fig = F.comparison_table_figure(df)
    table = fig.data[0]
    assert table.type == "table"
    assert list(table.header.values) == ["run", "fpa", "tice"]
    assert list(table.cells.values[1]) == ["0.300", "0.500", "0.600"]
    fills = table.cells.fill.color
    assert [f == "white" for f in fills[1]] == [True, True, False]  # highest FPA
    assert [f == "white" for f in fills[2]] == [True, False, True]  # lowest TICE


def test_aggregate_confusion_any_grouping():
    rng = np.random.default_rng(4)
    cm = rng.integers(0, 9, size=(12, 12))
    for groups in (np.repeat(np.arange(4), 3), rng.integers(0, 4, 12)):
        n_groups = int(groups.max()) + 1
        loop = np.zeros((n_groups, n_groups), dtype=cm.dtype)
        for r in range(12):
            for c in range(12):
                loop[groups[r], groups[c]] += cm[r, c]
        np.testing.assert_array_equal(F.aggregate_confusion(cm, groups, n_groups), loop)


def test_comparison_table_shades_the_studio_columns_the_right_way():
    """The studio's column names (TICE, severity) are error-like: lowest is best."""
    from webapp.tabs.results import COMPARISON_COLUMNS

    rows = [
        ["#1 a", "finished", "ce", 0.5, 0.30, 0.6, 0.4, 2.0, 3.0],
        ["#2 b", "finished", "ours", 0.7, 0.10, 0.8, 0.6, 1.0, 1.0],
        ["#3 c", "finished", "flat", 0.6, 0.20, 0.7, 0.5, 1.5, 2.0],
    ]
    df = pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
    colours = F.comparison_table_figure(df).data[0].cells.fill.color
    fills = dict(zip(df.columns, colours, strict=True))
    best = {c: [f != "white" for f in fills[c]] for c in df.columns}
    for column in ("FPA", "consistent FPA", "HCA", "TICE", "severity"):
        assert best[column] == [False, True, False], column  # run b is best on every metric
    assert best["trainable %"] == [False, False, False]  # a cost, not a quality


def test_a_partial_row_is_grey_and_never_shaded_best():
    df = pd.DataFrame({"run": ["a", "b", "c"], "FPA": [0.5, 0.9, 0.6], "TICE": [0.3, 0.0, 0.2]})
    table = F.comparison_table_figure(df, partial=[False, True, False]).data[0]
    fills = dict(zip(df.columns, table.cells.fill.color, strict=True))
    assert [f != "white" for f in fills["FPA"]] == [False, False, True]  # b stopped early
    assert [f != "white" for f in fills["TICE"]] == [False, False, True]
    fonts = table.cells.font.color[0]
    assert fonts[1] != fonts[0] == fonts[2]


# ---- hostile names ----------------------------------------------------------------------

HOSTILE = ["<b>x</b>", "<script>alert(1)</script>", "50%{x} & co", "<i>kind</i>"]


def _strings(value) -> list[str]:
    """Every string in a figure's JSON (trace and layout)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list | tuple | np.ndarray):
        return [s for v in value for s in _strings(v)]
    return []


def test_node_names_with_html_are_drawn_as_text():
    """Plotly renders <b>, <i>, <a>, ... and fills %{...} in whatever text it draws: a
    name the user typed must reach the figure escaped, so it shows as typed (issue #9 D11)."""
    import html as html_lib

    tax = Taxonomy.from_nodes(
        [
            {"id": "a", "name": HOSTILE[0], "parent": ""},
            {"id": "b", "name": HOSTILE[1], "parent": ""},
            {"id": "c", "name": HOSTILE[2], "parent": "a"},
            {"id": "d", "name": "plain", "parent": "b"},
        ],
        level_names=[HOSTILE[3], "genus"],
    )
    index = LevelIndex.build(tax)
    rng = np.random.default_rng(0)
    pred, true = random_paths(index, 12, rng)
    from hiercore.metrics import confusion_matrices, inconsistency_by_subtree

    metrics = {"level_accuracy": [0.5, 0.25], "inconsistency_by_level_pair": [0.1]}
    ids = F.distinct_node_ids(index)
    nodes_xy = rng.normal(size=(len(ids), 2))
    subtrees = inconsistency_by_subtree(pred, true, [np.asarray(p) for p in index.parents])
    subtrees.loc[:, "n_inconsistent"] = 1
    runs = pd.DataFrame({"run": [f"#1 {HOSTILE[0]}", "#2 b"], "FPA": [0.5, 0.6]})
    figures = {
        "confusion": F.tree_confusion_figure(
            confusion_matrices(pred, true, index.sizes)[1], index, tax, 2
        ),
        "sunburst": F.taxonomy_sunburst(tax),
        "treemap": F.taxonomy_treemap(tax),
        "accuracy": F.level_accuracy_figure(metrics, tax.level_names),
        "pairs": F.inconsistency_pairs_figure(metrics, tax.level_names),
        "subtrees": F.inconsistency_subtree_figure(subtrees, index, tax),
        "nodes": F.node_embedding_figure(nodes_xy, nodes_xy, index, tax),
        "images": F.image_embedding_figure(
            rng.normal(size=(2, 2)), ["c", "d"], tax, 1, paths=[f"/x/{HOSTILE[0]}.png", "y.png"]
        ),
        "comparison": F.comparison_table_figure(runs),
    }
    for name, fig in figures.items():
        texts = _strings(fig.to_plotly_json())
        for raw in HOSTILE:
            assert not any(raw in t for t in texts), (name, raw)
        assert not any("<script" in t or "<b>" in t or "<i>" in t for t in texts), name
    escaped = html_lib.escape(HOSTILE[0], quote=False)
    for name in ("confusion", "sunburst", "treemap", "nodes", "images", "comparison"):
        assert any(escaped in t for t in _strings(figures[name].to_plotly_json())), name
    assert "50&#37;{x} &amp; co" in figures["sunburst"].data[0].labels
    assert any("&lt;i&gt;kind&lt;/i&gt;" in t for t in figures["accuracy"].data[0].x)
