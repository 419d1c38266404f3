"""Taxonomy import and export: wide CSV, edge CSV, Label Studio JSON, Newick, folders, JSON.

Each format is lossless on its own terms:

- ``wide_csv``: one column per rank (iNaturalist / Darwin Core style), header = rank
  names (`Taxonomy.level_names`), one row per leaf with blank trailing cells for a leaf
  above the last rank. An optional ``description`` column describes the deepest node of
  its row; an inner node with a description gets a row of its own. The same name may
  appear under different parents (ids are derived from name paths).
- ``edge_csv``: columns ``id,name,parent_id,description``, one row per node, a blank
  ``parent_id`` for a first-level node. Carries ids exactly.
- ``labelstudio``: Label Studio's taxonomy JSON ``{"items": [{"value", "alias", "hint",
  "children"}]}``; a bare list of items is accepted too, and so is a plain string as a
  leaf item. Mapping: ``value`` = name, ``hint`` = description (``description`` is read
  as well), ``alias`` = node id. Ids are taken from the aliases when every item has one
  and none repeats (Label Studio then stores our stable ids in its results); otherwise
  ids are derived from name paths.
- ``newick``: see `hiercore.taxonomy.newick` (names and structure only).
- ``folder``: a nested folder tree, one directory per node (names and structure only);
  import ignores files, hidden folders and symlinks; export creates empty directories
  with names made safe by `safe_folder_name`.
- ``json``: the native form, `Taxonomy.to_dict` (ids, names, descriptions, rank names).
- ``labelstudio_xml``: Label Studio's labeling config, a ``<Taxonomy>`` tag with nested
  ``<Choice value="..." alias="..." hint="..."/>`` tags (the same mapping as its JSON).
  A DOCTYPE or entity declaration is refused.
- ``text_tree``: an indented outline, one name per line, each level indented by one
  more unit (a tab, or the 2 or 4 spaces of the first indented line). Names only.
- ``dwc``: a Darwin Core taxon core (``taxon.txt``): ``taxonID``, ``scientificName`` and
  ``parentNameUsageID`` columns (other columns such as ``dc:references`` are ignored;
  rows whose ``taxonomicStatus`` is a synonym are skipped). Import only.

Content that fits no format is refused in one sentence naming what it looks like:
space-separated "parent child" pairs, an XML file without a ``<Taxonomy>`` tag. A
one-column file is read as a one-level wide CSV only when it is a plain list of names.

Malformed input raises `TaxonomyError` with one sentence naming the file and the line
(CSV), character (Newick) or JSON path at fault.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from hiercore.errors import TaxonomyError
from hiercore.spreadsheet import guard_cell, unguard_cell
from hiercore.taxonomy.newick import read_newick, write_newick
from hiercore.taxonomy.pathtree import (
    MAX_DEPTH,
    PathTreeBuilder,
    Record,
    path_id,
    taxonomy_from_records,
)
from hiercore.taxonomy.tree import ROOT, Taxonomy

FORMATS = (
    "wide_csv",
    "edge_csv",
    "labelstudio",
    "newick",
    "folder",
    "json",
    "labelstudio_xml",
    "text_tree",
    "dwc",
)
TEXT_FORMATS = ("wide_csv", "edge_csv", "labelstudio", "newick", "json", "labelstudio_xml")
TEXT_FORMATS += ("text_tree",)

_ALIASES = {
    "csv": "wide_csv",
    "wide": "wide_csv",
    "ranks": "wide_csv",
    "edge": "edge_csv",
    "edges": "edge_csv",
    "label_studio": "labelstudio",
    "label-studio": "labelstudio",
    "ls": "labelstudio",
    "nwk": "newick",
    "tree": "newick",
    "native": "json",
    "dir": "folder",
    "folders": "folder",
    "directory": "folder",
    "xml": "labelstudio_xml",
    "label_studio_xml": "labelstudio_xml",
    "outline": "text_tree",
    "indented": "text_tree",
    "txt": "text_tree",
    "darwin_core": "dwc",
    "darwincore": "dwc",
}
_NEWICK_SUFFIXES = {".nwk", ".newick", ".nw", ".tre", ".tree"}
_DESCRIPTION = "description"
# Rank names a wide CSV header cannot use without being read back as something else.
_RESERVED_RANKS = {_DESCRIPTION, "id", "parent", "parent_id"}

__all__ = [
    "FORMATS",
    "TEXT_FORMATS",
    "detect_format",
    "export_taxonomy",
    "load_taxonomy",
    "path_id",
    "read_dwc",
    "read_edge_csv",
    "read_folder_tree",
    "read_json",
    "read_labelstudio",
    "read_labelstudio_xml",
    "read_newick",
    "read_text_tree",
    "read_wide_csv",
    "safe_folder_name",
    "save_taxonomy",
    "walk_class_folders",
    "write_edge_csv",
    "write_folder_tree",
    "write_json",
    "write_labelstudio",
    "write_labelstudio_xml",
    "write_newick",
    "write_text_tree",
    "write_wide_csv",
]


# ---------------------------------------------------------------------- entry points
def normalise_format(fmt: str) -> str:
    key = fmt.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in FORMATS:
        raise TaxonomyError(f"Unknown taxonomy format {fmt!r}; use one of {', '.join(FORMATS)}.")
    return key


def load_taxonomy(
    source: str | os.PathLike | bytes, fmt: str | None = None, name: str | None = None
) -> Taxonomy:
    """Read a taxonomy from a file, a folder tree or raw bytes (an upload).

    The format is `fmt` when given, else guessed from the extension and the content.
    `name` is how error messages call the input (default: the file name).
    """
    if isinstance(source, bytes | bytearray):
        label = name or "taxonomy"
        text = _decode(bytes(source), label)
        guessed = not fmt
        fmt = normalise_format(fmt) if fmt else _sniff(text, Path(label).suffix.lower())
        if fmt == "folder":
            raise TaxonomyError(f"{label}: a folder tree cannot be read from uploaded bytes.")
        return _read_text(text, fmt, label, guessed=guessed)
    path = Path(source)
    label = name or path.name or str(path)
    if not path.exists():
        raise TaxonomyError(f"{path}: no such file or folder.")
    if path.is_dir():
        if fmt and normalise_format(fmt) != "folder":
            raise TaxonomyError(f"{path} is a folder, not a {fmt} file.")
        return read_folder_tree(path)
    if fmt and normalise_format(fmt) == "folder":
        raise TaxonomyError(f"{path} is a file, not a folder tree.")
    text = _decode(path.read_bytes(), label)
    guessed = not fmt
    fmt = normalise_format(fmt) if fmt else _sniff(text, path.suffix.lower())
    delimiter = "\t" if path.suffix.lower() == ".tsv" else None
    return _read_text(text, fmt, label, delimiter, guessed)


def detect_format(source: str | os.PathLike | bytes, name: str | None = None) -> str:
    """The format `load_taxonomy` would use for `source`."""
    if isinstance(source, bytes | bytearray):
        label = name or "taxonomy"
        return _sniff(_decode(bytes(source), label), Path(label).suffix.lower())
    path = Path(source)
    if path.is_dir():
        return "folder"
    if not path.is_file():
        raise TaxonomyError(f"{path}: no such file or folder.")
    return _sniff(_decode(path.read_bytes(), path.name), path.suffix.lower())


def export_taxonomy(tax: Taxonomy, fmt: str) -> str:
    """The taxonomy as text in one of `TEXT_FORMATS`."""
    fmt = normalise_format(fmt)
    writers = {
        "wide_csv": write_wide_csv,
        "edge_csv": write_edge_csv,
        "labelstudio": write_labelstudio,
        "newick": write_newick,
        "json": write_json,
        "labelstudio_xml": write_labelstudio_xml,
        "text_tree": write_text_tree,
    }
    if fmt == "dwc":
        raise TaxonomyError("Darwin Core is read, not written; export an edge CSV instead.")
    if fmt not in writers:
        raise TaxonomyError("A folder tree is not text; use save_taxonomy with a folder path.")
    return writers[fmt](tax)


def save_taxonomy(tax: Taxonomy, path: str | os.PathLike, fmt: str | None = None) -> Path:
    """Write the taxonomy to `path` in `fmt` and return the path.

    Without `fmt` the extension decides: .csv/.tsv wide CSV, .nwk/.newick/.tre/.tree
    Newick, .json native JSON (Label Studio JSON when the file name contains "label"),
    no extension a folder tree.
    """
    path = Path(path)
    fmt = normalise_format(fmt) if fmt else _format_from_suffix(path)
    if fmt == "folder":
        return write_folder_tree(tax, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(export_taxonomy(tax, fmt))
    return path


def _format_from_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return "wide_csv"
    if suffix == ".json":
        return "labelstudio" if "label" in path.stem.lower() else "json"
    if suffix in _NEWICK_SUFFIXES:
        return "newick"
    if suffix == ".xml":
        return "labelstudio_xml"
    if suffix == ".txt":
        return "text_tree"
    if not suffix or path.is_dir():
        return "folder"
    raise TaxonomyError(
        f"{path.name}: cannot tell the taxonomy format from {suffix!r}; "
        f"choose one of {', '.join(FORMATS)}."
    )


def _decode(data: bytes, label: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TaxonomyError(
            f"{label}: the file is not UTF-8 text (bad byte at offset {exc.start})."
        ) from None


def _sniff(text: str, suffix: str) -> str:
    head = text.lstrip()
    if suffix in _NEWICK_SUFFIXES:
        return "newick"
    if suffix == ".txt":  # an outline, Darwin Core's taxon.txt or a Newick string
        if {"taxonid", "scientificname"} <= _header_names(head):
            return "dwc"
        newick = head.startswith("(") and head.rstrip().endswith(";") and not _is_outline(text)
        return "newick" if newick else "text_tree"
    if suffix == ".json" or head[:1] in ("{", "["):
        try:
            data = _parse_json(text, "")
        except TaxonomyError:
            return "json"  # the reader reports the syntax error (or the depth) in a sentence
        return "json" if isinstance(data, dict) and "nodes" in data else "labelstudio"
    if suffix == ".xml" or head[:1] == "<":
        return "labelstudio_xml"  # the reader names an XML file without <Taxonomy>
    if suffix not in (".csv", ".tsv") and head[:1] == "(":
        return "newick"
    columns = _header_names(head)
    if "id" in columns and ("parent_id" in columns or "parent" in columns):
        return "edge_csv"
    if {"taxonid", "scientificname"} <= columns:
        return "dwc"
    if len(columns) <= 1 and _is_outline(text):
        return "text_tree"
    return "wide_csv"


def _header_names(head: str) -> set[str]:
    """The lower-cased cells of the first line (tab- or comma-separated)."""
    first = head.split("\n", 1)[0]
    header = next(csv.reader(io.StringIO(first), delimiter="\t" if "\t" in first else ","), [])
    return {c.strip().lower() for c in header}


def _is_outline(text: str) -> bool:
    """Whether a one-column text is an indented outline (a line starts with a space or
    tab, the first does not)."""
    lines = [line for line in text.splitlines() if line.strip()]
    return bool(lines) and not lines[0][:1].isspace() and any(x[:1].isspace() for x in lines)


def _check_one_column(text: str, source: str) -> None:
    """Refuse a one-column file whose rows are not plain names (a guessed wide CSV)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) >= 2 and all(len(line.split()) == 2 for line in lines):
        raise TaxonomyError(
            f"{source} looks like 'parent child' pairs separated by spaces, which no format "
            "reads (names may hold spaces): write an edge CSV (id,name,parent_id) or an "
            "indented text tree."
        )


