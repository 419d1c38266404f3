"""The image library of a project: stored files, their labels, label counts and samples.

Files live under `projects/<id>/images/`, named by their SHA-256, so the same picture is
stored once per project. Each image has exactly one label row: a node id at any depth
(an inner node is a partial label) or NULL, with its source (human, model or import).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from PIL import Image, UnidentifiedImageError

from hiercore.data import Sample
from hiercore.errors import DataError, TaxonomyError
from hiercore.images import MAX_PIXELS, size_problem
from hiercore.store.database import Database, frame, utc_now
from hiercore.store.label_history import (
    HISTORY_OF_LABEL_SOURCE,
    record_label_write,
    write_label,
)
from hiercore.taxonomy import ROOT, EditReport, Taxonomy

DEFAULT_MAX_IMAGE_BYTES = 50 * 1024 * 1024
STAGING = ".staging"
"""Folder of the workspace where an import's files wait for its transaction."""
LABEL_SOURCES = ("human", "model", "import")
_EXTENSIONS = {"JPEG": ".jpg", "TIFF": ".tif"}


@dataclass
class ImageImport:
    """What `Workspace.add_images` did with each file it was given."""

    added: list[int] = field(default_factory=list)
    """Ids of the images stored by this call, in the order given."""
    duplicates: list[tuple[str, int]] = field(default_factory=list)
    """(original name, id of the identical image already in the project)."""
    rejected: list[tuple[str, str]] = field(default_factory=list)
    """(original name, why it was refused)."""
    labelled: list[int] = field(default_factory=list)
    """Ids of the added images that got a label."""
    nodes_added: list[str] = field(default_factory=list)
    """Nodes created for name-path labels the taxonomy lacked (`add_labelled_images`)."""


