"""An honest test of the paper's claim that TP-KL and HiSCE improve on cross-entropy.

The paper (arXiv 2512.21529) adds Tree-Path KL (TP-KL) and Hierarchy-Sibling Smoothed CE
(HiSCE) to per-level CE. TP-KL splits exactly into CE and a label-free term
(`hiercore.losses.mass_balance`): CE + alpha * TP-KL = (1 + alpha) * CE + alpha * B + c.
So a gain of CE + TP-KL over CE can come from a larger CE weight, from B, or from
neither; the controls (1 + alpha) * CE and CE + alpha * B tell which (FINDINGS.md §1).
Beside the paper's rows the study trains the baselines the literature says to beat
(FINDINGS.md §4): flat leaf CE with parents marginalised and a linear probe, and scores
every model with three decodings: independent (the paper's), consistent (best valid
path) and risk-minimising (the leaf of least expected LCA height, Karthik et al. 2021).

Two settings share the summary code:

- ``synthetic``: frozen features from `hiercore.synthetic_hierarchy`, where every level
  is informative, and a trainable cosine text head, at several logit scales. Every seed
  draws a fresh tree, fresh images and fresh prompts; metrics are on held-out images.
  Beside the metrics it records the evidence for the explanation: each loss's gradient
  on each level's logits, the share of the concatenated softmax's mass held by each
  level, and the cosine between B's gradient and CE's.
- ``demo``: the same loss rows from the baselines registry (LoRA on a real CLIP) through
  `hiercore.baselines.run_comparison`, summarised the same way.

Intervals are 95% Student-t intervals over seeds; "vs CE" columns are paired over seeds
(each seed's difference to the CE row of the same seed and scale).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from hiercore.baselines.result import levels_from_leaf_scores
from hiercore.decode import leaf_to_path, path_scores
from hiercore.losses import hierarchical_loss, hisce, level_cross_entropy, mass_balance
from hiercore.losses import tree_path_kl as tpkl_loss
from hiercore.metrics import evaluate_predictions, full_path_accuracy, mistake_severity
from hiercore.synthetic_hierarchy import (
    CosineHead,
    LinearProbe,
    SyntheticData,
    SyntheticSetting,
    leaf_paths,
    make_synthetic,
)


@dataclass(frozen=True)
class LossRow:
    """One row of the study: a training objective (or a baseline) and its weights."""

    name: str
    alpha: float = 0.0
    """TP-KL weight."""
    lam: float = 0.0
    """HiSCE weight."""
    ce_weight: float = 1.0
    """Per-level CE weight (1 + alpha for the scaled-CE control)."""
    balance: float = 0.0
    """Weight of B alone (alpha for the mass-balance control)."""
    temperature: float = 1.0
    """TP-KL softmax temperature (1: the paper's)."""
    size_correction: bool = False
    """TP-KL with log C_l subtracted per level (a variant; False: the paper's)."""
    flat: bool = False
    """Leaf CE only; parents marginalised from the leaf softmax."""
    probe: bool = False
    """A leaf linear probe instead of the cosine head (no logit scale)."""


def claim_rows(
    alphas: tuple[float, ...] = (0.5, 1.0, 2.0),
    lams: tuple[float, ...] = (0.5, 1.0, 2.0),
    temperature: float = 0.5,
) -> list[LossRow]:
    """The paper's rows, its ablation, the controls at every alpha, baselines, variants."""
    rows = [LossRow("ce"), LossRow("flat-ce-marginal", flat=True)]
    for a in alphas:
        rows += [
            LossRow(f"tpkl a={a:g}", alpha=a),
            LossRow(f"ce-scaled a={a:g}", ce_weight=1.0 + a),
            LossRow(f"ce-balance a={a:g}", balance=a),
        ]
    rows += [LossRow(f"hisce l={lam:g}", lam=lam) for lam in lams]
    rows += [
        LossRow("tpkl-hisce a=1 l=1", alpha=1.0, lam=1.0),
        LossRow("tpkl-size a=1", alpha=1.0, size_correction=True),
        LossRow(f"tpkl-T{temperature:g} a=1", alpha=1.0, temperature=temperature),
        LossRow("linear-probe", probe=True),
    ]
    return rows


@dataclass(frozen=True)
class ScaleRow:
    """A logit scale condition: its start value and whether it trains."""

    label: str
    init: float
    learn: bool


DEFAULT_SCALES = (
    ScaleRow("fixed 17.25", 17.25, False),  # the embedded demo model's scale
    ScaleRow("fixed 50", 50.0, False),
    ScaleRow("learned", 17.25, True),
)


@dataclass(frozen=True)
class Condition:
    """A synthetic setting and the training budget its rows get."""

    name: str
    setting: SyntheticSetting
    steps: int
    """Full-batch Adam steps of every row."""


DEFAULT_CONDITIONS = (
    # prompts near their classes at every level, trained to convergence
    Condition("informative", SyntheticSetting(noise=2.5), 150),
    # like the demo: coarse prompts far from their classes, a short budget
    Condition("weak coarse prompts", SyntheticSetting(noise=2.5, prompt_noise=(4, 4, 1)), 50),
)


@dataclass(frozen=True)
class StudyConfig:
    """What every synthetic run shares (identical across rows)."""

    lr: float = 0.02
    """Adam learning rate (node embeddings, scale, probe)."""
    eps: float = 0.1
    """HiSCE sibling smoothing."""
    scales: tuple[ScaleRow, ...] = DEFAULT_SCALES
    rows: tuple[LossRow, ...] = field(default_factory=lambda: tuple(claim_rows()))


# ------------------------------------------------------------------------- training
@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one thread: these matrices are tiny, and on a shared CPU several
    threads spend far more time waiting for each other than computing (100x measured)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def train_row(
    data: SyntheticData, row: LossRow, scale: ScaleRow, config: StudyConfig, steps: int, seed: int
):
    """Train one head for `row` on `data` for `steps`; returns the head (in eval mode)."""
    with single_thread():
        return _train(data, row, scale, config, steps, seed)


def _train(data, row: LossRow, scale: ScaleRow, config: StudyConfig, steps: int, seed: int):
    torch.manual_seed(seed)
    if row.probe:
        head: torch.nn.Module = LinearProbe(data.train_x.shape[1], data.sizes[-1])
    else:
        head = CosineHead(data.prompts, scale.init, scale.learn)
    optimizer = torch.optim.Adam(head.parameters(), lr=config.lr)
    targets = data.train_y
    if row.flat or row.probe:
        targets = data.train_y[:, -1:]
    for _ in range(steps):
        logits = head(data.train_x)
        if row.flat:
            logits = logits[-1:]
        terms = hierarchical_loss(
            logits,
            targets,
            data.parents[-len(logits) :],
            alpha=row.alpha,
            lam=row.lam,
            eps=config.eps,
            ce_weight=row.ce_weight,
            balance=row.balance,
            tpkl_temperature=row.temperature,
            tpkl_size_correction=row.size_correction,
        )
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        optimizer.step()
    return head.eval()


def level_logits(head: torch.nn.Module, row: LossRow, x: Tensor, parents: list[Tensor]):
    """(per-level logits, leaf log-posterior) of a trained head on features x."""
    with torch.no_grad():
        logits = head(x)
    if row.flat or row.probe:
        leaf = logits[-1]
        levels = [torch.from_numpy(z) for z in levels_from_leaf_scores(leaf, parents, True)]
        return levels, F.log_softmax(leaf.double(), dim=1)
    # the joint of independent levels restricted to valid paths, renormalised over leaves
    return logits, F.log_softmax(path_scores(logits, parents).double(), dim=1)


# ------------------------------------------------------------------------- scoring
def lca_height_matrix(parents: list[Tensor]) -> Tensor:
    """(C_L, C_L) height of the lowest common ancestor of two leaves (0 on the diagonal)."""
    paths = leaf_paths(parents)
    shared = (paths[:, None, :] == paths[None, :, :]).cumprod(dim=2).sum(dim=2)
    return (len(parents) - shared).double()


def risk_decode(leaf_log_posterior: Tensor, parents: list[Tensor]) -> Tensor:
    """Path of the leaf with least expected LCA height under the posterior (CRM)."""
    risk = leaf_log_posterior.exp() @ lca_height_matrix(parents)
    return leaf_to_path(risk.argmin(dim=1), parents)


def score_logits(
    logits: list[Tensor], leaf_log_posterior: Tensor, true: Tensor, parents: list[Tensor]
) -> dict:
    """FPA, TICE, per-level accuracy and severity under the three decodings."""
    m = evaluate_predictions(logits, true, parents)
    c = m["consistent"]
    crm = risk_decode(leaf_log_posterior, parents)
    row = {
        "fpa": m["fpa"],
        "fpa_consistent": c["fpa"],
        "fpa_risk": full_path_accuracy(crm, true),
        "tice": m["tice"],
        "tice_consistent": c["tice"],
        "hca": m["hca"],
        "severity": m["mistake_severity"],
        "severity_consistent": c["mistake_severity"],
        "severity_risk": mistake_severity(crm, true, parents),
    }
    for level, (a, b) in enumerate(zip(m["level_accuracy"], c["level_accuracy"], strict=True)):
        row[f"acc_l{level + 1}"] = a
        row[f"acc_l{level + 1}_consistent"] = b
    return row


# ------------------------------------------------------------------------- evidence
def gradient_evidence(logits: list[Tensor], targets: Tensor, parents: list[Tensor], eps: float):
    """Per level: each loss's per-sample gradient norm on the logits (mean over samples),
    the level's share of the concatenated softmax's mass, the cosine between B's and
    CE's gradients, and the push -dB/dz that B gives the true node."""
    zs = [z.detach().double().requires_grad_(True) for z in logits]
    losses = {
        "ce": level_cross_entropy(zs, targets),
        "tpkl": tpkl_loss(zs, targets),
        "balance": mass_balance(zs, targets),
        "hisce": hisce(zs, targets, parents, eps=eps),
    }
    grads = {k: torch.autograd.grad(v, zs) for k, v in losses.items()}
    log_mass = torch.stack([torch.logsumexp(z.detach(), dim=1) for z in zs], dim=1)
    mass_share = (log_mass - torch.logsumexp(log_mass, dim=1, keepdim=True)).exp().mean(0)
    out = []
    for level in range(len(zs)):
        r = {"level": level + 1, "mass_share": float(mass_share[level])}
        for k, g in grads.items():
            r[f"grad_{k}"] = float(g[level].norm(dim=1).mean() * len(targets))
        gb, gc = grads["balance"][level], grads["ce"][level]
        r["cos_balance_ce"] = float(F.cosine_similarity(gb, gc, dim=1).mean())
        # B's push on the true node's logit: negative means B lowers the right answer
        y = targets[:, level].unsqueeze(1)
        r["balance_on_true"] = float(-(gb.gather(1, y)).mean() * len(targets))
        out.append(r)
    return out


# ------------------------------------------------------------------------- the study
def run_synthetic_study(
    seeds: int,
    out_dir: str | Path,
    conditions: tuple[Condition, ...] = DEFAULT_CONDITIONS,
    config: StudyConfig | None = None,
    first_seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Train every row at every scale, in every condition, for every seed; write tables.

    Writes runs.csv (one row per condition, seed, scale and method), summary.csv and
    summary.md (mean and 95% t-interval, paired difference to CE), evidence.csv and
    evidence.md. Returns the summary table. The linear probe has no logit scale and runs
    once per condition and seed.
    """
    config = config or StudyConfig()
    say = progress or (lambda s: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs, evidence = [], []
    started = time.time()
    with single_thread():
        for condition in conditions:
            for seed in range(first_seed, first_seed + seeds):
                data = make_synthetic(condition.setting, seed)
                for scale in config.scales:
                    for row in config.rows:
                        if row.probe and scale is not config.scales[0]:
                            continue
                        t0 = time.time()
                        head = train_row(data, row, scale, config, condition.steps, seed)
                        logits, post = level_logits(head, row, data.test_x, data.parents)
                        r = {"condition": condition.name, "seed": seed}
                        r["scale"] = "none" if row.probe else scale.label
                        r["method"] = row.name
                        r.update(score_logits(logits, post, data.test_y, data.parents))
                        r["final_scale"] = getattr(head, "scale", math.nan)
                        r["train_s"] = time.time() - t0
                        runs.append(r)
                        if row.name == "ce":
                            ev = _evidence_rows(data, head, scale, seed, config.eps)
                            evidence += [{"condition": condition.name, **e} for e in ev]
                say(f"{condition.name}: seed {seed} done ({time.time() - started:.0f} s)")
    runs_df = pd.DataFrame(runs)
    runs_df.to_csv(out / "runs.csv", index=False)
    summary = summarise(runs_df, ["condition", "scale"])
    summary.to_csv(out / "summary.csv", index=False)
    evidence_df = pd.DataFrame(evidence)
    evidence_df.to_csv(out / "evidence.csv", index=False)
    info = {
        **{
            f"condition '{c.name}'": f"{_describe(c.setting)}; {c.steps} full-batch Adam steps"
            for c in conditions
        },
        "shared": f"Adam lr {config.lr:g}, HiSCE eps {config.eps:g}",
        "seeds": f"{seeds} ({first_seed}..{first_seed + seeds - 1}); each draws a fresh "
        "tree of means, images and prompts",
        "evaluation": "held-out images drawn from the same class means",
        "time": f"{time.time() - started:.0f} s",
    }
    levels = setting_levels(conditions[0].setting)
    (out / "summary.md").write_text(summary_markdown(summary, info, levels))
    (out / "evidence.md").write_text(evidence_markdown(evidence_df))
    return summary


def _evidence_rows(data, ce_head, scale: ScaleRow, seed: int, eps: float) -> list[dict]:
    rows = []
    start = CosineHead(data.prompts, scale.init, scale.learn)
    for stage, head in (("start", start), ("after CE training", ce_head)):
        with torch.no_grad():
            logits = head(data.train_x)
        for r in gradient_evidence(logits, data.train_y, data.parents, eps):
            rows.append({"seed": seed, "scale": scale.label, "stage": stage, **r})
    return rows


def _describe(s: SyntheticSetting) -> str:
    sizes = "/".join(str(n) for n in s.sizes)
    spread = "/".join(f"{v:g}" for v in s.spread)
    prompt = "/".join(f"{v:g}" for v in s.prompt_noise)
    return (
        f"complete tree {sizes} nodes, D={s.dim}, offset norms {spread}, noise norm "
        f"{s.noise:g}, prompt noise {prompt}, {s.train_per_leaf} training images per leaf"
    )


def setting_levels(s: SyntheticSetting) -> list[str]:
    return [f"l{level + 1}" for level in range(len(s.branching))]


# ------------------------------------------------------------------------- summaries
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228]


def t_interval(values) -> tuple[float, float]:
    """(mean, half-width of the 95% Student-t interval); half-width NaN for one value."""
    v = np.asarray(pd.to_numeric(pd.Series(values), errors="coerce").dropna(), dtype=float)
    if v.size == 0:
        return math.nan, math.nan
    if v.size == 1:
        return float(v[0]), math.nan
    df = v.size - 1
    t = _T975[df - 1] if df <= len(_T975) else 1.96 + 2.4 / df  # close above 10 d.f.
    return float(v.mean()), float(t * v.std(ddof=1) / math.sqrt(v.size))


SUMMARY_METRICS = (
    "fpa",
    "fpa_consistent",
    "fpa_risk",
    "tice",
    "hca",
    "severity_consistent",
    "severity_risk",
)
PAIRED = ("fpa", "fpa_consistent")


def summarise(runs: pd.DataFrame, group: list[str], reference: str = "ce") -> pd.DataFrame:
    """Mean and 95% t half-width per (group, method); paired FPA difference to `reference`.

    The reference of a group is the `reference` method in the same group; rows with no
    reference there (the scale-free probe) are compared with the first group's.
    """
    metrics = [c for c in runs.columns if c in SUMMARY_METRICS or c.startswith("acc_l")]
    metrics += [c for c in ("final_scale",) if c in runs.columns]
    keys = [*group, "method"]
    ref = runs[runs["method"] == reference]
    rows = []
    for values, g in runs.groupby(keys, sort=False):
        r = dict(zip(keys, values, strict=True))
        r["seeds"] = len(g)
        for m in metrics:
            r[f"{m}_mean"], r[f"{m}_ci"] = t_interval(g[m])
        same = ref
        for k in group:
            in_group = same[same[k] == r[k]]
            same = in_group if not in_group.empty else same[same[k] == same[k].iloc[0]]
        base = same.set_index("seed")
        for m in PAIRED:
            if m not in g or m not in base:
                continue
            paired = g.set_index("seed")[m] - base[m].reindex(g["seed"]).to_numpy()
            r[f"d_{m}_mean"], r[f"d_{m}_ci"] = t_interval(paired)
        rows.append(r)
    return pd.DataFrame(rows)


def _cell(mean: float, ci: float, digits: int = 3, signed: bool = False) -> str:
    if mean is None or math.isnan(mean):
        return "–"
    text = f"{mean:+.{digits}f}" if signed else f"{mean:.{digits}f}"
    return text if ci is None or math.isnan(ci) else f"{text} ± {ci:.{digits}f}"


def summary_markdown(summary: pd.DataFrame, info: dict, levels: list[str]) -> str:
    """The summary for people: 'mean ± 95% t half-width', grouped by scale."""
    cols = [
        ("FPA ind.", "fpa", False),
        ("FPA cons.", "fpa_consistent", False),
        ("FPA risk", "fpa_risk", False),
        ("ΔFPA ind. vs CE", "d_fpa", True),
        ("ΔFPA cons. vs CE", "d_fpa_consistent", True),
        ("TICE ind.", "tice", False),
        *((f"Acc {lv} ind.", f"acc_{lv}", False) for lv in levels),
        ("Severity cons.", "severity_consistent", False),
    ]
    lines = ["# The paper's claim: summary", ""]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    lines += [
        "- cells: mean ± half-width of the 95% Student-t interval over seeds; Δ columns are "
        "paired differences to the CE row of the same scale and seed; TICE under consistent "
        "and risk decoding is 0 by construction",
        "",
    ]
    group = [k for k in ("condition", "scale") if k in summary.columns]
    parts = summary.groupby(group, sort=False) if group else [((), summary)]
    for labels, part in parts:
        if group:
            labels = labels if isinstance(labels, tuple) else (labels,)
            title = dict(zip(group, labels, strict=True))
            heading = " / ".join(
                [*(["Condition: " + title["condition"]] if "condition" in title else [])]
                + ([f"logit scale: {title['scale']}"] if "scale" in title else [])
            )
            ce = part[part["method"] == "ce"]
            if "final_scale_mean" in part and not ce.empty:
                final = float(ce["final_scale_mean"].iloc[0])
                heading += "" if math.isnan(final) else f" (CE row's final scale {final:.1f})"
            lines += [f"## {heading}", ""]
        head = ["Method", *(c[0] for c in cols)]
        lines += ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
        for _, r in part.iterrows():
            cells = [str(r["method"])]
            for _, key, signed in cols:
                mean = r.get(f"{key}_mean", math.nan)
                cells.append(_cell(mean, r.get(f"{key}_ci", math.nan), signed=signed))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def evidence_markdown(evidence: pd.DataFrame) -> str:
    """Mean over seeds of the gradient and mass evidence, by scale, stage and level."""
    if evidence.empty:
        return "# Evidence\n\nNo CE row was trained.\n"
    cols = [
        "mass_share",
        "grad_ce",
        "grad_tpkl",
        "grad_balance",
        "grad_hisce",
        "cos_balance_ce",
        "balance_on_true",
    ]
    keys = [k for k in ("condition", "scale", "stage", "level") if k in evidence.columns]
    mean = evidence.groupby(keys, sort=False)[cols].mean().reset_index()
    lines = [
        "# Evidence: where TP-KL's gradient goes",
        "",
        "On the training features, for the prompts where training starts and for the CE "
        "row's trained head; mean over seeds.",
        "",
        "- mass_share: share of the concatenated softmax's mass on the level (Z_l / sum Z)",
        "- grad_*: norm of one sample's loss gradient on the level's logits, mean over "
        "samples (TP-KL = CE + B - log k, so grad_tpkl is grad_ce and grad_balance combined)",
        "- cos_balance_ce: cosine between B's and CE's per-sample gradients on the level",
        "- balance_on_true: -dB/dz of the true node, the push that descending B gives the "
        "right answer, mean over samples; negative: B lowers the true node's logit",
        "",
        "| " + " | ".join(k.capitalize() for k in keys) + " | " + " | ".join(cols) + " |",
        "|" + "---|" * (len(keys) - 1) + "---:" + "|---:" * len(cols) + "|",
    ]
    for _, r in mean.iterrows():
        cells = [str(r[k]) for k in keys]
        cells += [f"{r[c]:.3f}" for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------- demo setting
DEMO_METHODS = (
    "level-ce",
    "flat-ce-marginal",
    "tpkl",
    "ce-scaled",
    "ce-balance",
    "hisce",
    "tpkl-hisce",
    "tpkl-size",
)


def run_demo_study(
    data: str,
    seeds: int,
    out_dir: str | Path,
    config=None,
    methods=DEMO_METHODS,
    progress=None,
    first_seed: int | None = None,
) -> pd.DataFrame:
    """The same rows on real images: registry methods through `run_comparison`.

    Uses the data's own split (the demo manifest holds OpenMoji out) and the run
    config's settings for every row; writes the comparison's files and summary.csv /
    summary.md with t-intervals and paired differences to level-ce. Each seed is one
    comparison in ``seed<k>/``; a seed whose folder already holds its rows is read back,
    not retrained, so a long study runs in chunks (run the same command again).
    """
    from hiercore.baselines.compare import comparison_split, run_comparison
    from hiercore.config import RunConfig
    from hiercore.data import load_data

    config = config or RunConfig()
    first = config.seed if first_seed is None else first_seed
    taxonomy, samples = load_data(data)
    train_s, eval_s, how = comparison_split(taxonomy, samples, config.val_fraction, config.seed)
    out = Path(out_dir)
    parts = []
    for seed in range(first, first + seeds):
        folder = out / f"seed{seed}"
        done = folder / "comparison_runs.csv"
        if done.is_file():
            part = pd.read_csv(done)
            if set(methods) <= set(part["method"]):
                parts.append(part[part["method"].isin(methods)])
                continue
        table = run_comparison(
            taxonomy,
            train_s,
            eval_s,
            replace(config, seed=seed),
            list(methods),
            1,
            folder,
            progress=progress,
        )
        parts.append(table.attrs["runs"])
    runs = pd.concat(parts, ignore_index=True)
    runs.to_csv(out / "runs.csv", index=False)
    acc = [c for c in runs.columns if c.startswith("acc_")]
    runs = runs.rename(columns={c: f"acc_l{i + 1}" for i, c in enumerate(acc)})
    runs = runs.rename(columns={"mistake_severity": "severity"})
    summary = summarise(runs, [], reference="level-ce")
    order = {m: i for i, m in enumerate(methods)}
    summary = summary.sort_values("method", key=lambda c: c.map(order), kind="stable")
    summary.to_csv(out / "summary.csv", index=False)
    info = {
        "data": f"{data} ({how}; {len(train_s)} training, {len(eval_s)} evaluation images)",
        "seeds": f"{first}..{first + seeds - 1}",
        "run config": asdict(replace(config, templates=None)),
    }
    text = summary_markdown(summary, info, [f"l{i + 1}" for i in range(len(acc))])
    (out / "summary.md").write_text(text.replace("vs CE", "vs level-ce"))
    return summary


__all__ = [
    "DEFAULT_CONDITIONS",
    "DEMO_METHODS",
    "Condition",
    "LossRow",
    "ScaleRow",
    "StudyConfig",
    "claim_rows",
    "gradient_evidence",
    "risk_decode",
    "run_demo_study",
    "run_synthetic_study",
    "score_logits",
    "summarise",
    "t_interval",
    "train_row",
]
