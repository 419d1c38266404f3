"""HierTune's library: hierarchy-aware fine-tuning of CLIP models on a class taxonomy.

The modules follow docs/method.md: `taxonomy` (the tree and its per-level indexing), `data`
(labelled image sets), `models` (open_clip loading, prompts, LoRA, per-level logits),
`losses` (CE, TP-KL, HiSCE), `decode` and `metrics`, `training`, `baselines` and
`figures`. Nothing here imports Gradio; the studio in `webapp/` is a client of it.
"""

__version__ = "0.1.0"
