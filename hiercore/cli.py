"""The command line: ``hiertune`` or ``python -m hiercore {train,eval,predict,taxonomy,...}``.

Each subcommand is a thin wrapper over the library, imported when the command runs (so
``--help`` never loads torch). The run settings' flags are made from `RunConfig`'s fields
(`add_config_flags`): their help and defaults live there only. A problem with the user's input
(a `HierTuneError`) prints one line ``error: ...`` and exits with status 2; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import typing
from collections.abc import Callable, Iterable
from dataclasses import MISSING, fields
from pathlib import Path

from hiercore.config import RunConfig  # light: no torch (tests/test_config.py)
from hiercore.errors import DataError, HierTuneError


def main(argv: list[str] | None = None, prog: str = "python -m hiercore") -> int:
    return run(build_parser(prog), argv)


def run(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    """Parse `argv` and run the chosen command: a user's error is one line and status 2."""
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


def build_parser(
    prog: str = "python -m hiercore", extra_commands: Iterable[Callable] = ()
) -> argparse.ArgumentParser:
    """The CLI's parser; each of `extra_commands` adds a subcommand to it (the ``hiertune``
    command adds ``studio`` this way, so that the library never imports the studio)."""
    p = argparse.ArgumentParser(
        prog=prog, description="HierTune: hierarchy-aware fine-tuning of CLIP on a class taxonomy."
    )
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="fine-tune a CLIP model on a labelled image set")
    add_data_args(t)
    t.add_argument("--out", required=True, help="run folder to write")
    t.add_argument("--resume", action="store_true", help="continue from the run's checkpoint")
    add_config_flags(t)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="evaluate a saved run or a zero-shot model")
    e.add_argument("run", nargs="?", help="run folder (omit for zero-shot)")
    add_data_args(e, required=False)
    e.add_argument(
        "--split",
        choices=["val", "all"],
        default="val",
        help="score the validation split (default) or every labelled image",
    )
    e.add_argument("--out", default=None, help="write metrics JSON here")
    add_config_flags(e, ZERO_SHOT, "zero-shot settings (a run uses its own)")
    e.set_defaults(func=cmd_eval)

    pr = sub.add_parser("predict", help="predict taxonomy paths for images")
    pr.add_argument("images", nargs="+")
    pr.add_argument("--run", help="run folder")
    pr.add_argument("--taxonomy", help="taxonomy file for zero-shot prediction")
    pr.add_argument("--k", type=int, default=3, help="number of paths per image")
    add_config_flags(pr, ("model",), "zero-shot settings (without --run)")
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

    cmp = sub.add_parser(
        "compare",
        help="train and score baselines and the hierarchical losses on one split",
        description="Every method on the same split, the same budget, several seeds "
        "(hiercore.baselines.compare).",
    )
    add_data_args(cmp, required=False)
    cmp.add_argument("--methods", default="all", help="'all' or a comma-separated list")
    cmp.add_argument("--list", action="store_true", help="print the method names and exit")
    cmp.add_argument("--seeds", type=int, default=1, help="number of seeds: seed, seed + 1, ...")
    cmp.add_argument("--out", help="folder for comparison.csv / comparison.md (required)")
    add_config_flags(
        cmp,
        [n for n in config_names() if n not in SET_BY_COMPARE_ROWS],
        "run settings shared by every row (alpha and lam fall back to 1 where a row needs them)",
    )
    cmp.set_defaults(func=cmd_compare)

    cs = sub.add_parser(
        "claim-study",
        help="CE vs CE + TP-KL / HiSCE with controls, over seeds, with 95%% intervals",
        description="The paper's claim, tested with controls (hiercore.claim_study).",
    )
    cs.add_argument("--setting", choices=["synthetic", "demo"], default="synthetic")
    cs.add_argument("--seeds", type=int, default=5, help="number of seeds (at least 2)")
    cs.add_argument("--first-seed", type=int, default=0)
    cs.add_argument("--out", required=True, help="folder for the CSVs and tables")
    cs.add_argument("--data", default="assets/demo/manifest.csv", help="the demo setting's data")
    cs.add_argument(
        "--methods",
        nargs="+",
        default=None,
        help="demo setting: registry rows to train (default: every row of the study)",
    )
    add_config_flags(cs, CLAIM_DEMO, "demo setting (LoRA runs on real images)")
    cs.set_defaults(func=cmd_claim_study)

    pt = sub.add_parser("pretrain-default", help="pretrain the embedded small CLIP")
    pt.add_argument("--out", default=None, help="output folder (default: assets/model)")
    pt.add_argument("--demo", default=None, help="the demo set (default: assets/demo)")
    pt.add_argument("--corpus", default=None, help="a corpus folder (corpus.csv) to train on")
    pt.add_argument("--arch", help="an architecture in hiercore/models/configs")
    pt.add_argument("--steps", type=int, help="optimiser steps")
    pt.add_argument("--batch-size", type=int)
    pt.add_argument("--icon-fraction", type=float, help="share of icons in a batch")
    pt.add_argument(
        "--objective",
        choices=("anchored", "clip"),
        help="anchored (images and captions meet at one learnt point per class; default) "
        "or clip (captions of the batch only)",
    )
    pt.add_argument("--lr", type=float)
    pt.add_argument("--seed", type=int)
    pt.add_argument("--device")
    pt.add_argument("--init", default=None, help="continue from an earlier output folder")
    pt.add_argument(
        "--anchors-at-captions",
        action="store_true",
        default=None,
        help="with --init and the anchored objective: start each class's anchor at its "
        "captions' mean feature instead of a random point",
    )
    pt.add_argument("--state", default=None, help="where a chunked run keeps its state")
    pt.add_argument("--minutes", type=float, default=None, help="stop and save after this long")
    pt.add_argument("--resume", action="store_true", help="go on from the saved state")
    pt.add_argument(
        "--build-corpus",
        metavar="DIR",
        default=None,
        help="render the open emoji and icon corpus from npm into DIR, then exit",
    )
    pt.add_argument(
        "--packages-dir",
        metavar="DIR",
        default=None,
        help="with --build-corpus: the npm tarballs are here (default: npm pack them)",
    )
    pt.set_defaults(func=cmd_pretrain)
    for add in extra_commands:
        add(sub)
    return p


