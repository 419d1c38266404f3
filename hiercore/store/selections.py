"""What a person does with a selection of images besides relabelling: tags and review.

A tag is a free word on an image ("blurry", "check-with-anna"); an image has any number.
A review request puts an image on the review queue by hand, with the reason it was sent
(the model-driven order of `hiercore.review` is computed, not stored).

Every call that changes tags or requests is one action that `undo_selection_action` takes
back: it records exactly the rows it added (to delete them) or removed (to put them back
with their time and reason), so undoing a tag leaves the images that had the tag before
it untouched. A row changed again by a later action keeps the later state.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from hiercore.errors import DataError, HierTuneError
from hiercore.store.database import Database, utc_now


def _clean_tag(tag: object) -> str:
    if not isinstance(tag, str) or not tag.strip():
        raise DataError("A tag needs a non-empty name.")
    tag = tag.strip()
    if len(tag) > 100 or "\n" in tag:
        raise DataError(f"The tag {tag[:40]!r}... is too long or has a line break.")
    return tag


class Selections(Database):
    """The tag and review-request part of a `Workspace`."""

    @contextmanager
    def _action(self, project_id: int, ids: list, kind: str, tag: str | None = None) -> Iterator:
        """A write that is one undoable action on images `ids` of the project: yields the
        connection, the new action's id and its time."""
        with self._write() as conn:
            self._require_project(conn, project_id)
            self._require_images(conn, project_id, ids)
            now = utc_now()
            yield conn, _new_action(conn, project_id, kind, tag, now), now

    def tag_images(self, project_id: int, image_ids: Iterable[int], tag: str) -> int:
        """Give images of a project a tag; returns how many did not have it yet."""
        tag = _clean_tag(tag)
        ids = list(dict.fromkeys(image_ids))
        with self._action(project_id, ids, "tag", tag) as (conn, action, now):
            added = _add_rows(
                conn,
                action,
                ids,
                "INSERT OR IGNORE INTO tags (image_id, tag, added, action_id) VALUES (?, ?, ?, ?)",
                tag,
                None,
                now,
            )
            self._touch(conn, project_id, now)
        return added

    def untag_images(self, project_id: int, image_ids: Iterable[int], tag: str) -> int:
        """Take a tag off images of a project; returns how many had it."""
        tag = _clean_tag(tag)
        ids = list(dict.fromkeys(image_ids))
        with self._action(project_id, ids, "untag", tag) as (conn, action, now):
            removed = _remove_rows(
                conn,
                action,
                ids,
                "DELETE FROM tags WHERE image_id = ? AND tag = ? RETURNING NULL, added, action_id",
                tag,
            )
            self._touch(conn, project_id, now)
        return removed

    def image_tags(self, project_id: int) -> dict[int, list[str]]:
        """Image id -> its tags (sorted), for the images that have any."""
        with self._read() as conn:
            self._require_project(conn, project_id)
            rows = conn.execute(
                "SELECT t.image_id, t.tag FROM tags t JOIN images i ON i.id = t.image_id "
                "WHERE i.project_id = ? ORDER BY t.image_id, t.tag",
                (project_id,),
            ).fetchall()
        out: dict[int, list[str]] = {}
        for image_id, tag in rows:
            out.setdefault(image_id, []).append(tag)
        return out

    def find_images(
        self,
        project_id: int,
        subtree: str | None = None,
        tag: str | None = None,
        split: str | None = None,
        labelled: bool | None = None,
    ) -> list[int]:
        """Ids of the images matching every filter given: labelled at `subtree` or below
        it, carrying `tag`, pinned to `split` ('train', 'val' or 'unpinned'), labelled or
        not."""
        if split not in (None, "train", "val", "unpinned"):
            raise DataError(f"A split filter is 'train', 'val' or 'unpinned', not {split!r}.")
        with self._read() as conn:
            self._require_project(conn, project_id)
            tax = self._current(conn, project_id)[1]
            if subtree is not None and subtree not in tax:
                raise DataError(f"Node {subtree!r} is not in this project's taxonomy.")
            sql = (
                "SELECT i.id, l.node_id, i.split FROM images i JOIN labels l ON l.image_id = i.id "
                "WHERE i.project_id = ?"
            )
            args: list = [project_id]
            if tag:
                sql += " AND i.id IN (SELECT image_id FROM tags WHERE tag = ?)"
                args.append(tag.strip())
            rows = conn.execute(sql + " ORDER BY i.id", args).fetchall()
        under = set(tax.descendants(subtree)) | {subtree} if subtree else None
        out = []
        for image_id, node, pinned in rows:
            if under is not None and node not in under:
                continue
            if split is not None and (pinned or "unpinned") != split:
                continue
            if labelled is not None and (node is not None) != labelled:
                continue
            out.append(image_id)
        return out

    def request_review(self, project_id: int, image_ids: Iterable[int], reason: str = "") -> int:
        """Send images to the review queue with a reason; returns how many were not on it."""
        ids = list(dict.fromkeys(image_ids))
        if not ids:
            raise DataError("Select at least one image to send to review.")
        with self._action(project_id, ids, "review") as (conn, action, now):
            why = str(reason or "sent by hand").strip()[:200]
            added = _add_rows(
                conn,
                action,
                ids,
                "INSERT OR IGNORE INTO review_requests (image_id, reason, added, action_id) "
                "VALUES (?, ?, ?, ?)",
                why,
                why,
                now,
            )
            self._touch(conn, project_id, now)
        return added

    def review_requests(self, project_id: int, pending_only: bool = False) -> list[dict]:
        """The images sent to review, oldest request first: image_id, reason, added. With
        `pending_only`, an image a person has labelled since its request is left out."""
        reviewed = " AND NOT (l.source = 'human' AND l.updated >= r.added)" if pending_only else ""
        with self._read() as conn:
            self._require_project(conn, project_id)
            rows = conn.execute(
                "SELECT r.image_id, r.reason, r.added FROM review_requests r "
                "JOIN images i ON i.id = r.image_id JOIN labels l ON l.image_id = r.image_id "
                f"WHERE i.project_id = ?{reviewed} ORDER BY r.added, r.image_id",
                (project_id,),
            ).fetchall()
        return [dict(r) for r in rows]

    def resolve_review(self, project_id: int, image_ids: Iterable[int]) -> int:
        """Take images off the review queue (reviewed); returns how many were on it."""
        ids = list(dict.fromkeys(image_ids))
        with self._action(project_id, ids, "resolve") as (conn, action, _):
            return _remove_rows(
                conn,
                action,
                ids,
                "DELETE FROM review_requests WHERE image_id = ? RETURNING reason, added, action_id",
            )

    def last_selection_action(self, project_id: int) -> dict | None:
        """The project's newest tag or review change not yet undone that changed
        anything: id, kind, tag, created, images; None if there is none."""
        with self._read() as conn:
            self._require_project(conn, project_id)
            row = conn.execute(
                "SELECT a.id, a.kind, a.tag, a.created, COUNT(c.image_id) AS images "
                "FROM selection_actions a JOIN selection_changes c ON c.action_id = a.id "
                "WHERE a.project_id = ? AND a.undone IS NULL "
                "GROUP BY a.id ORDER BY a.id DESC LIMIT 1",
                (project_id,),
            ).fetchone()
        return dict(row) if row is not None else None

    def undo_selection_action(self, project_id: int, action_id: int) -> int:
        """Take back one tag or review change; returns how many images it changed back.

        A tag or request it added is deleted only while it is the one it added (not
        removed and added again since); one it removed comes back with its old time,
        reason and writer unless the image has one again.
        """
        with self._write() as conn:
            self._require_project(conn, project_id)
            action = conn.execute(
                "SELECT kind, tag, created, undone FROM selection_actions "
                "WHERE id = ? AND project_id = ?",
                (int(action_id), project_id),
            ).fetchone()
            if action is None:
                raise HierTuneError(f"There is no tag or review change {action_id} here.")
            if action["undone"] is not None:
                raise HierTuneError(f"Tag or review change {action_id} was already undone.")
            changes = conn.execute(
                "SELECT image_id, reason, added, written_by FROM selection_changes "
                "WHERE action_id = ?",
                (int(action_id),),
            ).fetchall()
            kind, tag, now = action["kind"], action["tag"], utc_now()
            undone = 0
            for change in changes:
                image_id, reason, added = change["image_id"], change["reason"], change["added"]
                written_by = change["written_by"]
                if kind == "tag":
                    sql = "DELETE FROM tags WHERE image_id = ? AND tag = ? AND action_id = ?"
                    args: tuple = (image_id, tag, action_id)
                elif kind == "untag":
                    sql = (
                        "INSERT OR IGNORE INTO tags (image_id, tag, added, action_id) "
                        "VALUES (?, ?, ?, ?)"
                    )
                    args = (image_id, tag, added, written_by)
                elif kind == "review":
                    sql = "DELETE FROM review_requests WHERE image_id = ? AND action_id = ?"
                    args = (image_id, action_id)
                else:
                    sql = (
                        "INSERT OR IGNORE INTO review_requests "
                        "(image_id, reason, added, action_id) VALUES (?, ?, ?, ?)"
                    )
                    args = (image_id, reason, added, written_by)
                undone += conn.execute(sql, args).rowcount
            conn.execute(
                "UPDATE selection_actions SET undone = ? WHERE id = ?", (now, int(action_id))
            )
            self._touch(conn, project_id, now)
        return undone


