"""Taxonomy suggestions on a generated run whose defects are known (see curation_project).

The project: A > {a1, a2, a3, p}, B > {b1, b2, b3}, C > {c1, c2}. Image embeddings are a
direction per top-level group plus one per leaf plus noise; text embeddings are what each
node means; logits are scaled cosines of the two, as CLIP computes them. Defects planted:
a1 and a2 look and are named alike (indistinguishable), p looks like a B (planted under
the wrong parent), c1 holds two separated looks, and B's text points nowhere (a poorly
named node). The same generator without the defects is the control.
"""

from __future__ import annotations

import pytest
from curation_project import generated_run

from hiercore.store import Workspace
from hiercore.suggestions import apply_suggestion, taxonomy_suggestions


@pytest.fixture(scope="module")
def found():
    return taxonomy_suggestions(generated_run(defects=True))


@pytest.fixture(scope="module")
def control():
    return taxonomy_suggestions(generated_run(defects=False))


def test_indistinguishable_siblings_top_the_merges(found, control):
    top = found["merge"][0]
    assert set(top.nodes) == {"a1", "a2"}
    assert top.evidence["confusion_mass"] > 0.3 and top.evidence["text_similarity"] > 0.9
    assert top.score > 3 * found["merge"][1].score
    assert top.score > 3 * control["merge"][0].score
    assert top.edit["action"] == "merge" and {top.edit["source"], top.edit["target"]} == {
        "a1",
        "a2",
    }
    assert len(top.images) == 12 and all(k.startswith("img") for k in top.images)


def test_planted_node_tops_the_moves(found, control):
    top = found["move"][0]
    assert top.nodes == ["p", "B"] and top.edit == {"action": "move", "node": "p", "parent": "B"}
    assert top.evidence["similarity_to_target"] > top.evidence["similarity_to_own_parent"]
    assert all(s.score < top.score / 3 for s in found["move"][1:])
    assert all(s.score < top.score / 3 for s in control["move"])


def test_two_looks_top_the_splits_and_the_badly_named_node_the_descriptions(found, control):
    split = found["split"][0]
    assert split.nodes == ["c1"] and sorted(split.evidence["group_sizes"]) == [8, 8]
    groups = [set(g) for g in split.evidence["groups"]]
    c1_rows = list(range(56, 72))  # after the 32 images of A and 24 of B
    odd = {f"img{i}.png" for i in c1_rows[1::2]}
    assert odd in groups
    assert split.score > found["split"][1].score + 0.2
    assert control["split"][0].score < split.score - 0.2
    assert found["describe"][0].nodes == ["B"]


def test_accepting_suggestions_goes_through_undoable_edits(tmp_path, found):
    with Workspace(tmp_path / "ws") as ws:
        pid = ws.create_project("p")
        ws.set_taxonomy(pid, generated_run(defects=True).taxonomy)
        apply_suggestion(ws, pid, found["move"][0].to_dict())
        assert ws.taxonomy(pid).parent("p") == "B"
        apply_suggestion(ws, pid, found["merge"][0])
        assert len({"a1", "a2"} & set(ws.taxonomy(pid).iter_dfs())) == 1
        apply_suggestion(ws, pid, found["split"][0])
        assert ws.taxonomy(pid).children("c1") != []
        apply_suggestion(ws, pid, found["describe"][0])
        assert ws.taxonomy(pid).description("B").startswith("B, such as")
        for _ in range(4):
            assert ws.undo(pid).startswith("suggestion:")
        assert ws.taxonomy(pid).parent("p") == "A" and ws.taxonomy(pid).is_leaf("c1")


def test_accepting_a_split_relabels_its_two_groups(tmp_path):
    from curation_project import finished_run

    from hiercore.run_results import RunResults
    from hiercore.suggestions import RunEvidence

    with Workspace(tmp_path / "ws") as ws:
        pid, run_id, image_ids = finished_run(ws)
        ev = RunEvidence.from_run(RunResults.load(ws.get_run(run_id)["out_dir"]))
        split = taxonomy_suggestions(ev)["split"][0]
        row_of = {path: row for row, path in enumerate(ev.image_keys)}
        groups = [[image_ids[row_of[p]] for p in g] for g in split.evidence["groups"]]
        report = apply_suggestion(ws, pid, split, groups)
        labels = ws.images(pid).set_index("id")["node_id"]
        for child, ids in zip(report.affected, groups, strict=True):
            assert ws.taxonomy(pid).parent(child) == "c1"
            assert set(labels[ids]) == {child}
        assert ws.label_history(groups[0][0])[-1]["source"] == "suggestion"
        ws.undo(pid)  # the children go; their labels fall back to the leaf
        assert set(ws.images(pid).set_index("id")["node_id"][groups[0] + groups[1]]) == {"c1"}


def test_an_accepted_suggestion_is_named_by_its_nodes_names_in_the_history(tmp_path):
    # demo nodes have generated ids: the history and the undo message showed those
    from hiercore.taxonomy import Taxonomy

    tax = Taxonomy()
    hands = tax.add("hands")
    open_, partial = tax.add("open", hands), tax.add("partial", hands)
    merge = {"edit": {"action": "merge", "source": partial, "target": open_}}
    with Workspace(tmp_path / "ws") as ws:
        pid = ws.create_project("p")
        ws.set_taxonomy(pid, tax)
        apply_suggestion(ws, pid, merge)
        assert ws.history(pid)[-1]["description"] == "suggestion: merge 'partial' into 'open'"
        assert ws.undo(pid) == "suggestion: merge 'partial' into 'open'"
