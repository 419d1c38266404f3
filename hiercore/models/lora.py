"""LoRA adapters on the towers of an open_clip model, through peft.

open_clip's transformer blocks use `nn.MultiheadAttention` (module name ``attn``), which
peft adapts as a whole (its fused in-projection and the output projection); the MLP
layers are ``mlp.c_fc`` and ``mlp.c_proj``. Targets are chosen per tower with a regular
expression over module names, so "vision" never touches the text transformer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.lora import LoraLayer

from hiercore.errors import HierTuneError

TOWERS = ("vision", "text", "both", "none")
TARGETS = {"attn": "attn", "mlp": r"mlp\.c_fc|mlp\.c_proj"}
TOWER_PREFIX = {"vision": r"visual\.transformer", "text": r"transformer"}


@dataclass(frozen=True)
class LoraSpec:
    """Where and how big the adapters are."""

    towers: str = "both"
    """Which encoder gets adapters: vision, text, both or none."""
    rank: int = 8
    """LoRA rank r."""
    alpha: float = 16.0
    """LoRA scaling numerator (scale = alpha / r)."""
    dropout: float = 0.0
    """Dropout on the LoRA input."""
    targets: tuple[str, ...] = ("attn",)
    """Block parts to adapt: "attn" (the attention projections) and/or "mlp"."""


def target_regex(spec: LoraSpec) -> str:
    if spec.towers not in TOWERS:
        raise HierTuneError(f"LoRA towers must be one of {', '.join(TOWERS)}, not {spec.towers!r}.")
    unknown = set(spec.targets) - set(TARGETS)
    if unknown:
        raise HierTuneError(
            f"Unknown LoRA target {sorted(unknown)[0]!r}; use {', '.join(TARGETS)}."
        )
    towers = ["vision", "text"] if spec.towers == "both" else [spec.towers]
    parts = "|".join(TARGETS[t] for t in spec.targets)
    prefixes = "|".join(TOWER_PREFIX[t] for t in towers)
    return rf"^({prefixes})\.resblocks\.\d+\.({parts})$"


def apply_lora(model: torch.nn.Module, spec: LoraSpec) -> torch.nn.Module:
    """Freeze the model and inject LoRA adapters in place; returns the same model."""
    for p in model.parameters():
        p.requires_grad_(False)
    if spec.towers == "none":
        return model
    if spec.rank < 1:
        raise HierTuneError(f"LoRA rank must be at least 1, not {spec.rank}.")
    config = LoraConfig(
        r=spec.rank,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=target_regex(spec),
        bias="none",
    )
    inject_adapter_in_model(config, model)
    n = sum(isinstance(m, LoraLayer) for m in model.modules())
    if n == 0:
        raise HierTuneError("No module of this model matched the LoRA targets.")
    return model


def lora_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapter weights (what a run saves and a bundle ships)."""
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if "lora_" in k}