def _new_action(conn, project_id: int, kind: str, tag: str | None, now: str) -> int:
    return conn.execute(
        "INSERT INTO selection_actions (project_id, kind, tag, created) VALUES (?, ?, ?, ?)",
        (project_id, kind, tag, now),
    ).lastrowid


def _add_rows(conn, action: int, ids, sql: str, value: str, reason, now: str) -> int:
    """Insert one row per image with `sql` (image id, `value`, time, action id; an image
    that has the row already is left as it is) and record the rows added; how many."""
    added = 0
    for image_id in ids:
        if conn.execute(sql, (int(image_id), value, now, action)).rowcount:
            _record(conn, action, int(image_id), reason, now, None)
            added += 1
    return added


def _remove_rows(conn, action: int, ids, sql: str, *args) -> int:
    """Delete each image's row with `sql` (image id, `args`; it returns the row's reason,
    time and writer) and record the rows removed; how many."""
    removed = 0
    for image_id in ids:
        row = conn.execute(sql, (int(image_id), *args)).fetchone()
        if row is not None:
            _record(conn, action, int(image_id), row[0], row[1], row[2])
            removed += 1
    return removed


def _record(
    conn, action: int, image_id: int, reason: str | None, added: str, written_by: int | None
) -> None:
    conn.execute(
        "INSERT INTO selection_changes (action_id, image_id, reason, added, written_by) "
        "VALUES (?, ?, ?, ?, ?)",
        (action, image_id, reason, added, written_by),
    )