def _read_text(
    text: str, fmt: str, label: str, delimiter: str | None = None, guessed: bool = True
) -> Taxonomy:
    if fmt == "wide_csv":
        if guessed and len(_first_row(text, delimiter)) <= 1:
            _check_one_column(text, label)
        return read_wide_csv(text, label, delimiter)
    if fmt == "labelstudio_xml":
        return read_labelstudio_xml(text, label)
    if fmt == "text_tree":
        return read_text_tree(text, label)
    if fmt == "dwc":
        return read_dwc(text, label, delimiter)
    if fmt == "edge_csv":
        return read_edge_csv(text, label, delimiter)
    if fmt == "labelstudio":
        return read_labelstudio(text, label)
    if fmt == "newick":
        return read_newick(text, label)
    return read_json(text, label)


# ---------------------------------------------------------------------- CSV
def _csv_rows(text: str, source: str, delimiter: str | None) -> Iterator[tuple[int, list[str]]]:
    """(first line number, cells) of every non-blank row, header included."""
    if delimiter is None:
        first = text.split("\n", 1)[0]
        delimiter = "\t" if "\t" in first and "," not in first else ","
        if delimiter == "," and ";" in first and "," not in first:
            delimiter = ";"
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    while True:
        line = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise TaxonomyError(f"{source} line {line}: malformed CSV ({exc}).") from None
        if any(cell.strip() for cell in row):
            yield line, [unguard_cell(cell) for cell in row]


