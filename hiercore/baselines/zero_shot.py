"""Zero-shot CLIP rows of the comparison (docs/method.md §6): nothing is trained.

- ``zero-shot``: every node of every level gets its prompts (docs/method.md §2) and the per-level
  logits z^(l) = s <f, g_c> are scored as they are; the table shows independent decoding
  (the paper's protocol) and consistent decoding side by side.
- ``zero-shot-chils``: CHiLS-style (Novack et al., ICML 2023): predict among the leaves
  only and map the prediction to its ancestors (`levels_from_leaf_scores`), so both
  decodings give the best leaf's path and TICE is 0.
"""

from __future__ import annotations

from hiercore.baselines.frozen import frozen_features
from hiercore.baselines.registry import Method, register_method
from hiercore.baselines.result import MethodResult, levels_from_leaf_scores


class ZeroShot(Method):
    """Per-level prompts scored without training."""

    def __init__(self, leaves_only: bool = False) -> None:
        self.leaves_only = leaves_only
        self.notes = (
            "no training; leaf prompts only, ancestors of the best leaf"
            if leaves_only
            else "no training; prompts at every level"
        )

    def fit(
        self,
        taxonomy,
        train_samples,
        val_samples,
        config,
        out_dir,
        progress=None,
        stop_event=None,
    ) -> MethodResult:
        # the training images are not needed; encode none of them
        feats = frozen_features(config, taxonomy, [], val_samples, progress)
        logits = feats.eval.logits
        if self.leaves_only:
            logits = levels_from_leaf_scores(logits[-1], feats.parents_np)
        result = MethodResult(
            self.name,
            logits,
            feats.eval.true,
            feats.parents_np,
            trainable_params=0,
            clip_params=feats.clip_params,
            train_time_s=0.0,
            notes=self.notes,
            leaf_only=self.leaves_only,
        )
        result.save(out_dir)
        return result


@register_method("zero-shot")
def zero_shot(**kw) -> Method:
    return ZeroShot(leaves_only=False, **kw)


@register_method("zero-shot-chils")
def zero_shot_chils(**kw) -> Method:
    return ZeroShot(leaves_only=True, **kw)
