"""The built-in demo project: the emoji taxonomy of `assets/demo/` in a workspace, one call.

`open_demo_project` creates the project the first time (taxonomy from taxonomy.csv, every
image of manifest.csv imported and labelled at its leaf) and returns the existing one
afterwards, so the studio's "Open the demo" button is idempotent. The images are copied
into the workspace like any import, so the demo project can be edited freely.
"""

from __future__ import annotations

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
    from hiercore.data import samples_from_manifest
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
    _, samples = samples_from_manifest(manifest, taxonomy)
    pid = workspace.create_project(name)
    try:
        workspace.set_taxonomy(pid, taxonomy, "demo taxonomy")
        groups: dict[tuple[str, str | None], list[Path]] = {}
        for sample in samples:  # the manifest's split (held-out art style) is kept
            groups.setdefault((sample.node_id, sample.split), []).append(Path(sample.path))
        done = 0
        for (node_id, split), group in groups.items():
            if done // 100 != (done + len(group)) // 100:
                report(done / len(samples), f"importing demo images {done}/{len(samples)}")
            result = workspace.add_images(
                pid, [(_display_name(p), p) for p in group], node_id=node_id, split=split
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


def _display_name(path: str | Path) -> str:
    """ "twemoji/1F600.png": the style folder tells the drawings of an emoji apart."""
    p = Path(path)
    return f"{p.parent.name}/{p.name}"


# ------------------------------------------------------------- the method on the demo (#8 F)
DEMO_STUDY = Path(__file__).resolve().parents[1] / "results" / "claim" / "demo"
"""The claim study's demo setting as shipped (`runs.csv`, one row per method and seed)."""

EFFECT_METHODS = ("zero-shot", "level-ce", "tpkl-hisce")
"""What the demo's one-click comparison measures: no training, CE, the paper's losses."""


def demo_study_runs(folder: str | Path = DEMO_STUDY):
    """The shipped per-seed rows of the demo study, or None where it was not measured."""
    import pandas as pd

    path = Path(folder) / "runs.csv"
    if not path.is_file():
        return None
    runs = pd.read_csv(path)
    if runs.empty or not {"method", "seed", "fpa"} <= set(runs.columns):
        return None
    return runs


def cached_comparison(runs, methods=EFFECT_METHODS, config: dict | None = None):
    """The newest finished comparison in `runs` (a project's run table) that measured every
    one of `methods` with the same settings as `config` (where given); None if there is none.

    This is what makes the demo's one-click comparison cached: a second click shows the
    comparison already measured instead of training it again.
    """
    from hiercore.config import RunConfig
    from hiercore.errors import HierTuneError

    wanted = None if config is None else RunConfig.from_dict(config).to_dict()
    for r in runs.sort_values("id", ascending=False).itertuples():
        cfg = dict(r.config or {})
        done = cfg.pop("compare_methods", None)
        if r.state != "finished" or not done or not set(methods) <= set(done):
            continue
        if wanted is not None:
            try:
                if RunConfig.from_dict(cfg).to_dict() != wanted:
                    continue
            except HierTuneError:  # a config this version no longer reads: not the same
                continue
        return r
    return None
