"""Every comparison method of SPEC §6 behind one interface, and the comparison table.

``create_method(name).fit(taxonomy, train_samples, eval_samples, config, out_dir)``
returns a `MethodResult` (per-level logits on the evaluation samples), scored for every
method by the same `hiercore.metrics.evaluate_predictions`. `run_comparison` (in
`compare`) loops over methods and seeds and writes the table.
"""

# importing the family modules fills the registry, in the order of the table's rows
from hiercore.baselines import zero_shot  # noqa: I001
from hiercore.baselines import lora_losses
from hiercore.baselines import coop
from hiercore.baselines import clip_adapter
from hiercore.baselines import tip_adapter
from hiercore.baselines import lathadapter
from hiercore.baselines.registry import Method, create_method, list_methods, register_method
from hiercore.baselines.result import MethodResult, levels_from_leaf_scores

__all__ = [
    "Method",
    "MethodResult",
    "clip_adapter",
    "coop",
    "create_method",
    "lathadapter",
    "levels_from_leaf_scores",
    "list_methods",
    "lora_losses",
    "register_method",
    "tip_adapter",
    "zero_shot",
]
