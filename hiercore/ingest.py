"""Importing uploaded files into a project: images, zips and CSV manifests, with their labels.

What a user drops on the studio is a mix: loose image files, a zip (of class folders, of
images with a manifest, or of loose images) and CSV manifests (`path`, one column per
level, see `hiercore.data.samples_from_manifest`). `import_files` sorts them out:

- a zip is unpacked with `hiercore.data.extract_zip_safely` (absolute and '..' entries,
  symlinks and zip bombs are refused); a manifest inside it labels its images, else
  class folders do (`samples_from_folder_tree`), else its images come in unlabelled;
- a manifest may only name files of the same upload: its paths are looked up, without
  touching the disk, among the files unpacked from its zip by relative path, then among
  all uploaded files by file name (a browser upload loses the folders). Absolute paths
  and paths that climb out of the upload ('..') are refused row by row, so a manifest
  cannot make the server read, copy or even stat a file that was not uploaded (the CLI's
  `samples_from_manifest` reads local paths; it is not reached from here);
- labels are name paths, mapped onto the project's taxonomy; paths it lacks are added
  to it in one undoable edit, or refused when `add_missing_nodes` is off;
- a manifest's `split` column pins its images to the train or val side of every run;
- loose images get `label` (a node id) or none.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath

from hiercore.data import (
    DEFAULT_ZIP_LIMIT,
    is_image_file,
    samples_from_folder_tree,
    samples_from_manifest,
)
from hiercore.errors import DataError
from hiercore.store import Workspace
from hiercore.taxonomy import Taxonomy

MAX_MANIFEST_ROWS = 200_000
"""Rows one uploaded manifest may have (as many as a zip may hold entries)."""
MAX_REFUSAL_EXAMPLES = 20
"""Refused files listed by name in an `ImportSummary`; the rest are only counted."""


@dataclass
class ImportSummary:
    """What `import_files` did."""

    added: int = 0
    duplicates: int = 0
    labelled: int = 0
    """Added images that came with a label."""
    nodes_added: int = 0
    """Taxonomy nodes created for labels the taxonomy lacked."""
    refused: int = 0
    """How many files or manifest rows were not imported."""
    reasons: dict[str, int] = field(default_factory=dict)
    """How many were refused for each reason (the reason without its file and line)."""
    rejected: list[tuple[str, str]] = field(default_factory=list)
    """(file, why) of the first `MAX_REFUSAL_EXAMPLES` refusals, in order."""

    def refuse(self, name: str, why: str, reason: str | None = None) -> None:
        """Count a refusal under `reason` (default: `why` without its line or details)."""
        self.refused += 1
        key = reason or _reason_of(why)
        self.reasons[key] = self.reasons.get(key, 0) + 1
        if len(self.rejected) < MAX_REFUSAL_EXAMPLES:
            self.rejected.append((name, why))

    def sentence(self) -> str:
        parts = [f"Imported {self.added} image(s) ({self.labelled} labelled)"]
        if self.duplicates:
            parts.append(f"{self.duplicates} already in the project")
        if self.nodes_added:
            parts.append(f"{self.nodes_added} node(s) added to the taxonomy")
        if self.refused:
            parts.append(self.refusals())
        return "; ".join(parts) + "."

    def refusals(self) -> str:
        """'N refused (first file: why and N-1 more)'; file names only, never folders."""
        name, why = self.rejected[0]
        more = f" and {self.refused - 1} more" if self.refused > 1 else ""
        text = f"{self.refused} refused ({Path(name).name}: {why}{more})"
        if len(self.reasons) > 1:
            counts = sorted(self.reasons.items(), key=lambda kv: (-kv[1], kv[0]))
            text += ", by reason: " + ", ".join(f"{n} {r}" for r, n in counts[:5])
            if len(counts) > 5:
                text += f" and {len(counts) - 5} other reason(s)"
        return text


def _reason_of(why: str) -> str:
    """A refusal without its manifest line, details in brackets or image size."""
    why = re.sub(r" in .+? line \d+", "", why)
    why = re.sub(r"\d+x\d+ pixels", "its size", why)
    return why.split(" (", 1)[0]


@dataclass
class _Labelled:
    """Samples with labels as name paths (None: unlabelled), before mapping to the project."""

    path: str
    names: tuple[str, ...] | None
    split: str | None = None
    """'train' or 'val' when a manifest's split column pins the image to one side."""