class ImageLibrary(Database):
    """The image and label part of a `Workspace`."""

    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    """Files larger than this are refused by `add_images`."""

    def add_images(
        self,
        project_id: int,
        files: Iterable[tuple[str, bytes | str | Path]],
        node_id: str | None = None,
        source: str = "import",
        split: str | None = None,
    ) -> ImageImport:
        """Store images (original name, bytes or a file path), optionally labelled `node_id`.

        `split` ('train' or 'val') pins the images to one side of every run's split, as a
        manifest's split column does (the demo validates on a held-out art style); None
        leaves it to the run's stratified split.

        Each file must be a readable image no larger than `max_image_bytes`; bad ones are
        listed by name in `rejected` and the good ones are still added. A picture already
        in the project is not stored twice: it is listed in `duplicates` with its id.
        """
        items = [(name, content, node_id, split) for name, content in files]
        return self.add_labelled_images(project_id, items, source=source)

    def add_labelled_images(
        self,
        project_id: int,
        items: Iterable[tuple[str, bytes | str | Path, str | tuple[str, ...] | None, str | None]],
        source: str = "import",
        add_missing_nodes: bool = True,
        edit_description: str = "add {n} label path(s) from an image import",
    ) -> ImageImport:
        """`add_images` with a label and split per file: (name, content, label, split).

        A label is a node id (str), a name path (tuple: 'Aves', 'Corvidae') or None. Name
        paths the taxonomy lacks are added in one undoable edit, in the same transaction
        as the images and only for files that were accepted, so a refused image never
        leaves a node behind (`ImageImport.nodes_added` lists them); with
        `add_missing_nodes` off a missing path refuses the whole call. `edit_description`
        names the edit in the history; {n} becomes the number of paths added.
        """
        _check_source(source)
        items = [(str(n), c, label, sp) for n, c, label, sp in items]
        for *_, split in items:
            if split not in (None, "train", "val"):
                raise DataError(f"An image split must be 'train' or 'val', not {split!r}.")
        with self._read() as conn:  # before any file is written for it
            self._require_project(conn, project_id)
        accepted: list[tuple] = []  # name, sha, relative path, w, h, label, split
        result = ImageImport()
        images_dir = self.project_dir(project_id) / "images"
        # Files are staged before the transaction so it stays short, and moved into
        # images/ just before it commits (see _publish); a kill at any moment leaves
        # either nothing of the import or all of it, once sweep_staging has run.
        staging = self._new_staging()
        staged: dict[str, Path] = {}  # relative target -> staged file
        written: list[Path] = []
        try:
            for name, content, label, split in items:
                try:
                    data = self._read_upload(content)
                    fmt, width, height = _inspect_image(data)
                except DataError as exc:
                    result.rejected.append((name, str(exc)))
                    continue
                sha = hashlib.sha256(data).hexdigest()
                rel = Path("projects", str(int(project_id)), "images", sha + _extension(fmt))
                if rel.as_posix() not in staged and not (self.root / rel).exists():
                    staged[rel.as_posix()] = staging / rel.name
                    staged[rel.as_posix()].write_bytes(data)
                accepted.append((name, sha, rel.as_posix(), width, height, label, split))
            with self._write() as conn:
                self._require_project(conn, project_id)
                node_of = self._label_nodes(
                    conn, project_id, accepted, add_missing_nodes, edit_description, result
                )
                now = utc_now()
                for name, sha, rel, width, height, label, split in accepted:
                    old = conn.execute(
                        "SELECT id FROM images WHERE project_id = ? AND sha256 = ?",
                        (project_id, sha),
                    ).fetchone()
                    if old is not None:
                        result.duplicates.append((name, old[0]))
                        continue
                    node = node_of[label] if label is not None else None
                    image_id = conn.execute(
                        "INSERT INTO images"
                        " (project_id, path, name, sha256, width, height, added, split)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (project_id, rel, name, sha, width, height, now, split),
                    ).lastrowid
                    conn.execute(
                        "INSERT INTO labels (image_id, node_id, source, updated) "
                        "VALUES (?, ?, ?, ?)",
                        (image_id, node, source if node else None, now),
                    )
                    if node is not None:
                        record_label_write(
                            conn,
                            image_id,
                            (None, None),
                            (node, source),
                            HISTORY_OF_LABEL_SOURCE[source],
                            None,
                            now,
                        )
                    result.added.append(image_id)
                    if node is not None:
                        result.labelled.append(image_id)
                self._touch(conn, project_id, now)
                if staged:
                    images_dir.mkdir(parents=True, exist_ok=True)
                    self._publish(staging, staged, written)
        except BaseException:
            self._remove_unreferenced(written)
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return result

    # ------------------------------------------------------------------ staging
    # An import's files wait in .staging/<pid>-<random>/ (the folder names the process
    # that owns it). Inside the import's write transaction, just before COMMIT, the list
    # of their final paths is written and fsynced to moving.json and the files are moved
    # into images/. If the process dies before COMMIT, those files are in images/ but no
    # row names them: the next Workspace opened on the folder (sweep_staging) deletes the
    # files moving.json lists that no image row references, and the staging folder.

    def _new_staging(self) -> Path:
        base = self.root / STAGING
        base.mkdir(exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=base))

    def _publish(self, staging: Path, staged: dict[str, Path], published: list[Path]) -> None:
        """Move the staged files into place, adding each to `published` as it lands."""
        moving = staging / "moving.json"
        with open(moving, "w") as f:
            json.dump(sorted(staged), f)
            f.flush()
            os.fsync(f.fileno())
        for rel, path in staged.items():
            os.replace(path, self.root / rel)
            published.append(self.root / rel)

    def sweep_staging(self) -> int:
        """Remove what imports killed mid-way left behind: staging folders of processes
        that no longer run, and files they moved into images/ that no row references.
        Returns how many files went."""
        base = self.root / STAGING
        if not base.is_dir():
            return 0
        removed = 0
        for folder in base.iterdir():
            owner = folder.name.split("-", 1)[0]
            if owner.isdigit() and _process_alive(int(owner)):
                continue
            moving = folder / "moving.json"
            targets: list[str] = []
            if moving.is_file():
                try:
                    targets = [str(t) for t in json.loads(moving.read_text())]
                except (OSError, ValueError):
                    targets = []
            for rel in targets:
                path = self.root / rel
                if path.parent.name != "images" or not path.is_file():
                    continue  # only image files of a project, as _publish wrote them
                row = self._conn().execute("SELECT 1 FROM images WHERE path = ?", (rel,))
                if row.fetchone() is None:
                    path.unlink(missing_ok=True)
                    removed += 1
            shutil.rmtree(folder, ignore_errors=True)
        return removed

    def _label_nodes(
        self,
        conn: sqlite3.Connection,
        project_id: int,
        accepted: list[tuple],
        add_missing_nodes: bool,
        description: str,
        result: ImageImport,
    ) -> dict:
        """Node id of every label of the accepted files, adding missing name paths (in the
        caller's write transaction) when allowed."""
        labels = {a[5] for a in accepted if a[5] is not None}
        tax = self._current(conn, project_id)[1]
        for label in labels:
            if isinstance(label, str) and label not in tax:
                raise TaxonomyError(f"Node {label!r} is not in this project's taxonomy.")
        paths = {label for label in labels if isinstance(label, tuple)}
        missing = sorted(p for p in paths if tax.find_by_path(list(p)) is None)
        if missing and not add_missing_nodes:
            raise DataError(
                f"The label {' / '.join(missing[0])!r} is not in the taxonomy"
                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                + "; add it, or allow the import to add missing nodes."
            )
        if missing:
            report = self._edit(  # joins this transaction: nodes and images commit together
                project_id,
                lambda _: description.format(n=len(missing)),
                lambda t: add_name_paths(t, missing),
            )
            result.nodes_added = list(report.affected)
            tax = self._current(conn, project_id)[1]
        return {
            label: label if isinstance(label, str) else tax.find_by_path(list(label))
            for label in labels
        }

    def _read_upload(self, content: bytes | str | Path) -> bytes:
        """The file's bytes, or DataError with the reason (`rejected` pairs it with the name)."""
        limit = f"the {self.max_image_bytes / 1e6:g} MB limit"
        if isinstance(content, bytes | bytearray):
            if len(content) > self.max_image_bytes:
                raise DataError(f"larger than {limit}")
            return bytes(content)
        path = Path(content)
        try:
            if path.stat().st_size > self.max_image_bytes:
                raise DataError(f"larger than {limit}")
            return path.read_bytes()
        except OSError as exc:
            raise DataError(f"cannot be read ({exc.strerror or exc})") from None

    def _remove_unreferenced(self, paths: list[Path]) -> None:
        conn = self._conn()
        for path in paths:
            rel = path.relative_to(self.root).as_posix()
            if conn.execute("SELECT 1 FROM images WHERE path = ?", (rel,)).fetchone() is None:
                path.unlink(missing_ok=True)

    def remove_images(self, project_id: int, image_ids: Iterable[int]) -> int:
        """Delete images of a project with their labels and files; returns how many went."""
        ids = [int(i) for i in image_ids]
        with self._write() as conn:
            self._require_project(conn, project_id)
            paths = []
            for image_id in ids:
                row = conn.execute(
                    "SELECT path FROM images WHERE id = ? AND project_id = ?",
                    (image_id, project_id),
                ).fetchone()
                if row is not None:
                    paths.append(row[0])
                    conn.execute("DELETE FROM images WHERE id = ?", (image_id,))
            self._touch(conn, project_id, utc_now())
        for rel in paths:
            (self.root / rel).unlink(missing_ok=True)
        return len(paths)

    def images(self, project_id: int) -> pd.DataFrame:
        """One row per image: id, path, name, node_id, label (path text), source, width, height."""
        with self._read() as conn:
            self._require_project(conn, project_id)
            _, tax = self._current(conn, project_id)
            rows = conn.execute(
                "SELECT i.id, i.path, i.name, l.node_id, l.source, i.width, i.height, i.added, "
                "i.split "
                "FROM images i JOIN labels l ON l.image_id = i.id WHERE i.project_id = ? "
                "ORDER BY i.id",
                (project_id,),
            ).fetchall()
        labels: dict[str, str] = {}  # one path text per node, not per image (10k leaves)

        def label_of(node: str) -> str:
            if node not in labels:
                labels[node] = " / ".join(tax.path_names(node))
            return labels[node]

        root = str(self.root)  # os.path.join: pathlib cost 0.2 s per 20,000 rows
        records = [
            {
                "id": r["id"],
                "path": os.path.join(root, r["path"]),
                "name": r["name"],
                "node_id": r["node_id"],
                "label": label_of(r["node_id"]) if r["node_id"] else "",
                "source": r["source"],
                "width": r["width"],
                "height": r["height"],
                "added": r["added"],
                "split": r["split"],
            }
            for r in rows
        ]
        columns = [
            "id",
            "path",
            "name",
            "node_id",
            "label",
            "source",
            "width",
            "height",
            "added",
            "split",
        ]
        return frame(records, columns, nullable=("node_id", "source", "split"))

    def set_label(self, image_id: int, node_id: str | None, source: str = "human") -> None:
        """Label one image with a node at any depth (None clears the label)."""
        self.set_labels([(image_id, node_id)], source)

    def set_labels(self, labels: Iterable[tuple[int, str | None]], source: str = "human") -> None:
        """Label several images in one transaction: (image id, node id or None) pairs."""
        _check_source(source)
        pairs = list(labels)
        with self._write() as conn:
            now = utc_now()
            projects = set()
            for image_id, node_id in pairs:
                row = conn.execute(
                    "SELECT project_id FROM images WHERE id = ?", (image_id,)
                ).fetchone()
                if row is None:
                    raise DataError(f"There is no image with id {image_id}.")
                if node_id is not None:
                    # Checked inside the write lock, so a concurrent delete cannot orphan it.
                    self._require_node(conn, row[0], node_id)
                history = HISTORY_OF_LABEL_SOURCE[source]
                write_label(conn, image_id, node_id, source, history, None, now)
                projects.add(row[0])
            for pid in projects:
                self._touch(conn, pid, now)

    def _require_node(self, conn: sqlite3.Connection, project_id: int, node_id: str) -> None:
        if node_id not in self._current(conn, project_id)[1]:
            raise TaxonomyError(f"Node {node_id!r} is not in this project's taxonomy.")

    def label_counts(self, project_id: int) -> dict[str, int]:
        """For every node, the number of images labelled at it or anywhere below it."""
        with self._read() as conn:
            self._require_project(conn, project_id)
            _, tax = self._current(conn, project_id)
            labelled = self._labelled_nodes(conn, project_id)
        return subtree_counts(tax, labelled)

    def exact_label_counts(self, project_id: int) -> dict[str, int]:
        """For every labelled node, the number of images labelled exactly at it."""
        with self._read() as conn:
            self._require_project(conn, project_id)
            return self._labelled_nodes(conn, project_id)

    def training_snapshot(self, project_id: int) -> tuple[Taxonomy, list]:
        """(taxonomy, labelled samples) read at one instant, so that every label is a node
        of that taxonomy even while someone edits it (a training run's input)."""
        with self._read() as conn:
            self._require_project(conn, project_id)
            taxonomy = self._current(conn, project_id)[1].copy()
            return taxonomy, self.samples(project_id)

    def samples(self, project_id: int, labelled_only: bool = True) -> list:
        """The project's images as `hiercore.data.Sample`s (path, node_id), for training."""
        df = self.images(project_id)
        if labelled_only:
            df = df[df["node_id"].notna()]
        return [
            Sample(p, n, s if isinstance(s, str) else None)
            for p, n, s in zip(df["path"], df["node_id"], df["split"], strict=True)
        ]


