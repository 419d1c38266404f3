"""How long consistent decoding takes next to independent argmax decoding.

Consistent decoding is a top-down dynamic programme (one gather per level), so it
should stay within a small factor of the per-level argmax even for 10,000 leaves.
Prints milliseconds per batch for both, and for the top-k suggestions.

    python -m benchmarks.bench_decode [--device cuda] [--batch 64] [--repeats 20] [--threads 1]
"""

import argparse
import itertools
import time

import torch

from hiercore.decode import consistent_decode, consistent_topk, independent_decode


def random_tree(sizes: list[int], device: torch.device) -> list[torch.Tensor]:
    # Every node above the leaves gets a child, the rest are assigned at random.
    parents = [torch.zeros(sizes[0], dtype=torch.long, device=device)]
    for n_up, n_here in itertools.pairwise(sizes):
        extra = torch.randint(0, n_up, (n_here - n_up,), device=device)
        parents.append(torch.cat([torch.arange(n_up, device=device), extra]))
    return parents


def milliseconds(fn, repeats: int, device: torch.device) -> float:
    for _ in range(2):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20)
    # On a busy shared CPU, intra-op threads fight over cores and times jump 100-fold.
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"{'sizes':>24} {'independent':>12} {'consistent':>11} {'top-5':>8}  (ms/batch)")
    for sizes in ([4, 13, 200], [10, 500, 10_000], [20, 200, 2_000, 20_000]):
        parents = random_tree(sizes, device)
        logits = [torch.randn(args.batch, n, device=device) for n in sizes]
        calls = [
            lambda z=logits: independent_decode(z),
            lambda z=logits, p=parents: consistent_decode(z, p),
            lambda z=logits, p=parents: consistent_topk(z, p, k=5),
        ]
        row = [milliseconds(call, args.repeats, device) for call in calls]
        print(f"{sizes!s:>24} {row[0]:12.2f} {row[1]:11.2f} {row[2]:8.2f}")


if __name__ == "__main__":
    main()
