"""The export bundle: contents, prompts worked out by hand, and refusal of unfinished runs."""

from __future__ import annotations

import json
import zipfile

import pytest
import torch
from safetensors.torch import save_file

from hiercore.bundle import build_bundle, run_templates
from hiercore.config import RunConfig
from hiercore.errors import HierTuneError
from hiercore.models.loading import DEFAULT_TEMPLATES
from hiercore.taxonomy import Taxonomy


def tiny_taxonomy() -> Taxonomy:
    return Taxonomy.from_nodes(
        [
            {"id": "aves", "name": "Aves", "parent": None},
            {"id": "corv", "name": "Corvidae", "parent": "aves"},
            {"id": "raven", "name": "raven", "parent": "corv", "description": "a big black bird"},
        ]
    )


def fake_run(folder, templates=None):
    folder.mkdir(parents=True, exist_ok=True)
    RunConfig(model="tiny-random", templates=templates).save(folder / "config.json")
    (folder / "taxonomy.json").write_text(json.dumps(tiny_taxonomy().to_dict()))
    (folder / "metrics.json").write_text(json.dumps({"fpa": 0.5}))
    save_file({"w": torch.ones(2)}, str(folder / "adapter.safetensors"))
    return folder


def test_bundle_holds_every_part_and_the_prompts(tmp_path):
    run = fake_run(tmp_path / "run", ["a photo of a {name}.", "{description}, a {name}"])
    out = build_bundle(run, tmp_path / "export" / "bundle.zip")
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
        prompts = json.loads(zf.read("prompts.json"))
        assert json.loads(zf.read("metrics.json")) == {"fpa": 0.5}
        assert zf.read("adapter.safetensors") == (run / "adapter.safetensors").read_bytes()
    assert names == {
        "adapter.safetensors",
        "taxonomy.json",
        "config.json",
        "metrics.json",
        "prompts.json",
        "README.txt",
    }
    assert prompts["templates"] == ["a photo of a {name}.", "{description}, a {name}"]
    # the description template applies only where there is a description
    assert prompts["nodes"]["corv"]["prompts"] == ["a photo of a Corvidae."]
    assert prompts["nodes"]["raven"]["prompts"] == [
        "a photo of a raven.",
        "a big black bird, a raven",
    ]
    assert prompts["nodes"]["raven"]["path"] == ["Aves", "Corvidae", "raven"]


def test_templates_fall_back_to_the_models(tmp_path):
    assert run_templates(RunConfig(model="tiny-random")) == list(DEFAULT_TEMPLATES)
    folder = tmp_path / "m"
    folder.mkdir()
    card = {"hiertune": {"templates": ["an emoji of {name}."]}}
    (folder / "open_clip_config.json").write_text(json.dumps(card))
    assert run_templates(RunConfig(model=str(folder))) == ["an emoji of {name}."]


def test_unfinished_run_is_refused(tmp_path):
    run = fake_run(tmp_path / "run")
    (run / "adapter.safetensors").unlink()
    with pytest.raises(HierTuneError, match=r"adapter\.safetensors"):
        build_bundle(run, tmp_path / "b.zip")
