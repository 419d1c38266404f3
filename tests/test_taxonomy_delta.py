"""Taxonomy versions stored as deltas: every version reads back exactly, old workspaces open."""

from __future__ import annotations

import json
import sqlite3
import tempfile
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from taxonomy_strategies import taxonomies

from hiercore.errors import TaxonomyError
from hiercore.store import Workspace
from hiercore.store import taxonomy_history as history_module
from hiercore.taxonomy import ROOT, EditReport, Taxonomy
from hiercore.taxonomy.delta import apply_delta, tree_delta

EDITS = st.lists(
    st.tuples(st.integers(0, 5), st.integers(0, 99), st.integers(0, 99)), min_size=1, max_size=12
)


def random_edit(tax: Taxonomy, kind: int, i: int, j: int) -> None:
    """One add, rename, move, merge or delete on `tax` (TaxonomyError when refused)."""
    nodes = list(tax.iter_dfs())
    a = nodes[i % len(nodes)] if nodes else "missing"
    b = nodes[j % len(nodes)] if nodes else ROOT
    if kind == 0:
        tax.add(f"new{i}", b, f"d{j}")
    elif kind == 1:
        tax.rename(a, f"r{j}", f"desc{i}" if j % 2 else None)
    elif kind == 2:
        tax.move(a, b if j % 3 else ROOT)
    elif kind == 3:
        tax.merge(a, b)
    else:
        tax.delete(a, "parent")


@settings(max_examples=60, deadline=None)
@given(taxonomies(max_nodes=15), EDITS)
def test_a_delta_rebuilds_the_edited_tree_exactly(tax, edits):
    for kind, i, j in edits:
        new = tax.copy()
        try:
            random_edit(new, kind, i, j)
        except TaxonomyError:
            continue
        rebuilt = apply_delta(tax, json.loads(json.dumps(tree_delta(tax, new))))
        assert rebuilt.to_dict() == new.to_dict()  # names, parents, descriptions and order
        tax = new


def test_a_rename_stores_one_record_not_the_tree():
    tax = Taxonomy()
    genus = tax.add("Corvus")
    for k in range(50):
        tax.add(f"species {k}", genus)
    new = tax.copy()
    new.rename(genus, "Corvus L.")
    delta = tree_delta(tax, new)
    assert delta["set"] == [[genus, "Corvus L.", ROOT, ""]]
    assert delta["drop"] == [] and delta["order"] == {}


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(EDITS, st.integers(2, 5))
def test_every_stored_version_reads_back_as_the_tree_it_stored(edits, snapshot_every):
    """Random edits through the store (deltas, snapshots every few versions, undo):
    each version reads back equal to the full tree recorded when it was made."""
    with (
        mock.patch.object(history_module, "SNAPSHOT_EVERY", snapshot_every),
        tempfile.TemporaryDirectory() as tmp,
        Workspace(tmp) as ws,
    ):
        pid = ws.create_project("p")
        a = ws.add_node(pid, "A")
        ws.add_node(pid, "a1", a)
        ws.add_node(pid, "B")
        expected = [ws.taxonomy_at(pid, v).to_dict() for v in (1, 2, 3, 4)]
        for step, (kind, i, j) in enumerate(edits):
            if kind == 5 and step % 2:
                if ws.undo(pid) is not None:
                    expected.pop()
                continue

            def edit(tax, kind=kind, i=i, j=j):
                before = set(tax.iter_dfs())
                random_edit(tax, kind, i, j)
                gone = before - set(tax.iter_dfs())
                return EditReport("edit", [], dict.fromkeys(gone))

            try:
                ws.apply_edit(pid, f"edit {step}", edit)
            except TaxonomyError:
                continue
            expected.append(ws.taxonomy(pid).to_dict())
        ws._taxonomy_cache.clear()  # read from the rows, not from the cache
        assert len(ws.history(pid)) == len(expected)
        for version, tree in enumerate(expected, start=1):
            assert ws.taxonomy_at(pid, version).to_dict() == tree
        assert ws.taxonomy(pid).to_dict() == expected[-1]
        with ws._read() as conn:
            kinds = [r[0] for r in conn.execute("SELECT delta IS NULL FROM taxonomy_versions")]
        # at most snapshot_every - 1 deltas follow a snapshot
        run = 0
        for is_snapshot in kinds:
            run = 0 if is_snapshot else run + 1
            assert run < snapshot_every


def test_a_version_2_workspace_keeps_its_whole_tree_rows_and_gains_deltas(tmp_path):
    """A workspace written when every row held the whole tree opens, reads every old
    version, and stores its next edits as deltas."""
    from hiercore.store.database import SCHEMA

    root = tmp_path / "old"
    root.mkdir()
    conn = sqlite3.connect(root / "hiertune.sqlite")
    for statement in SCHEMA:
        conn.execute(statement.replace(",\n        delta TEXT\n", "\n"))
    conn.execute("INSERT INTO schema_version VALUES (2)")
    conn.execute("INSERT INTO projects (name, created, updated) VALUES ('p', 't', 't')")
    trees = [Taxonomy(), Taxonomy()]
    trees[1].add("A", ROOT, "", node_id="a")
    trees.append(trees[1].copy())
    trees[2].add("b", "a", "", node_id="b")
    for k, tree in enumerate(trees):
        conn.execute(
            "INSERT INTO taxonomy_versions (project_id, taxonomy, description, created) "
            "VALUES (1, ?, ?, 't')",
            (json.dumps(tree.to_dict()), f"v{k}"),
        )
    conn.commit()
    conn.close()
    with Workspace(root) as ws:
        assert [ws.taxonomy_at(1, v).to_dict() for v in (1, 2, 3)] == [t.to_dict() for t in trees]
        ws.rename_node(1, "b", "bee")
        with ws._read() as c:
            last = c.execute("SELECT taxonomy, delta FROM taxonomy_versions ORDER BY id DESC")
            text, delta = last.fetchone()
        assert text == "" and json.loads(delta)["set"] == [["b", "bee", "a", ""]]
        assert ws.undo(1) == "rename 'b' → 'bee'"
        assert ws.taxonomy(1).to_dict() == trees[2].to_dict()
