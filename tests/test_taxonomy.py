"""The taxonomy tree and its level index: random edit sequences, reports, padding, targets."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from taxonomy_strategies import taxonomies

from hiercore.errors import TaxonomyError
from hiercore.taxonomy import ROOT, LevelIndex, Taxonomy

PROPERTY = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Few distinct names, so that edits often collide with a sibling or merge twins.
FEW_NAMES = st.sampled_from(["a", "b", "c"])


def assert_valid(tax: Taxonomy) -> None:
    """A rooted tree with unique sibling names whose level index builds."""
    nodes = list(tax.iter_dfs())
    assert len(nodes) == len(tax) == len(set(nodes))  # every node reachable from the root
    assert nx.is_arborescence(tax.graph)
    for parent in [ROOT, *nodes]:
        names = [tax.name(c) for c in tax.children(parent)]
        assert len(names) == len(set(names)), names
    if nodes:
        rebuilt = Taxonomy.from_nodes(tax.to_nodes())  # passes the constructor's own checks
        assert rebuilt.to_dict() == tax.to_dict()
        index = LevelIndex.build(tax)
        assert index.depth == tax.max_depth
        for n in nodes:
            index.target(n)


def paths(tax: Taxonomy) -> dict[tuple[str, ...], str]:
    return {tuple(tax.path_names(n)): n for n in tax.iter_dfs()}


def subtree(tax: Taxonomy, node: str) -> list[str]:
    return [node, *tax.descendants(node)]


# ---------------------------------------------------------------------- edits
def do_add(tax, data):
    parent = data.draw(st.sampled_from([ROOT, *tax.iter_dfs()]))
    name = data.draw(FEW_NAMES)
    clash = name in [tax.name(c) for c in tax.children(parent)]
    try:
        node = tax.add(name, parent)
    except TaxonomyError:
        assert clash
        return False
    assert not clash and tax.parent(node) == parent and tax.name(node) == name
    return True


def do_rename(tax, data):
    node = data.draw(st.sampled_from(list(tax.iter_dfs())))
    name = data.draw(FEW_NAMES)
    clash = any(tax.name(c) == name and c != node for c in tax.children(tax.parent(node)))
    below = subtree(tax, node)
    try:
        report = tax.rename(node, name)
    except TaxonomyError:
        assert clash
        return False
    assert not clash and tax.name(node) == name
    assert report.label_moves == {} and report.affected == below
    return True


def do_move(tax, data):
    nodes = list(tax.iter_dfs())
    node = data.draw(st.sampled_from(nodes))
    new_parent = data.draw(st.sampled_from([ROOT, *nodes]))
    below = subtree(tax, node)
    old_parent = tax.parent(node)
    relative = {n: tax.path_names(n)[tax.depth(node) - 1 :] for n in below}
    refused = new_parent in below or (
        new_parent != old_parent
        and any(tax.name(c) == tax.name(node) for c in tax.children(new_parent))
    )
    try:
        report = tax.move(node, new_parent)
    except TaxonomyError:
        assert refused
        return False
    assert not refused and tax.parent(node) == new_parent
    assert report.label_moves == {}
    assert report.affected == ([] if new_parent == old_parent else below)
    base = [] if new_parent == ROOT else tax.path_names(new_parent)
    for n in below:  # the subtree travels whole
        assert tax.path_names(n) == base + relative[n]
    return True


def do_merge(tax, data):
    nodes = list(tax.iter_dfs())
    source = data.draw(st.sampled_from(nodes))
    ancestors = tax.path(source)[:-1]
    # ancestors and descendants are the interesting targets: weigh them up
    near = ancestors + tax.descendants(source)
    target = data.draw(
        st.sampled_from(near) if near and data.draw(st.booleans()) else st.sampled_from(nodes)
    )
    below = subtree(tax, source)
    before = paths(tax)
    try:
        report = tax.merge(source, target)
    except TaxonomyError:
        assert target in below
        return False
    assert target not in below
    # Independent model on name paths: the source's subtree is re-rooted at the target;
    # a node whose new path already existed (outside that subtree) is merged into that
    # node, every other node keeps its id.
    src_path = next(p for p, n in before.items() if n == source)
    tgt_path = next(p for p, n in before.items() if n == target)
    kept = {p: n for p, n in before.items() if n not in below}
    expected_moves = {source: target}
    expected_paths = dict(kept)
    for p, n in before.items():
        if n in below and n != source:
            new = tgt_path + p[len(src_path) :]
            if new in kept:
                expected_moves[n] = kept[new]
            else:
                expected_paths[new] = n
    assert report.label_moves == expected_moves
    assert paths(tax) == expected_paths
    assert all(k not in tax for k in report.label_moves)
    assert all(v in tax for v in report.label_moves.values())
    return True


def do_delete(tax, data):
    nodes = list(tax.iter_dfs())
    node = data.draw(st.sampled_from(nodes))
    migrate_to = data.draw(st.sampled_from(["parent", None, *nodes]))
    below = subtree(tax, node)
    parent = tax.parent(node)
    try:
        report = tax.delete(node, migrate_to)
    except TaxonomyError:
        assert migrate_to in below
        return False
    assert migrate_to not in below
    dest = migrate_to
    if migrate_to == "parent":  # a first-level node's labels are dropped
        dest = None if parent == ROOT else parent
    assert report.label_moves == dict.fromkeys(below, dest)
    assert sorted(report.affected) == sorted(below)
    assert all(n not in tax for n in below)
    return True


EDITS = {
    "add": do_add,
    "rename": do_rename,
    "move": do_move,
    "merge": do_merge,
    "delete": do_delete,
}


@PROPERTY
@given(tax=taxonomies(max_nodes=12, names=FEW_NAMES, with_descriptions=False), data=st.data())
def test_random_edit_sequences_keep_the_tree_valid(tax, data):
    for _ in range(data.draw(st.integers(1, 20))):
        ops = ["add"] if len(tax) == 0 else list(EDITS)
        op = data.draw(st.sampled_from(ops))
        before = tax.to_dict()
        if not EDITS[op](tax, data):
            assert tax.to_dict() == before  # a refused edit changes nothing
        assert_valid(tax)


def test_merge_into_an_ancestor_with_a_child_named_like_the_source():
    # A > B > B: merging the outer B into A lifts the inner B up, it does not vanish.
    tax = Taxonomy()
    a = tax.add("A")
    b = tax.add("B", a)
    inner = tax.add("B", b)
    leaf = tax.add("x", inner)
    report = tax.merge(b, a)
    assert report.label_moves == {b: a}
    assert tax.path(leaf) == [a, inner, leaf]
    assert_valid(tax)


def test_merge_reports_twins(small_taxonomy):
    tax = small_taxonomy
    other = tax.add("Corvidae2", "aves")
    twin = tax.add("Corvus", other)
    fresh = tax.add("Nucifraga", other)
    report = tax.merge(other, "corvidae")
    assert report.label_moves == {twin: "corvus", other: "corvidae"}
    assert tax.parent(fresh) == "corvidae"
    assert "corvus" in tax and twin not in tax


def test_delete_reports_every_removed_node(small_taxonomy):
    report = small_taxonomy.delete("corvidae")
    assert report.label_moves == {"corvidae": "aves", "corvus": "aves", "pica": "aves"}
    report = small_taxonomy.delete("mammalia")  # top level: labels are dropped
    assert report.label_moves == {
        "mammalia": None,
        "felidae": None,
        "felis": None,
        "panthera": None,
    }
    with pytest.raises(TaxonomyError, match="subtree being deleted"):
        small_taxonomy.delete("laridae", migrate_to="larus")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.add("Corvidae", "aves"), "already exists under 'Aves'"),
        (lambda t: t.add("  ", "aves"), "empty name"),
        (lambda t: t.rename("pica", "Corvus"), "already exists under 'Corvidae'"),
        (lambda t: t.move("aves", "corvus"), "own subtree"),
        (lambda t: t.merge("aves", "corvus"), "own descendant"),
        (lambda t: t.merge("pica", "pica"), "into itself"),
        (lambda t: t.rename("nope", "x"), "Unknown node 'nope'"),
    ],
)
def test_refused_edits_say_why(small_taxonomy, edit, message):
    with pytest.raises(TaxonomyError, match=message):
        edit(small_taxonomy)


# ---------------------------------------------------------------------- level index
@pytest.fixture
def ragged() -> Taxonomy:
    """A > (A1 > A1x, A1y), A2;  B;  C > C1 > C1x   -- leaves at depths 3, 2 and 1."""
    tax = Taxonomy()
    for node, parent in [
        ("A", ROOT), ("A1", "A"), ("A1x", "A1"), ("A1y", "A1"), ("A2", "A"),
        ("B", ROOT), ("C", ROOT), ("C1", "C"), ("C1x", "C1"),
    ]:  # fmt: skip
        tax.add(node, parent, node_id=node)
    return tax


def test_padding_of_a_ragged_tree_by_hand(ragged):
    index = LevelIndex.build(ragged)
    assert index.level_nodes == (
        ("A", "B", "C"),
        ("A1", "A2", "B", "C1"),
        ("A1x", "A1y", "A2", "B", "C1x"),
    )
    assert index.padded == (
        (False, False, False),
        (False, False, True, False),
        (False, False, True, True, False),
    )
    assert [p.tolist() for p in index.parents] == [[0, 0, 0], [0, 0, 1, 2], [0, 0, 1, 2, 3]]
    assert index.sizes == [3, 4, 5] and index.n_padded == 3


@pytest.mark.parametrize(
    ("node", "target"),
    [
        ("A1x", [0, 0, 0]),  # a leaf at the last level
        ("A1y", [0, 0, 1]),
        ("A2", [0, 1, 2]),  # a leaf at depth 2: its padding copy at level 3
        ("B", [1, 2, 3]),  # a leaf at depth 1: padding copies at levels 2 and 3
        ("C1x", [2, 3, 4]),
        ("A", [0, -1, -1]),  # inner nodes: partial labels
        ("C1", [2, 3, -1]),
        (None, [-1, -1, -1]),  # unlabelled
    ],
)
def test_targets_by_hand(ragged, node, target):
    index = LevelIndex.build(ragged)
    assert index.target(node) == target
    if node is not None:
        assert index.node_of_path(target) == node


def test_index_lookups(ragged):
    index = LevelIndex.build(ragged)
    assert index.path_from_leaf(3) == [1, 2, 3]
    assert index.index_of(2, "A2") == 2
    assert index.is_consistent([2, 3, 4]) and not index.is_consistent([0, 3, 4])
    with pytest.raises(TaxonomyError, match="not a node"):
        index.target("nope")
    with pytest.raises(TaxonomyError, match="not at level 1"):
        index.index_of(0, "A1")
    with pytest.raises(TaxonomyError, match="no nodes"):
        LevelIndex.build(Taxonomy())


@PROPERTY
@given(tax=taxonomies(max_nodes=25, with_descriptions=False))
def test_index_agrees_with_the_tree(tax):
    index = LevelIndex.build(tax)
    depth = tax.max_depth
    leaves = set(tax.leaves())
    assert index.depth == depth
    for level in range(depth):
        at_level = [n for n in tax.iter_dfs() if tax.depth(n) == level + 1]
        pads = [n for n in leaves if tax.depth(n) <= level]
        assert index.sizes[level] == len(at_level) + len(pads)
        assert sorted(index.level_nodes[level]) == sorted(at_level + pads)
        for c, node in enumerate(index.level_nodes[level]):
            assert index.padded[level][c] == (tax.depth(node) <= level)
    for node in tax.iter_dfs():
        target = index.target(node)
        path = tax.path(node)
        for level, i in enumerate(target):
            if level < len(path):
                assert index.level_nodes[level][i] == path[level]
            elif node in leaves:
                assert index.level_nodes[level][i] == node and index.padded[level][i]
            else:
                assert i == -1
            if level and i >= 0:
                assert index.parents[level][i] == target[level - 1]
    # siblings are contiguous at every level, so a subtree is a block of each axis
    for level in range(1, depth):
        parents = index.parents[level]
        assert np.all(np.diff(parents) >= 0)
