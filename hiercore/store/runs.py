"""Training runs of a project: configuration, state, live progress and final metrics.

A run is queued, then running, then finished, failed or stopped. Progress and metrics are
JSON in the row, so any page or tab reads the same state (the queue lives in `jobs.py`).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pandas as pd

from hiercore.errors import HierTuneError
from hiercore.store.database import (
    Database,
    clean_name,
    frame,
    is_row_id,
    shown_id,
    to_json,
    utc_now,
)

RUN_STATES = ("queued", "running", "finished", "failed", "stopped")
INTERRUPTED = "the studio stopped while this run was in progress"
NEVER_STARTED = "the studio stopped before this run started"
_RUN_FIELDS = {"name", "config", "state", "progress", "metrics", "error", "out_dir"}
_RUN_FIELDS |= {"started", "finished"}
_JSON_RUN_FIELDS = ("config", "progress", "metrics")


class RunLog(Database):
    """The run part of a `Workspace`."""

    def create_run(self, project_id: int, name: str, config: dict) -> int:
        """Record a new run (state queued) and return its id; its folder is runs/<id>/."""
        name = clean_name(name, "run")
        with self._write() as conn:
            self._require_project(conn, project_id)
            now = utc_now()
            run_id = conn.execute(
                "INSERT INTO runs (project_id, name, config, state, created) "
                "VALUES (?, ?, ?, 'queued', ?)",
                (project_id, name, to_json(config), now),
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
        values = {k: to_json(v) if k in _JSON_RUN_FIELDS else v for k, v in fields.items()}
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
        if not is_row_id(run_id):  # SQLite would raise OverflowError or TypeError
            raise HierTuneError(f"There is no run with id {shown_id(run_id)}.")
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
        return frame([self._run_record(r) for r in rows], columns, nullable)

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
