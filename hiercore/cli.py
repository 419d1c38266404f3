"""The command line: ``python -m hiercore {train,eval,predict,taxonomy,...}``.

Each subcommand is a thin wrapper over the library. A problem with the user's input
(a `HierTuneError`) prints one line ``error: ...`` and exits with status 2; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from hiercore.errors import DataError, HierTuneError


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except HierTuneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hiercore", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="fine-tune a CLIP model on a labelled image set")
    add_data_args(t)
    add_run_args(t)
    t.add_argument("--out", required=True, help="run folder to write")
    t.add_argument("--resume", action="store_true", help="continue from the run's checkpoint")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="evaluate a saved run or a zero-shot model")
    e.add_argument("run", nargs="?", help="run folder (omit for zero-shot with --model)")
    add_data_args(e, required=False)
    e.add_argument("--model", default=None, help="zero-shot model (default: the run's)")
    e.add_argument("--pretrained", default=None)
    e.add_argument("--template", action="append", dest="templates", default=None)
    e.add_argument(
        "--split",
        choices=["val", "all"],
        default="val",
        help="score the validation split (default) or every labelled image",
    )
    e.add_argument("--val-fraction", type=float, default=0.2)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--out", default=None, help="write metrics JSON here")
    e.set_defaults(func=cmd_eval)

    pr = sub.add_parser("predict", help="predict taxonomy paths for images")
    pr.add_argument("images", nargs="+")
    pr.add_argument("--run", help="run folder")
    pr.add_argument("--model", default="default", help="zero-shot model when no --run")
    pr.add_argument("--taxonomy", help="taxonomy file for zero-shot prediction")
    pr.add_argument("--k", type=int, default=3)
    pr.set_defaults(func=cmd_predict)

    tx = sub.add_parser("taxonomy", help="check or convert taxonomy files")
    txs = tx.add_subparsers(dest="taxonomy_command", required=True)
    c = txs.add_parser("check", help="validate a taxonomy file and print its levels")
    c.add_argument("file")
    c.set_defaults(func=cmd_taxonomy_check)
    cv = txs.add_parser("convert", help="convert between taxonomy formats")
    cv.add_argument("src")
    cv.add_argument("dst")
    cv.add_argument("--to", default=None, help="format (default: from the extension)")
    cv.set_defaults(func=cmd_taxonomy_convert)

    for register in _extra_commands():
        register(sub)
    _add_corpus_flags(sub.choices["pretrain-default"])
    return p


def _add_corpus_flags(p: argparse.ArgumentParser) -> None:
    """``pretrain-default --build-corpus DIR``: build the pretraining corpus instead of training."""
    p.add_argument(
        "--build-corpus",
        metavar="DIR",
        default=None,
        help="render the open emoji and icon corpus from npm into DIR, then exit",
    )
    p.add_argument(
        "--packages-dir",
        metavar="DIR",
        default=None,
        help="with --build-corpus: the npm tarballs are here (default: npm pack them)",
    )
    pretrain = p.get_default("func")

    def run(args: argparse.Namespace) -> int:
        return cmd_build_corpus(args) if args.build_corpus else pretrain(args)

    p.set_defaults(func=run)


def cmd_build_corpus(args) -> int:
    import tempfile

    from hiercore.corpus import build_corpus, default_tarballs, npm_pack, rows_per_style
    from hiercore.demo import DEMO_DIR

    with tempfile.TemporaryDirectory() as scratch:
        if args.packages_dir:
            try:
                tarballs = default_tarballs(Path(args.packages_dir))
            except FileNotFoundError as exc:
                raise DataError(str(exc)) from None
        else:
            tarballs = npm_pack(Path(scratch))
        items = build_corpus(Path(args.build_corpus), tarballs, DEMO_DIR / "manifest.csv")
    counts = ", ".join(f"{style} {n}" for style, n in rows_per_style(items).items())
    print(f"wrote {len(items)} rows to {Path(args.build_corpus) / 'corpus.csv'}: {counts}")
    return 0


def _extra_commands():
    """Subcommands that live beside their subject (baselines, the embedded model)."""
    from hiercore.claim_study import register_cli as register_claim_study
    from hiercore.pretrain import register_cli as register_pretrain

    out = [register_pretrain, register_claim_study]
    try:
        from hiercore.baselines.compare import register_cli
    except ModuleNotFoundError as exc:  # only while the baselines package is absent
        if exc.name != "hiercore.baselines.compare":
            raise
    else:
        out.append(register_cli)
    return out


def add_data_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument(
        "--data",
        required=required,
        help="nested class-folder tree or CSV manifest (path, one column per level)",
    )
    p.add_argument(
        "--taxonomy", default=None, help="taxonomy file; default: the tree implied by the data"
    )


def add_run_args(p: argparse.ArgumentParser) -> None:
    from hiercore.config import RunConfig

    d = RunConfig(model="default")
    p.add_argument("--model", default=d.model)
    p.add_argument("--pretrained", default=None)
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--grad-accum", type=int, default=d.grad_accum)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--alpha", type=float, default=d.alpha, help="TP-KL weight")
    p.add_argument("--lam", type=float, default=d.lam, help="HiSCE weight")
    p.add_argument("--eps", type=float, default=d.eps, help="HiSCE sibling smoothing")
    p.add_argument("--flat", action="store_true", help="leaf-level CE only (baseline)")
    p.add_argument("--lora", default=d.lora, choices=["vision", "text", "both", "none"])
    p.add_argument("--rank", type=int, default=d.rank)
    p.add_argument("--lora-targets", default=",".join(d.lora_targets))
    p.add_argument("--template", action="append", dest="templates", default=None)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--val-fraction", type=float, default=d.val_fraction)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--device", default=d.device)


def config_from_args(args) -> RunConfig:  # noqa: F821 - imported lazily for start-up speed
    from hiercore.config import RunConfig

    return RunConfig(
        model=args.model,
        pretrained=args.pretrained,
        epochs=args.epochs,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        lr=args.lr,
        alpha=args.alpha,
        lam=args.lam,
        eps=args.eps,
        flat=args.flat,
        lora=args.lora,
        rank=args.rank,
        lora_targets=[t for t in args.lora_targets.split(",") if t],
        templates=args.templates,
        seed=args.seed,
        val_fraction=args.val_fraction,
        max_steps=args.max_steps,
        device=args.device,
    )


def load_data(data: str, taxonomy_file: str | None = None):
    """(taxonomy, samples) from a folder tree or a CSV manifest."""
    from hiercore.data import samples_from_folder_tree, samples_from_manifest
    from hiercore.taxonomy.formats import load_taxonomy

    path = Path(data)
    if not path.exists():
        raise DataError(f"Data path {data} does not exist.")
    taxonomy = load_taxonomy(taxonomy_file) if taxonomy_file else None
    if path.is_dir():
        tree_tax, samples = samples_from_folder_tree(path)
        if taxonomy is not None:
            samples = _relabel(samples, tree_tax, taxonomy)
        else:
            taxonomy = tree_tax
    elif path.suffix.lower() == ".csv":
        taxonomy, samples = samples_from_manifest(path, taxonomy)
    else:
        raise DataError(f"{data} is neither a folder of class folders nor a .csv manifest.")
    if not samples:
        raise DataError(f"{data} holds no labelled images.")
    return taxonomy, samples


def _relabel(samples, source, target):
    """Map labels of a folder-implied tree onto a given taxonomy by name path."""
    from dataclasses import replace

    out = []
    for s in samples:
        names = source.path_names(s.node_id) if s.node_id else []
        node = target.find_by_path(names) if names else None
        if names and node is None:
            raise DataError(f"{s.path}: folder path {' / '.join(names)} is not in the taxonomy.")
        out.append(replace(s, node_id=node))
    return out


def split(taxonomy, samples, val_fraction: float, seed: int):
    from hiercore.data import split_samples
    from hiercore.taxonomy import LevelIndex

    return split_samples(samples, LevelIndex.build(taxonomy), val_fraction, seed)


def cmd_train(args) -> int:
    from hiercore.training import train

    config = config_from_args(args)
    taxonomy, samples = load_data(args.data, args.taxonomy)
    train_s, val_s = split(taxonomy, samples, config.val_fraction, config.seed)
    bar = _ProgressBar()
    result = train(config, taxonomy, train_s, val_s, args.out, progress=bar, resume=args.resume)
    bar.close()
    m = result.metrics
    print(json.dumps(_headline(m), indent=2))
    print(f"wrote {Path(args.out) / 'metrics.json'}")
    return 0


def cmd_eval(args) -> int:
    from hiercore.config import RunConfig
    from hiercore.evaluation import collect, score
    from hiercore.models import HierClip, apply_lora, load_clip
    from hiercore.taxonomy import Taxonomy
    from hiercore.training import load_adapter

    if args.run:
        run = Path(args.run)
        config = RunConfig.load(run / "config.json")
        taxonomy = Taxonomy.from_dict(json.loads((run / "taxonomy.json").read_text()))
        bundle = load_clip(config.model, config.pretrained)
        apply_lora(bundle.model, config.lora_spec)
        load_adapter(bundle.model, run / "adapter.safetensors")
        templates = config.templates
        if not args.data:
            print(json.dumps(json.loads((run / "metrics.json").read_text()), indent=2))
            return 0
        _, samples = load_data(args.data, str(run / "taxonomy.json"))
        seed, frac = config.seed, config.val_fraction
    else:
        if not args.data or not args.model:
            raise HierTuneError("Zero-shot evaluation needs --data and --model.")
        taxonomy, samples = load_data(args.data, args.taxonomy)
        bundle = load_clip(args.model, args.pretrained)
        templates, seed, frac = args.templates, args.seed, args.val_fraction
    if args.split == "val":
        _, samples = split(taxonomy, samples, frac, seed)
    model = HierClip(bundle, taxonomy, templates)
    metrics = score(collect(model, samples), model.parents())
    text = json.dumps(metrics, indent=2)
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return 0


def cmd_predict(args) -> int:
    from hiercore.predict import Predictor
    from hiercore.taxonomy.formats import load_taxonomy

    if args.run:
        predictor = Predictor.from_run(args.run)
    else:
        if not args.taxonomy:
            raise HierTuneError("Zero-shot prediction needs --taxonomy (or give --run).")
        predictor = Predictor.zero_shot(load_taxonomy(args.taxonomy), args.model)
    for path, pred in zip(args.images, predictor.predict_files(args.images, k=args.k), strict=True):
        print(json.dumps({"image": path, **pred.to_dict()}))
    return 0


def cmd_taxonomy_check(args) -> int:
    from hiercore.taxonomy import LevelIndex
    from hiercore.taxonomy.formats import load_taxonomy

    tax = load_taxonomy(args.file)
    index = LevelIndex.build(tax)
    names = tax.level_names or [f"level {i + 1}" for i in range(index.depth)]
    print(f"{args.file}: valid, {len(tax)} nodes, {len(tax.leaves())} leaves, {index.depth} levels")
    for lvl, size in enumerate(index.sizes):
        pads = sum(index.padded[lvl])
        extra = f" ({pads} padding copies of shallower leaves)" if pads else ""
        print(f"  {lvl + 1}. {names[lvl] if lvl < len(names) else ''}: {size} classes{extra}")
    return 0


def cmd_taxonomy_convert(args) -> int:
    from hiercore.taxonomy.formats import load_taxonomy, save_taxonomy

    tax = load_taxonomy(args.src)
    save_taxonomy(tax, args.dst, args.to)
    print(f"wrote {args.dst}")
    return 0


def _headline(m: dict) -> dict:
    keys = ("fpa", "tice", "level_accuracy", "hca", "n_val", "trainable_pct", "train_time_s")
    out = {k: m.get(k) for k in keys}
    out["consistent"] = {k: m.get("consistent", {}).get(k) for k in ("fpa", "tice")}
    return out


class _ProgressBar:
    """A tqdm bar over optimiser steps fed by training progress events."""

    def __init__(self) -> None:
        self.bar = None

    def __call__(self, event) -> None:
        from tqdm import tqdm

        if event.phase == "train":
            if self.bar is None:
                self.bar = tqdm(total=event.steps_total, desc="train", unit="step")
            self.bar.n = event.step
            self.bar.set_postfix(epoch=event.epoch, loss=f"{event.losses.get('total', 0):.3f}")
            self.bar.refresh()
        elif event.phase == "eval" and event.val:
            msg = (
                f"epoch {event.epoch}: val FPA {event.val['fpa']:.3f} TICE {event.val['tice']:.3f}"
            )
            (self.bar.write if self.bar else print)(msg)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
