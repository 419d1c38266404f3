"""CLIP models for HierTune: loading (open_clip), prompts, LoRA (peft) and per-level logits."""

from hiercore.models.hierclip import HierClip
from hiercore.models.loading import ClipBundle, count_parameters, load_clip, pick_device
from hiercore.models.lora import LoraSpec, apply_lora, lora_state_dict

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
