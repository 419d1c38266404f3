"""The run configuration: one dataclass a user can print, save as JSON and load back.

Every knob of a fine-tuning run is one field with a one-line docstring and a default that
works (peft's `LoraConfig` is the model). The CLI flags and the studio's training form are
both views of this class.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from hiercore.errors import HierTuneError
from hiercore.models.lora import TOWERS, LoraSpec
from hiercore.models.prompts import check_templates


@dataclass
class RunConfig:
    """Everything that defines a fine-tuning run."""

    model: str = "default"
    """open_clip architecture, 'default' (embedded), 'tiny-random', a local folder or hf-hub: id."""
    pretrained: str | None = None
    """open_clip pretrained tag or checkpoint file (with an architecture name)."""
    method: str = "tpkl-hisce"
    """Name of the method in the baselines registry (the comparison table's row)."""
    lora: str = "both"
    """Towers that get LoRA adapters: vision, text, both or none."""
    rank: int = 8
    """LoRA rank."""
    lora_alpha: float = 16.0
    """LoRA scaling numerator (scale = lora_alpha / rank)."""
    lora_dropout: float = 0.0
    """Dropout on the LoRA input."""
    lora_targets: list[str] = field(default_factory=lambda: ["attn"])
    """Transformer block parts to adapt: attn and/or mlp."""
    alpha: float = 1.0
    """Weight of the Tree-Path KL loss (0 turns it off)."""
    lam: float = 1.0
    """Weight of the Hierarchy-Sibling Smoothed CE loss (0 turns it off)."""
    eps: float = 0.1
    """Sibling smoothing mass of HiSCE."""
    flat: bool = False
    """Train on the leaf level only (the flat CE baseline); TP-KL and HiSCE then see one level."""
    epochs: int = 5
    """Passes over the training images."""
    batch_size: int = 32
    """Images per optimiser micro-batch."""
    grad_accum: int = 1
    """Micro-batches per optimiser step."""
    lr: float = 5e-4
    """Peak learning rate of AdamW."""
    weight_decay: float = 0.01
    """AdamW weight decay on the adapters."""
    warmup_ratio: float = 0.1
    """Fraction of the optimiser steps spent warming the learning rate up linearly."""
    templates: list[str] | None = None
    """Prompt templates ({name}, {parent}, {root}, {path}, {description}); None: the model's own."""
    seed: int = 0
    """Seed of the split, the initialisation of the adapters and the batch order."""
    val_fraction: float = 0.2
    """Share of the labelled images held out for validation (unless the data fixes a split)."""
    device: str = "auto"
    """'auto' (GPU when there is one), 'cpu' or 'cuda'."""
    max_steps: int | None = None
    """Stop after this many optimiser steps (smoke tests); None: run every epoch."""
    eval_every_epoch: bool = True
    """Score the validation set after each epoch (the live FPA/TICE curve)."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.lora not in TOWERS:
            raise HierTuneError(f"lora must be one of {', '.join(TOWERS)}, not {self.lora!r}.")
        checks = [
            ("epochs", self.epochs >= 1),
            ("batch_size", self.batch_size >= 1),
            ("grad_accum", self.grad_accum >= 1),
            ("rank", self.rank >= 1),
            ("lr", self.lr > 0),
            ("alpha", self.alpha >= 0),
            ("lam", self.lam >= 0),
            ("eps", 0 <= self.eps < 1),
            ("val_fraction", 0 <= self.val_fraction < 1),
            ("warmup_ratio", 0 <= self.warmup_ratio < 1),
        ]
        for name, ok in checks:
            if not ok:
                raise HierTuneError(f"Run setting {name}={getattr(self, name)!r} is out of range.")
        if self.templates is not None:
            self.templates = check_templates(self.templates)

    @property
    def lora_spec(self) -> LoraSpec:
        return LoraSpec(
            self.lora, self.rank, self.lora_alpha, self.lora_dropout, tuple(self.lora_targets)
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RunConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise HierTuneError(f"Unknown run setting {sorted(unknown)[0]!r}.")
        return cls(**data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise HierTuneError(f"Cannot read run config {path}: {exc}.") from None
        return cls.from_dict(data)