def _header(rows: Iterator[tuple[int, list[str]]], source: str) -> tuple[int, list[str]]:
    try:
        line, header = next(rows)
    except StopIteration:
        raise TaxonomyError(f"{source}: the file is empty.") from None
    return line, [h.strip() for h in header]


def _fit(row: list[str], width: int, source: str, line: int) -> list[str]:
    if len(row) > width and any(c.strip() for c in row[width:]):
        raise TaxonomyError(
            f"{source} line {line}: the row has {len(row)} cells but the header has {width} "
            "columns (quote cells that contain the delimiter)."
        )
    return [c.strip() for c in row[:width]] + [""] * (width - len(row))


def read_wide_csv(
    text: str, source: str = "taxonomy.csv", delimiter: str | None = None
) -> Taxonomy:
    """One column per rank; see the module docstring."""
    rows = _csv_rows(text, source, delimiter)
    head_line, header = _header(rows, source)
    lowered = [h.lower() for h in header]
    desc_col = lowered.index(_DESCRIPTION) if _DESCRIPTION in lowered else None
    rank_cols = [i for i in range(len(header)) if i != desc_col]
    ranks = [header[i] for i in rank_cols]
    if not ranks:
        raise TaxonomyError(f"{source} line {head_line}: the header names no rank columns.")
    for k, rank in enumerate(ranks):
        if not rank:
            raise TaxonomyError(f"{source} line {head_line}: rank column {k + 1} has no name.")
        if rank in ranks[:k]:
            raise TaxonomyError(f"{source} line {head_line}: the rank {rank!r} appears twice.")
    builder = PathTreeBuilder(source)
    for line, raw in rows:
        row = _fit(raw, len(header), source, line)
        cells = [row[i] for i in rank_cols]
        description = row[desc_col] if desc_col is not None else ""
        depth = next((k for k, c in enumerate(cells) if not c), len(cells))
        deeper = next((k for k in range(depth, len(cells)) if cells[k]), None)
        where = f"{source} line {line}"
        if deeper is not None:
            if depth == 0:
                raise TaxonomyError(
                    f"{where}: the first rank {ranks[0]!r} is blank but {ranks[deeper]!r} is "
                    f"filled ({cells[deeper]!r})."
                )
            raise TaxonomyError(
                f"{where}: the rank {ranks[depth]!r} is blank but the deeper rank "
                f"{ranks[deeper]!r} is filled ({cells[deeper]!r})."
            )
        if depth == 0:
            raise TaxonomyError(f"{where}: the row has a description but no names.")
        builder.add_path(cells[:depth], where, description)
    return builder.build(ranks)


