"""The studio's persistent state: projects, taxonomy versions with undo, images, labels, runs.

A `Workspace` is a folder holding `hiertune.sqlite` and, per project,
`projects/<id>/images/` (image files named by their SHA-256, so a picture is stored once
per project) and `projects/<id>/runs/<run id>/` (what a training run writes).

Why it is shaped this way:

- Every taxonomy edit stores the whole tree (`Taxonomy.to_dict()`) as a new version, and
  the labels it changes are rewritten in the same transaction, each with its previous
  value kept beside the version. `undo` therefore restores the tree and every label
  exactly, including after a merge or a delete.
- SQLite in WAL mode with one connection per thread: the Gradio server's threads read
  while the training worker writes progress. Every write runs inside
  `BEGIN IMMEDIATE ... COMMIT`, so a read-modify-write (an edit reading the current tree)
  cannot interleave with another writer, and an exception anywhere inside it rolls the
  whole change back: a failed edit never loses a label or half-applies.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import shutil
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from hiercore.errors import DataError, HierTuneError, TaxonomyError
from hiercore.taxonomy import ROOT, EditReport, Taxonomy

log = logging.getLogger(__name__)

DB_NAME = "hiertune.sqlite"
SCHEMA_VERSION = 1
DEFAULT_MAX_IMAGE_BYTES = 50 * 1024 * 1024
LABEL_SOURCES = ("human", "model", "import")
RUN_STATES = ("queued", "running", "finished", "failed", "stopped")
INTERRUPTED = "the studio stopped while this run was in progress"
NEVER_STARTED = "the studio stopped before this run started"

_SCHEMA = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE projects (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE COLLATE NOCASE,
    created TEXT NOT NULL,
    updated TEXT NOT NULL
);
-- One row per taxonomy edit, the newest row of a project is its current tree.
CREATE TABLE taxonomy_versions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    taxonomy TEXT NOT NULL,
    description TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE INDEX taxonomy_versions_project ON taxonomy_versions(project_id, id);
CREATE TABLE images (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    added TEXT NOT NULL,
    UNIQUE (project_id, sha256)
);
-- Exactly one row per image, node_id NULL when it is unlabelled.
CREATE TABLE labels (
    image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
    node_id TEXT,
    source TEXT CHECK (source IN ('human', 'model', 'import')),
    updated TEXT NOT NULL
);
CREATE INDEX labels_node ON labels(node_id);
-- The labels a taxonomy version rewrote, with their values before it (for undo).
CREATE TABLE label_changes (
    version_id INTEGER NOT NULL REFERENCES taxonomy_versions(id) ON DELETE CASCADE,
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    old_node TEXT,
    old_source TEXT,
    old_updated TEXT NOT NULL,
    new_node TEXT,
    PRIMARY KEY (version_id, image_id)
);
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    config TEXT NOT NULL,
    state TEXT NOT NULL
        CHECK (state IN ('queued', 'running', 'finished', 'failed', 'stopped')),
    progress TEXT,
    metrics TEXT,
    error TEXT,
    out_dir TEXT,
    created TEXT NOT NULL,
    started TEXT,
    finished TEXT
);
CREATE INDEX runs_project ON runs(project_id, id);
CREATE INDEX runs_state ON runs(state, id);
"""

_RUN_FIELDS = {"name", "config", "state", "progress", "metrics", "error", "out_dir"}
_RUN_FIELDS |= {"started", "finished"}
_JSON_RUN_FIELDS = ("config", "progress", "metrics")
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


