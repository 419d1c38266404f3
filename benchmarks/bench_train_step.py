"""The training step's speed against the straightforward open_clip + peft step, and its
memory on a 10,000-leaf taxonomy.

Part 1, the demo (embedded default model, `assets/demo`, batch 32, the run defaults' LoRA:
rank 16 on attn + conv): for LoRA on vision, text and both, times in one run, interleaved
step by step, three steps:

- ``plain``: what the open_clip and peft READMEs lead to. peft's adapters on the same
  modules (`apply_lora`), images read through a DataLoader with the model's training
  transform, ``encode_image`` and ``encode_text`` of every node prompt (full context) each
  step, the same per-level logits and loss, ``torch.optim.AdamW``;
- ``old``: HierTune's step before `hiercore.train_step` (frozen towers cached, but every
  prompt encoded at full context, files decoded each step, unfused AdamW);
- ``fast``: `hiercore.train_step.StepLoss` as training runs it (decoded-image cache,
  trimmed and deduplicated prompts, fused AdamW).

and prints the median step times and the ratios plain / fast and old / fast.

Part 2, a synthetic taxonomy with iNaturalist 2021's rank sizes (3 / 13 / 51 / 273 /
1,103 / 4,884 / 10,000: 16,327 nodes) and the tiny model: step time and peak memory of
the fast step per LoRA setting, each in its own process (peak RSS, VmHWM, on CPU;
`torch.cuda.max_memory_allocated` on GPU).

    python -m benchmarks.bench_train_step                  # both parts, CPU
    python -m benchmarks.bench_train_step --part demo --repeats 5
    python -m benchmarks.bench_train_step --part tenk --tenk-lora both
    python -m benchmarks.bench_train_step --device cuda --batch 256
    python -m benchmarks.bench_train_step --device cuda --batch 256 --part demo --model ViT-B-16
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import warnings

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

INAT_SIZES = (3, 13, 51, 273, 1103, 4884, 10000)
LORA = ("vision", "text", "both")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def cycle(loader):
    while True:
        yield from loader


def amp(device: torch.device):
    from hiercore.evaluation import autocast

    return autocast(device)


# ---------------------------------------------------------------------- part 1: the demo
def demo_steps(lora: str, batch: int, device: torch.device, model: str = "default") -> dict:
    """The three steps of the module docstring, as callables over one model."""
    from hiercore.config import RunConfig
    from hiercore.data import ImageLabelDataset, samples_from_manifest
    from hiercore.demo import DEMO_DIR
    from hiercore.evaluation import collect
    from hiercore.image_cache import DecodedImages
    from hiercore.losses import hierarchical_loss
    from hiercore.taxonomy.formats import load_taxonomy
    from hiercore.train_step import StepLoss, loss_options
    from hiercore.training import adamw, build_model

    config = RunConfig(model=model, lora=lora, batch_size=batch)
    taxonomy = load_taxonomy(DEMO_DIR / "taxonomy.csv")
    _, samples = samples_from_manifest(DEMO_DIR / "manifest.csv", taxonomy)
    samples = [s for s in samples if s.split == "train"]
    model = build_model(config, taxonomy, device).train()
    clip, parents, options = model.clip, model.parents(), loss_options(config)
    files = ImageLabelDataset(samples, model.index, model.bundle.preprocess_train)
    vision, text = lora != "text", lora != "vision"
    params = [p for p in model.parameters() if p.requires_grad]

    def loader(dataset):
        return cycle(
            DataLoader(
                dataset,
                batch_size=batch,
                shuffle=True,
                drop_last=True,
                pin_memory=device.type == "cuda",
            )
        )

    # plain: every tower runs every step, at full context
    plain_batches, plain_opt = loader(files), torch.optim.AdamW(params, lr=1e-4)
    tokens = model.tokens
    owner = model.prompt_owner
    gathers = [getattr(model, f"gather_{lvl}") for lvl in range(model.depth)]

    def plain():
        x, y = next(plain_batches)
        x, y = x.to(device), y.to(device)
        with amp(device):
            f = F.normalize(clip.encode_image(x), dim=-1)
            t = F.normalize(clip.encode_text(tokens), dim=-1)
            nodes = F.normalize(t.new_zeros(len(model.node_ids), t.shape[1]).index_add(0, owner, t))
            scale = clip.logit_scale.exp()
            logits = [scale * f @ nodes[g].t() for g in gathers]
            loss = hierarchical_loss(logits, y, parents, **options)["total"]
        loss.backward()
        plain_opt.step()
        plain_opt.zero_grad(set_to_none=True)

    # setup the old and fast steps share: what the frozen tower gives once
    t0 = time.perf_counter()
    with torch.no_grad(), amp(device):
        frozen_nodes = None if text else model.encode_nodes().float()
    feats = None
    if not vision:
        cached = collect(model, samples, 64, device)
        feats = TensorDataset(torch.from_numpy(cached.image_feats), torch.from_numpy(cached.true))
    setup_s = time.perf_counter() - t0

    old_batches, old_opt = loader(feats or files), torch.optim.AdamW(params, lr=1e-4)

    def old():
        x, y = next(old_batches)
        x, y = x.to(device), y.to(device)
        with amp(device):
            f = model.encode_images(x) if vision else x
            nodes = model.encode_nodes() if text else frozen_nodes
            logits = model.level_logits(f, nodes)
            loss = hierarchical_loss(logits, y, parents, **options)["total"]
        loss.backward()
        old_opt.step()
        old_opt.zero_grad(set_to_none=True)

    t0 = time.perf_counter()
    decoded = None
    if vision:
        decoded = DecodedImages.build(samples, files.targets, model.bundle.preprocess_train)
    decode_s = time.perf_counter() - t0
    step_loss = StepLoss(model, options, vision, text, frozen_nodes)
    fast_batches = loader(decoded or feats)
    fast_opt = adamw([{"params": params}], 1e-4, 0.0, device)

    def fast():
        x, y = next(fast_batches)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with amp(device):
            loss = step_loss(x, y)["total"]
        loss.backward()
        fast_opt.step()
        fast_opt.zero_grad(set_to_none=True)

    return {
        "steps": {"plain": plain, "old": old, "fast": fast},
        "setup_s": setup_s,
        "decode_s": decode_s,
        "prompts": len(model.prompts),
        "prompts_encoded": step_loss.text.n_prompts,
        "nodes": len(model.node_ids),
    }


def interleaved(steps: dict, repeats: int, warmup: int, device: torch.device) -> dict:
    """Median step times; on a GPU also how often the fast step waited for the device
    (`torch.cuda.set_sync_debug_mode` warns at each host synchronisation)."""
    times = {name: [] for name in steps}
    for _ in range(warmup):
        for fn in steps.values():
            fn()
    syncs = 0
    for _ in range(repeats):
        for name, fn in steps.items():
            sync(device)
            t0 = time.perf_counter()
            if device.type == "cuda" and name == "fast":
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    torch.cuda.set_sync_debug_mode("warn")
                    fn()
                    torch.cuda.set_sync_debug_mode("default")
                syncs += sum("synchroniz" in str(w.message) for w in caught)
            else:
                fn()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    out = {name: statistics.median(t) for name, t in times.items()}
    out["fast_syncs_per_step"] = syncs / repeats
    return out


def part_demo(args, device: torch.device) -> None:
    print(
        f"demo: {args.model} model, batch {args.batch}, device {device}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
        + ", "
        f"{torch.get_num_threads()} threads; median of {args.repeats} interleaved steps"
    )
    for lora in args.lora:
        bench = demo_steps(lora, args.batch, device, args.model)
        t = interleaved(bench["steps"], args.repeats, args.warmup, device)
        print(
            f"  LoRA {lora:6s}: plain {t['plain'] * 1e3:7.0f} ms, old {t['old'] * 1e3:7.0f} ms, "
            f"fast {t['fast'] * 1e3:7.0f} ms | plain/fast {t['plain'] / t['fast']:.2f}x, "
            f"old/fast {t['old'] / t['fast']:.2f}x | fast {args.batch / t['fast']:,.0f} img/s, "
            f"plain {args.batch / t['plain']:,.0f} img/s | once: frozen tower "
            f"{bench['setup_s']:.1f} s, image decode {bench['decode_s']:.1f} s | prompts "
            f"{bench['prompts']} -> {bench['prompts_encoded']} encoded"
            + (f" | host syncs/step {t['fast_syncs_per_step']:g}" if device.type == "cuda" else ""),
            flush=True,
        )


# ------------------------------------------------------------ part 2: 10,000 leaves
def inat_like_taxonomy(sizes=INAT_SIZES, seed: int = 0):
    """A tree with `sizes` nodes per rank: every node has a child, the rest spread at random."""
    from hiercore.taxonomy import Taxonomy

    g = torch.Generator().manual_seed(seed)
    ranks = ["kingdom", "phylum", "class", "order", "family", "genus", "species"][: len(sizes)]
    nodes, previous = [], [""]
    for depth, size in enumerate(sizes):
        extra = torch.randint(0, len(previous), (size - len(previous),), generator=g).tolist()
        parents = list(range(len(previous))) + extra if depth else [0] * size
        ids = [f"{ranks[depth][0]}{i}" for i in range(size)]
        nodes += [
            {"id": i, "name": f"{ranks[depth]} {k}", "parent": previous[p]}
            for k, (i, p) in enumerate(zip(ids, parents, strict=True))
        ]
        previous = ids
    return Taxonomy.from_nodes(nodes, level_names=ranks)


def tenk_child(
    lora: str, batch: int, repeats: int, device: torch.device, recompute, negatives=None
) -> dict:
    """One process, one setting: the fast step's time and this process's peak memory."""
    from hiercore.config import RunConfig
    from hiercore.train_step import StepLoss, loss_options
    from hiercore.training import adamw, build_model

    t0 = time.perf_counter()
    taxonomy = inat_like_taxonomy()
    config = RunConfig(model="tiny-random", lora=lora, batch_size=batch)
    model = build_model(config, taxonomy, device).train()
    vision, text = lora != "text", lora != "vision"
    step_loss = StepLoss(
        model, loss_options(config), vision, text, recompute_text=recompute, negatives=negatives
    )
    build_s = time.perf_counter() - t0
    size = model.bundle.image_size
    g = torch.Generator().manual_seed(0)
    leaves = torch.randint(0, model.index.sizes[-1], (batch,), generator=g)
    y = torch.tensor([model.index.path_from_leaf(int(i)) for i in leaves], device=device)
    x = torch.randn(batch, 3, size, size, generator=g).to(device)
    if not vision:
        with torch.no_grad():
            x = model.encode_images(x)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = adamw([{"params": params}], 1e-4, 0.0, device)
    times = []
    for _ in range(repeats + 1):
        sync(device)
        t0 = time.perf_counter()
        with amp(device):
            loss = step_loss(x, y)["total"]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(device)
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else peak_rss()
    return {
        "lora": lora,
        "nodes": len(model.node_ids),
        "prompts": step_loss.text.n_prompts,
        "recompute": (step_loss.recompute_text if negatives is None else "by subset")
        if text
        else None,
        "negatives": negatives,
        "build_s": build_s,
        "step_s": statistics.median(times[1:]),
        "peak_gb": peak / 1024**3,
    }


def peak_rss() -> int:
    """This process's peak resident memory in bytes. VmHWM, not getrusage's maxrss: Linux
    carries maxrss over exec, so a child would report its parent's peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def part_tenk(args, device: torch.device) -> None:
    print(
        f"10k leaves (iNat 2021 rank sizes {'/'.join(map(str, INAT_SIZES))}), tiny model, "
        f"batch {args.batch}, device {device}; peak "
        + ("CUDA memory allocated" if device.type == "cuda" else "RSS of the process")
    )
    settings = [(lora, None, None) for lora in args.tenk_lora]
    text_loras = [lora for lora in args.tenk_lora if lora != "vision"]
    if args.no_recompute:
        settings += [(lora, False, None) for lora in text_loras]
    sampled = [1024] if args.negatives is None else args.negatives
    settings += [(lora, None, m) for m in sampled for lora in text_loras]
    for lora, recompute, negatives in settings:
        cmd = [sys.executable, "-m", "benchmarks.bench_train_step", "--child", lora]
        cmd += ["--device", str(device), "--batch", str(args.batch), "--repeats", "2"]
        if recompute is False:
            cmd.append("--no-recompute")
        if negatives:
            cmd += ["--negatives", str(negatives)]
        done = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
        if done.returncode:
            print(f"  LoRA {lora}: failed\n{done.stderr[-2000:]}")
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"  LoRA {r['lora']:6s} ({r['nodes']} nodes, {r['prompts']} prompts, recompute "
            f"{r['recompute']}, negatives {r['negatives'] or 'all'}): step "
            f"{r['step_s']:.2f} s, peak {r['peak_gb']:.2f} GB, "
            f"setup {r['build_s']:.1f} s",
            flush=True,
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--part", choices=["demo", "tenk", "all"], default="all")
    p.add_argument(
        "--model",
        default="default",
        help="the demo part's backbone: 'default', or an open_clip architecture such as "
        "ViT-B-16 (random weights: step time does not depend on them)",
    )
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--lora", nargs="+", choices=LORA, default=list(LORA))
    p.add_argument("--tenk-lora", nargs="+", choices=LORA, default=list(LORA))
    p.add_argument(
        "--no-recompute",
        action="store_true",
        help="also run the 10k text settings without recomputation (needs many GB)",
    )
    p.add_argument(
        "--negatives",
        type=int,
        nargs="*",
        default=None,
        help="10k text settings also run with this many sampled negatives per level "
        "(default 1024; none given: no sampled runs)",
    )
    p.add_argument("--child", choices=LORA, help=argparse.SUPPRESS)
    args = p.parse_args()
    device = torch.device(args.device)
    if args.child:
        recompute = False if args.no_recompute else None
        negatives = args.negatives[0] if args.negatives else None
        r = tenk_child(args.child, args.batch, args.repeats, device, recompute, negatives)
        print(json.dumps(r))
        return
    if args.part in ("demo", "all"):
        part_demo(args, device)
    if args.part in ("tenk", "all"):
        part_tenk(args, device)


if __name__ == "__main__":
    main()
