"""Loading CLIP models through open_clip, whatever the source (docs/method.md §7).

One entry point, `load_clip`, over every way a user names a model:

- ``tiny-random``: a tiny random architecture (`configs/hiertune-tiny.json`) for tests;
- ``default``: the embedded model shipped in ``assets/model`` (an open_clip local-dir:
  ``open_clip_config.json`` beside ``open_clip_model.safetensors``), which works offline;
- an open_clip architecture name with a pretrained tag (``ViT-B-32`` + ``laion2b_s34b_b79k``)
  or with a local checkpoint file as ``pretrained``;
- a local directory in the open_clip/Hugging Face layout, or ``local-dir:/path``;
- ``hf-hub:org/repo``; the Hugging Face client honours ``HF_HUB_OFFLINE``.

Whatever fails to load becomes one `ModelError` sentence that says what to do instead.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import open_clip
import torch

from hiercore.errors import ModelError

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).with_name("configs")
ASSETS_DIR = Path(__file__).resolve().parents[2] / "assets"
DEFAULT_MODEL_DIR = Path(os.environ.get("HIERTUNE_DEFAULT_MODEL", ASSETS_DIR / "model"))
TINY_ARCH = "hiertune-tiny"

# The description template applies only to nodes that have one (`node_prompts` skips it
# elsewhere), so a taxonomy without descriptions gets the first two alone.
DEFAULT_TEMPLATES = (
    "a photo of a {name}.",
    "a photo of a {name}, a kind of {parent}.",
    "a photo of a {name}, {description}.",
)

_configs_registered = False


def register_configs() -> None:
    """Make HierTune's own architectures known to open_clip (idempotent)."""
    global _configs_registered
    if not _configs_registered:
        open_clip.add_model_config(CONFIG_DIR)
        _configs_registered = True


@dataclass
class ClipBundle:
    """A loaded CLIP model with what it needs to be used."""

    model: torch.nn.Module
    preprocess: Any
    """PIL image -> tensor, the evaluation transform."""
    preprocess_train: Any
    tokenizer: Any
    name: str
    """How the user named it (shown in run configs and the results)."""
    templates: tuple[str, ...] = DEFAULT_TEMPLATES
    """Prompt templates that suit the model (the embedded model ships its own)."""
    card: dict = field(default_factory=dict)

    @property
    def embed_dim(self) -> int:
        return int(self.model.text_projection.shape[1])

    @property
    def image_size(self) -> int:
        size = self.model.visual.image_size
        return int(size[0] if isinstance(size, tuple | list) else size)


def load_clip(
    model: str = "default",
    pretrained: str | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> ClipBundle:
    """Load a CLIP model by name, tag, local path or hub id; see the module docstring."""
    register_configs()
    model = (model or "default").strip()
    card: dict = {}
    templates = DEFAULT_TEMPLATES
    try:
        if model == "tiny-random":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                net, pre_train, pre = open_clip.create_model_and_transforms(TINY_ARCH)
            tok = open_clip.get_tokenizer(TINY_ARCH)
        elif model == "default":
            if not (DEFAULT_MODEL_DIR / "open_clip_config.json").is_file():
                raise ModelError(
                    f"The embedded default model is missing from {DEFAULT_MODEL_DIR}; "
                    "run `python -m hiercore pretrain-default` or name another model."
                )
            net, pre_train, pre, tok = _from_local_dir(DEFAULT_MODEL_DIR)
            card = _read_card(DEFAULT_MODEL_DIR)
        elif model.startswith("local-dir:") or Path(model).is_dir():
            path = Path(model.removeprefix("local-dir:"))
            if not (path / "open_clip_config.json").is_file():
                raise ModelError(
                    f"{path} has no open_clip_config.json; a local model folder needs the "
                    "config beside its weights (the open_clip / Hugging Face layout)."
                )
            net, pre_train, pre, tok = _from_local_dir(path)
            card = _read_card(path)
        elif Path(model).is_file():
            raise ModelError(
                f"{model} is a weights file: name the architecture with --model "
                f"(e.g. ViT-B-32) and pass the file as --pretrained."
            )
        elif model.startswith("hf-hub:"):
            net, pre_train, pre = open_clip.create_model_and_transforms(model)
            tok = open_clip.get_tokenizer(model)
        else:
            if model not in open_clip.list_models():
                raise ModelError(
                    f"Unknown model {model!r}: use 'default', 'tiny-random', an open_clip "
                    "architecture name, a local model folder or an hf-hub: id."
                )
            if pretrained and not Path(pretrained).is_file():
                tags = open_clip.list_pretrained_tags_by_model(model)
                if pretrained not in tags:
                    raise ModelError(
                        f"{model} has no pretrained tag {pretrained!r} and no such file exists; "
                        f"known tags: {', '.join(tags) or 'none'}."
                    )
            net, pre_train, pre = open_clip.create_model_and_transforms(
                model, pretrained=pretrained or None
            )
            tok = open_clip.get_tokenizer(model)
    except ModelError:
        raise
    except Exception as exc:  # open_clip / hub errors: turn them into one sentence
        raise ModelError(_fetch_failure(model, pretrained, exc)) from exc
    templates = tuple(card.get("templates") or templates)
    net = net.to(device).eval()
    return ClipBundle(net, pre, pre_train, tok, model, templates, card)


def _from_local_dir(path: Path):
    net, pre_train, pre = open_clip.create_model_and_transforms(f"local-dir:{path}")
    tok = open_clip.get_tokenizer(f"local-dir:{path}")
    return net, pre_train, pre, tok


def _read_card(path: Path) -> dict:
    cfg = json.loads((path / "open_clip_config.json").read_text())
    return cfg.get("hiertune", {})


def _fetch_failure(model: str, pretrained: str | None, exc: Exception) -> str:
    what = f"{model} ({pretrained})" if pretrained else model
    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
    why = "HF_HUB_OFFLINE is set" if offline else "it could not be fetched or read"
    first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    return (
        f"Could not load {what}: {why} ({first}); use --model default for the embedded "
        "model or point --model at a local checkpoint folder."
    )


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
