"""The export bundle of a finished run: one zip a user can take away and predict with.

The zip holds the adapter weights (safetensors), the taxonomy (native JSON), the prompts
(templates and the prompt of every node), the run config, the metrics and, when present,
the training history. Its files keep the names of a run folder, so an unpacked bundle is
itself a run folder: ``Predictor.from_run(unpacked)`` and ``python -m hiercore predict
--run unpacked`` load it (the base CLIP comes from the config's model name).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from hiercore.config import RunConfig
from hiercore.errors import HierTuneError
from hiercore.models.loading import DEFAULT_MODEL_DIR, DEFAULT_TEMPLATES
from hiercore.models.prompts import check_templates, nodes_prompts
from hiercore.run_folder import (
    ADAPTER,
    CONFIG,
    HISTORY,
    METRICS,
    PROTOTYPES,
    STATUS,
    TAXONOMY,
    RunFolder,
)
from hiercore.taxonomy import Taxonomy

REQUIRED = (ADAPTER, TAXONOMY, CONFIG, METRICS)
OPTIONAL = (HISTORY, STATUS, PROTOTYPES)

README = """HierTune run bundle

adapter.safetensors  LoRA adapter weights of the fine-tuned CLIP (safetensors)
prototypes.safetensors  the image prototype of each leaf (when the run made them)
taxonomy.json        the class tree (HierTune native JSON: level_names, nodes)
prompts.json         prompt templates and the prompts of every node
config.json          the run configuration (RunConfig); "model" names the base CLIP
metrics.json         validation metrics (FPA, TICE, per-level accuracy, ...)

Unzip it and use the folder as a run folder:

    python -m hiercore predict --run <folder> image.png
    from hiercore.predict import Predictor; Predictor.from_run("<folder>")
"""


def run_templates(config: RunConfig) -> list[str]:
    """The prompt templates a run used: its own, else those of its base model's card.

    Mirrors `HierClip`, which takes the config's templates or the loaded model's; the
    card is read from the model folder without loading any weights.
    """
    if config.templates:
        return check_templates(config.templates)
    folder = None
    if config.model == "default":
        folder = DEFAULT_MODEL_DIR
    elif config.model.startswith("local-dir:") or Path(config.model).is_dir():
        folder = Path(config.model.removeprefix("local-dir:"))
    card_file = folder / "open_clip_config.json" if folder is not None else None
    if card_file is not None and card_file.is_file():
        card = json.loads(card_file.read_text()).get("hiertune", {})
        if card.get("templates"):
            return check_templates(card["templates"])
    return list(DEFAULT_TEMPLATES)


def bundle_prompts(taxonomy: Taxonomy, templates: list[str]) -> dict:
    """The prompts.json content: templates and every node's prompts, keyed by node id."""
    nodes = list(taxonomy.iter_dfs())
    prompts = nodes_prompts(taxonomy, nodes, templates)
    return {
        "templates": list(templates),
        "nodes": {
            n: {"path": taxonomy.path_names(n), "prompts": ps}
            for n, ps in zip(nodes, prompts, strict=True)
        },
    }


def build_bundle(run_dir: str | Path, out_zip: str | Path) -> Path:
    """Write the export zip of the finished run in `run_dir` to `out_zip`; returns its path."""
    folder = RunFolder(run_dir)
    missing = folder.missing(REQUIRED)
    if missing:
        raise HierTuneError(
            f"Run folder {folder.path} has no {missing[0]}: only a finished run can be exported."
        )
    prompts = bundle_prompts(folder.read_taxonomy(), run_templates(folder.read_config()))
    out = Path(out_zip)
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in (*REQUIRED, *OPTIONAL):
            if folder.has(name):
                zf.write(folder.file(name), arcname=name)
        zf.writestr("prompts.json", json.dumps(prompts, indent=1, ensure_ascii=False))
        zf.writestr("README.txt", README)
    return out
