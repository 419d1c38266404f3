"""CLIP models for HierTune: loading (open_clip), prompts, LoRA (peft) and per-level logits.

The names below are imported on first use (PEP 562), so that `hiercore.models.prompts`
and the run configuration that checks templates with it do not pull in torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hiercore.models.hierclip import HierClip
    from hiercore.models.loading import ClipBundle, count_parameters, load_clip, pick_device
    from hiercore.models.lora import LoraSpec, apply_lora, lora_state_dict

_HOMES = {
    "HierClip": "hierclip",
    "ClipBundle": "loading",
    "count_parameters": "loading",
    "load_clip": "loading",
    "pick_device": "loading",
    "LoraSpec": "lora",
    "apply_lora": "lora",
    "lora_state_dict": "lora",
}


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"hiercore.models.{_HOMES[name]}"), name)


__all__ = [
    "ClipBundle",
    "HierClip",
    "LoraSpec",
    "apply_lora",
    "count_parameters",
    "load_clip",
    "lora_state_dict",
    "pick_device",
]
