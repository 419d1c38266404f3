"""Taxonomy import/export: round trips of random trees, hand-written inputs, located errors."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from taxonomy_strategies import taxonomies

from hiercore.errors import TaxonomyError
from hiercore.taxonomy import ROOT, Taxonomy
from hiercore.taxonomy.formats import (
    FORMATS,
    TEXT_FORMATS,
    detect_format,
    export_taxonomy,
    load_taxonomy,
    path_id,
    read_folder_tree,
    safe_folder_name,
    save_taxonomy,
    write_folder_tree,
)
from hiercore.taxonomy.newick import quote_newick

PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CARRY_DESCRIPTIONS = {"wide_csv", "edge_csv", "labelstudio", "json", "labelstudio_xml"}
CARRY_IDS = {"edge_csv", "labelstudio", "json", "labelstudio_xml"}


def ids_and_parents(tax: Taxonomy) -> list[tuple]:
    return [(n.id, n.name, n.parent, n.description) for n in tax.to_nodes()]


def load_text(text: str, name: str, fmt: str | None = None) -> Taxonomy:
    return load_taxonomy(text.encode("utf-8"), fmt, name=name)


def assert_one_sentence(exc: pytest.ExceptionInfo, *fragments: str) -> None:
    msg = str(exc.value)
    assert "\n" not in msg and msg.endswith("."), msg
    for fragment in fragments:
        assert fragment in msg, (fragment, msg)


# ---------------------------------------------------------------------- round trips
@pytest.mark.parametrize("fmt", TEXT_FORMATS)
@PROPERTY
@given(tax=taxonomies())
def test_text_formats_round_trip(fmt, tax):
    text = export_taxonomy(tax, fmt)
    back = load_text(text, "t", fmt)
    assert back.same_structure(tax, descriptions=fmt in CARRY_DESCRIPTIONS)
    if fmt in CARRY_IDS:
        assert ids_and_parents(back) == ids_and_parents(tax)
    # exporting what was read gives the same text: order and rank names survive too
    assert export_taxonomy(back, fmt) == text
    # and the format is recognised without being told
    suffix = {"newick": ".nwk", "json": ".json", "labelstudio": ".json"}.get(fmt, ".csv")
    suffix = {"text_tree": ".txt", "labelstudio_xml": ".xml"}.get(fmt, suffix)
    guessed = load_text(text, "t" + suffix)
    assert guessed.same_structure(back)


@PROPERTY
@given(tax=taxonomies(with_descriptions=False))
def test_folder_tree_round_trip(tax):
    with tempfile.TemporaryDirectory() as tmp:
        root = save_taxonomy(tax, Path(tmp) / "tree")
        back = load_taxonomy(root)
        assert back.same_structure(tax)
        assert detect_format(root) == "folder"
        # ids come from name paths, so reading the same folder twice agrees
        assert ids_and_parents(read_folder_tree(root)) == ids_and_parents(back)


@PROPERTY
@given(tax=taxonomies(), level_names=st.lists(st.sampled_from(["kingdom", "order", "a b"])))
def test_wide_csv_keeps_rank_names(tax, level_names):
    tax.level_names = level_names
    back = load_text(export_taxonomy(tax, "wide_csv"), "t.csv")
    assert len(back.level_names) == tax.max_depth
    for i, rank in enumerate(back.level_names):
        kept = i < len(level_names) and level_names[i] not in level_names[:i]
        assert rank == (level_names[i] if kept else f"level_{i + 1}")


def test_json_keeps_rank_names(small_taxonomy):
    back = load_text(export_taxonomy(small_taxonomy, "json"), "t.json")
    assert back.level_names == ["class", "family", "genus"]
    assert back.to_dict() == small_taxonomy.to_dict()


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f != "dwc"])  # dwc is read-only
def test_save_and_load_every_format(fmt, small_taxonomy, tmp_path):
    suffix = {"newick": ".nwk", "folder": "", "edge_csv": ".csv", "wide_csv": ".csv"}
    suffix |= {"text_tree": ".txt", "labelstudio_xml": ".xml"}
    path = tmp_path / ("taxonomy" + suffix.get(fmt, ".json"))
    save_taxonomy(small_taxonomy, path, fmt)
    back = load_taxonomy(path, fmt)
    assert back.same_structure(small_taxonomy, descriptions=fmt in CARRY_DESCRIPTIONS)
    assert detect_format(path) == fmt or (fmt, detect_format(path)) == ("labelstudio", "json")


def test_save_picks_the_format_from_the_extension(small_taxonomy, tmp_path):
    save_taxonomy(small_taxonomy, tmp_path / "t.nwk")
    save_taxonomy(small_taxonomy, tmp_path / "labelstudio.json")
    save_taxonomy(small_taxonomy, tmp_path / "t.csv")
    assert (tmp_path / "t.nwk").read_text().startswith("((")
    assert "items" in json.loads((tmp_path / "labelstudio.json").read_text())
    assert (tmp_path / "t.csv").read_text().startswith("class,family,genus,description\n")
    with pytest.raises(TaxonomyError, match=r"t\.xyz"):
        save_taxonomy(small_taxonomy, tmp_path / "t.xyz")


# ---------------------------------------------------------------------- wide CSV
def test_wide_csv_by_hand(small_taxonomy):
    text = export_taxonomy(small_taxonomy, "wide_csv")
    assert text.splitlines() == [
        "class,family,genus,description",
        "Aves,,,birds",
        "Aves,Corvidae,Corvus,crows and ravens",
        "Aves,Corvidae,Pica,",
        "Aves,Laridae,Larus,",
        "Mammalia,Felidae,Felis,",
        "Mammalia,Felidae,Panthera,",
    ]


def test_wide_csv_same_name_under_two_parents_is_two_nodes():
    text = "kingdom,genus\nAnimalia,Morus\nPlantae,Morus\n"
    tax = load_text(text, "t.csv")
    morus = [n for n in tax.iter_dfs() if tax.name(n) == "Morus"]
    assert len(morus) == 2 and tax.parent(morus[0]) != tax.parent(morus[1])
    assert morus[0] == path_id(["Animalia", "Morus"])


def test_wide_csv_ragged_rows_blank_cells_and_inner_descriptions():
    text = (
        "Kingdom,Phylum,Class,Description\n"
        "Animalia,Chordata,Aves,\n"
        "Animalia,,,animals\n"  # an inner node's own row
        "  Fungi ,,, \n"  # a leaf above the last rank; blanks are trimmed
        ",,,\n"  # an empty row is skipped
    )
    tax = load_text(text, "t.csv")
    assert tax.level_names == ["Kingdom", "Phylum", "Class"]
    animalia = tax.find_by_path(["Animalia"])
    assert tax.description(animalia) == "animals"
    assert tax.is_leaf(tax.find_by_path(["Fungi"]))
    assert tax.max_depth == 3 and len(tax) == 4


def test_wide_csv_tab_and_semicolon_delimiters():
    for text in ("a\tb\nx\ty\n", "a;b\nx;y\n"):
        assert load_text(text, "t.csv").find_by_path(["x", "y"]) is not None


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("k,p,g\nA,B,C\nA,,C\n", ["t.csv line 3", "'p' is blank", "'g'"]),
        ("k,p,g\n,B,C\n", ["t.csv line 2", "first rank 'k' is blank"]),
        ("k,p,description\n,,hello\n", ["t.csv line 2", "description but no names"]),
        ("k,p,description\nA,,one\nA,,two\n", ["t.csv line 3", "different description", "line 2"]),
        ("k,k\nA,B\n", ["t.csv line 1", "'k' appears twice"]),
        ("k,,g\nA,B,C\n", ["t.csv line 1", "column 2 has no name"]),
        ("k,p\nA,B,C\n", ["t.csv line 2", "3 cells", "2 columns"]),
        ("k,p\n", ["t.csv", "no taxonomy nodes"]),
        ("", ["t.csv", "empty"]),
        ('k,p\nA,"B\n', ["t.csv line 2"]),
    ],
)
def test_wide_csv_errors_name_the_line(text, fragments):
    with pytest.raises(TaxonomyError) as exc:
        load_text(text, "t.csv", "wide_csv")
    assert_one_sentence(exc, *fragments)


def test_csv_line_numbers_count_multi_line_cells():
    text = 'k,p,description\nA,B,"two\nlines"\nA,,\nC,,x\n,D,\n'
    with pytest.raises(TaxonomyError) as exc:
        load_text(text, "t.csv")
    assert_one_sentence(exc, "t.csv line 6")


# ---------------------------------------------------------------------- edge CSV
def test_edge_csv_keeps_ids_and_accepts_parents_listed_later():
    text = "id,name,parent_id,description\n7,Corvus,3,crows\n3,Corvidae,,\n9,Pica,3,\n"
    tax = load_text(text, "t.csv")
    assert tax.parent("7") == "3" and tax.description("7") == "crows"
    assert tax.children("3") == ["7", "9"]  # file order
    assert tax.level_names == []


def test_edge_csv_accepts_parent_column_and_root_marker():
    tax = load_text("name,id,parent\nA,a,__root__\nB,b,a\n", "t.csv")
    assert tax.path("b") == ["a", "b"]


EDGE_HEADER = "id,name,parent_id,description\n"


@pytest.mark.parametrize(
    ("rows", "fragments"),
    [
        (
            "1,Corvidae,,\n2,Laridae,,\n3,Corvus,1,\n3,Corvus,2,\n",
            [
                "taxonomy.csv line 5",
                "'Corvus' appears under two different parents",
                "('Corvidae' and 'Laridae')",
            ],
        ),
        ("1,A,,\n2,B,5,\n", ["taxonomy.csv line 3", "unknown parent '5'"]),
        (
            "1,A,,\n2,B,3,\n3,C,2,\n",
            ["taxonomy.csv line 3", "'B' is its own ancestor", "B -> C -> B"],
        ),
        ("1,A,1,\n", ["taxonomy.csv line 2", "own ancestor"]),
        ("1,A,,\n2, ,1,\n", ["taxonomy.csv line 3", "empty name"]),
        ("1,A,,\n2,B,1,\n3,B,1,\n", ["taxonomy.csv line 4", "under 'A' are named 'B'", "line 3"]),
        ("1,A,,\n2,A,,\n", ["taxonomy.csv line 3", "at the top level"]),
        ("1,A,,\n1,A,,\n", ["taxonomy.csv line 3", "id '1' appears twice"]),
        (",A,,\n", ["taxonomy.csv line 2", "no id"]),
        ("__root__,A,,\n", ["taxonomy.csv line 2", "reserved"]),
        ("", ["taxonomy.csv", "no taxonomy nodes"]),
    ],
)
def test_edge_csv_errors_name_the_line(rows, fragments):
    with pytest.raises(TaxonomyError) as exc:
        load_text(EDGE_HEADER + rows, "taxonomy.csv")
    assert_one_sentence(exc, *fragments)


def test_edge_csv_needs_its_columns():
    with pytest.raises(TaxonomyError) as exc:
        load_text("id,label,parent_id\n1,A,\n", "t.csv", "edge_csv")
    assert_one_sentence(exc, "t.csv line 1", "id, name and parent_id")


# ---------------------------------------------------------------------- JSON
def test_native_json_errors_name_the_json_path():
    cases = [
        ({"nodes": [{"id": "a", "name": "A"}, {"id": "b"}]}, ["at nodes[1]", '"name"']),
        ({"nodes": [{"id": "a", "name": "A", "parent": "zz"}]}, ["at nodes[0]", "unknown parent"]),
        ({"nodes": [1]}, ["at nodes[0]", "object"]),
        ({"nodes": []}, ["t.json", "no taxonomy nodes"]),
        ({"nodes": [], "level_names": "x"}, ["at level_names"]),
        ({"items": []}, ['"nodes"']),
    ]
    for data, fragments in cases:
        with pytest.raises(TaxonomyError) as exc:
            load_text(json.dumps(data), "t.json", "json")
        assert_one_sentence(exc, "t.json", *fragments)


def test_invalid_json_names_line_and_column():
    with pytest.raises(TaxonomyError) as exc:
        load_text('{"nodes": [\n  {"id": "a",,}\n]}', "t.json")
    assert_one_sentence(exc, "t.json line 2 column")


def test_label_studio_hand_written_forms():
    text = json.dumps(
        [
            {"value": "Eukarya", "hint": "cells with a nucleus", "children": ["Human", "Opossum"]},
            {"value": "Archaea"},
        ]
    )
    tax = load_text(text, "ls.json")
    euk = tax.find_by_path(["Eukarya"])
    assert tax.description(euk) == "cells with a nucleus"
    assert [tax.name(c) for c in tax.children(euk)] == ["Human", "Opossum"]
    assert euk == path_id(["Eukarya"])  # no aliases: ids from name paths


def test_label_studio_aliases_become_ids_only_when_distinct():
    items = {"items": [{"value": "A", "alias": "x", "children": [{"value": "B", "alias": "y"}]}]}
    assert load_text(json.dumps(items), "t.json").path("y") == ["x", "y"]
    items["items"].append({"value": "C", "alias": "y"})
    tax = load_text(json.dumps(items), "t.json")
    assert "y" not in tax and tax.find_by_path(["A", "B"]) == path_id(["A", "B"])


@pytest.mark.parametrize(
    ("data", "fragments"),
    [
        (
            {"items": [{"value": "A", "children": [{"value": "B"}, {"alias": "c"}]}]},
            ["at items[0].children[1]", '"value"'],
        ),
        (
            {"items": [{"value": "A", "children": [{"value": "B"}, {"value": "B"}]}]},
            ["at items[0].children[1]", "'B' appears twice under 'A'", "items[0].children[0]"],
        ),
        ({"items": [{"value": "A", "children": {"value": "B"}}]}, ["at items[0]", '"children"']),
        ({"items": [{"value": "  "}]}, ["at items[0]", "empty name"]),
        ({"items": []}, ["no taxonomy nodes"]),
        ({"things": []}, ['"items"']),
    ],
)
def test_label_studio_errors_name_the_json_path(data, fragments):
    with pytest.raises(TaxonomyError) as exc:
        load_text(json.dumps(data), "ls.json", "labelstudio")
    assert_one_sentence(exc, "ls.json", *fragments)


# ---------------------------------------------------------------------- Newick
def test_newick_hand_written():
    tax = load_text("((a,b)c,d)root;", "t.nwk")
    assert {tuple(tax.path_names(n)) for n in tax.iter_dfs()} == {
        ("c",),
        ("c", "a"),
        ("c", "b"),
        ("d",),
    }
    fancy = """
        ( (Corvus_corax:0.1 , 'Pica pica':2e-1)Corvidae:0.5[&&NHX:S=x],
          'it''s (odd)' )  :0 ;
    """
    tax = load_text(fancy, "t.tree")
    assert tax.find_by_path(["Corvidae", "Corvus corax"]) is not None
    assert tax.find_by_path(["Corvidae", "Pica pica"]) is not None
    assert tax.find_by_path(["it's (odd)"]) is not None
    assert load_text("(a,b)", "t.nwk").find_by_path(["b"]) is not None  # ';' may be missing


def test_newick_quoting():
    assert quote_newick("Corvus") == "Corvus"
    assert quote_newick("Corvus corax") == "'Corvus corax'"
    assert quote_newick("a_b") == "'a_b'"  # bare, the underscore would read as a blank
    assert quote_newick("it's") == "'it''s'"


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("((a,b),d);", ["character 6", "group closed here has no name"]),
        ("((a,)c,d);", ["character 5", "leaf has no name"]),
        ("((a,a)c,d);", ["character 5", "'a' appears twice under 'c'", "character 3"]),
        ("((a,b)c,d", ["character 10", "found the end of the text"]),
        ("((a b)c'x',d);", ["character 8", "expected ',' or ')'", '"\'"']),
        ("('a,b)c;", ["character 2", "never closed with a quote"]),
        ("(a[note,b);", ["character 3", "never closed with ']'"]),
        ("(a:x,b);", ["character 4", "branch length 'x'"]),
        ("(a,b);(c);", ["character 7", "after the end of the tree"]),
        ("a;", ["no nodes below its root"]),
    ],
)
def test_newick_errors_name_the_character(text, fragments):
    with pytest.raises(TaxonomyError) as exc:
        load_text(text, "t.nwk", "newick")
    assert_one_sentence(exc, "t.nwk", *fragments)


# ---------------------------------------------------------------------- folders
def test_safe_folder_names():
    assert safe_folder_name("..") == "_"
    assert safe_folder_name("../etc") == "__etc"
    assert safe_folder_name(".hidden") == "_hidden"
    assert safe_folder_name("a/b\\c") == "a_b_c"
    assert safe_folder_name("tab\there") == "tab_here"
    assert len(safe_folder_name("é" * 300).encode()) <= 200
    for name in ("..", ".", "../x", "/abs", "a/../../b", "\0"):
        cleaned = safe_folder_name(name)
        assert cleaned not in ("", ".", "..") and "/" not in cleaned and "\\" not in cleaned


def test_folder_export_stays_inside_and_keeps_siblings_apart(tmp_path):
    tax = Taxonomy()
    top = tax.add("..")
    tax.add("a/b", top)
    tax.add("a_b", top)
    tax.add("X", top)
    tax.add("x", top)
    root = write_folder_tree(tax, tmp_path / "out")
    made = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
    assert made == ["_", "_/X", "_/a_b", "_/a_b (2)", "_/x (2)"]
    assert all(p.resolve().is_relative_to(root.resolve()) for p in root.rglob("*"))


def test_folder_import_ignores_files_hidden_folders_and_symlinks(tmp_path):
    root = tmp_path / "tree"
    (root / "A" / "B").mkdir(parents=True)
    (root / "A" / "file.txt").write_text("x")
    (root / ".git" / "objects").mkdir(parents=True)
    (root / "C").mkdir()
    (root / "A" / "loop").symlink_to(root, target_is_directory=True)
    tax = load_taxonomy(root)
    assert sorted(tuple(tax.path_names(n)) for n in tax.iter_dfs()) == [("A",), ("A", "B"), ("C",)]


def test_folder_import_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(TaxonomyError, match="no sub-folders"):
        load_taxonomy(tmp_path / "empty")
    with pytest.raises(TaxonomyError, match="no such file"):
        load_taxonomy(tmp_path / "missing.csv")


# ---------------------------------------------------------------------- detection
def test_detection_by_extension_and_content(small_taxonomy, tmp_path):
    texts = {fmt: export_taxonomy(small_taxonomy, fmt) for fmt in TEXT_FORMATS}
    for fmt, text in texts.items():
        got = detect_format(text.encode(), name="upload")
        assert got == fmt, (fmt, got)
    (tmp_path / "t.txt").write_text(texts["newick"])
    assert detect_format(tmp_path / "t.txt") == "newick"
    assert load_taxonomy(tmp_path / "t.txt").same_structure(small_taxonomy, descriptions=False)


def test_loader_input_errors(tmp_path):
    with pytest.raises(TaxonomyError, match="not UTF-8"):
        load_taxonomy(b"a,b\n\xff\xfe\xfa,x\n", name="bad.csv")
    with pytest.raises(TaxonomyError, match="Unknown taxonomy format 'yaml'"):
        load_taxonomy(b"a", "yaml")
    with pytest.raises(TaxonomyError, match="folder tree cannot be read"):
        load_taxonomy(b"a", "folder")
    with pytest.raises(TaxonomyError, match="not a folder tree"):
        (tmp_path / "t.csv").write_text("a\nb\n")
        load_taxonomy(tmp_path / "t.csv", "folder")


def test_utf8_bom_is_accepted():
    tax = load_taxonomy("\ufeffkingdom,genus\nA,B\n".encode(), name="t.csv")
    assert tax.level_names == ["kingdom", "genus"]


def test_root_is_never_a_node(small_taxonomy):
    for fmt in TEXT_FORMATS:
        back = load_text(export_taxonomy(small_taxonomy, fmt), "t", fmt)
        assert ROOT not in back and len(back) == len(small_taxonomy)


# ---------------------------------------------------------------------- issue #9 importers
LS_CONFIG = """<View>
  <Image name="image" value="$image"/>
  <Taxonomy name="taxonomy" toName="image">
    <Choice value="Archaea"/>
    <Choice value="Bacteria" hint="single cells">
      <Choice value="Gram positive"/>
      <Choice value="Gram negative"><Choice value="E. coli &amp; kin"/></Choice>
    </Choice>
  </Taxonomy>