def _process_alive(pid: int) -> bool:
    """Whether a process with this id runs (this one counts as running)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists but belongs to someone else
        return True
    return True


def _check_source(source: str) -> None:
    if source not in LABEL_SOURCES:
        raise ValueError(f"Label source must be one of {LABEL_SOURCES}, not {source!r}.")


def _inspect_image(data: bytes) -> tuple[str, int, int]:
    """(PIL format, width, height) of a fully decodable image, else DataError."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt, (width, height) = img.format, img.size
            # from the header, before decoding: a small file can still decode to gigabytes
            problem = size_problem(width, height, MAX_PIXELS)
            if problem is not None:
                raise DataError(problem)
            img.load()  # decode every pixel: catches truncated and corrupt files
    except DataError:
        raise
    except Image.DecompressionBombError:
        raise DataError(f"more than the {MAX_PIXELS} pixel limit") from None
    except UnidentifiedImageError:
        raise DataError("not a readable image (not a format Pillow can read)") from None
    except Exception as exc:  # PIL raises many types on bad data; all mean "not an image"
        raise DataError(f"not a readable image ({type(exc).__name__}: {exc})") from None
    return fmt or "PNG", width, height


def _extension(fmt: str) -> str:
    return _EXTENSIONS.get(fmt, "." + fmt.lower())


def add_name_paths(tax: Taxonomy, paths: list[tuple[str, ...]]) -> EditReport:
    """Add every name path (root first) that `tax` lacks; the edit's report lists them."""
    added = []
    for names in paths:
        node = ROOT
        for name in names:
            child = next((c for c in tax.children(node) if tax.name(c) == name), None)
            if child is None:
                child = tax.add(name, node)
                added.append(child)
            node = child
    return EditReport("add", added)


def subtree_counts(tax, exact: dict[str, int]) -> dict[str, int]:
    """For every node of `tax`, the images labelled at it or below, from the counts
    `exact` of images labelled exactly at each node (`exact_label_counts`)."""
    counts = dict.fromkeys(tax.iter_dfs(), 0)
    pred = tax.graph.pred  # direct adjacency: 10k labelled leaves x 7 ranks add up
    for node, n in exact.items():
        while node in counts:
            counts[node] += n
            node = next(iter(pred[node]))
    return counts