def _rank_header(tax: Taxonomy, depth: int) -> list[str]:
    header: list[str] = []
    for i in range(depth):
        rank = tax.level_names[i].strip() if i < len(tax.level_names) else ""
        if not rank or rank.lower() in _RESERVED_RANKS or rank in header:
            rank = f"level_{i + 1}"
        header.append(rank)
    return header


def write_wide_csv(tax: Taxonomy) -> str:
    """Rows for every leaf, plus rows for inner nodes that have a description."""
    depth = tax.max_depth
    with_desc = any(tax.description(n) for n in tax.iter_dfs())
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    header = _rank_header(tax, depth) + ([_DESCRIPTION] if with_desc else [])
    writer.writerow([guard_cell(c) for c in header])
    for node in tax.iter_dfs():
        if tax.is_leaf(node) or tax.description(node):
            names = tax.path_names(node)
            row = names + [""] * (depth - len(names))
            row += [tax.description(node)] if with_desc else []
            writer.writerow([guard_cell(c) for c in row])
    return out.getvalue()


def read_edge_csv(
    text: str, source: str = "taxonomy.csv", delimiter: str | None = None
) -> Taxonomy:
    """Columns id, name, parent_id (or parent) and optionally description."""
    rows = _csv_rows(text, source, delimiter)
    head_line, header = _header(rows, source)
    lowered = [h.lower() for h in header]
    parent_key = "parent_id" if "parent_id" in lowered else "parent"
    missing = [c for c in ("id", "name", parent_key) if c not in lowered]
    if missing:
        raise TaxonomyError(
            f"{source} line {head_line}: the header needs columns id, name and parent_id "
            f"(found {', '.join(header) or 'none'})."
        )
    col = {key: lowered.index(key) for key in ("id", "name", parent_key)}
    desc_col = lowered.index(_DESCRIPTION) if _DESCRIPTION in lowered else None
    records = []
    for line, raw in rows:
        row = _fit(raw, len(header), source, line)
        records.append(
            Record(
                id=row[col["id"]],
                name=row[col["name"]],
                parent=row[col[parent_key]],
                description=row[desc_col] if desc_col is not None else "",
                where=f"{source} line {line}",
            )
        )
    return taxonomy_from_records(records, source, None)