def import_files(
    workspace: Workspace,
    project_id: int,
    files: list[str | os.PathLike],
    label: str | None = None,
    add_missing_nodes: bool = True,
    max_unpacked_bytes: int = DEFAULT_ZIP_LIMIT,
) -> ImportSummary:
    """Import uploaded files (images, zips, CSV manifests) into a project; see module doc.

    All the zips of one call together may unpack to `max_unpacked_bytes`; what they
    unpack lives in a temp folder that is removed when the call returns or fails.
    """
    if not files:
        raise DataError("Choose some images, a zip or a CSV manifest to import.")
    summary = ImportSummary()
    budget = max_unpacked_bytes
    with tempfile.TemporaryDirectory(prefix="hiertune-import-") as tmp:
        upload = _Upload()
        manifests: list[tuple[Path, Path | None]] = []  # (manifest, root of its zip)
        folder_sets: list[_Labelled] = []
        for i, f in enumerate(files):
            path = Path(f)
            suffix = path.suffix.lower()
            if suffix == ".zip":
                root = Path(tmp) / f"zip{i}"
                extracted = _unpack(path, root, budget, max_unpacked_bytes)
                budget -= sum(p.stat().st_size for p in extracted)
                inner = [p for p in extracted if p.suffix.lower() == ".csv"]
                if inner:
                    manifests.extend((m, root) for m in inner)
                    for p in extracted:  # resolved by the manifests below
                        if is_image_file(p):
                            upload.add(p, root)
                else:
                    top = content_root(root, workspace.taxonomy(project_id))
                    folder_sets.extend(_zip_samples(top, extracted))
            elif suffix in (".csv", ".tsv"):
                manifests.append((path, None))
            elif is_image_file(path):
                upload.add(path, None)
            else:
                summary.refuse(path.name, "not an image, a zip or a CSV manifest")
        listed: list[_Labelled] = []
        claimed: set[Path] = set()
        for manifest, root in manifests:
            listed.extend(_manifest_samples(manifest, root, upload, claimed, summary))
        free = [_Labelled(str(p), None) for p in upload.files if p not in claimed]
        samples = listed + folder_sets
        _store(workspace, project_id, samples, free, label, add_missing_nodes, summary)
    return summary


def _unpack(
    zip_path: Path, dest: Path, budget: int = DEFAULT_ZIP_LIMIT, limit: int = DEFAULT_ZIP_LIMIT
) -> list[Path]:
    """Unpack a zip into `dest` within `budget` bytes (what is left of `limit` for the
    whole import)."""
    from hiercore.data import extract_zip_safely, size_text

    if budget >= limit:
        return extract_zip_safely(zip_path, dest, max_total_bytes=limit)
    note = f"what is left of the {size_text(limit)} limit for one import"
    if budget <= 0:
        raise DataError(f"{zip_path.name} does not fit: the upload's other zips used {note}.")
    return extract_zip_safely(zip_path, dest, max_total_bytes=budget, limit_note=note)


def content_root(root: Path, taxonomy: Taxonomy | None = None) -> Path:
    """An unpacked zip's content root: a lone top folder (how most zip tools pack) is
    skipped, unless it is named like a node of `taxonomy`: a zip of one branch
    (`Angular/hexagon/...`) keeps its top class."""
    entries = [e for e in root.iterdir() if not e.name.startswith(".") and e.name != "__MACOSX"]
    if len(entries) == 1 and entries[0].is_dir():
        names = {taxonomy.name(n) for n in taxonomy.iter_dfs()} if taxonomy is not None else set()
        if entries[0].name not in names:
            return entries[0]
    return root


def taxonomy_from_upload(file: str | os.PathLike) -> Taxonomy:
    """A taxonomy from an uploaded file (any format of `load_taxonomy`); a zip is read as a
    tree of class folders."""
    from hiercore.taxonomy.formats import load_taxonomy

    path = Path(file)
    if path.suffix.lower() != ".zip":
        return load_taxonomy(path)
    with tempfile.TemporaryDirectory(prefix="hiertune-taxonomy-") as tmp:
        _unpack(path, Path(tmp))
        return load_taxonomy(content_root(Path(tmp)), name=path.name)


def _zip_samples(root: Path, extracted: list[Path]) -> list[_Labelled]:
    """Class folders of a zip as labelled samples; a flat zip gives unlabelled ones."""
    images = [p for p in extracted if is_image_file(p)]
    has_folders = any(p.is_dir() for p in root.iterdir())
    if not has_folders:
        return [_Labelled(str(p), None) for p in images]
    tax, samples = samples_from_folder_tree(root)
    return [
        _Labelled(s.path, tuple(tax.path_names(s.node_id)) if s.node_id else None) for s in samples
    ]


