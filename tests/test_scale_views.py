"""The studio's views stay bounded on a 10,000-leaf taxonomy: what the Taxonomy tab sends,
the node search, and the results view's per-level confusion."""

from __future__ import annotations

import json

import pytest

from hiercore.figures.tree import DRAWN_SECTORS
from hiercore.store import Workspace
from hiercore.taxonomy import ROOT, Node, Taxonomy
from webapp.pickers import ALL_CHOICES_UP_TO, SEARCH_LIMIT, NodeSearch, node_picker, search_picker
from webapp.tabs.taxonomy import SUNBURST_MAX_SECTORS, taxonomy_view


def ten_k_taxonomy() -> Taxonomy:
    """5 / 50 / 1,000 / 10,000 nodes: each node has 10 children, the first level 5."""
    return layered_taxonomy((5, 10, 20, 10))


def layered_taxonomy(widths: tuple[int, ...]) -> Taxonomy:
    """`widths[0]` top nodes, each node of depth d with `widths[d]` children, named
    "rank<depth> <index>" with ids "d<depth>n<index>"."""
    nodes, level = [], [ROOT]
    for depth, width in enumerate(widths, start=1):
        below = []
        for k, parent in enumerate(level):
            for c in range(width):
                node = f"d{depth}n{k * width + c}"
                nodes.append(Node(node, f"rank{depth} {k * width + c}", parent))
                below.append(node)
        level = below
    return Taxonomy.from_nodes(nodes)


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    with Workspace(tmp_path_factory.mktemp("ws")) as ws:
        pid = ws.create_project("big")
        ws.set_taxonomy(pid, ten_k_taxonomy())
        yield ws, pid


def payload(value) -> int:
    return len(value.to_json()) if hasattr(value, "to_json") else len(json.dumps(value))


def test_the_taxonomy_tab_sends_a_bounded_view_of_a_10k_leaf_tree(big):
    ws, pid = big
    tax = ws.taxonomy(pid)
    assert len(tax.leaves()) == 10_000
    view = taxonomy_view(ws, pid, None)
    for key in ("node", "target", "delete_target"):
        assert len(view[key]["choices"]) <= 1  # at most "(top level)": typing searches
    trace = view["sunburst"].data[0]
    assert 0 < len(trace.ids) <= SUNBURST_MAX_SECTORS
    assert "deeper ones hidden" in view["sunburst"].layout.title.text
    # the rings drawn at once hold at most DRAWN_SECTORS; the others show on a click
    assert trace.maxdepth >= 2
    depth = {}
    for node, parent in zip(trace.ids, trace.parents, strict=True):
        depth[node] = depth.get(parent, 0) + 1
    shown = sum(d <= trace.maxdepth for d in depth.values())
    assert shown <= DRAWN_SECTORS < len(trace.ids)
    assert sum(d <= trace.maxdepth + 1 for d in depth.values()) > DRAWN_SECTORS
    assert "click a sector for its deeper rings" in view["sunburst"].layout.title.text
    assert sum(payload(v) for v in view.values()) < 400_000  # the old view sent > 5 MB

    leaf = "d4n4321"
    view = taxonomy_view(ws, pid, leaf)
    assert view["node"]["value"] == leaf and len(view["node"]["choices"]) == 1
    ids = set(view["sunburst"].data[0].ids)
    # the selection's neighbourhood: its parent's subtree, siblings included
    assert leaf in ids and tax.parent(leaf) in ids and len(ids) == 11
    assert "rank4 4321" in view["node_info"]


def test_an_edit_changes_the_bounded_view(big):
    ws, pid = big
    node = "d3n7"
    ws.rename_node(pid, node, "Corvidae")
    try:
        view = taxonomy_view(ws, pid, node)
        assert view["node"]["choices"] == [("rank1 0 / rank2 0 / Corvidae", node)]
        assert "Corvidae" in list(view["sunburst"].data[0].labels)
    finally:
        ws.undo(pid)


def test_search_sends_only_the_best_matches():
    search = NodeSearch(ten_k_taxonomy())
    found = search_picker(search, "rank4 12", value="d1n0")["choices"]
    assert len(found) == SEARCH_LIMIT + 1  # the matches, and the kept value
    assert found[0] == ("rank1 0 / rank2 0 / rank3 1 / rank4 12", "d4n12")  # exact name
    assert found[1] == ("rank1 0 / rank2 0 / rank3 12 / rank4 120", "d4n120")  # name prefix
    assert all("rank4 12" in path for path, _ in found[:-1])
    assert found[-1] == ("rank1 0", "d1n0")
    exact = search.find("rank3 999")
    assert exact[0][1] == "d3n999" and exact[0][0].endswith("rank3 999")
    assert search.find("   ") == []