def write_edge_csv(tax: Taxonomy) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["id", "name", "parent_id", _DESCRIPTION])
    for node in tax.to_nodes():
        parent = "" if node.parent == ROOT else node.parent
        row = [node.id, node.name, parent, node.description]
        writer.writerow([guard_cell(c) for c in row])
    return out.getvalue()


def _first_row(text: str, delimiter: str | None) -> list[str]:
    """The cells of the first non-blank row, as the CSV reader would split them."""
    try:
        return next(_csv_rows(text, "", delimiter), (0, []))[1]
    except TaxonomyError:
        return []


# ---------------------------------------------------------------------- Darwin Core
_DWC_SYNONYM = ("synonym", "homotypic", "heterotypic", "misapplied", "doubtful")


def read_dwc(text: str, source: str = "taxon.txt", delimiter: str | None = None) -> Taxonomy:
    """A Darwin Core taxon core: taxonID, scientificName, parentNameUsageID (see module
    docstring); other columns are ignored and synonyms skipped."""
    rows = _csv_rows(text, source, delimiter)
    head_line, header = _header(rows, source)
    lowered = [h.lower() for h in header]
    need = ("taxonid", "scientificname", "parentnameusageid")
    missing = [
        header_name
        for header_name, key in zip(
            ("taxonID", "scientificName", "parentNameUsageID"), need, strict=True
        )
        if key not in lowered
    ]
    if missing:
        raise TaxonomyError(
            f"{source} line {head_line}: a Darwin Core taxon core needs the columns taxonID, "
            f"scientificName and parentNameUsageID ({', '.join(missing)} missing)."
        )
    col = {key: lowered.index(key) for key in need}
    status_col = lowered.index("taxonomicstatus") if "taxonomicstatus" in lowered else None
    records = []
    for line, raw in rows:
        row = _fit(raw, len(header), source, line)
        if status_col is not None and row[status_col].lower().startswith(_DWC_SYNONYM):
            continue
        records.append(
            Record(
                id=row[col["taxonid"]],
                name=row[col["scientificname"]],
                parent=row[col["parentnameusageid"]],
                description="",
                where=f"{source} line {line}",
            )
        )
    return taxonomy_from_records(records, source, None)


# ---------------------------------------------------------------------- text tree
def read_text_tree(text: str, source: str = "taxonomy.txt") -> Taxonomy:
    """An indented outline (see module docstring)."""
    unit: str | None = None
    builder = PathTreeBuilder(source)
    stack: list[str] = []  # node ids of the current line's ancestors
    for line_no, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        where = f"{source} line {line_no}"
        body = raw.lstrip(" \t")
        indent = raw[: len(raw) - len(body)]
        if indent and unit is None:
            unit = "\t" if indent[0] == "\t" else indent
        if unit is not None and indent:
            if indent.replace(unit, "") != "":
                raise TaxonomyError(
                    f"{where}: the indentation is not a whole number of "
                    f"{_unit_name(unit)} (the file's first indent)."
                )
            depth = len(indent) // len(unit)
        else:
            depth = 0
        if depth > len(stack):
            if not stack:
                raise TaxonomyError(f"{where}: the first name {body.strip()!r} is indented.")
            raise TaxonomyError(
                f"{where}: {body.strip()!r} is indented {depth - len(stack) + 1} levels deeper "
                "than the line above (indent one level at a time)."
            )
        del stack[depth:]
        stack.append(builder.child(stack[-1] if stack else ROOT, body.strip(), where))
    if not builder.records:
        raise TaxonomyError(f"{source}: the file is empty.")
    return builder.build()


