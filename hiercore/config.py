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
from typing import TYPE_CHECKING

from hiercore.errors import HierTuneError
from hiercore.models.prompts import check_templates

if TYPE_CHECKING:
    from hiercore.models.lora import LoraSpec


TOWERS = ("vision", "text", "both", "none")
"""Which encoders get LoRA adapters (`hiercore.models.lora` maps them to module names)."""
TARGETS = ("attn", "mlp", "conv")
"""Parts of a tower LoRA can adapt: attention, the transformer MLP, a CNN's last stages."""


def setting(default, help: str, *, choices: tuple[str, ...] | None = None):
    """A `RunConfig` field whose metadata carries its one-line help and its choices, as in
    peft's `LoraConfig`: the CLI flags and the studio's Train form are made from them."""
    metadata = {"help": help, "choices": choices}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class RunConfig:
    """Everything that defines a fine-tuning run."""

    model: str = setting(
        "default",
        "open_clip architecture, 'default' (embedded), 'tiny-random', a local folder or "
        "hf-hub: id.",
    )
    pretrained: str | None = setting(
        None,
        "open_clip pretrained tag or checkpoint file (with an architecture name).",
    )
    lora: str = setting(
        "both",
        "Towers that get LoRA adapters: vision, text, both or none.",
        choices=TOWERS,
    )
    rank: int = setting(16, "LoRA rank.")
    lora_alpha: float = setting(32.0, "LoRA scaling numerator (scale = lora_alpha / rank).")
    lora_dropout: float = setting(0.0, "Dropout on the LoRA input.")
    lora_targets: list[str] = setting(
        ["attn", "conv"],
        "Parts to adapt where a tower has them: attn, mlp (transformers), conv (a CNN tower).",
        choices=TARGETS,
    )
    alpha: float = setting(
        1.0,
        "Weight of the Tree-Path KL loss (0 turns it off; on the demo it lowered FPA: "
        "results/claim/demo).",
    )
    lam: float = setting(1.0, "Weight of the Hierarchy-Sibling Smoothed CE loss (0 turns it off).")
    eps: float = setting(0.1, "Sibling smoothing mass of HiSCE.")
    ce_weight: float = setting(
        1.0,
        "Weight of the per-level CE (the claim study's (1 + alpha) * CE control raises it).",
    )
    balance: float = setting(
        0.0,
        "Weight of TP-KL's label-free mass-balance term B alone (the CE + alpha * B control).",
    )
    tpkl_temperature: float = setting(
        1.0,
        "Temperature of TP-KL's concatenated softmax (1: the paper's form; < 1 sharpens it).",
    )
    tpkl_size_correction: bool = setting(
        False,
        "Subtract log C_l from each level inside TP-KL, so level size alone is not unbalanced.",
    )
    flat: bool = setting(
        False,
        "Train on the leaf level only (the flat CE baseline); TP-KL and HiSCE then see one level.",
    )
    logit_scale: float | None = setting(
        None,
        "Fixed logit scale s of z = s * cos(image, node) (none: the model's own).",
    )
    learn_logit_scale: bool = setting(
        False,
        "Train the logit scale with the adapters (starting from the fixed or the model's value).",
    )
    style_augment: bool = setting(
        False,
        "Vary colour, contrast, greyscale and blur of training images (pretraining's style "
        "augmentation), so a fine-tune is pushed to ignore the art style.",
    )
    prototypes: float = setting(
        2.0,
        "Weight w of the image prototypes: after training each node also scores by the "
        "nearest mean image of a labelled class under it (docs/method.md §2.1); 0: the "
        "paper's text-only logits.",
    )
    epochs: int = setting(10, "Passes over the training images.")
    batch_size: int = setting(32, "Images per optimiser micro-batch.")
    grad_accum: int = setting(1, "Micro-batches per optimiser step.")
    lr: float = setting(1e-2, "Peak learning rate of AdamW.")
    weight_decay: float = setting(0.01, "AdamW weight decay on the adapters.")
    warmup_ratio: float = setting(
        0.1,
        "Fraction of the optimiser steps spent warming the learning rate up linearly.",
    )
    templates: list[str] | None = setting(
        None,
        "Prompt templates ({name}, {parent}, {root}, {path}, {description}); none: the "
        "model's own.",
    )
    seed: int = setting(
        0,
        "Seed of the split, the initialisation of the adapters and the batch order.",
    )
    val_fraction: float = setting(
        0.2,
        "Share of the labelled images held out for validation (unless the data fixes a split).",
    )
    device: str = setting(
        "auto",
        "'auto' (GPU when there is one), 'cpu', 'cuda', 'cuda:<n>' or 'mps'.",
    )
    max_steps: int | None = setting(
        None,
        "Stop after this many optimiser steps (smoke tests); none: run every epoch.",
    )
    negatives: int | None = setting(
        None,
        "Negative nodes sampled per level each step when the text tower trains (labelled "
        "nodes and their siblings always kept, logQ-weighted), for taxonomies of many "
        "thousand nodes; none: every node.",
    )
    eval_every_epoch: bool = setting(
        True,
        "Score the validation set after each epoch (the live FPA/TICE curve).",
    )

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
        for name in (
            "flat",
            "eval_every_epoch",
            "tpkl_size_correction",
            "learn_logit_scale",
            "style_augment",
        ):
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
        if self.negatives is not None and self.tpkl_size_correction:
            raise HierTuneError(
                "Sampled negatives cannot be combined with TP-KL's size correction, which "
                "needs every level's full size; turn one of them off."
            )

    @property
    def lora_spec(self) -> LoraSpec:
        from hiercore.models.lora import LoraSpec  # torch and peft: only when a model is built

        return LoraSpec(
            self.lora, self.rank, self.lora_alpha, self.lora_dropout, tuple(self.lora_targets)
        )

    @property
    def method(self) -> str:
        """The method these losses train, by its name in the baselines registry
        (`hiercore.baselines.lora_losses`): alpha = lambda = 0 is ``level-ce``, ``flat`` with
        neither is ``flat-ce``, alpha alone ``tpkl``, both ``tpkl-hisce``, and so on. A
        combination no comparison row trains joins its parts with "+"."""
        parts = []
        if self.ce_weight != 1:
            parts.append("ce-scaled")
        if self.balance > 0:
            parts.append("ce-balance")
        if self.alpha > 0:
            parts.append("tpkl-size" if self.tpkl_size_correction else "tpkl")
        if self.lam > 0:
            parts.append("hisce")
        name = "tpkl-hisce" if parts == ["tpkl", "hisce"] else "+".join(parts)
        if self.flat:
            return "+".join(["flat-ce", *([name] if name else [])])
        return name or "level-ce"

    def to_dict(self) -> dict:
        """Every setting, and the method they amount to (a record: `from_dict` skips it)."""
        return {**asdict(self), "method": self.method}

    @classmethod
    def from_dict(cls, data: dict) -> RunConfig:
        if not isinstance(data, dict):
            raise HierTuneError(
                f"A run config must be an object of settings, not {type(data).__name__}."
            )
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known - {"method"}
        if unknown:
            raise HierTuneError(f"Unknown run setting {sorted(unknown)[0]!r}.")
        # "method" is recorded, never read: the losses say which method a run is (runs
        # saved before it was derived say "tpkl-hisce" whatever their losses were)
        return cls(**{k: v for k, v in data.items() if k != "method"})

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise HierTuneError(f"Cannot read run config {path}: {exc}.") from None
        return cls.from_dict(data)


def field_help(name: str) -> str:
    """The one-line help of a `RunConfig` setting."""
    return next(f.metadata["help"] for f in fields(RunConfig) if f.name == name)


MAX_TEXT = 1000
"""Longest model name or pretrained tag/file."""

OPTIONAL = {"max_steps", "pretrained", "logit_scale", "negatives"}
"""Settings that may be None."""

TEXT_FIELDS = ("model", "pretrained", "lora", "device")

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
    "logit_scale": (float, (0, False), (100, True)),
    "negatives": (int, (1, True), (10_000_000, True)),
    "prototypes": (float, (0, True), (100, True)),
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
