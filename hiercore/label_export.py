"""Labels exported in formats other tools load: a CSV manifest, a Hugging Face
`imagefolder` dataset and FiftyOne image-classification datasets, one per level.

- CSV manifest (`labels.csv`): one row per image: image_id, name, file_name, label (the
  name path), node_id, one column per level, split, source, tags. Cells that a
  spreadsheet would run as formulas are neutralised (`hiercore.spreadsheet.guard_cell`).
- Hugging Face imagefolder: `train/` and `validation/` folders of images, each with a
  `metadata.jsonl` whose `file_name` names the image beside it and whose other keys are
  the labels (`datasets.load_dataset("imagefolder", data_dir=...)` reads them as
  features). Every split gets the same types, which `datasets` requires: text is always
  a string, "" where a label stops above a level or an image has no tag (with CSV, a
  column empty in one split was read as numbers there and the load failed). JSON keeps
  names exactly as typed; only the CSV manifest, made for spreadsheets, guards formula-like
  cells. An image without a pinned split goes to train.
- FiftyOne (`FiftyOneImageClassificationDataset`): `data/<stem>.<ext>` images and, per
  level, `labels_<level>.json` = {"classes": [...], "labels": {stem: class index or
  null}}; `labels.json` is the deepest level. An image whose label stops above a level
  (a partial label) is null there.

Level columns use the taxonomy's rank names when it has them, else level_1, level_2...;
a class at a level is named by its whole name path, so two nodes with one name under
different parents stay apart.
"""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from pathlib import Path

from hiercore.errors import HierTuneError
from hiercore.spreadsheet import guard_cell
from hiercore.taxonomy import Taxonomy

EXPORT_FORMATS = ("csv", "imagefolder", "fiftyone")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def level_names(tax: Taxonomy) -> list[str]:
    """Column name of each level: the rank names, else level_1, level_2, ..."""
    depth = tax.max_depth
    names = list(tax.level_names[:depth])
    names += [f"level_{k}" for k in range(len(names) + 1, depth + 1)]
    # a rank name must not hide a fixed column
    fixed = {"image_id", "name", "file_name", "label", "node_id", "split", "source", "tags"}
    return [n if n not in fixed else f"level_{k}_{n}" for k, n in enumerate(names, start=1)]


def level_labels(tax: Taxonomy, node_id: str | None) -> list[str | None]:
    """Per level, the name path of the image's node there (None below a partial label)."""
    out: list[str | None] = [None] * tax.max_depth
    if node_id is None:
        return out
    path = tax.path(node_id)
    for k in range(len(path)):
        out[k] = " / ".join(tax.path_names(path[k]))
    return out


def export_rows(workspace, project_id: int) -> tuple[Taxonomy, list[dict]]:
    """(taxonomy, one dict per image) read at one instant: what every format writes."""
    # one read snapshot: a node deleted meanwhile cannot leave a label the tree lacks
    with workspace._read():
        tax = workspace.taxonomy(project_id)
        images = workspace.images(project_id)
        tags = workspace.image_tags(project_id)
    levels = level_names(tax)
    rows = []
    for r in images.itertuples():
        node = r.node_id if isinstance(r.node_id, str) else None
        stem = f"{r.id}-{_UNSAFE.sub('_', Path(r.name).stem)[:60]}"
        row = {
            "image_id": int(r.id),
            "name": r.name,
            "file_name": stem + Path(r.path).suffix,
            "stem": stem,
            "path": r.path,
            "label": r.label,
            "node_id": node or "",
            **dict(zip(levels, level_labels(tax, node), strict=True)),
            "split": r.split if isinstance(r.split, str) else "",
            "source": r.source if isinstance(r.source, str) else "",
            "tags": ";".join(tags.get(int(r.id), [])),
        }
        rows.append(row)
    return tax, rows


def manifest_csv(tax: Taxonomy, rows: list[dict]) -> str:
    """The CSV manifest text (formula-like cells guarded)."""
    columns = ["image_id", "name", "file_name", "label", "node_id", *level_names(tax)]
    columns += ["split", "source", "tags"]
    return _csv(columns, rows)


def _csv(columns: list[str], rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([guard_cell(c) for c in columns])
    for row in rows:
        writer.writerow([guard_cell("" if row[c] is None else row[c]) for c in columns])
    return buf.getvalue()


def _jsonl(columns: list[str], rows: list[dict]) -> str:
    """One JSON object per row; a missing text is "" so that every row has one type."""
    lines = []
    for row in rows:
        out = {c: ("" if row[c] is None else row[c]) for c in columns}
        lines.append(json.dumps(out, ensure_ascii=False))
    return "\n".join(lines) + "\n"


def fiftyone_labels(tax: Taxonomy, rows: list[dict]) -> dict[str, dict]:
    """Level column name -> the FiftyOne labels.json object of that level."""
    out = {}
    for level, column in enumerate(level_names(tax), start=1):
        classes = sorted(
            {" / ".join(tax.path_names(n)) for n in tax.iter_dfs() if tax.depth(n) == level}
        )
        index = {c: i for i, c in enumerate(classes)}
        labels = {r["stem"]: index.get(r[column]) if r[column] else None for r in rows}
        out[column] = {"classes": classes, "labels": labels}
    return out


def export_labels_zip(workspace, project_id: int, fmt: str, dest: str | Path) -> Path:
    """Write the project's labels (and, but for csv, its images) in `fmt` to a zip."""
    if fmt not in EXPORT_FORMATS:
        raise HierTuneError(
            f"Export format must be one of {', '.join(EXPORT_FORMATS)}, not {fmt!r}."
        )
    tax, rows = export_rows(workspace, project_id)
    if len(tax) == 0:
        raise HierTuneError("The project's taxonomy is empty: there are no labels to export.")
    dest = Path(dest)
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        if fmt == "csv":
            zf.writestr("labels.csv", manifest_csv(tax, rows))
        elif fmt == "imagefolder":
            columns = ["file_name", "label", "node_id", *level_names(tax), "image_id", "tags"]
            for split in ("train", "validation"):
                part = [r for r in rows if (r["split"] == "val") == (split == "validation")]
                if not part:
                    continue
                zf.writestr(f"{split}/metadata.jsonl", _jsonl(columns, part))
                for r in part:
                    zf.write(r["path"], f"{split}/{r['file_name']}")
        else:
            per_level = fiftyone_labels(tax, rows)
            for column, labels in per_level.items():
                zf.writestr(f"labels_{column}.json", json.dumps(labels, indent=1))
            zf.writestr("labels.json", json.dumps(list(per_level.values())[-1], indent=1))
            for r in rows:
                zf.write(r["path"], f"data/{r['file_name']}")
    return dest