def _unit_name(unit: str) -> str:
    return "tabs" if unit == "\t" else f"{len(unit)} spaces"


def write_text_tree(tax: Taxonomy) -> str:
    """Two spaces per level; names are written as they are (one per line)."""
    lines = []
    for node in tax.iter_dfs():
        name = tax.name(node)
        if name != name.strip() or "\n" in name or "\r" in name:
            raise TaxonomyError(
                f"The node {name!r} starts or ends with blanks or holds a line break, which "
                "an indented text tree cannot keep; export another format."
            )
        lines.append("  " * (len(tax.path_names(node)) - 1) + name)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- Label Studio XML
def read_labelstudio_xml(text: str, source: str = "config.xml") -> Taxonomy:
    """Label Studio's `<Taxonomy>` tag with nested `<Choice>` tags (see module docstring)."""
    import xml.etree.ElementTree as ET

    if re.search(r"<!(DOCTYPE|ENTITY)", text, re.IGNORECASE):
        raise TaxonomyError(f"{source}: XML with a DOCTYPE or entity declaration is refused.")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        line, column = exc.position
        raise TaxonomyError(f"{source} line {line} column {column + 1}: invalid XML.") from None
    tags = [root] if root.tag == "Taxonomy" else list(root.iter("Taxonomy"))
    if not tags:
        raise TaxonomyError(
            f"{source} is XML without a <Taxonomy> tag (a Label Studio labeling config with "
            "one is read)."
        )
    if len(tags) > 1:
        raise TaxonomyError(f"{source} has {len(tags)} <Taxonomy> tags; keep the one to import.")
    flat: list[tuple[str, str, str, str | None, str]] = []  # at, parent at, name, alias, hint
    stack = [(f"Choice[{i}]", "", c) for i, c in reversed(list(enumerate(_choices(tags[0]))))]
    while stack:
        at, parent_at, item = stack.pop()
        value = item.get("value")
        if not value or not value.strip():
            raise TaxonomyError(f'{source} at {at}: the <Choice> needs a "value".')
        flat.append((at, parent_at, value, item.get("alias"), item.get("hint") or ""))
        kids = _choices(item)
        stack.extend((f"{at}.Choice[{j}]", at, c) for j, c in reversed(list(enumerate(kids))))
    if not flat:
        raise TaxonomyError(f"{source}: the <Taxonomy> tag has no <Choice> tags.")
    return _from_label_studio_items(flat, source)


def _choices(element) -> list:
    return [child for child in element if child.tag == "Choice"]


