"""Label history, batch relabelling and undo of a batch.

Every write to an image's label is recorded in `label_history` with the value before and
after it, the time and where it came from (`HISTORY_SOURCES`). Writes made by one action
(a batch relabel from a selection, an accepted suggestion) share a `label_batches` row,
and `undo_batch` puts back the labels that batch replaced. Taxonomy edits keep their own
exact undo (`TaxonomyHistory.undo`); the labels they migrate are recorded here too, so an
image's history tells the whole story.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence

from hiercore.errors import DataError, HierTuneError, TaxonomyError
from hiercore.store.database import Database, is_row_id, shown_id, utc_now
from hiercore.taxonomy import Taxonomy

HISTORY_SOURCES = ("user", "import", "suggestion", "batch", "model", "taxonomy", "undo")
"""Where a label write came from: a person labelling one image, an image import, an
accepted taxonomy suggestion, a batch relabel of a selection, the model, a taxonomy edit
migrating labels, or an undo."""
HISTORY_OF_LABEL_SOURCE = {"human": "user", "model": "model", "import": "import"}
"""The history source of a plain write with a given `labels.source`."""


def record_label_write(
    conn: sqlite3.Connection,
    image_id: int,
    old: tuple[str | None, str | None],
    new: tuple[str | None, str | None],
    source: str,
    batch_id: int | None,
    now: str,
) -> None:
    """Add one history row: (node, label source) before and after (inside a write)."""
    if source not in HISTORY_SOURCES:
        raise ValueError(f"History source must be one of {HISTORY_SOURCES}, not {source!r}.")
    conn.execute(
        "INSERT INTO label_history (image_id, old_node, old_source, new_node, new_source, "
        "source, batch_id, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (image_id, old[0], old[1], new[0], new[1], source, batch_id, now),
    )


def write_label(
    conn: sqlite3.Connection,
    image_id: int,
    node_id: str | None,
    label_source: str | None,
    source: str,
    batch_id: int | None,
    now: str,
) -> bool:
    """Set one label and record it; False (and nothing written) when it is unchanged."""
    row = conn.execute(
        "SELECT node_id, source FROM labels WHERE image_id = ?", (image_id,)
    ).fetchone()
    label_source = label_source if node_id is not None else None
    if row is None:
        raise DataError(f"There is no image with id {image_id}.")
    conn.execute(
        "UPDATE labels SET node_id = ?, source = ?, updated = ? WHERE image_id = ?",
        (node_id, label_source, now, image_id),
    )
    if (row[0], row[1]) == (node_id, label_source):
        return False
    record_label_write(
        conn, image_id, (row[0], row[1]), (node_id, label_source), source, batch_id, now
    )
    return True


def resolve_label(tax: Taxonomy, label: str | Sequence[str] | None) -> str | None:
    """A node id from a node id, a name path ('Aves / Corvidae' or a list of names) or a
    partial path (an inner node); None stays None (no label)."""
    if label is None:
        return None
    if isinstance(label, str):
        text = label.strip()
        if text in tax:
            return text
        names = [part.strip() for part in text.split("/")]
    else:
        names = [str(part).strip() for part in label]
    node = tax.find_by_path(names) if names and all(names) else None
    if node is None:
        shown = label if isinstance(label, str) else " / ".join(map(str, label))
        raise TaxonomyError(
            f"The label {shown[:80]!r} is neither a node id nor a name path of the taxonomy."
        )
    return node


class LabelHistory(Database):
    """The label-history part of a `Workspace`: batches, undo and per-image history."""

    def relabel(
        self,
        project_id: int,
        image_ids: Iterable[int],
        label: str | Sequence[str] | None,
        source: str = "batch",
        description: str = "",
    ) -> int:
        """Label several images of a project with one node (id, name path or partial path;
        None clears) as one batch; returns the batch id that `undo_batch` takes."""
        ids = list(dict.fromkeys(int(i) for i in image_ids))
        if not ids:
            raise DataError("Select at least one image to relabel.")
        if source not in HISTORY_SOURCES:
            raise ValueError(f"History source must be one of {HISTORY_SOURCES}, not {source!r}.")
        with self._write() as conn:
            self._require_project(conn, project_id)
            self._require_images(conn, project_id, ids)
            tax = self._current(conn, project_id)[1]
            node = resolve_label(tax, label)
            now = utc_now()
            what = " / ".join(tax.path_names(node)) if node else "no label"
            batch_id = conn.execute(
                "INSERT INTO label_batches (project_id, description, source, created) "
                "VALUES (?, ?, ?, ?)",
                (project_id, description or f"label {len(ids)} image(s) {what}", source, now),
            ).lastrowid
            for image_id in ids:
                write_label(conn, image_id, node, "human", source, batch_id, now)
            self._touch(conn, project_id, now)
        return batch_id

    def undo_batch(self, batch_id: int) -> int:
        """Put back the labels a batch replaced; returns how many labels changed.

        A label changed again since the batch keeps its newer value, and one whose old
        node has left the taxonomy stays as it is; both are left out of the count.
        """
        if not is_row_id(batch_id):
            raise HierTuneError(f"There is no label batch with id {shown_id(batch_id)}.")
        with self._write() as conn:
            batch = conn.execute(
                "SELECT project_id, undone FROM label_batches WHERE id = ?", (batch_id,)
            ).fetchone()
            if batch is None:
                raise HierTuneError(f"There is no label batch with id {batch_id}.")
            if batch["undone"] is not None:
                raise HierTuneError(f"Label batch {batch_id} was already undone.")
            project_id = batch["project_id"]
            tax = self._current(conn, project_id)[1]
            rows = conn.execute(
                "SELECT h.image_id, h.old_node, h.old_source, h.new_node, l.node_id "
                "FROM label_history h JOIN labels l ON l.image_id = h.image_id "
                "WHERE h.batch_id = ? ORDER BY h.id DESC",
                (batch_id,),
            ).fetchall()
            now = utc_now()
            restored = 0
            for row in rows:
                if row["node_id"] != row["new_node"]:
                    continue  # changed again since: the later write wins
                if row["old_node"] is not None and row["old_node"] not in tax:
                    continue
                write_label(
                    conn, row["image_id"], row["old_node"], row["old_source"], "undo", None, now
                )
                restored += 1
            conn.execute("UPDATE label_batches SET undone = ? WHERE id = ?", (now, batch_id))
            self._touch(conn, project_id, now)
        return restored

    def label_batches(self, project_id: int) -> list[dict]:
        """The project's label batches, newest first: id, description, source, created,
        undone (time or None), labels (how many labels it wrote)."""
        with self._read() as conn:
            self._require_project(conn, project_id)
            rows = conn.execute(
                """SELECT b.id, b.description, b.source, b.created, b.undone,
                       (SELECT COUNT(*) FROM label_history h WHERE h.batch_id = b.id) AS labels
                   FROM label_batches b WHERE b.project_id = ? ORDER BY b.id DESC""",
                (project_id,),
            ).fetchall()
        return [dict(r) for r in rows]

    def last_batch(self, project_id: int) -> dict | None:
        """The newest label batch not yet undone, or None."""
        return next((b for b in self.label_batches(project_id) if b["undone"] is None), None)

    def image_project(self, image_id: int) -> int:
        """The id of the project an image belongs to; DataError if there is no such image."""
        row = None
        if is_row_id(image_id):
            row = (
                self._conn()
                .execute("SELECT project_id FROM images WHERE id = ?", (image_id,))
                .fetchone()
            )
        if row is None:
            raise DataError(f"There is no image with id {shown_id(image_id)}.")
        return int(row[0])

    def label_history(self, image_id: int) -> list[dict]:
        """Every recorded write to an image's label, oldest first: old_node, new_node,
        old_label and new_label (name paths; a node since deleted shows its id), source,
        batch_id, created."""
        if not is_row_id(image_id):
            raise DataError(f"There is no image with id {shown_id(image_id)}.")
        with self._read() as conn:
            row = conn.execute("SELECT project_id FROM images WHERE id = ?", (image_id,)).fetchone()
            if row is None:
                raise DataError(f"There is no image with id {image_id}.")
            tax = self._current(conn, row[0])[1]
            rows = conn.execute(
                "SELECT old_node, new_node, source, batch_id, created FROM label_history "
                "WHERE image_id = ? ORDER BY id",
                (image_id,),
            ).fetchall()

        def shown(node: str | None) -> str:
            if node is None:
                return ""
            return " / ".join(tax.path_names(node)) if node in tax else node

        return [
            {**dict(r), "old_label": shown(r["old_node"]), "new_label": shown(r["new_node"])}
            for r in rows
        ]
