"""How much the hierarchy-aware losses cost over plain per-level cross-entropy.

Prints, for a few taxonomy sizes, the time of forward + backward of
CE + TP-KL + HiSCE divided by that of CE alone, both measured in the same run on the
same logits (a ratio, so it compares across machines). Also the same ratio for a whole
training step of a small CLIP (encoders + losses), which is what a user waits for.

    python -m benchmarks.bench_losses [--device cuda] [--repeats 20]
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch

from hiercore.losses import hierarchical_loss, level_cross_entropy


def tree(sizes: list[int], device) -> list[torch.Tensor]:
    parents = [torch.zeros(sizes[0], dtype=torch.long, device=device)]
    for prev, size in itertools.pairwise(sizes):
        parents.append(torch.sort(torch.randint(0, prev, (size,), device=device)).values)
    return parents


def timed(fn, repeats: int, device) -> float:
    for _ in range(3):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeats


def loss_ratio(sizes, batch, repeats, device) -> tuple[float, float, float]:
    parents = tree(sizes, device)
    base = [torch.randn(batch, c, device=device, requires_grad=True) for c in sizes]
    targets = torch.stack([torch.randint(0, c, (batch,), device=device) for c in sizes], dim=1)
    targets[: batch // 4, -1] = -1  # a quarter partial labels

    def ce():
        level_cross_entropy(base, targets).backward()

    def full():
        hierarchical_loss(base, targets, parents, 1.0, 1.0, 0.1)["total"].backward()

    t_ce, t_full = timed(ce, repeats, device), timed(full, repeats, device)
    return t_ce, t_full, t_full / t_ce


def step_ratio(batch, repeats, device) -> tuple[float, float, float]:
    from hiercore.models import HierClip, LoraSpec, apply_lora, load_clip
    from hiercore.taxonomy import Taxonomy

    tax = Taxonomy()
    for i in range(8):
        a = tax.add(f"group {i}")
        for j in range(5):
            b = tax.add(f"family {i}.{j}", a)
            for k in range(5):
                tax.add(f"species {i}.{j}.{k}", b)
    bundle = load_clip("tiny-random")
    apply_lora(bundle.model, LoraSpec("both", rank=8))
    model = HierClip(bundle, tax).to(device)
    parents = model.parents()
    x = torch.randn(batch, 3, bundle.image_size, bundle.image_size, device=device)
    targets = torch.stack(
        [torch.randint(0, c, (batch,), device=device) for c in model.index.sizes], 1
    )
    targets = torch.stack(
        [torch.as_tensor(model.index.path_from_leaf(int(t))) for t in targets[:, -1].cpu()]
    ).to(device)

    def step(alpha, lam):
        loss = hierarchical_loss(model(x), targets, parents, alpha, lam, 0.1)["total"]
        loss.backward()

    t_ce = timed(lambda: step(0.0, 0.0), repeats, device)
    t_full = timed(lambda: step(1.0, 1.0), repeats, device)
    return t_ce, t_full, t_full / t_ce


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--batch", type=int, default=256)
    args = p.parse_args()
    device = torch.device(args.device)
    print(f"device {device}, batch {args.batch}")
    print("loss only: forward+backward time of CE+TP-KL+HiSCE / CE")
    for sizes in ([4, 13, 200], [13, 37, 200, 1000], [10, 500, 10000]):
        t_ce, t_full, r = loss_ratio(sizes, args.batch, args.repeats, device)
        print(f"  levels {sizes}: CE {t_ce * 1e3:.2f} ms, all {t_full * 1e3:.2f} ms, ratio {r:.2f}")
    t_ce, t_full, r = step_ratio(min(args.batch, 64), max(3, args.repeats // 4), device)
    print("training step of the tiny CLIP with text+vision LoRA (8/40/200 classes):")
    print(f"  CE {t_ce * 1e3:.1f} ms, all {t_full * 1e3:.1f} ms, ratio {r:.2f}")


if __name__ == "__main__":
    main()