ZERO_SHOT = ("model", "pretrained", "templates", "seed", "val_fraction")
"""The settings a zero-shot evaluation reads."""
SET_BY_COMPARE_ROWS = {"flat", "ce_weight", "balance", "tpkl_size_correction", "eval_every_epoch"}
"""Settings each comparison row sets itself (hiercore.baselines.lora_losses, compare)."""
CLAIM_DEMO = (
    "model",
    "lora",
    "rank",
    "lora_alpha",
    "device",
    "epochs",
    "max_steps",
    "batch_size",
    "alpha",
    "lam",
    "lr",
    "logit_scale",
    "learn_logit_scale",
    "prototypes",
)
"""The settings the claim study's demo setting takes (its seeds come from --first-seed)."""


def config_names() -> list[str]:
    return [f.name for f in fields(RunConfig)]


def add_config_flags(
    p: argparse.ArgumentParser,
    names: Iterable[str] | None = None,
    title: str = "run settings (RunConfig)",
) -> None:
    """One flag per `RunConfig` setting (all, or `names`), its help, choices and default
    read from the field. A flag not given is absent from the parsed namespace, so the
    setting keeps the RunConfig default (`config_settings`)."""
    wanted = set(config_names() if names is None else names)
    if not wanted <= set(config_names()):
        raise ValueError(f"Not RunConfig settings: {sorted(wanted - set(config_names()))}.")
    kinds = typing.get_type_hints(RunConfig)
    group = p.add_argument_group(title)
    for f in fields(RunConfig):
        if f.name not in wanted:
            continue
        default = f.default if f.default is not MISSING else f.default_factory()
        kind = kinds[f.name]
        choices = f.metadata.get("choices")
        flag = "--" + f.name.replace("_", "-")
        text = f.metadata["help"].replace("%", "%%")
        common = {"dest": f.name, "default": argparse.SUPPRESS}
        if kind is bool:
            shown = "on" if default else "off"
            group.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                help=f"{text} (default: {shown})",
                **common,
            )
        elif f.name == "templates":
            group.add_argument(
                "--template",
                action="append",
                metavar="TEMPLATE",
                help=f"{text} Repeat for several.",
                **common,
            )
        elif typing.get_origin(kind) is list:
            group.add_argument(
                flag,
                type=_comma_list,
                metavar=",".join(choices or ("A", "B")),
                help=f"{text} Comma-separated. (default: {','.join(default)})",
                **common,
            )
        else:
            base = [k for k in typing.get_args(kind) if k is not type(None)] or [kind]
            group.add_argument(
                flag,
                type=base[0],
                choices=choices,
                help=f"{text} (default: {'none' if default is None else default})",
                **common,
            )


def _comma_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def config_settings(args: argparse.Namespace) -> dict:
    """The `RunConfig` settings given on the command line (see `add_config_flags`)."""
    return {n: getattr(args, n) for n in config_names() if hasattr(args, n)}


def config_from_args(args: argparse.Namespace, **fixed) -> RunConfig:
    return RunConfig(**{**config_settings(args), **fixed})


def add_data_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument(
        "--data",
        required=required,
        help="nested class-folder tree or CSV manifest (path, one column per level)",
    )
    p.add_argument(
        "--taxonomy", default=None, help="taxonomy file; default: the tree implied by the data"
    )


def split(taxonomy, samples, val_fraction: float, seed: int):
    from hiercore.data import split_samples
    from hiercore.taxonomy import LevelIndex

    return split_samples(samples, LevelIndex.build(taxonomy), val_fraction, seed)