class Workspace:
    """A folder with the studio's database and stored image files; safe to share across threads.

    Methods that write take the database's write lock for their whole change, so they
    can be called at the same time from the UI threads and the training worker.
    """

    def __init__(self, root: str | Path, max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.db_path = self.root / DB_NAME
        self.max_image_bytes = max_image_bytes
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._taxonomy_cache: dict[int, tuple[int, Taxonomy]] = {}
        self._closed = False
        self._create_schema()

    # ------------------------------------------------------------------ connection
    def close(self) -> None:
        """Close every thread's connection (the workspace is unusable afterwards)."""
        self._closed = True
        with self._connections_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        if self._closed:
            raise RuntimeError("This workspace has been closed.")
        # isolation_level=None: we issue BEGIN ourselves, so a write's extent is explicit.
        # check_same_thread=False only so that close() may close it; each thread uses its own.
        conn = sqlite3.connect(
            self.db_path, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("PRAGMA synchronous = NORMAL")  # durable against app crashes in WAL
        self._local.conn = conn
        self._local.mode = None
        with self._connections_lock:
            self._connections.append(conn)
        return conn

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; a nested call on the same thread joins the outer one."""
        conn = self._conn()
        if self._local.mode == "write":
            yield conn
            return
        if self._local.mode == "read":
            raise RuntimeError("A write cannot start inside a read transaction.")
        conn.execute("BEGIN IMMEDIATE")
        self._local.mode = "write"
        try:
            yield conn
        except BaseException:
            # Cleared before the rollback: a tree cached from this transaction could carry
            # a version id that the next writer reuses.
            self._taxonomy_cache.clear()
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")
        finally:
            self._local.mode = None

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for several SELECTs (joins a surrounding transaction)."""
        conn = self._conn()
        if self._local.mode is not None:
            yield conn
            return
        conn.execute("BEGIN")
        self._local.mode = "read"
        try:
            yield conn
        finally:
            conn.execute("COMMIT")
            self._local.mode = None

    def _create_schema(self) -> None:
        conn = self._conn()
        conn.execute("PRAGMA journal_mode = WAL")
        with self._write() as conn:
            has_table = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
            ).fetchone()
            if not has_table:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
                return
            version = conn.execute("SELECT version FROM schema_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise HierTuneError(
                f"Workspace {self.root} was written by a newer HierTune "
                f"(schema {version}, this one reads {SCHEMA_VERSION})."
            )

    # ------------------------------------------------------------------ projects
    def create_project(self, name: str) -> int:
        """Create an empty project (empty taxonomy, no images) and return its id."""
        name = _clean_name(name, "project")
        now = utc_now()
        with self._write() as conn:
            self._check_project_name_free(conn, name)
            pid = conn.execute(
                "INSERT INTO projects (name, created, updated) VALUES (?, ?, ?)",
                (name, now, now),
            ).lastrowid
            conn.execute(
                "INSERT INTO taxonomy_versions (project_id, taxonomy, description, created) "
                "VALUES (?, ?, ?, ?)",
                (pid, json.dumps(Taxonomy().to_dict()), "create project", now),
            )
        self.project_dir(pid).joinpath("images").mkdir(parents=True, exist_ok=True)
        return pid

    def list_projects(self) -> pd.DataFrame:
        """All projects, oldest first: id, name, created, updated, images, labelled, runs."""
        with self._read() as conn:
            rows = conn.execute(
                """SELECT p.id, p.name, p.created, p.updated,
                    (SELECT COUNT(*) FROM images i WHERE i.project_id = p.id) AS images,
                    (SELECT COUNT(*) FROM images i JOIN labels l ON l.image_id = i.id
                      WHERE i.project_id = p.id AND l.node_id IS NOT NULL) AS labelled,
                    (SELECT COUNT(*) FROM runs r WHERE r.project_id = p.id) AS runs
                   FROM projects p ORDER BY p.id"""
            ).fetchall()
        columns = ["id", "name", "created", "updated", "images", "labelled", "runs"]
        return pd.DataFrame([tuple(r) for r in rows], columns=columns)

    def get_project(self, project_id: int) -> dict:
        """The project's id, name, created and updated times."""
        with self._read() as conn:
            return dict(self._require_project(conn, project_id))

    def find_project(self, name: str) -> int | None:
        """The id of the project with this name (case-insensitive), or None."""
        row = (
            self._conn()
            .execute("SELECT id FROM projects WHERE name = ?", (name.strip(),))
            .fetchone()
        )
        return None if row is None else row[0]

    def rename_project(self, project_id: int, name: str) -> None:
        """Give a project a new, unused name."""
        name = _clean_name(name, "project")
        with self._write() as conn:
            self._require_project(conn, project_id)
            self._check_project_name_free(conn, name, project_id)
            conn.execute(
                "UPDATE projects SET name = ?, updated = ? WHERE id = ?",
                (name, utc_now(), project_id),
            )

    def delete_project(self, project_id: int) -> None:
        """Delete a project with its taxonomy history, images, labels, runs and files."""
        with self._write() as conn:
            row = self._require_project(conn, project_id)
            busy = conn.execute(
                "SELECT name FROM runs WHERE project_id = ? AND state IN ('queued', 'running')",
                (project_id,),
            ).fetchone()
            if busy:
                raise HierTuneError(
                    f"Project {row['name']!r} has run {busy['name']!r} queued or running; "
                    "stop it before deleting the project."
                )
            conn.execute("DELETE FROM projects WHERE id = ?", (project_id,))
        self._taxonomy_cache.pop(project_id, None)
        # Files go only once the rows are gone, so a failed delete leaves a whole project.
        shutil.rmtree(self.project_dir(project_id), ignore_errors=True)

    def project_dir(self, project_id: int) -> Path:
        """Where a project's files live."""
        return self.root / "projects" / str(int(project_id))

    def _require_project(self, conn: sqlite3.Connection, project_id: int) -> sqlite3.Row:
        row = conn.execute(
            "SELECT id, name, created, updated FROM projects WHERE id = ?", (project_id,)
        ).fetchone()
        if row is None:
            raise HierTuneError(f"There is no project with id {project_id}.")
        return row

    def _check_project_name_free(
        self, conn: sqlite3.Connection, name: str, except_id: int | None = None
    ) -> None:
        row = conn.execute("SELECT id FROM projects WHERE name = ?", (name,)).fetchone()
        if row is not None and row[0] != except_id:
            raise HierTuneError(f"A project named {name!r} already exists.")

    def _touch(self, conn: sqlite3.Connection, project_id: int, now: str) -> None:
        conn.execute("UPDATE projects SET updated = ? WHERE id = ?", (now, project_id))

    # ------------------------------------------------------------------ taxonomy
    def taxonomy(self, project_id: int) -> Taxonomy:
        """The project's current taxonomy (a copy: changing it changes nothing stored)."""
        with self._read() as conn:
            self._require_project(conn, project_id)
            return self._current(conn, project_id)[1].copy()

    def _current(self, conn: sqlite3.Connection, project_id: int) -> tuple[int, Taxonomy]:
        """(version id, taxonomy) of the newest version; the cached tree must not be changed."""
        vid = conn.execute(
            "SELECT MAX(id) FROM taxonomy_versions WHERE project_id = ?", (project_id,)
        ).fetchone()[0]
        cached = self._taxonomy_cache.get(project_id)
        if cached is not None and cached[0] == vid:
            return cached
        text = conn.execute("SELECT taxonomy FROM taxonomy_versions WHERE id = ?", (vid,))
        tax = _taxonomy_from_json(text.fetchone()[0])
        # Version ids are never reused (AUTOINCREMENT), so an id names one tree for good.
        self._taxonomy_cache[project_id] = (vid, tax)
        return vid, tax

    def apply_edit(
        self, project_id: int, description: str, edit: Callable[[Taxonomy], EditReport]
    ) -> EditReport:
        """Run `edit` on a copy of the taxonomy and store the result as a new version.

        Labels move as `EditReport.label_moves` says (node -> node, or None: removed) in
        the same transaction as the new version. If `edit` raises, nothing is stored.
        """
        return self._edit(project_id, lambda _: description, edit)

    def _edit(
        self,
        project_id: int,
        describe: Callable[[Taxonomy], str],
        edit: Callable[[Taxonomy], EditReport],
    ) -> EditReport:
        with self._write() as conn:
            self._require_project(conn, project_id)
            _, current = self._current(conn, project_id)
            description = describe(current)
            trial = current.copy()
            report = edit(trial)
            if not isinstance(report, EditReport):
                raise TypeError(f"A taxonomy edit must return an EditReport, not {report!r}.")
            self._store_version(conn, project_id, trial, description, report.label_moves)
        return report

    def _store_version(
        self,
        conn: sqlite3.Connection,
        project_id: int,
        taxonomy: Taxonomy,
        description: str,
        label_moves: dict[str, str | None],
    ) -> int:
        """Insert a taxonomy version and migrate the labels it affects (inside a write)."""
        now = utc_now()
        vid = conn.execute(
            "INSERT INTO taxonomy_versions (project_id, taxonomy, description, created) "
            "VALUES (?, ?, ?, ?)",
            (project_id, json.dumps(taxonomy.to_dict()), description, now),
        ).lastrowid
        labelled = self._labelled_nodes(conn, project_id)
        for node in labelled:
            if node in label_moves:
                dest = label_moves[node]
            elif node in taxonomy:
                continue
            else:
                raise TaxonomyError(
                    f"The edit removed node {node!r} without saying where its "
                    f"{labelled[node]} label(s) go."
                )
            if dest is not None and dest not in taxonomy:
                raise TaxonomyError(f"The edit sends labels to {dest!r}, which is not in the tree.")
            rows = conn.execute(
                "SELECT l.image_id, l.node_id, l.source, l.updated FROM labels l "
                "JOIN images i ON i.id = l.image_id WHERE i.project_id = ? AND l.node_id = ?",
                (project_id, node),
            ).fetchall()
            for row in rows:
                self._move_label(conn, vid, row, dest, now)
        self._touch(conn, project_id, now)
        return vid

    def _move_label(
        self,
        conn: sqlite3.Connection,
        version_id: int,
        old: sqlite3.Row,
        dest: str | None,
        now: str,
    ) -> None:
        conn.execute(
            "INSERT INTO label_changes "
            "(version_id, image_id, old_node, old_source, old_updated, new_node) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (version_id, old["image_id"], old["node_id"], old["source"], old["updated"], dest),
        )
        # A moved label keeps its source: a human label merged elsewhere is still human.
        source = old["source"] if dest is not None else None
        conn.execute(
            "UPDATE labels SET node_id = ?, source = ?, updated = ? WHERE image_id = ?",
            (dest, source, now, old["image_id"]),
        )

    def _labelled_nodes(self, conn: sqlite3.Connection, project_id: int) -> dict[str, int]:
        rows = conn.execute(
            "SELECT l.node_id, COUNT(*) FROM labels l JOIN images i ON i.id = l.image_id "
            "WHERE i.project_id = ? AND l.node_id IS NOT NULL GROUP BY l.node_id",
            (project_id,),
        ).fetchall()
        return {r[0]: r[1] for r in rows}

    def add_node(
        self, project_id: int, name: str, parent: str = ROOT, description: str = ""
    ) -> str:
        """Add a node under `parent` (ROOT for the first level) and return its id."""
        added: list[str] = []

        def edit(tax: Taxonomy) -> EditReport:
            added.append(tax.add(name, parent, description))
            return EditReport("add", list(added))

        def describe(tax: Taxonomy) -> str:
            where = "" if parent == ROOT or parent not in tax else f" under {tax.name(parent)!r}"
            return f"add {name.strip()!r}{where}"

        self._edit(project_id, describe, edit)
        return added[0]

    def rename_node(
        self, project_id: int, node_id: str, name: str, description: str | None = None
    ) -> EditReport:
        """Rename a node (and optionally change its description); labels stay."""
        return self._edit(
            project_id,
            lambda t: f"rename {_name_of(t, node_id)!r} → {name.strip()!r}",
            lambda t: t.rename(node_id, name, description),
        )

    def move_node(self, project_id: int, node_id: str, new_parent: str) -> EditReport:
        """Move a node with its subtree under `new_parent`; labels stay on their nodes."""
        return self._edit(
            project_id,
            lambda t: (
                f"move {_name_of(t, node_id)!r} under "
                + ("the root" if new_parent == ROOT else repr(_name_of(t, new_parent)))
            ),
            lambda t: t.move(node_id, new_parent),
        )

    def merge_nodes(self, project_id: int, source: str, target: str) -> EditReport:
        """Merge `source` into `target`; its labels and children go to `target`."""
        return self._edit(
            project_id,
            lambda t: f"merge {_name_of(t, source)!r} into {_name_of(t, target)!r}",
            lambda t: t.merge(source, target),
        )

    def delete_node(
        self, project_id: int, node_id: str, migrate_to: str | None = "parent"
    ) -> EditReport:
        """Delete a node and its subtree; labels go to `migrate_to` ("parent", a node id, None)."""

        def describe(t: Taxonomy) -> str:
            if migrate_to is None:
                where = "dropping its labels"
            elif migrate_to == "parent":
                where = "labels to its parent"
            else:
                where = f"labels to {_name_of(t, migrate_to)!r}"
            return f"delete {_name_of(t, node_id)!r} ({where})"

        return self._edit(project_id, describe, lambda t: t.delete(node_id, migrate_to))

    def vanished_labels(self, project_id: int, taxonomy: Taxonomy) -> dict[str, int]:
        """Labelled node ids that `set_taxonomy(taxonomy)` would drop, with their label counts."""
        with self._read() as conn:
            self._require_project(conn, project_id)
            return self._import_moves(conn, project_id, taxonomy)[1]

    def _import_moves(
        self, conn: sqlite3.Connection, project_id: int, taxonomy: Taxonomy
    ) -> tuple[dict[str, str], dict[str, int]]:
        """Label moves for replacing the tree: by id first, then by name path; the rest vanish."""
        _, current = self._current(conn, project_id)
        moves: dict[str, str] = {}
        vanished: dict[str, int] = {}
        for node, count in self._labelled_nodes(conn, project_id).items():
            if node in taxonomy:
                continue
            twin = taxonomy.find_by_path(current.path_names(node)) if node in current else None
            if twin is not None:
                moves[node] = twin
            else:
                vanished[node] = count
        return moves, vanished

    def set_taxonomy(
        self,
        project_id: int,
        taxonomy: Taxonomy,
        description: str = "import taxonomy",
        drop_vanished_labels: bool = False,
    ) -> EditReport:
        """Replace the project's taxonomy (an import), keeping labels wherever possible.

        A label stays on its node id if the new tree has it, else moves to the node with
        the same name path. Labels on nodes found neither way vanish: the call refuses
        unless `drop_vanished_labels`, and the report's `affected` lists their nodes.
        """
        with self._write() as conn:
            self._require_project(conn, project_id)
            _, current = self._current(conn, project_id)
            moves, vanished = self._import_moves(conn, project_id, taxonomy)
            if vanished and not drop_vanished_labels:
                names = ", ".join(repr(_name_of(current, n)) for n in sorted(vanished)[:3])
                more = "" if len(vanished) <= 3 else f" and {len(vanished) - 3} more"
                raise TaxonomyError(
                    f"The new taxonomy lacks node(s) {names}{more} that "
                    f"{sum(vanished.values())} image label(s) point at; keep those nodes "
                    "or choose to drop the labels."
                )
            label_moves: dict[str, str | None] = {**moves, **dict.fromkeys(vanished)}
            self._store_version(conn, project_id, taxonomy.copy(), description, label_moves)
        return EditReport("import", sorted(vanished), label_moves)

    def undo(self, project_id: int) -> str | None:
        """Undo the latest taxonomy edit, tree and labels; its description, or None if none.

        Labels the edit rewrote go back to their exact previous value unless they were
        changed again since (a later human label wins). Labels on nodes that exist only
        in the undone version move to their nearest ancestor that survives, or are
        cleared.
        """
        with self._write() as conn:
            self._require_project(conn, project_id)
            rows = conn.execute(
                "SELECT id, description FROM taxonomy_versions WHERE project_id = ? "
                "ORDER BY id DESC LIMIT 2",
                (project_id,),
            ).fetchall()
            if len(rows) < 2:
                return None
            vid, description = rows[0]
            _, undone = self._current(conn, project_id)
            restored = _taxonomy_from_json(
                conn.execute(
                    "SELECT taxonomy FROM taxonomy_versions WHERE id = ?", (rows[1][0],)
                ).fetchone()[0]
            )
            conn.execute(
                """UPDATE labels SET node_id = c.old_node, source = c.old_source,
                       updated = c.old_updated
                   FROM label_changes c
                   WHERE c.version_id = ? AND c.image_id = labels.image_id
                     AND labels.node_id IS c.new_node""",
                (vid,),
            )
            now = utc_now()
            for node in self._labelled_nodes(conn, project_id):
                if node in restored:
                    continue
                ancestors = undone.path(node)[:-1] if node in undone else []
                survivors = [a for a in ancestors if a in restored]
                dest = survivors[-1] if survivors else None
                conn.execute(
                    "UPDATE labels SET node_id = ?, source = CASE WHEN ? IS NULL THEN NULL "
                    "ELSE source END, updated = ? WHERE node_id = ? AND image_id IN "
                    "(SELECT id FROM images WHERE project_id = ?)",
                    (dest, dest, now, node, project_id),
                )
            conn.execute("DELETE FROM taxonomy_versions WHERE id = ?", (vid,))
            self._touch(conn, project_id, now)
        return description

    def history(self, project_id: int) -> list[dict]:
        """The taxonomy versions, oldest first: version, description, created, labels_moved."""
        with self._read() as conn:
            self._require_project(conn, project_id)
            rows = conn.execute(
                """SELECT v.id, v.description, v.created,
                       (SELECT COUNT(*) FROM label_changes c WHERE c.version_id = v.id)
                   FROM taxonomy_versions v WHERE v.project_id = ? ORDER BY v.id""",
                (project_id,),
            ).fetchall()
        keys = ("version", "description", "created", "labels_moved")
        return [dict(zip(keys, tuple(r), strict=True)) for r in rows]

    # ------------------------------------------------------------------ images
    def add_images(
        self,
        project_id: int,
        files: Iterable[tuple[str, bytes | str | Path]],
        node_id: str | None = None,
        source: str = "import",
    ) -> ImageImport:
        """Store images (original name, bytes or a file path), optionally labelled `node_id`.

        Each file must be a readable image no larger than `max_image_bytes`; bad ones are
        listed by name in `rejected` and the good ones are still added. A picture already
        in the project is not stored twice: it is listed in `duplicates` with its id.
        """
        _check_source(source)
        self.get_project(project_id)  # before any file is written for it
        accepted: list[tuple[str, str, str, int, int]] = []  # name, sha, relative path, w, h
        result = ImageImport()
        images_dir = self.project_dir(project_id) / "images"
        written: list[Path] = []
        for name, content in files:
            name = str(name)
            try:
                data = self._read_upload(content)
                fmt, width, height = _inspect_image(data)
            except DataError as exc:
                result.rejected.append((name, str(exc)))
                continue
            sha = hashlib.sha256(data).hexdigest()
            rel = Path("projects", str(int(project_id)), "images", sha + _extension(fmt))
            target = self.root / rel
            if not target.exists():
                # Files are written before the transaction so it stays short; content
                # addressing makes a repeat harmless, and a rollback removes them below.
                images_dir.mkdir(parents=True, exist_ok=True)
                tmp = target.with_suffix(target.suffix + f".{threading.get_ident()}.tmp")
                tmp.write_bytes(data)
                tmp.replace(target)
                written.append(target)
            accepted.append((name, sha, rel.as_posix(), width, height))
        try:
            with self._write() as conn:
                self._require_project(conn, project_id)
                if node_id is not None:
                    self._require_node(conn, project_id, node_id)
                now = utc_now()
                for name, sha, rel, width, height in accepted:
                    old = conn.execute(
                        "SELECT id FROM images WHERE project_id = ? AND sha256 = ?",
                        (project_id, sha),
                    ).fetchone()
                    if old is not None:
                        result.duplicates.append((name, old[0]))
                        continue
                    image_id = conn.execute(
                        "INSERT INTO images (project_id, path, name, sha256, width, height, added)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (project_id, rel, name, sha, width, height, now),
                    ).lastrowid
                    conn.execute(
                        "INSERT INTO labels (image_id, node_id, source, updated) "
                        "VALUES (?, ?, ?, ?)",
                        (image_id, node_id, source if node_id else None, now),
                    )
                    result.added.append(image_id)
                self._touch(conn, project_id, now)
        except BaseException:
            self._remove_unreferenced(written)
            raise
        return result

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
                "SELECT i.id, i.path, i.name, l.node_id, l.source, i.width, i.height, i.added "
                "FROM images i JOIN labels l ON l.image_id = i.id WHERE i.project_id = ? "
                "ORDER BY i.id",
                (project_id,),
            ).fetchall()
        records = [
            {
                "id": r["id"],
                "path": str(self.root / r["path"]),
                "name": r["name"],
                "node_id": r["node_id"],
                "label": " / ".join(tax.path_names(r["node_id"])) if r["node_id"] else "",
                "source": r["source"],
                "width": r["width"],
                "height": r["height"],
                "added": r["added"],
            }
            for r in rows
        ]
        columns = ["id", "path", "name", "node_id", "label", "source", "width", "height", "added"]
        return _frame(records, columns, nullable=("node_id", "source"))

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
                conn.execute(
                    "UPDATE labels SET node_id = ?, source = ?, updated = ? WHERE image_id = ?",
                    (node_id, source if node_id is not None else None, now, image_id),
                )
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
        counts = dict.fromkeys(tax.iter_dfs(), 0)
        for node, n in labelled.items():
            for ancestor in tax.path(node):
                counts[ancestor] += n
        return counts

    def samples(self, project_id: int, labelled_only: bool = True) -> list:
        """The project's images as `hiercore.data.Sample`s (path, node_id), for training."""
        sample_type = _sample_type()
        df = self.images(project_id)
        if labelled_only:
            df = df[df["node_id"].notna()]
        return [sample_type(p, n) for p, n in zip(df["path"], df["node_id"], strict=True)]

    # ------------------------------------------------------------------ runs
    def create_run(self, project_id: int, name: str, config: dict) -> int:
        """Record a new run (state queued) and return its id; its folder is runs/<id>/."""
        name = _clean_name(name, "run")
        with self._write() as conn:
            self._require_project(conn, project_id)
            now = utc_now()
            run_id = conn.execute(
                "INSERT INTO runs (project_id, name, config, state, created) "
                "VALUES (?, ?, ?, 'queued', ?)",
                (project_id, name, _to_json(config), now),
            ).lastrowid
            out = Path("projects", str(int(project_id)), "runs", str(run_id))
            conn.execute("UPDATE runs SET out_dir = ? WHERE id = ?", (out.as_posix(), run_id))
            self._touch(conn, project_id, now)
        return run_id

    def update_run(self, run_id: int, **fields: Any) -> None:
        """Change fields of a run: name, config, state, progress, metrics, error, out_dir,
        started, finished (config, progress and metrics are JSON-ready values)."""
        unknown = set(fields) - _RUN_FIELDS
        if unknown:
            raise TypeError(f"update_run got unknown fields {sorted(unknown)}")
        if "state" in fields and fields["state"] not in RUN_STATES:
            raise ValueError(f"Unknown run state {fields['state']!r}.")
        values = {k: _to_json(v) if k in _JSON_RUN_FIELDS else v for k, v in fields.items()}
        if "out_dir" in values and values["out_dir"] is not None:
            values["out_dir"] = str(values["out_dir"])
        if not values:
            return
        sets = ", ".join(f"{k} = ?" for k in values)
        with self._write() as conn:
            cursor = conn.execute(
                f"UPDATE runs SET {sets} WHERE id = ?", [*values.values(), run_id]
            )
            if cursor.rowcount == 0:
                raise HierTuneError(f"There is no run with id {run_id}.")

    def get_run(self, run_id: int) -> dict:
        """A run as a dict; config, progress and metrics decoded, out_dir absolute."""
        row = self._conn().execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise HierTuneError(f"There is no run with id {run_id}.")
        return self._run_record(row)

    def _run_record(self, row: sqlite3.Row) -> dict:
        record = dict(row)
        for key in _JSON_RUN_FIELDS:
            record[key] = None if record[key] is None else json.loads(record[key])
        if record["out_dir"] is not None:
            record["out_dir"] = str(self.root / record["out_dir"])
        return record

    def list_runs(self, project_id: int) -> pd.DataFrame:
        """The project's runs, oldest first, one row each (config/progress/metrics as dicts)."""
        with self._read() as conn:
            self._require_project(conn, project_id)
            rows = conn.execute(
                "SELECT * FROM runs WHERE project_id = ? ORDER BY id", (project_id,)
            ).fetchall()
        columns = ["id", "project_id", "name", "state", "config", "progress", "metrics"]
        columns += ["error", "out_dir", "created", "started", "finished"]
        nullable = ("config", "progress", "metrics", "error", "started", "finished")
        return _frame([self._run_record(r) for r in rows], columns, nullable)

    def queued_runs(self) -> list[int]:
        """Ids of all queued runs in the order they will start."""
        rows = self._conn().execute("SELECT id FROM runs WHERE state = 'queued' ORDER BY id")
        return [r[0] for r in rows.fetchall()]

    def interrupted_runs_to_failed(self) -> list[int]:
        """At start-up: runs a crash left running or queued become failed; their ids.

        No worker survives a restart, so such a run would otherwise show as in progress
        for ever.
        """
        with self._write() as conn:
            now = utc_now()
            ids = []
            for state, message in (("running", INTERRUPTED), ("queued", NEVER_STARTED)):
                rows = conn.execute("SELECT id FROM runs WHERE state = ?", (state,)).fetchall()
                ids += [r[0] for r in rows]
                conn.execute(
                    "UPDATE runs SET state = 'failed', error = ?, finished = ? WHERE state = ?",
                    (message, now, state),
                )
        return sorted(ids)


