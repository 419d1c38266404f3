"""The workspace: a folder with the studio's database, image files and run folders.

`Workspace` is the one object the studio and the training queue share. Its parts live in
their own modules: `database` (schema, connections, transactions), `taxonomy_history`
(edits, import, undo), `images` (files and labels), `label_history` (every label write,
batches and their undo), `selections` (tags, review requests) and `runs`; this module adds the
projects that own all of them.

Layout of the folder::

    hiertune.sqlite                       the database (WAL mode)
    projects/<project id>/images/         image files, named by their SHA-256
    projects/<project id>/runs/<run id>/  what a training run writes
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pandas as pd

from hiercore.errors import HierTuneError
from hiercore.store.database import clean_name, utc_now
from hiercore.store.images import DEFAULT_MAX_IMAGE_BYTES, ImageLibrary
from hiercore.store.label_history import LabelHistory
from hiercore.store.runs import RunLog
from hiercore.store.selections import Selections
from hiercore.store.taxonomy_history import TaxonomyHistory
from hiercore.taxonomy import Taxonomy


class Workspace(TaxonomyHistory, ImageLibrary, LabelHistory, Selections, RunLog):
    """Projects with their taxonomy history, images, labels and runs; safe across threads.

    Every method that writes holds the database's write lock for its whole change, so
    the UI threads and the training worker can call it at the same time, and a failure
    part-way leaves the database as it was.
    """

    def __init__(self, root: str | Path, max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES) -> None:
        super().__init__(root)
        self.max_image_bytes = max_image_bytes
        self.sweep_staging()  # what an import killed mid-way left behind

    def __enter__(self) -> Workspace:
        return self

    def create_project(self, name: str) -> int:
        """Create an empty project (empty taxonomy, no images) and return its id."""
        name = clean_name(name, "project")
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
        name = clean_name(name, "project")
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

    def _check_project_name_free(
        self, conn: sqlite3.Connection, name: str, except_id: int | None = None
    ) -> None:
        row = conn.execute("SELECT id FROM projects WHERE name = ?", (name,)).fetchone()
        if row is not None and row[0] != except_id:
            raise HierTuneError(f"A project named {name!r} already exists.")