def cmd_train(args) -> int:
    from hiercore.data import load_data
    from hiercore.progress_bars import TrainBar
    from hiercore.run_folder import METRICS, RunFolder
    from hiercore.training import train

    config = config_from_args(args)
    taxonomy, samples = load_data(args.data, args.taxonomy)
    train_s, val_s = split(taxonomy, samples, config.val_fraction, config.seed)
    bar = TrainBar()
    result = train(config, taxonomy, train_s, val_s, args.out, progress=bar, resume=args.resume)
    bar.close()
    m = result.metrics
    if not m:  # a torchrun process other than rank 0: rank 0 reports and writes
        return 0
    print(json.dumps(_headline(m), indent=2))
    print(f"wrote {RunFolder(args.out).file(METRICS)}")
    return 0


def cmd_eval(args) -> int:
    from hiercore.data import load_data
    from hiercore.evaluation import collect, score
    from hiercore.models import HierClip, load_clip
    from hiercore.predict import load_run_model
    from hiercore.run_folder import RunFolder

    if args.run:
        folder = RunFolder(args.run)
        if not args.data:
            print(json.dumps(folder.read_metrics(), indent=2))
            return 0
        model = load_run_model(folder.path)  # the same loading as `predict --run`
        config, taxonomy = folder.read_config(), model.taxonomy
        _, samples = load_data(args.data, str(folder.taxonomy_file))
    else:
        if not args.data:
            raise HierTuneError("Zero-shot evaluation needs --data (and --model, or the default).")
        config = config_from_args(args)
        taxonomy, samples = load_data(args.data, args.taxonomy)
        model = HierClip(load_clip(config.model, config.pretrained), taxonomy, config.templates)
    if args.split == "val":
        _, samples = split(taxonomy, samples, config.val_fraction, config.seed)
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
        model = config_from_args(args).model
        predictor = Predictor.zero_shot(load_taxonomy(args.taxonomy), model)
    for path, pred in zip(args.images, predictor.predict_files(args.images, k=args.k), strict=True):
        print(json.dumps({"image": path, **pred.to_dict()}))
    return 0


def cmd_compare(args) -> int:
    from hiercore.baselines.compare import comparison_split, run_comparison
    from hiercore.baselines.registry import list_methods
    from hiercore.data import load_data
    from hiercore.progress_bars import CompareBars

    if args.list:
        print("\n".join(list_methods()))
        return 0
    if not args.data or not args.out:
        raise HierTuneError("compare needs --data and --out (or --list to see the methods).")
    config = config_from_args(args)
    taxonomy, samples = load_data(args.data, args.taxonomy)
    train_s, eval_s, how = comparison_split(taxonomy, samples, config.val_fraction, config.seed)
    bars = CompareBars()
    try:
        table = run_comparison(
            taxonomy,
            train_s,
            eval_s,
            config,
            args.methods,
            args.seeds,
            args.out,
            progress=bars,
            header={"data": args.data, "split": how},
        )
    finally:
        bars.close()
    shown = ["method", "fpa_mean", "fpa_consistent_mean", "tice_mean", "trainable_pct"]
    print(table[shown].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    out = Path(args.out)
    print(f"wrote {out / 'comparison.csv'} and {out / 'comparison.md'}")
    return 0


def cmd_claim_study(args) -> int:
    from hiercore.claim_study import DEMO_METHODS, run_demo_study, run_synthetic_study

    if args.seeds < 2:
        raise HierTuneError("A 95% interval needs at least 2 seeds; use --seeds 5.")
    if args.setting == "synthetic":
        summary = run_synthetic_study(
            args.seeds, args.out, first_seed=args.first_seed, progress=print
        )
    else:
        config = config_from_args(args, seed=args.first_seed)
        methods = args.methods or list(DEMO_METHODS)
        summary = run_demo_study(
            args.data, args.seeds, args.out, config, methods, progress=_study_progress
        )
    shown = ("condition", "scale", "method", "fpa_mean", "fpa_consistent_mean")
    print(summary[[c for c in shown if c in summary]].to_string(index=False))
    print(f"wrote {Path(args.out) / 'summary.md'}")
    return 0


def _study_progress(event) -> None:
    """One line per finished row of the demo study (a long job: show it moving)."""
    if event.phase == "done":
        fpa = (event.metrics or {}).get("fpa", float("nan"))
        print(f"{event.method} seed {event.seed}: FPA {fpa:.3f}", flush=True)


def cmd_pretrain(args) -> int:
    if args.build_corpus:
        return cmd_build_corpus(args)
    from hiercore.pretrain import DEMO_DIR, pretrain

    paths = {"demo_dir": args.demo, "init": args.init, "corpus": args.corpus}
    paths["state_dir"] = args.state
    given = {k: Path(v) for k, v in paths.items() if v is not None}
    # unset flags keep pretrain()'s own defaults
    for name in (
        "steps",
        "batch_size",
        "lr",
        "seed",
        "device",
        "arch",
        "icon_fraction",
        "objective",
        "anchors_at_captions",
    ):
        if getattr(args, name) is not None:
            given[name] = getattr(args, name)
    out = Path(args.out) if args.out else DEMO_DIR.parent / "model"
    info = pretrain(out, minutes=args.minutes, resume=args.resume, **given)
    print(json.dumps({k: v for k, v in info.items() if k != "phases"}, indent=2))
    return 0


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
