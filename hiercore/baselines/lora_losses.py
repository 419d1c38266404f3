"""The LoRA rows of the comparison: the paper's ablation over the loss (docs/method.md §3, §6).

Each row is one `hiercore.training.train` run of the same `RunConfig` (same towers, rank,
epochs, batch size, learning rate and seed) with only the loss changed:

- ``flat-ce``: cross-entropy on the leaf level alone (``flat=True``); its prompts for inner
  nodes never see a label, so its ancestors are those of its best leaf;
- ``level-ce``: per-level cross-entropy (alpha = lambda = 0);
- ``tpkl``: + Tree-Path KL (lambda = 0);
- ``hisce``: + Hierarchy-Sibling Smoothed CE (alpha = 0);
- ``tpkl-hisce``: + both, the paper's method;
- ``flat-ce-marginal``: the flat run with each ancestor scored by the probability mass of
  its leaves (parents marginalised, as in Valmadre, NeurIPS 2022);
- ``ce-scaled`` and ``ce-balance``: the controls of the claim study. CE + alpha * TP-KL
  equals (1 + alpha) * CE + alpha * B + a constant, with B the label-free mass-balance
  term (`hiercore.losses.mass_balance`); these rows train each half alone;
- ``tpkl-size``: + TP-KL with level size corrected (``tpkl_size_correction``), a variant.

A row keeps the run's alpha (TP-KL weight, also the controls' alpha) and lambda (HiSCE
weight) where its loss uses them, and falls back to 1 where the run set them to 0. The
run folder that `train` writes (adapter, history, predictions) is kept as ``run/`` inside
the row's folder.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from hiercore.baselines.registry import Method, register_method
from hiercore.baselines.result import MethodResult, levels_from_leaf_scores
from hiercore.config import RunConfig
from hiercore.errors import HierTuneError
from hiercore.run_folder import RunFolder
from hiercore.taxonomy import LevelIndex
from hiercore.training import train


class LoraLoss(Method):
    """A LoRA fine-tuning run with one choice of loss terms."""

    needs_lora = True

    def __init__(
        self,
        tpkl: bool,
        hisce: bool,
        flat: bool = False,
        control: str | None = None,
        marginal: bool = False,
        size_correction: bool = False,
    ) -> None:
        if control not in (None, "scaled", "balance"):
            raise ValueError(f"control must be None, 'scaled' or 'balance', not {control!r}.")
        self.tpkl, self.hisce, self.flat = tpkl, hisce, flat
        self.control, self.marginal, self.size_correction = control, marginal, size_correction
        if flat:
            how = "parents marginalised" if marginal else "ancestors of the best leaf"
            self.notes = f"LoRA; leaf CE only; {how}"
        elif control == "scaled":
            self.notes = "LoRA; (1 + alpha) * per-level CE (control for TP-KL's CE half)"
        elif control == "balance":
            self.notes = "LoRA; per-level CE + alpha * B (control: TP-KL's label-free half)"
        else:
            tp = "TP-KL (size-corrected)" if size_correction else "TP-KL"
            terms = ["CE"] + ([tp] if tpkl else []) + (["HiSCE"] if hisce else [])
            self.notes = "LoRA; per-level " + " + ".join(terms)

    def run_config(self, config: RunConfig) -> RunConfig:
        alpha = config.alpha or 1.0
        return replace(
            config,
            alpha=alpha if self.tpkl else 0.0,
            lam=(config.lam or 1.0) if self.hisce else 0.0,
            flat=self.flat,
            ce_weight=1.0 + alpha if self.control == "scaled" else 1.0,
            balance=alpha if self.control == "balance" else 0.0,
            tpkl_size_correction=self.size_correction,
        )

    def fit(
        self, taxonomy, train_samples, val_samples, config, out_dir, progress=None, stop_event=None
    ) -> MethodResult:
        run_config = self.run_config(config)
        started = time.time()
        folder = RunFolder(Path(out_dir) / "run")
        run = train(
            run_config, taxonomy, train_samples, val_samples, folder.path, progress, stop_event
        )
        # training time ends where the final scoring of the evaluation images begins: the
        # run folder's status records it when the loop ends
        status = folder.read_status()
        trained_s = status.train_time_s if status is not None else None
        index = LevelIndex.build(taxonomy)
        with np.load(folder.predictions_file) as npz:
            if "logits_0" not in npz.files:  # hiercore.evaluation.FULL_LOGITS_UP_TO
                raise HierTuneError(
                    "The validation set is too large for a comparison: the run kept only "
                    "the top classes of each image, not the logits every method is scored on."
                )
            logits = [npz[f"logits_{i}"] for i in range(index.depth)]
            true = npz["true"]
        parents = [np.asarray(p) for p in index.parents]
        if self.flat:
            logits = levels_from_leaf_scores(logits[-1], parents, marginal=self.marginal)
        m = run.metrics
        trainable = int(m.get("trainable_params", 0))
        result = MethodResult(
            self.name,
            logits,
            true,
            parents,
            trainable_params=trainable,
            clip_params=int(m.get("total_params", 0)) - trainable,
            train_time_s=trained_s if trained_s is not None else time.time() - started,
            state=run.state,
            notes=self.notes,
            leaf_only=self.flat,
            extra={
                "steps": m.get("steps"),
                "alpha": run_config.alpha,
                "lam": run_config.lam,
                "ce_weight": run_config.ce_weight,
                "balance": run_config.balance,
            },
        )
        result.save(out_dir)
        return result


@register_method("flat-ce")
def flat_ce(**kw) -> Method:
    return LoraLoss(tpkl=False, hisce=False, flat=True, **kw)


@register_method("level-ce")
def level_ce(**kw) -> Method:
    return LoraLoss(tpkl=False, hisce=False, **kw)


@register_method("tpkl")
def tpkl(**kw) -> Method:
    return LoraLoss(tpkl=True, hisce=False, **kw)


@register_method("hisce")
def hisce(**kw) -> Method:
    return LoraLoss(tpkl=False, hisce=True, **kw)


@register_method("tpkl-hisce")
def tpkl_hisce(**kw) -> Method:
    return LoraLoss(tpkl=True, hisce=True, **kw)


@register_method("flat-ce-marginal")
def flat_ce_marginal(**kw) -> Method:
    return LoraLoss(tpkl=False, hisce=False, flat=True, marginal=True, **kw)


@register_method("ce-scaled")
def ce_scaled(**kw) -> Method:
    return LoraLoss(tpkl=False, hisce=False, control="scaled", **kw)


@register_method("ce-balance")
def ce_balance(**kw) -> Method:
    return LoraLoss(tpkl=False, hisce=False, control="balance", **kw)


@register_method("tpkl-size")
def tpkl_size(**kw) -> Method:
    return LoraLoss(tpkl=True, hisce=False, size_correction=True, **kw)