def write_labelstudio_xml(tax: Taxonomy) -> str:
    """A labeling config for images with the taxonomy as one `<Taxonomy>` tag."""
    from xml.sax.saxutils import quoteattr

    lines = ["<View>", '  <Image name="image" value="$image"/>']
    lines.append('  <Taxonomy name="taxonomy" toName="image">')
    # iterative, so a tree at the depth limit needs no deep recursion
    stack: list[tuple[str, int, bool]] = [(n, 2, False) for n in reversed(tax.children())]
    while stack:
        node, depth, closing = stack.pop()
        pad = "  " * depth
        if closing:
            lines.append(f"{pad}</Choice>")
            continue
        attrs = f"value={quoteattr(tax.name(node))} alias={quoteattr(node)}"
        if tax.description(node):
            attrs += f" hint={quoteattr(tax.description(node))}"
        kids = tax.children(node)
        if not kids:
            lines.append(f"{pad}<Choice {attrs}/>")
            continue
        lines.append(f"{pad}<Choice {attrs}>")
        stack.append((node, depth, True))
        stack.extend((k, depth + 1, False) for k in reversed(kids))
    lines += ["  </Taxonomy>", "</View>"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- JSON
MAX_JSON_NESTING = 4 * MAX_DEPTH + 8
"""Deepest [ / { nesting read: a Label Studio item is two levels ({"children": [...]})."""

_RECURSION_LOCK = threading.Lock()


@contextlib.contextmanager
def _json_room() -> Iterator[None]:
    """Room on Python's stack for json to read or write a tree at the depth limit (the
    parser and the encoder recurse once per nesting level; the default limit is 1000)."""
    with _RECURSION_LOCK:
        old = sys.getrecursionlimit()
        sys.setrecursionlimit(max(old, MAX_JSON_NESTING + 2000))
        try:
            yield
        finally:
            sys.setrecursionlimit(old)


def _json_nesting(text: str) -> int:
    """The deepest [ / { nesting of a JSON text, ignoring brackets inside strings."""
    # strings (with their escapes) blanked out, then a running depth of what is left
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', "", text)
    depth = deepest = 0
    for match in re.finditer(r"[\[\]{}]", bare):
        depth += 1 if match.group() in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def _parse_json(text: str, source: str) -> object:
    try:
        if _json_nesting(text) > MAX_JSON_NESTING:
            raise RecursionError
        with _json_room():
            return json.loads(text)
    except json.JSONDecodeError as exc:
        raise TaxonomyError(
            f"{source} line {exc.lineno} column {exc.colno}: invalid JSON ({exc.msg})."
        ) from None
    except RecursionError:  # Python's parser recurses once per nested [ or {
        raise TaxonomyError(
            f"{source}: the JSON is nested more than {MAX_JSON_NESTING} levels deep (a "
            f"taxonomy may have at most {MAX_DEPTH} levels)."
        ) from None


def read_json(text: str, source: str = "taxonomy.json") -> Taxonomy:
    """The native form written by `write_json` (`Taxonomy.to_dict`)."""
    data = _parse_json(text, source)
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), list):
        raise TaxonomyError(f'{source}: a taxonomy JSON must be an object with a "nodes" list.')
    level_names = data.get("level_names") or []
    if not isinstance(level_names, list) or not all(isinstance(n, str) for n in level_names):
        raise TaxonomyError(f'{source} at level_names: "level_names" must be a list of strings.')
    records = []
    for i, item in enumerate(data["nodes"]):
        where = f"{source} at nodes[{i}]"
        if not isinstance(item, dict):
            raise TaxonomyError(f"{where}: a node must be an object.")
        for key in ("id", "name"):
            if not isinstance(item.get(key), str):
                raise TaxonomyError(f'{where}: the node needs a string "{key}".')
        parent = item.get("parent") or ""
        description = item.get("description") or ""
        if not isinstance(parent, str) or not isinstance(description, str):
            raise TaxonomyError(f'{where}: "parent" and "description" must be strings.')
        records.append(Record(item["id"], item["name"], parent, description, where))
    return taxonomy_from_records(records, source, level_names)


def write_json(tax: Taxonomy) -> str:
    return json.dumps(tax.to_dict(), indent=1, ensure_ascii=False) + "\n"


def read_labelstudio(text: str, source: str = "taxonomy.json") -> Taxonomy:
    """Label Studio taxonomy JSON; see the module docstring for the mapping."""
    data = _parse_json(text, source)
    if isinstance(data, dict) and isinstance(data.get("items"), list):
        items, prefix = data["items"], "items"
    elif isinstance(data, list):
        items, prefix = data, ""
    else:
        raise TaxonomyError(
            f'{source}: expected an object with an "items" list or a list of items.'
        )
    flat: list[tuple[str, str, str, str | None, str]] = []  # where, parent where, name, alias, hint
    stack = [(f"{prefix}[{i}]", "", item) for i, item in reversed(list(enumerate(items)))]
    while stack:
        at, parent_at, item = stack.pop()
        where = f"{source} at {at}"
        if isinstance(item, str):
            item = {"value": item}
        if not isinstance(item, dict):
            raise TaxonomyError(f'{where}: an item must be an object with a "value".')
        value = item.get("value")
        if not isinstance(value, str):
            raise TaxonomyError(f'{where}: the item needs a string "value".')
        hint = item.get("hint", item.get(_DESCRIPTION)) or ""
        alias = item.get("alias")
        if not isinstance(hint, str) or not isinstance(alias, str | None):
            raise TaxonomyError(f'{where}: "alias" and "hint" must be strings.')
        flat.append((at, parent_at, value, alias, hint))
        children = item.get("children") or []
        if not isinstance(children, list):
            raise TaxonomyError(f'{where}: "children" must be a list.')
        stack.extend(
            (f"{at}.children[{j}]", at, child) for j, child in reversed(list(enumerate(children)))
        )
    return _from_label_studio_items(flat, source)


