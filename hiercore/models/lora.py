"""LoRA adapters on the towers of an open_clip model, through peft.

open_clip's transformer blocks use `nn.MultiheadAttention` (module name ``attn``), which
peft adapts as a whole (its fused in-projection and the output projection); the MLP
layers are ``mlp.c_fc`` and ``mlp.c_proj``. A vision tower that is a timm CNN (the
embedded default is a ResNet) has no attention: its target ``conv`` is the 3×3
convolutions of the last two stages, where the features that tell classes apart live.
Targets are chosen per tower with a regular expression over module names, so "vision"
never touches the text transformer; a target a tower does not have is skipped, and a
tower left with no adapter at all is an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from peft import LoraConfig, inject_adapter_in_model

from hiercore.config import TARGETS, TOWERS
from hiercore.errors import HierTuneError

_BLOCK = r"transformer\.resblocks\.\d+\."
TOWER_TARGETS = {
    "vision": {
        "attn": rf"visual\.{_BLOCK}attn",
        "mlp": rf"visual\.{_BLOCK}mlp\.c_(fc|proj)",
        "conv": r"visual\.trunk\.layer[34]\.\d+\.conv\d",
    },
    "text": {"attn": rf"{_BLOCK}attn", "mlp": rf"{_BLOCK}mlp\.c_(fc|proj)"},
}


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
    """Parts to adapt: "attn" (attention projections), "mlp", "conv" (a CNN's last stages)."""


def target_regex(spec: LoraSpec) -> str | None:
    """The module-name pattern of the adapted layers; None when no tower has a target."""
    if spec.towers not in TOWERS:
        raise HierTuneError(f"LoRA towers must be one of {', '.join(TOWERS)}, not {spec.towers!r}.")
    unknown = set(spec.targets) - set(TARGETS)
    if unknown:
        raise HierTuneError(
            f"Unknown LoRA target {sorted(unknown)[0]!r}; use {', '.join(TARGETS)}."
        )
    patterns = [
        TOWER_TARGETS[tower][t]
        for tower in _towers(spec)
        for t in spec.targets
        if t in TOWER_TARGETS[tower]
    ]
    return rf"^({'|'.join(patterns)})$" if patterns else None


def _towers(spec: LoraSpec) -> list[str]:
    return ["vision", "text"] if spec.towers == "both" else [spec.towers]


def apply_lora(model: torch.nn.Module, spec: LoraSpec) -> torch.nn.Module:
    """Freeze the model and inject LoRA adapters in place; returns the same model."""
    for p in model.parameters():
        p.requires_grad_(False)
    if spec.towers == "none":
        return model
    if spec.rank < 1:
        raise HierTuneError(f"LoRA rank must be at least 1, not {spec.rank}.")
    names = [n for n, _ in model.named_modules()]
    for tower in _towers(spec):
        pattern = target_regex(LoraSpec(tower, targets=spec.targets))
        if pattern is None or not any(re.fullmatch(pattern, n) for n in names):
            raise HierTuneError(
                f"No module of this model's {tower} tower matched the LoRA targets "
                f"{', '.join(spec.targets)}: a ViT or text transformer takes attn and/or mlp, "
                "a CNN vision tower (the embedded default) takes conv."
            )
    config = LoraConfig(
        r=spec.rank,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=target_regex(spec),
        bias="none",
    )
    inject_adapter_in_model(config, model)
    return model


def lora_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The adapter weights and the logit scale (what a run saves and a bundle ships).

    The scale is one number; saving it always means a run that fixed or learnt its own
    predicts with it, and an adapter file from before it was saved loads as it did.
    """
    return {
        k: v.detach().cpu().contiguous()
        for k, v in model.state_dict().items()
        if "lora_" in k or k == "logit_scale"
    }
