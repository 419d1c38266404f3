"""The curation loop's calls shared by the API and the tabs: relabel a selection, undo a
batch, an image's label history and a run's taxonomy suggestions with image ids.

Kept apart from the tabs so that `webapp/api.py` and the UI run the same code.
"""

from __future__ import annotations

from hiercore.errors import HierTuneError
from hiercore.suggestions import RunEvidence, taxonomy_suggestions
from webapp.state import Studio, whole_number


def image_id_list(images: object) -> list[int]:
    """Image ids from a list of numbers or a comma-separated text; one sentence if bad."""
    if isinstance(images, str):
        parts = [p for p in images.replace(";", ",").split(",") if p.strip()]
    elif isinstance(images, int | float):
        parts = [images]
    elif isinstance(images, list | tuple):
        parts = list(images)
    else:
        parts = []
    ids = [whole_number(p, "An image id") for p in parts]
    if not ids:
        raise HierTuneError("Select at least one image.")
    return list(dict.fromkeys(ids))


def relabel(studio: Studio, images: object, label: str, source: str = "batch") -> dict:
    """Label images (all of one project) with a node id or a ' / ' name path, partial or
    whole; an empty label clears them. Returns the batch id and the labels now."""
    ws = studio.workspace
    ids = image_id_list(images)
    pid = ws.image_project(ids[0])
    text = (label or "").strip()
    batch = ws.relabel(pid, ids, text or None, source=source)
    df = ws.images(pid).set_index("id")
    return {
        "batch_id": batch,
        "project_id": pid,
        "labels": {str(i): df.loc[i, "label"] for i in ids},
    }


def undo_batch(studio: Studio, batch_id: object) -> dict:
    """Undo a label batch; how many labels went back."""
    batch_id = whole_number(batch_id, "batch_id")
    return {"batch_id": batch_id, "restored": studio.workspace.undo_batch(batch_id)}


def label_history(studio: Studio, image: object) -> dict:
    """An image's label writes, oldest first, and its current label."""
    image_id = whole_number(image, "image")
    ws = studio.workspace
    pid = ws.image_project(image_id)
    row = ws.images(pid).set_index("id").loc[image_id]
    return {
        "image": image_id,
        "name": row["name"],
        "label": row["label"],
        "history": ws.label_history(image_id),
    }


def run_suggestions(
    studio: Studio, run_id: object, limit: int = 10, with_paths: bool = False
) -> dict:
    """A finished run's taxonomy suggestions per kind, each with image ids as evidence;
    `with_paths` keeps the image files too (for the UI's gallery; an API client gets ids,
    not the server's paths)."""
    run_id = whole_number(run_id, "run_id")
    results = studio.results(run_id)
    pid = studio.workspace.get_run(run_id)["project_id"]
    df = studio.workspace.images(pid)
    id_of = dict(zip(df["path"], df["id"], strict=True))
    found = taxonomy_suggestions(RunEvidence.from_run(results), limit=limit)
    out: dict = {"run_id": run_id, "project_id": pid}
    for kind, suggestions in found.items():
        rows = []
        for s in suggestions:
            d = s.to_dict()
            d["image_ids"] = [int(id_of[p]) for p in s.images if p in id_of]
            if not with_paths:
                del d["images"]
            if "groups" in d["evidence"]:
                d["evidence"]["groups"] = [
                    [int(id_of[p]) for p in g if p in id_of] for g in d["evidence"]["groups"]
                ]
            rows.append(d)
        out[kind] = rows
    return out


def run_rows_to_ids(studio: Studio, run_id: object, rows) -> list[int]:
    """Image ids of a run's validation rows (images removed since are left out)."""
    run_id = whole_number(run_id, "run_id")
    res = studio.results(run_id)
    pid = studio.workspace.get_run(run_id)["project_id"]
    df = studio.workspace.images(pid)
    id_of = dict(zip(df["path"], df["id"], strict=True))
    paths = [res.paths[int(r)] for r in rows if 0 <= int(r) < res.n]
    return [int(id_of[p]) for p in paths if p in id_of]


PREDICTION_FILTERS = ("wrong", "right", "disagree")


def prediction_rows(res, kind: str, level: int | None = None) -> list[int]:
    """Validation rows of a run by its (independent) prediction: "wrong" or "right" at
    1-based `level` (None: at any level / at every known level), or "disagree": the
    levels' predictions break the tree."""
    if kind not in PREDICTION_FILTERS:
        raise HierTuneError(f"A prediction filter is one of {', '.join(PREDICTION_FILTERS)}.")
    if kind == "disagree":
        return [int(r) for r in res.inconsistent_rows()]
    pred, true = res.pred("independent"), res.true
    if level is not None and not 1 <= level <= res.depth:
        raise HierTuneError(f"Level must be between 1 and {res.depth}, not {level}.")
    cols = [level - 1] if level is not None else list(range(res.depth))
    known = true[:, cols] >= 0
    wrong = ((pred[:, cols] != true[:, cols]) & known).any(axis=1)
    rows = wrong if kind == "wrong" else ~wrong & known.any(axis=1)
    return [int(r) for r in rows.nonzero()[0]]


def undo_selection_text(ws, pid: int) -> str:
    """Undo the project's newest tag or review change; says what was undone."""
    action = ws.last_selection_action(pid)
    if action is None:
        raise HierTuneError("There is no tag or review change to undo.")
    n = ws.undo_selection_action(pid, action["id"])
    what = {
        "tag": f"tagging {action['tag']!r}",
        "untag": f"untagging {action['tag']!r}",
        "review": "sending to review",
        "resolve": "taking off the review queue",
    }[action["kind"]]
    return f"Undid {what} of {action['images']} images ({n} changed back)."