def test_small_trees_still_send_every_choice():
    tax = Taxonomy()
    a = tax.add("Aves")
    tax.add("Corvus", a)
    update = node_picker(tax, a, with_root=True)
    assert [c[1] for c in update["choices"]] == [ROOT, a, tax.children(a)[0]]
    assert update["value"] == a
    assert len(tax) <= ALL_CHOICES_UP_TO


def test_a_zero_shot_rebuild_after_an_edit_encodes_only_the_changed_prompts():
    import torch

    from hiercore.models import load_clip
    from hiercore.predict import Predictor, PromptFeatures

    bundle = load_clip("tiny-random")
    tax = Taxonomy()
    for a in range(3):
        top = tax.add(f"family {a}")
        for b in range(4):
            genus = tax.add(f"genus {a}.{b}", top)
            for c in range(3):
                tax.add(f"species {a}.{b}.{c}", genus)
    cache = PromptFeatures()

    def zero_shot(t, prompts=None):
        return Predictor.zero_shot(t, device="cpu", prompt_cache=prompts, bundle=bundle)

    first = zero_shot(tax, cache)
    assert cache.encoded == len(set(first.model.prompts))
    assert torch.allclose(first.node_feats, zero_shot(tax).node_feats, atol=1e-5)

    edited = tax.copy()
    genus = tax.find("genus 1.2")[0]
    edited.rename(genus, "Corvus")
    before = cache.encoded
    second = zero_shot(edited, cache)
    changed = set(second.model.prompts) - set(first.model.prompts)
    assert 0 < len(changed) < len(second.model.prompts) // 4
    assert cache.encoded - before == len(changed)  # nothing else was encoded again
    assert torch.allclose(second.node_feats, zero_shot(edited).node_feats, atol=1e-5)
    assert not torch.allclose(second.node_feats, first.node_feats)


def test_the_studio_rebuilds_its_zero_shot_predictor_after_an_edit_from_cached_prompts(
    tmp_path, monkeypatch
):
    from webapp.state import Studio

    monkeypatch.setenv("HIERTUNE_MODEL", "tiny-random")
    studio = Studio(tmp_path / "studio")
    try:
        ws = studio.workspace
        pid = ws.create_project("p")
        a = ws.add_node(pid, "Aves")
        for k in range(6):
            ws.add_node(pid, f"bird {k}", a)
        first, what = studio.predictor(pid)
        assert "zero-shot" in what and studio.predictor(pid)[0] is first  # cached
        ((_, prompts),) = studio._zero_shot_models.values()
        encoded = prompts.encoded
        ws.add_node(pid, "Mammalia")
        second, _ = studio.predictor(pid)
        assert second is not first and second.model.bundle is first.model.bundle
        new = set(second.model.prompts) - set(first.model.prompts)
        assert prompts.encoded - encoded == len(new) > 0
    finally:
        studio.close()


def test_the_results_tab_sends_a_bounded_subtree_table_at_10k_leaves(tmp_path):
    """Every inconsistent subtree was one row of the table sent with each run (3,645 rows,
    0.3 MB, for 5,000 images at iNaturalist's size): now the most inconsistent 200."""
    from benchmarks.scale_project import scale_run, scale_workspace
    from webapp.app import build_app
    from webapp.state import Studio
    from webapp.tabs.results import SUBTREE_ROWS

    ws, pid = scale_workspace(tmp_path / "ws", 2000)
    run_id = scale_run(ws, pid, 2000)
    ws.close()
    studio = Studio(tmp_path / "ws")
    try:
        fns = {f.api_name: f.fn for f in build_app(studio).fns.values() if f.api_name}
        out = fns["run_and_confusion"](run_id, "independent")
        subtrees = out[7]  # after status, headline, four figures and pickers, the table
        table = subtrees["value"]
        everything = studio.results(run_id).inconsistency_table("independent")
        inconsistent = everything[everything["n_inconsistent"] > 0]
        assert len(inconsistent) > SUBTREE_ROWS
        assert len(table) == SUBTREE_ROWS
        assert f"of {len(inconsistent):,}" in subtrees["label"]
        assert out[8] is not None  # the leaf confusion comes in the same answer
        # the rows kept are the first ones, which a click on row i opens
        assert table["subtree"].tolist() == inconsistent["subtree"].head(SUBTREE_ROWS).tolist()
        assert table["n_inconsistent"].is_monotonic_decreasing
    finally:
        studio.close()