</View>
"""


def paths_of(tax: Taxonomy) -> list[str]:
    return [" / ".join(tax.path_names(n)) for n in tax.iter_dfs()]


def test_label_studio_xml_config_is_read_as_a_tree():
    tax = load_text(LS_CONFIG, "config.xml")
    assert detect_format(LS_CONFIG.encode(), name="upload") == "labelstudio_xml"
    assert paths_of(tax) == [
        "Archaea",
        "Bacteria",
        "Bacteria / Gram positive",
        "Bacteria / Gram negative",
        "Bacteria / Gram negative / E. coli & kin",
    ]
    assert tax.description(tax.find_by_path(["Bacteria"])) == "single cells"
    back = load_text(export_taxonomy(tax, "labelstudio_xml"), "again.xml")
    assert ids_and_parents(back) == ids_and_parents(tax)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("<View><Choices name='c'/></View>", "is XML without a <Taxonomy> tag"),
        ('<!DOCTYPE x [<!ENTITY a "b">]><View><Taxonomy/></View>', "DOCTYPE or entity"),
        ("<View><Taxonomy name='t'></Taxonomy></View>", "has no <Choice> tags"),
        ("<View><Taxonomy><Choice value='a'></Taxonomy></View>", "line 1 column"),
        ("<View><Taxonomy/><Taxonomy/></View>", "has 2 <Taxonomy> tags"),
        ("<View><Taxonomy><Choice/></Taxonomy></View>", 'needs a "value"'),
    ],
)
def test_label_studio_xml_errors_are_one_sentence(text, words):
    with pytest.raises(TaxonomyError) as exc:
        load_text(text, "config.xml")
    assert_one_sentence(exc, "config.xml", words)


@pytest.mark.parametrize("unit", ["\t", "  ", "    "])
def test_indented_text_trees_are_read_with_tabs_or_spaces(unit):
    text = f"Animals\n{unit}Mammals\n{unit * 2}Cat\n{unit * 2}Dog\n\n{unit}Birds\nPlants\n"
    assert detect_format(text.encode(), name="upload") == "text_tree"
    tax = load_text(text, "tree.txt")
    assert paths_of(tax) == [
        "Animals",
        "Animals / Mammals",
        "Animals / Mammals / Cat",
        "Animals / Mammals / Dog",
        "Animals / Birds",
        "Plants",
    ]
    written = export_taxonomy(tax, "text_tree")
    assert load_text(written, "again.txt").same_structure(tax)
    assert export_taxonomy(load_text(written, "again.txt"), "text_tree") == written


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("A\n  B\n   C\n", "line 3: the indentation is not a whole number of 2 spaces"),
        ("A\n\tB\n  C\n", "line 3: the indentation is not a whole number of tabs"),
        ("A\n  B\n      C\n", "line 3: 'C' is indented 2 levels deeper"),
        ("  A\nB\n", "line 1: the first name 'A' is indented"),
    ],
)
def test_text_tree_errors_name_the_line(text, words):
    with pytest.raises(TaxonomyError) as exc:
        load_text(text, "tree.txt")
    assert_one_sentence(exc, "tree.txt", words)


def test_space_separated_pairs_are_refused_not_read_as_one_column():
    with pytest.raises(TaxonomyError) as exc:
        load_text("Animal Mammal\nMammal Cat\nMammal Dog\n", "pairs.csv")
    assert_one_sentence(exc, "pairs.csv looks like 'parent child' pairs separated by spaces")
    # a plain one-column list is still a one-level wide CSV
    assert paths_of(load_text("class\ncat\ndog\n", "list.csv")) == ["cat", "dog"]


def test_darwin_core_taxon_core_is_read_by_its_ids():
    text = (
        "taxonID\tparentNameUsageID\tscientificName\ttaxonRank\ttaxonomicStatus\tdc:references\n"
        "1\t\tAnimalia\tkingdom\taccepted\thttps://example.org/1\n"
        "2\t1\tChordata\tphylum\taccepted\thttps://example.org/2\n"
        "3\t2\tAves\tclass\taccepted\t\n"
        "4\t2\tVertebrata\tphylum\tsynonym\thttps://example.org/4\n"
    )
    assert detect_format(text.encode(), name="taxon.txt") == "dwc"
    tax = load_text(text, "taxon.txt")
    assert paths_of(tax) == ["Animalia", "Animalia / Chordata", "Animalia / Chordata / Aves"]
    assert tax.find_by_path(["Animalia"]) == "1"
    with pytest.raises(TaxonomyError) as exc:
        load_text("taxonID\tscientificName\n1\tAnimalia\n", "taxon.txt")
    assert_one_sentence(exc, "needs the columns taxonID, scientificName and parentNameUsageID")
    with pytest.raises(TaxonomyError, match="read, not written"):
        export_taxonomy(tax, "dwc")