# ---------------------------------------------------------------------- module helpers
def utc_now() -> str:
    """The current time as the ISO 8601 text stored in the database."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _clean_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise HierTuneError(f"A {what} needs a non-empty name.")
    name = name.strip()
    if len(name) > 200 or "\n" in name:
        raise HierTuneError(f"The {what} name {name[:40]!r}... is too long or has a line break.")
    return name


def _check_source(source: str) -> None:
    if source not in LABEL_SOURCES:
        raise ValueError(f"Label source must be one of {LABEL_SOURCES}, not {source!r}.")


def _name_of(tax: Taxonomy, node_id: str) -> str:
    return tax.name(node_id) if node_id in tax else node_id


def _taxonomy_from_json(text: str) -> Taxonomy:
    data = json.loads(text)
    if not data.get("nodes"):  # a new project's tree is empty, which from_dict refuses
        return Taxonomy(data.get("level_names"))
    return Taxonomy.from_dict(data)


def _inspect_image(data: bytes) -> tuple[str, int, int]:
    """(PIL format, width, height) of a fully decodable image, else DataError."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt, (width, height) = img.format, img.size
            img.load()  # decode every pixel: catches truncated and corrupt files
    except Exception as exc:  # PIL raises many types on bad data; all mean "not an image"
        raise DataError(f"not a readable image ({type(exc).__name__}: {exc})") from None
    return fmt or "PNG", width, height


def _extension(fmt: str) -> str:
    return _EXTENSIONS.get(fmt, "." + fmt.lower())


def _frame(records: list[dict], columns: list[str], nullable: Iterable[str] = ()) -> pd.DataFrame:
    """A DataFrame whose nullable columns keep None (pandas would turn it into NaN)."""
    nullable = set(nullable)
    return pd.DataFrame(
        {
            c: pd.Series([r[c] for r in records], dtype=object if c in nullable else None)
            for c in columns
        },
        columns=columns,
    )


def _json_default(obj: object) -> object:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _to_json(value: object) -> str | None:
    return None if value is None else json.dumps(value, default=_json_default)


def _sample_type() -> type:
    # TODO(lead): hiercore.data.Sample is being written alongside this module; drop the
    # fallback once it has landed.
    try:
        from hiercore.data import Sample
    except ModuleNotFoundError as exc:
        if exc.name != "hiercore.data":
            raise
        return _FallbackSample
    return Sample


@dataclass
class _FallbackSample:
    path: str
    node_id: str | None
    split: str | None = None
    extra: dict = field(default_factory=dict)
