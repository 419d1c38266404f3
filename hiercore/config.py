"""The run configuration: one dataclass a user can print, save as JSON and load back.

Every knob of a fine-tuning run is one field with a one-line docstring and a default that
works (peft's `LoraConfig` is the model). The CLI flags and the studio's training form are
both views of this class.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from hiercore.errors import HierTuneError
from hiercore.models.lora import TARGETS, TOWERS, LoraSpec
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
    lora_targets: list[str] = field(default_factory=lambda: ["attn", "conv"])
    """Parts to adapt where a tower has them: attn, mlp (transformers), conv (a CNN tower)."""
    alpha: float = 1.0
    """Weight of the Tree-Path KL loss (0 turns it off)."""
    lam: float = 1.0
    """Weight of the Hierarchy-Sibling Smoothed CE loss (0 turns it off)."""
    eps: float = 0.1
    """Sibling smoothing mass of HiSCE."""
    ce_weight: float = 1.0
    """Weight of the per-level CE (the claim study's (1 + alpha) * CE control raises it)."""
    balance: float = 0.0
    """Weight of TP-KL's label-free mass-balance term B alone (the CE + alpha * B control)."""
    tpkl_temperature: float = 1.0
    """Temperature of TP-KL's concatenated softmax (1: the paper's form; < 1 sharpens it)."""
    tpkl_size_correction: bool = False
    """Subtract log C_l from each level inside TP-KL, so level size alone is not unbalanced."""
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
        """Refuse a setting of the wrong type, non-finite or outside its range, in one sentence.

        Whole-number settings given as integral floats (a form's 8.0, JSON's 5.0) become ints.
        """
        for name, (kind, low, high) in NUMBER_RANGES.items():
            value = getattr(self, name)
            if value is None and name in OPTIONAL:
                continue
            setattr(self, name, _number(name, value, kind))
            _check_range(name, getattr(self, name), low, high)
        for name in TEXT_FIELDS:
            value = getattr(self, name)
            if value is None and name in OPTIONAL:
                continue
            if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT:
                raise HierTuneError(
                    f"Run setting {name} must be a non-empty text of at most {MAX_TEXT} "
                    f"characters, not {_shown(value)}."
                )
        for name in ("flat", "eval_every_epoch", "tpkl_size_correction"):
            if not isinstance(getattr(self, name), bool):
                raise HierTuneError(
                    f"Run setting {name} must be true or false, not {_shown(getattr(self, name))}."
                )
        if self.lora not in TOWERS:
            raise HierTuneError(
                f"lora must be one of {', '.join(TOWERS)}, not {_shown(self.lora)}."
            )
        if not DEVICE.fullmatch(self.device):
            raise HierTuneError(
                f"Run setting device must be auto, cpu, cuda, cuda:<n> or mps, not "
                f"{_shown(self.device)}."
            )
        targets = self.lora_targets
        if (
            not isinstance(targets, list | tuple)
            or not targets
            or not all(isinstance(t, str) and t in TARGETS for t in targets)
        ):
            raise HierTuneError(
                f"Run setting lora_targets must be a non-empty list of {' and/or '.join(TARGETS)}, "
                f"not {_shown(targets)}."
            )
        self.lora_targets = list(targets)
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
        if not isinstance(data, dict):
            raise HierTuneError(
                f"A run config must be an object of settings, not {type(data).__name__}."
            )
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


MAX_TEXT = 1000
"""Longest model name, pretrained tag/file or method name."""

OPTIONAL = {"max_steps", "pretrained"}
"""Settings that may be None."""

TEXT_FIELDS = ("model", "pretrained", "method", "lora", "device")

NUMBER_RANGES: dict[str, tuple[type, tuple[float, bool], tuple[float, bool]]] = {
    # name: (int or float, (low, low included), (high, high included))
    "rank": (int, (1, True), (1024, True)),
    "lora_alpha": (float, (0, True), (10_000, True)),
    "lora_dropout": (float, (0, True), (1, False)),
    "alpha": (float, (0, True), (1000, True)),
    "lam": (float, (0, True), (1000, True)),
    "ce_weight": (float, (0, True), (1000, True)),
    "balance": (float, (0, True), (1000, True)),
    "tpkl_temperature": (float, (0, False), (1000, True)),
    "eps": (float, (0, True), (1, False)),
    "epochs": (int, (1, True), (1000, True)),
    "batch_size": (int, (1, True), (4096, True)),
    "grad_accum": (int, (1, True), (1024, True)),
    "lr": (float, (0, False), (1, True)),
    "weight_decay": (float, (0, True), (1, True)),
    "warmup_ratio": (float, (0, True), (1, False)),
    "seed": (int, (0, True), (2**32 - 1, True)),
    "val_fraction": (float, (0, True), (1, False)),
    "max_steps": (int, (1, True), (10_000_000, True)),
}
"""The range of every numeric setting; bounds well past any sensible run refuse typos and
overflow (lr 1e300, 10^20 epochs) before a run is queued."""

DEVICE = re.compile(r"auto|cpu|mps|cuda(:[0-9]{1,2})?")


def _shown(value) -> str:
    """A short repr of a user's value for an error sentence."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _number(name: str, value, kind: type):
    """`value` as `kind` (an integral float is a whole number); one sentence otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise HierTuneError(f"Run setting {name} must be a number, not {_shown(value)}.")
    if not math.isfinite(value):
        raise HierTuneError(f"Run setting {name} must be a finite number, not {_shown(value)}.")
    if kind is int:
        if value != int(value):
            raise HierTuneError(f"Run setting {name} must be a whole number, not {_shown(value)}.")
        return int(value)
    return float(value)


def _check_range(name: str, value, low: tuple, high: tuple) -> None:
    (lo, lo_in), (hi, hi_in) = low, high
    if (value < lo or (value == lo and not lo_in)) or (value > hi or (value == hi and not hi_in)):
        left = "at least" if lo_in else "above"
        right = "at most" if hi_in else "below"
        raise HierTuneError(
            f"Run setting {name}={_shown(value)} is out of range: it must be {left} {_bound(lo)} "
            f"and {right} {_bound(hi)}."
        )


def _bound(x: float) -> str:
    return f"{int(x):,}" if x == int(x) else f"{x:g}"
