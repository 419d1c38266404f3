"""Taxonomy versions of a project: edits with label migration, import, exact undo.

Every edit stores a new version, and the labels it changes are rewritten in the same
transaction, each with its previous value kept beside the version (`label_changes`).
`undo` therefore restores the tree and every label exactly, including after a merge or a
delete that moved or dropped labels.

A version is stored as a delta against the previous one (`hiercore.taxonomy.delta`: a
rename is one record, not the 1 MB JSON of a 16k-node tree), with a full snapshot
(`Taxonomy.to_dict()`) every `SNAPSHOT_EVERY` versions or when the delta would be large
(an import). Reading any version replays at most that many deltas from its snapshot.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable

from hiercore.errors import TaxonomyError
from hiercore.store.database import Database, utc_now
from hiercore.store.label_history import record_label_write
from hiercore.taxonomy import ROOT, EditReport, Taxonomy
from hiercore.taxonomy.delta import delta_size, tree_delta

SNAPSHOT_EVERY = 25
"""A version with this many deltas since the last full snapshot is stored whole."""
SMALL_DELTA = 100
"""A delta of up to this many records is never replaced by a snapshot."""


class TaxonomyHistory(Database):
    """The taxonomy part of a `Workspace`."""

    def taxonomy(self, project_id: int, copy: bool = True) -> Taxonomy:
        """The project's current taxonomy (a copy: changing it changes nothing stored).

        `copy=False` returns the stored tree itself, for views that only read it (copying
        a 16k-node tree takes about 0.1 s): never change it. Edits never change a stored
        tree either (they work on a copy), so it stays the version it was.
        """
        with self._read() as conn:
            self._require_project(conn, project_id)
            tree = self._current(conn, project_id)[1]
        return tree.copy() if copy else tree

    def taxonomy_version(self, project_id: int) -> int:
        """An id of the current tree that changes with every edit and undo (for caches)."""
        with self._read() as conn:
            self._require_project(conn, project_id)
            return conn.execute(
                "SELECT MAX(id) FROM taxonomy_versions WHERE project_id = ?", (project_id,)
            ).fetchone()[0]

    def taxonomy_at(self, project_id: int, version: int) -> Taxonomy:
        """The tree as it was at 1-based `version` of `history()` (a fresh copy)."""
        with self._read() as conn:
            self._require_project(conn, project_id)
            ids = [
                r[0]
                for r in conn.execute(
                    "SELECT id FROM taxonomy_versions WHERE project_id = ? ORDER BY id",
                    (project_id,),
                )
            ]
            if not isinstance(version, int) or not 1 <= version <= len(ids):
                raise TaxonomyError(
                    f"Version {version!r} does not exist: the project has versions 1 to {len(ids)}."
                )
            return self._tree_at(conn, project_id, ids[version - 1])

    def apply_edit(
        self,
        project_id: int,
        description: str,
        edit: Callable[[Taxonomy], EditReport],
        history_source: str = "taxonomy",
    ) -> EditReport:
        """Run `edit` on a copy of the taxonomy and store the result as a new version.

        Labels move as `EditReport.label_moves` says (node -> node, or None: removed) in
        the same transaction as the new version. If `edit` raises, nothing is stored.
        `history_source` is how the moved labels appear in their history ("suggestion"
        for an accepted taxonomy suggestion).
        """
        return self._edit(project_id, lambda _: description, edit, history_source)

    def _edit(
        self,
        project_id: int,
        describe: Callable[[Taxonomy], str],
        edit: Callable[[Taxonomy], EditReport],
        history_source: str = "taxonomy",
    ) -> EditReport:
        with self._write() as conn:
            self._require_project(conn, project_id)
            _, current = self._current(conn, project_id)
            description = describe(current)
            trial = current.copy()
            report = edit(trial)
            if not isinstance(report, EditReport):
                raise TypeError(f"A taxonomy edit must return an EditReport, not {report!r}.")
            self._store_version(
                conn, project_id, trial, description, report.label_moves, history_source
            )
        return report

    def _store_version(
        self,
        conn: sqlite3.Connection,
        project_id: int,
        taxonomy: Taxonomy,
        description: str,
        label_moves: dict[str, str | None],
        history_source: str = "taxonomy",
    ) -> int:
        """Insert a taxonomy version and migrate the labels it affects (inside a write)."""
        now = utc_now()
        _, previous = self._current(conn, project_id)
        delta = tree_delta(previous, taxonomy)
        since_snapshot = conn.execute(
            "SELECT COUNT(*) FROM taxonomy_versions WHERE project_id = ? AND id > "
            "(SELECT MAX(id) FROM taxonomy_versions WHERE project_id = ? AND delta IS NULL)",
            (project_id, project_id),
        ).fetchone()[0]
        large = delta_size(delta) > max(SMALL_DELTA, len(taxonomy) // 2)
        if since_snapshot + 1 >= SNAPSHOT_EVERY or large:
            row = (json.dumps(taxonomy.to_dict()), None)
        else:
            row = ("", json.dumps(delta, ensure_ascii=False))
        vid = conn.execute(
            "INSERT INTO taxonomy_versions (project_id, taxonomy, description, created, delta) "
            "VALUES (?, ?, ?, ?, ?)",
            (project_id, row[0], description, now, row[1]),
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
                self._move_label(conn, vid, row, dest, now, history_source)
        self._touch(conn, project_id, now)
        # the next read needs no replay (a rollback clears this cache again)
        self._taxonomy_cache[project_id] = (vid, taxonomy)
        return vid

    def _move_label(
        self,
        conn: sqlite3.Connection,
        version_id: int,
        old: sqlite3.Row,
        dest: str | None,
        now: str,
        history_source: str = "taxonomy",
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
        record_label_write(
            conn,
            old["image_id"],
            (old["node_id"], old["source"]),
            (dest, source),
            history_source,
            None,
            now,
        )

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

        def describe(t: Taxonomy) -> str:
            old = _name_of(t, node_id)
            if old == name.strip():
                return f"change the description of {old!r}"
            return f"rename {old!r} → {name.strip()!r}"

        return self._edit(project_id, describe, lambda t: t.rename(node_id, name, description))

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
            restored = self._tree_at(conn, project_id, rows[1][0])
            now = utc_now()
            restoring = conn.execute(
                """SELECT c.image_id, c.old_node, c.old_source, l.node_id, l.source
                   FROM label_changes c JOIN labels l ON l.image_id = c.image_id
                   WHERE c.version_id = ? AND l.node_id IS c.new_node""",
                (vid,),
            ).fetchall()
            for r in restoring:
                record_label_write(conn, r[0], (r[3], r[4]), (r[1], r[2]), "undo", None, now)
            conn.execute(
                """UPDATE labels SET node_id = c.old_node, source = c.old_source,
                       updated = c.old_updated
                   FROM label_changes c
                   WHERE c.version_id = ? AND c.image_id = labels.image_id
                     AND labels.node_id IS c.new_node""",
                (vid,),
            )
            for node in self._labelled_nodes(conn, project_id):
                if node in restored:
                    continue
                ancestors = undone.path(node)[:-1] if node in undone else []
                survivors = [a for a in ancestors if a in restored]
                dest = survivors[-1] if survivors else None
                moved = conn.execute(
                    "SELECT image_id, source FROM labels WHERE node_id = ? AND image_id IN "
                    "(SELECT id FROM images WHERE project_id = ?)",
                    (node, project_id),
                ).fetchall()
                for r in moved:
                    new_source = r[1] if dest is not None else None
                    record_label_write(
                        conn, r[0], (node, r[1]), (dest, new_source), "undo", None, now
                    )
                conn.execute(
                    "UPDATE labels SET node_id = ?, source = CASE WHEN ? IS NULL THEN NULL "
                    "ELSE source END, updated = ? WHERE node_id = ? AND image_id IN "
                    "(SELECT id FROM images WHERE project_id = ?)",
                    (dest, dest, now, node, project_id),
                )
            conn.execute("DELETE FROM taxonomy_versions WHERE id = ?", (vid,))
            self._touch(conn, project_id, now)
            self._taxonomy_cache[project_id] = (rows[1][0], restored)
        return description

    def history(self, project_id: int) -> list[dict]:
        """The taxonomy versions, oldest first: version (1, 2, ...), description, created,
        labels_moved (how many labels that edit rewrote)."""
        with self._read() as conn:
            self._require_project(conn, project_id)
            rows = conn.execute(
                """SELECT v.id, v.description, v.created,
                       (SELECT COUNT(*) FROM label_changes c WHERE c.version_id = v.id)
                   FROM taxonomy_versions v WHERE v.project_id = ? ORDER BY v.id""",
                (project_id,),
            ).fetchall()
        return [
            {"version": k, "description": r[1], "created": r[2], "labels_moved": r[3]}
            for k, r in enumerate(rows, start=1)
        ]


def _name_of(tax: Taxonomy, node_id: str) -> str:
    return tax.name(node_id) if node_id in tax else node_id