class _Upload:
    """The image files of one import, found by name or by path inside their zip.

    Manifest rows are resolved against this index only, never against the disk.
    """

    def __init__(self) -> None:
        self.files: list[Path] = []
        self.by_name: dict[str, list[Path]] = {}
        self.inside: dict[Path, tuple[str, ...]] = {}
        """Path of each unpacked file relative to its zip's root (loose files: its name)."""
        self.by_zip_path: dict[tuple[Path, tuple[str, ...]], Path] = {}

    def add(self, path: Path, zip_root: Path | None) -> None:
        parts = path.relative_to(zip_root).parts if zip_root is not None else (path.name,)
        self.files.append(path)
        self.by_name.setdefault(path.name, []).append(path)
        self.inside[path] = parts
        if zip_root is not None:
            self.by_zip_path[(zip_root, parts)] = path


def _manifest_samples(
    manifest: Path,
    zip_root: Path | None,
    upload: _Upload,
    claimed: set[Path],
    summary: ImportSummary,
) -> list[_Labelled]:
    """Rows of a manifest, each resolved to a file of the same upload (see module doc)."""
    tax, samples = samples_from_manifest(manifest, max_rows=MAX_MANIFEST_ROWS)
    folder = manifest.parent.relative_to(zip_root).parts if zip_root is not None else ()
    out = []
    for s in samples:
        cell = s.extra["path_cell"]
        where = f"{manifest.name} line {s.extra['line']}"
        found, why = _resolve(cell, folder, zip_root, upload, where)
        if found is None:
            summary.refuse(cell, why)
            continue
        claimed.add(found)
        names = tuple(tax.path_names(s.node_id)) if s.node_id else None
        out.append(_Labelled(str(found), names, s.split))
    return out


def _resolve(
    cell: str, folder: tuple[str, ...], zip_root: Path | None, upload: _Upload, where: str
) -> tuple[Path | None, str]:
    """(uploaded file a manifest cell names, '') or (None, why not), by lookups alone."""
    text = cell.replace("\\", "/")
    if text.startswith(("/", "~")) or PureWindowsPath(cell).drive:
        return None, f"an absolute path in {where} (only files uploaded with it can be named)"
    parts = list(folder)
    for part in text.split("/"):
        if part == "..":
            if not parts:
                return None, f"points outside the upload ('..') in {where}"
            parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    if not parts:
        return None, f"not a file name in {where}"
    wanted = tuple(parts)
    if zip_root is not None and (zip_root, wanted) in upload.by_zip_path:
        return upload.by_zip_path[(zip_root, wanted)], ""
    candidates = upload.by_name.get(wanted[-1], [])
    if len(candidates) > 1:
        # several uploads share the file name: take the one whose folders end like the row's
        candidates = [c for c in candidates if _ends_with(upload.inside[c], wanted)]
        if len(candidates) != 1:
            return None, f"listed in {where}, but several uploaded files have that name"
    if not candidates:
        return None, f"listed in {where} but not uploaded"
    return candidates[0], ""


def _ends_with(parts: tuple[str, ...], tail: tuple[str, ...]) -> bool:
    return len(parts) >= len(tail) and parts[-len(tail) :] == tail


def _store(
    workspace: Workspace,
    project_id: int,
    samples: list[_Labelled],
    free: list[_Labelled],
    label: str | None,
    add_missing_nodes: bool,
    summary: ImportSummary,
) -> None:
    """Add the images in one call: label paths the taxonomy lacks become nodes in the same
    transaction, and only for images that were accepted (a refused file adds no node)."""
    if not add_missing_nodes:  # refuse before any file is read
        tax = workspace.taxonomy(project_id)
        missing = sorted({s.names for s in samples if s.names} - _known_paths(tax, samples))
        if missing:
            raise DataError(
                f"The label {' / '.join(missing[0])!r} is not in the taxonomy"
                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                + "; add it, or allow the import to add missing nodes."
            )
    items = [(Path(s.path).name, s.path, s.names or None, s.split) for s in samples]
    items += [(Path(s.path).name, s.path, label, None) for s in free]
    result = workspace.add_labelled_images(
        project_id,
        items,
        add_missing_nodes=add_missing_nodes,
        edit_description="add {n} label path(s) from an image import",
    )
    summary.added += len(result.added)
    summary.labelled += len(result.labelled)
    summary.duplicates += len(result.duplicates)
    summary.nodes_added += len(result.nodes_added)
    for name, why in result.rejected:
        summary.refuse(name, why)


def _known_paths(tax: Taxonomy, samples: list[_Labelled]) -> set[tuple[str, ...]]:
    return {s.names for s in samples if s.names and tax.find_by_path(list(s.names)) is not None}


__all__ = ["ImportSummary", "content_root", "import_files", "taxonomy_from_upload"]
