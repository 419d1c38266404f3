"""Every comparison method of docs/method.md §6 behind one interface, and the comparison table.

``create_method(name).fit(taxonomy, train_samples, eval_samples, config, out_dir)``
returns a `MethodResult` (per-level logits on the evaluation samples), scored for every
method by the same `hiercore.metrics.evaluate_predictions`. `run_comparison` (in
`compare`) loops over methods and seeds and writes the table.

Names are resolved on first use, so that importing the package (or `hiercore.baselines.compare`
for its table helpers) does not import torch and open_clip.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Method": "registry",
    "create_method": "registry",
    "describe_methods": "registry",
    "list_methods": "registry",
    "register_method": "registry",
    "MethodResult": "result",
    "levels_from_leaf_scores": "result",
    "CompareEvent": "compare",
    "run_comparison": "compare",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"hiercore.baselines.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'hiercore.baselines' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
