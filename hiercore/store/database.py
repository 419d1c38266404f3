"""The workspace database: schema, per-thread SQLite connections and transactions.

SQLite runs in WAL mode with one connection per thread, so the Gradio server's threads
read while the training worker writes progress. Every write runs inside
`BEGIN IMMEDIATE ... COMMIT`: it takes the write lock before its first read, so a
read-modify-write (an edit reading the current tree) cannot interleave with another
writer, and an exception anywhere inside it rolls the whole change back.

`Database` also holds the few queries every part of the store shares: the project check,
the current taxonomy (cached per version) and the labelled nodes of a project.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from hiercore.errors import DataError, HierTuneError
from hiercore.taxonomy import Taxonomy
from hiercore.taxonomy.delta import apply_deltas

DB_NAME = "hiertune.sqlite"
SCHEMA_VERSION = 5

SCHEMA = (
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    """CREATE TABLE projects (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE COLLATE NOCASE,
        created TEXT NOT NULL,
        updated TEXT NOT NULL
    )""",
    # One row per taxonomy edit; a project's newest row is its current tree, and undo
    # deletes that row. A row holds either the whole tree as JSON (`taxonomy`, delta NULL:
    # a snapshot) or what changed since the previous row (`delta`, taxonomy ''): see
    # hiercore.store.taxonomy_history.
    """CREATE TABLE taxonomy_versions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        taxonomy TEXT NOT NULL,
        description TEXT NOT NULL,
        created TEXT NOT NULL,
        delta TEXT
    )""",
    "CREATE INDEX taxonomy_versions_project ON taxonomy_versions(project_id, id)",
    """CREATE TABLE images (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        path TEXT NOT NULL,
        name TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        added TEXT NOT NULL,
        split TEXT CHECK (split IN ('train', 'val')),  -- NULL: the run's own split decides
        UNIQUE (project_id, sha256)
    )""",
    # Exactly one row per image; node_id is NULL while the image is unlabelled.
    """CREATE TABLE labels (
        image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
        node_id TEXT,
        source TEXT CHECK (source IN ('human', 'model', 'import')),
        updated TEXT NOT NULL
    )""",
    "CREATE INDEX labels_node ON labels(node_id)",
    # The labels a taxonomy version rewrote, with their values before it, for undo.
    """CREATE TABLE label_changes (
        version_id INTEGER NOT NULL REFERENCES taxonomy_versions(id) ON DELETE CASCADE,
        image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        old_node TEXT,
        old_source TEXT,
        old_updated TEXT NOT NULL,
        new_node TEXT,
        PRIMARY KEY (version_id, image_id)
    )""",
    """CREATE TABLE runs (
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
    )""",
    "CREATE INDEX runs_project ON runs(project_id, id)",
    "CREATE INDEX runs_state ON runs(state, id)",
)

# Version 3: the curation loop. IF NOT EXISTS so that the migration of an older file and
# a fresh file run the same statements.
CURATION_SCHEMA = (
    # A group of label writes made by one action (a batch relabel, an accepted suggestion),
    # undone together.
    """CREATE TABLE IF NOT EXISTS label_batches (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        description TEXT NOT NULL,
        source TEXT NOT NULL,
        created TEXT NOT NULL,
        undone TEXT
    )""",
    # Every write to `labels`, with the value before and after it.
    """CREATE TABLE IF NOT EXISTS label_history (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        old_node TEXT,
        old_source TEXT,
        new_node TEXT,
        new_source TEXT,
        source TEXT NOT NULL,
        batch_id INTEGER REFERENCES label_batches(id) ON DELETE SET NULL,
        created TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS label_history_image ON label_history(image_id, id)",
    "CREATE INDEX IF NOT EXISTS label_history_batch ON label_history(batch_id, id)",
    """CREATE TABLE IF NOT EXISTS tags (
        image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        tag TEXT NOT NULL,
        added TEXT NOT NULL,
        PRIMARY KEY (image_id, tag)
    )""",
    # Images a person sent to the review queue by hand (the model's queue is computed).
    """CREATE TABLE IF NOT EXISTS review_requests (
        image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
        reason TEXT NOT NULL,
        added TEXT NOT NULL
    )""",
)
# Version 5: tag and review changes are undoable. An action records exactly the rows it
# added or removed, so that undo puts back what was there and nothing else.
SELECTION_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS selection_actions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ('tag', 'untag', 'review', 'resolve')),
        tag TEXT,
        created TEXT NOT NULL,
        undone TEXT
    )""",
    # a row the action added or removed; `written_by` is the action that had written a
    # removed row (tags and requests carry it in their `action_id`), NULL if none did
    """CREATE TABLE IF NOT EXISTS selection_changes (
        action_id INTEGER NOT NULL REFERENCES selection_actions(id) ON DELETE CASCADE,
        image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        reason TEXT,
        added TEXT NOT NULL,
        written_by INTEGER
    )""",
    "CREATE INDEX IF NOT EXISTS selection_changes_action ON selection_changes(action_id)",
    "CREATE INDEX IF NOT EXISTS selection_actions_project ON selection_actions(project_id, id)",
)
SCHEMA = SCHEMA + CURATION_SCHEMA + SELECTION_SCHEMA


def _add_action_columns(conn) -> None:
    """Tags and review requests name the action that wrote them (schema 5), so that an
    undo deletes a row only while it is the one its action wrote: timestamps alone could
    not tell a tag from the same tag removed and added again within a millisecond."""
    for table in ("tags", "review_requests"):
        columns = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        if "action_id" not in columns:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN action_id INTEGER")


MAX_ROW_ID = 2**63 - 1
"""The largest id SQLite stores; a larger Python int cannot even be looked up."""


def is_row_id(value: object) -> bool:
    """Whether `value` can be a row id (a positive int SQLite can hold)."""
    return (
        isinstance(value, int | np.integer)
        and not isinstance(value, bool)
        and 0 < int(value) <= MAX_ROW_ID
    )


def shown_id(value: object) -> str:
    """An id a user gave, short enough for a sentence."""
    text = str(value)
    return text if len(text) <= 30 else text[:27] + "..."


class Database:
    """The SQLite file of a workspace, shared safely by every thread of the process."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.db_path = self.root / DB_NAME
        self._local = threading.local()
        self._connections: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._connections_lock = threading.Lock()
        self._taxonomy_cache: dict[int, tuple[int, Taxonomy]] = {}
        self._closed = False
        self._create_schema()

    def close(self) -> None:
        """Close every thread's connection (the workspace is unusable afterwards)."""
        self._closed = True
        with self._connections_lock:
            for _, conn in self._connections:
                conn.close()
            self._connections.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ connections
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
            # Threads come and go (server pools): close what the finished ones left open.
            alive = []
            for thread, other in self._connections:
                if thread.is_alive():
                    alive.append((thread, other))
                else:
                    other.close()
            alive.append((threading.current_thread(), conn))
            self._connections = alive
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
            conn.execute("COMMIT")
        except BaseException:
            # Cleared before the rollback: a tree cached inside this transaction carries
            # a version id that the next writer will be given again.
            self._taxonomy_cache.clear()
            if conn.in_transaction:  # SQLite may already have rolled back (disk full)
                conn.execute("ROLLBACK")
            raise
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
            self._local.mode = None
            if conn.in_transaction:
                conn.execute("COMMIT")

    def _create_schema(self) -> None:
        self._conn().execute("PRAGMA journal_mode = WAL")  # persistent: set once per file
        with self._write() as conn:
            has_table = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
            ).fetchone()
            if not has_table:
                for statement in SCHEMA:
                    conn.execute(statement)
                _add_action_columns(conn)
                conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
                return
            version = conn.execute("SELECT version FROM schema_version").fetchone()[0]
            if version == 1:  # version 2 added the pinned train/val split of an image
                conn.execute(
                    "ALTER TABLE images ADD COLUMN split TEXT CHECK (split IN ('train', 'val'))"
                )
                conn.execute("UPDATE schema_version SET version = 2")
                version = 2
            if version == 2:  # version 3 added label history, batches, tags, review requests
                for statement in CURATION_SCHEMA:
                    conn.execute(statement)
                conn.execute("UPDATE schema_version SET version = 3")
                version = 3
            if version == 3:  # version 4 stores taxonomy edits as deltas; old rows are snapshots
                columns = {r[1] for r in conn.execute("PRAGMA table_info(taxonomy_versions)")}
                if "delta" not in columns:
                    conn.execute("ALTER TABLE taxonomy_versions ADD COLUMN delta TEXT")
                conn.execute("UPDATE schema_version SET version = 4")
                version = 4
            if version == 4:  # version 5 records tag and review changes for undo
                for statement in SELECTION_SCHEMA:
                    conn.execute(statement)
                _add_action_columns(conn)
                conn.execute("UPDATE schema_version SET version = 5")
                version = 5
        if version > SCHEMA_VERSION:
            raise HierTuneError(
                f"Workspace {self.root} was written by a newer HierTune "
                f"(schema {version}, this one reads {SCHEMA_VERSION})."
            )

    # ------------------------------------------------------------------ shared queries
    def project_dir(self, project_id: int) -> Path:
        """Where a project's files live."""
        return self.root / "projects" / str(int(project_id))

    def _require_project(self, conn: sqlite3.Connection, project_id: int) -> sqlite3.Row:
        if not is_row_id(project_id):  # SQLite would raise OverflowError or TypeError
            raise HierTuneError(f"There is no project with id {shown_id(project_id)}.")
        row = conn.execute(
            "SELECT id, name, created, updated FROM projects WHERE id = ?", (project_id,)
        ).fetchone()
        if row is None:
            raise HierTuneError(f"There is no project with id {project_id}.")
        return row

    def _require_images(
        self, conn: sqlite3.Connection, project_id: int, image_ids: Iterable[int]
    ) -> None:
        """DataError naming the first id that is no image of the project."""
        for image_id in image_ids:
            ok = (
                is_row_id(image_id)
                and conn.execute(
                    "SELECT 1 FROM images WHERE id = ? AND project_id = ?", (image_id, project_id)
                ).fetchone()
            )
            if not ok:
                raise DataError(f"Image {shown_id(image_id)} is not in this project.")

    def _touch(self, conn: sqlite3.Connection, project_id: int, now: str) -> None:
        conn.execute("UPDATE projects SET updated = ? WHERE id = ?", (now, project_id))

    def _current(self, conn: sqlite3.Connection, project_id: int) -> tuple[int, Taxonomy]:
        """(version id, taxonomy) of the newest version; the cached tree must not be changed."""
        vid = conn.execute(
            "SELECT MAX(id) FROM taxonomy_versions WHERE project_id = ?", (project_id,)
        ).fetchone()[0]
        cached = self._taxonomy_cache.get(project_id)
        if cached is not None and cached[0] == vid:
            return cached
        tax = self._tree_at(conn, project_id, vid)
        # A committed version id names one tree for good (AUTOINCREMENT never reuses it).
        self._taxonomy_cache[project_id] = (vid, tax)
        return vid, tax

    def _tree_at(self, conn: sqlite3.Connection, project_id: int, version_id: int) -> Taxonomy:
        """The tree of one stored version: its latest snapshot with the deltas after it."""
        base_id, text = conn.execute(
            "SELECT id, taxonomy FROM taxonomy_versions WHERE project_id = ? AND id <= ? "
            "AND delta IS NULL ORDER BY id DESC LIMIT 1",
            (project_id, version_id),
        ).fetchone()
        deltas = [
            json.loads(r[0])
            for r in conn.execute(
                "SELECT delta FROM taxonomy_versions WHERE project_id = ? AND id > ? "
                "AND id <= ? ORDER BY id",
                (project_id, base_id, version_id),
            )
        ]
        tax = taxonomy_from_json(text)
        return apply_deltas(tax, deltas) if deltas else tax

    def _labelled_nodes(self, conn: sqlite3.Connection, project_id: int) -> dict[str, int]:
        """Node id -> number of the project's images labelled exactly there."""
        rows = conn.execute(
            "SELECT l.node_id, COUNT(*) FROM labels l JOIN images i ON i.id = l.image_id "
            "WHERE i.project_id = ? AND l.node_id IS NOT NULL GROUP BY l.node_id",
            (project_id,),
        ).fetchall()
        return {r[0]: r[1] for r in rows}