def write_labelstudio(tax: Taxonomy) -> str:
    def item(node: str) -> dict:
        out: dict = {"value": tax.name(node), "alias": node}
        if tax.description(node):
            out["hint"] = tax.description(node)
        kids = tax.children(node)
        if kids:
            out["children"] = [item(k) for k in kids]
        return out

    with _json_room():  # a tree at the depth limit nests 1,000 levels of JSON
        items = [item(n) for n in tax.children()]
        return json.dumps({"items": items}, indent=1, ensure_ascii=False)


# ---------------------------------------------------------------------- folders
def safe_folder_name(name: str) -> str:
    """A directory name for a node: no separators, no '.'/'..', not hidden, not too long."""
    cleaned = "".join("_" if c in "/\\\0" or ord(c) < 32 else c for c in name).strip()
    if cleaned.startswith("."):
        cleaned = "_" + cleaned.lstrip(".")
    cleaned = cleaned.encode("utf-8")[:200].decode("utf-8", "ignore")
    return cleaned or "_"


def walk_class_folders(root: str | os.PathLike) -> Iterator[tuple[tuple[str, ...], Path]]:
    """(name path, folder) for every class folder below `root`, parents first.

    Hidden folders, `__MACOSX` and symlinked folders are skipped; siblings are sorted.
    """
    root = Path(root)
    stack: list[tuple[tuple[str, ...], Path]] = [((), root)]
    while stack:
        names, folder = stack.pop()
        if names:
            yield names, folder
        subs = []
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.startswith(".") or entry.name == "__MACOSX":
                    continue
                if entry.is_dir(follow_symlinks=False):
                    subs.append(entry.name)
        for sub in sorted(subs, reverse=True):
            stack.append(((*names, sub), folder / sub))


def read_folder_tree(root: str | os.PathLike) -> Taxonomy:
    """A taxonomy from directory names; files are ignored."""
    root = Path(root)
    if not root.is_dir():
        raise TaxonomyError(f"{root} is not a folder.")
    builder = PathTreeBuilder(str(root))
    ids: dict[tuple[str, ...], str] = {(): ROOT}
    for names, folder in walk_class_folders(root):
        where = f"folder {folder}"
        ids[names] = builder.child(ids[names[:-1]], names[-1], where, unique=True)
    if len(ids) == 1:
        raise TaxonomyError(f"{root} has no sub-folders to read as classes.")
    return builder.build()


def write_folder_tree(tax: Taxonomy, root: str | os.PathLike) -> Path:
    """Create one empty directory per node under `root` (names via `safe_folder_name`)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    stack = [(ROOT, root)]
    while stack:
        node, folder = stack.pop()
        used: set[str] = set()
        for kid in tax.children(node):
            base = safe_folder_name(tax.name(kid))
            name, k = base, 2
            while name.lower() in used:  # two names that clean to one, or differ in case only
                name, k = f"{base} ({k})", k + 1
            used.add(name.lower())
            (folder / name).mkdir(exist_ok=True)
            stack.append((kid, folder / name))
    return root


def _from_label_studio_items(flat: list[tuple], source: str) -> Taxonomy:
    """A taxonomy from Label Studio items (JSON or XML), each `(at, parent_at, name, alias,
    hint)` in pre-order: when every item carries a distinct alias it is the node's id,
    otherwise ids come from name paths."""
    aliases = [a for _, _, _, a, _ in flat]
    if all(aliases) and len(set(aliases)) == len(aliases):
        alias_at = {at: a for at, _, _, a, _ in flat}
        records = [
            Record(a, name, alias_at.get(parent_at, ""), hint, f"{source} at {at}")
            for at, parent_at, name, a, hint in flat
        ]
        return taxonomy_from_records(records, source, None)
    builder = PathTreeBuilder(source)
    ids: dict[str, str] = {"": ROOT}
    for at, parent_at, name, _, hint in flat:
        ids[at] = builder.child(ids[parent_at], name, f"{source} at {at}", unique=True)
        builder.describe(ids[at], hint, f"{source} at {at}")
    return builder.build()
