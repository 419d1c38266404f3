"""The built-in demo project: the emoji taxonomy of `assets/demo/` in a workspace, one call.

`open_demo_project` creates the project the first time (taxonomy from taxonomy.csv, every
image of manifest.csv imported and labelled at its leaf) and returns the existing one
afterwards, so the studio's "Open the demo" button is idempotent. The images are copied
into the workspace like any import, so the demo project can be edited freely.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

from hiercore.errors import DataError
from hiercore.store import Workspace

DEMO_DIR = Path(__file__).resolve().parents[1] / "assets" / "demo"
DEMO_PROJECT = "Emoji demo"

Progress = Callable[[float, str], None]


def open_demo_project(
    workspace: Workspace,
    demo_dir: str | Path = DEMO_DIR,
    name: str = DEMO_PROJECT,
    progress: Progress | None = None,
) -> int:
    """The id of the demo project, creating and filling it when it does not exist yet."""
    from hiercore.taxonomy.formats import load_taxonomy

    existing = workspace.find_project(name)
    if existing is not None:
        return existing
    folder = Path(demo_dir)
    manifest, tax_file = folder / "manifest.csv", folder / "taxonomy.csv"
    if not manifest.is_file() or not tax_file.is_file():
        raise DataError(f"The demo data is missing from {folder} (manifest.csv, taxonomy.csv).")
    report = progress or (lambda fraction, message: None)
    report(0.0, "reading the demo taxonomy")
    taxonomy = load_taxonomy(tax_file)
    samples = _demo_samples(manifest, taxonomy)
    pid = workspace.create_project(name)
    try:
        workspace.set_taxonomy(pid, taxonomy, "demo taxonomy")
        by_node: dict[str, list[Path]] = {}
        for path, node_id in samples:
            by_node.setdefault(node_id, []).append(path)
        done = 0
        for node_id, group in by_node.items():
            if done // 100 != (done + len(group)) // 100:
                report(done / len(samples), f"importing demo images {done}/{len(samples)}")
            result = workspace.add_images(
                pid, [(_display_name(p), p) for p in group], node_id=node_id
            )
            if result.rejected:
                name, why = result.rejected[0]
                raise DataError(f"Demo image {name} is {why}; rebuild assets/demo.")
            done += len(group)
    except BaseException:
        workspace.delete_project(pid)
        raise
    report(1.0, "demo ready")
    return pid


def _demo_samples(manifest: Path, taxonomy) -> list[tuple[Path, str]]:
    """(image path, leaf id) per manifest row; the rank columns are the taxonomy's.

    The demo manifest also has `style` and `split` columns, which are not levels, so it
    is read by the rank names of taxonomy.csv rather than as a generic manifest.
    """
    out = []
    with open(manifest, newline="", encoding="utf-8") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            names = [row.get(rank) or "" for rank in taxonomy.level_names]
            node = taxonomy.find_by_path([n for n in names if n])
            if node is None:
                raise DataError(
                    f"{manifest.name} line {line}: {' / '.join(names)!r} is not in taxonomy.csv."
                )
            out.append((manifest.parent / row["path"], node))
    return out


def _display_name(path: str | Path) -> str:
    """ "twemoji/1F600.png": the style folder tells the three drawings of an emoji apart."""
    p = Path(path)
    return f"{p.parent.name}/{p.name}"