# ---------------------------------------------------------------------- value helpers
def utc_now() -> str:
    """The current time as the ISO 8601 text stored in the database."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def clean_name(name: object, what: str) -> str:
    """A project or run name, stripped; HierTuneError when empty or unreasonable."""
    if not isinstance(name, str) or not name.strip():
        raise HierTuneError(f"A {what} needs a non-empty name.")
    name = name.strip()
    if len(name) > 200 or "\n" in name:
        raise HierTuneError(f"The {what} name {name[:40]!r}... is too long or has a line break.")
    return name


def taxonomy_from_json(text: str) -> Taxonomy:
    data = json.loads(text)
    if not data.get("nodes"):  # a new project's tree is empty, which from_dict refuses
        return Taxonomy(data.get("level_names"))
    return Taxonomy.from_dict(data)


def to_json(value: object) -> str | None:
    """JSON text of a JSON-ready value that may hold numpy numbers or paths (None stays NULL)."""
    return None if value is None else json.dumps(value, default=_json_default)


def _json_default(obj: object) -> object:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def frame(records: list[dict], columns: list[str], nullable: Iterable[str] = ()) -> pd.DataFrame:
    """A DataFrame whose nullable columns keep None (pandas would turn it into NaN)."""
    nullable = set(nullable)
    return pd.DataFrame(
        {
            c: pd.Series([r[c] for r in records], dtype=object if c in nullable else None)
            for c in columns
        },
        columns=columns,
    )
