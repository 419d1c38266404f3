"""What the studio costs on a 10,000-leaf project: Taxonomy tab, edits, results, evaluation.

Builds the iNaturalist-shaped synthetic project of `benchmarks.scale_project` (7 ranks,
16,327 nodes, 20,000 labelled image rows) in a temporary workspace and prints, for each
step, the time, the peak extra memory and the payload sent to the browser. Where the old
way is still callable it is measured in the same run ("before") next to the current one.

    OMP_NUM_THREADS=1 python -m benchmarks.bench_scale_ui [--images 20000] [--val 5000]
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

from benchmarks.scale_project import scale_predictions, scale_workspace


class PeakRSS:
    """Peak resident memory above the start, sampled every 2 ms (numpy and torch alike)."""

    def __enter__(self) -> PeakRSS:
        gc.collect()
        self._proc = psutil.Process()
        self.start = self._proc.memory_info().rss
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(0.002)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def mb(self) -> float:
        return (self.peak - self.start) / 2**20


def timed(fn, repeats: int = 1):
    """(result, best seconds of `repeats`, peak extra MB of the first call)."""
    with PeakRSS() as mem:
        start = time.perf_counter()
        out = fn()
        best = time.perf_counter() - start
    for _ in range(repeats - 1):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return out, best, mem.mb


def payload_mb(value) -> float:
    """Size of what Gradio would send: the JSON of an update dict or a Plotly figure."""
    if hasattr(value, "to_json"):
        return len(value.to_json()) / 2**20
    return len(json.dumps(value, default=str)) / 2**20


def row(what: str, seconds: float | None = None, mb: float | None = None, note: str = "") -> None:
    t = "" if seconds is None else f"{seconds:8.3f} s"
    m = "" if mb is None else f"{mb:8.1f} MB"
    print(f"  {what:<58} {t:>10} {m:>11}  {note}", flush=True)


def bench_taxonomy(root: Path, n_images: int) -> None:
    from hiercore.figures import taxonomy_sunburst
    from webapp.pickers import node_choices, text_tree

    print("Taxonomy tab (16,327 nodes)")
    (ws, pid), seconds, _ = timed(lambda: scale_workspace(root, n_images))
    row("build the synthetic workspace (not a studio step)", seconds)
    tax, seconds, _ = timed(lambda: ws.taxonomy(pid), repeats=3)
    row("ws.taxonomy (cached tree, copied)", seconds)
    counts = ws.label_counts(pid)
    _, seconds, _ = timed(lambda: ws.images(pid)["node_id"].value_counts())
    row("before: exact label counts through ws.images", seconds)
    exact, seconds, _ = timed(lambda: ws.exact_label_counts(pid))
    row("after: ws.exact_label_counts", seconds)

    fig, seconds, _ = timed(lambda: taxonomy_sunburst(tax, exact, maxdepth=3))
    row("before: whole-tree sunburst", seconds, note=f"payload {payload_mb(fig):.1f} MB")
    picker, seconds, _ = timed(lambda: {"choices": node_choices(tax), "value": None})
    row(
        "before: one full-path dropdown (x3 in the tab)",
        seconds,
        note=f"payload {payload_mb(picker):.1f} MB, {len(picker['choices'])} choices",
    )
    text, seconds, _ = timed(lambda: text_tree(tax, counts))
    row("text tree (3,000 lines)", seconds, note=f"{len(text) / 2**20:.2f} MB")

    from webapp.tabs import taxonomy as tab

    if hasattr(tab, "taxonomy_view"):
        view, seconds, _ = timed(lambda: tab.taxonomy_view(ws, pid, None))
        sent = sum(payload_mb(v) for v in view.values())
        row(
            "after: taxonomy_view (everything the tab sends)",
            seconds,
            note=f"payload {sent:.2f} MB",
        )

    print("One edit (rename a genus) and its storage")
    genus = next(n for n in tax.iter_dfs() if n.startswith("g"))
    names = iter(f"Renamed {k}" for k in range(100))
    _, seconds, _ = timed(lambda: ws.rename_node(pid, genus, next(names)), repeats=3)
    row("ws.rename_node", seconds)
    with ws._read() as conn:
        cols = {r[1] for r in conn.execute("PRAGMA table_info(taxonomy_versions)")}
        col = "delta" if "delta" in cols else "taxonomy"
        sizes = [
            len(r[0] or "")
            for r in conn.execute(
                f"SELECT {col} FROM taxonomy_versions WHERE project_id = ? ORDER BY id DESC "
                "LIMIT 3",
                (pid,),
            )
        ]
    full = len(json.dumps(tax.to_dict()))
    row(
        "stored per edit",
        note=f"{max(sizes) / 1024:.1f} KB ({col}); whole tree {full / 2**20:.2f} MB",
    )
    if hasattr(tab, "taxonomy_view"):
        _, seconds, _ = timed(lambda: tab.taxonomy_view(ws, pid, genus))
        row("after: taxonomy_view after the edit", seconds)
    ws.close()


def bench_results(n_val: int) -> None:
    from benchmarks.scale_project import inat_like_taxonomy
    from hiercore.metrics import confusion_matrices, hierarchical_consistent_accuracy

    print(f"Results ({n_val:,} validation images)")
    tax = inat_like_taxonomy()
    logits, true, index = scale_predictions(tax, n_val)
    pred = np.stack([z.argmax(axis=1) for z in logits], axis=1)
    _, seconds, mb = timed(lambda: confusion_matrices(pred, true, index.sizes)[2])
    row("before: confusion at level 3 via every level's matrix", seconds, mb)
    from hiercore.metrics import confusion_at_level
    from hiercore.run_results import DENSE_CONFUSION_UP_TO

    for level in (3, 7):
        size = index.sizes[level - 1]
        sparse = size > DENSE_CONFUSION_UP_TO
        _, seconds, mb = timed(
            lambda lv=level, n=size, sp=sparse: confusion_at_level(pred, true, lv - 1, n, sp)
        )
        row(
            f"after: confusion at level {level} only ({'sparse' if sparse else 'dense'})",
            seconds,
            mb,
        )
    _, seconds, mb = timed(lambda: hca_dense(logits, true, index.parents))
    row("before: HCA with float64 copies and N x nodes masks", seconds, mb)
    _, seconds, mb = timed(lambda: hierarchical_consistent_accuracy(logits, true, index.parents))
    row("after: HCA through sibling tables", seconds, mb)
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "predictions.npz"
        np.savez_compressed(old, **{f"logits_{i}": z for i, z in enumerate(logits)})
        size = old.stat().st_size / 2**20
        row("before: every level's logits in predictions.npz", note=f"{size:.0f} MB")

        def load():
            with np.load(old) as z:
                return [z[f"logits_{i}"] for i in range(len(logits))]

        _, seconds, mb = timed(load)
        row("before: loading them", seconds, mb)

        import torch

        from hiercore.evaluation import top_k_arrays

        parents = [torch.as_tensor(p) for p in index.parents]
        arrays, seconds, mb = timed(lambda: top_k_arrays(logits, parents))
        row("after: top-5 classes per level + top-5 paths (computing)", seconds, mb)
        new = Path(tmp) / "predictions_topk.npz"
        np.savez_compressed(new, **arrays)
        row("after: predictions.npz with top-k only", note=f"{new.stat().st_size / 2**20:.1f} MB")

        def load_new():
            with np.load(new) as z:
                return {k: z[k] for k in z.files}

        _, seconds, mb = timed(load_new)
        row("after: loading them", seconds, mb)

        run = Path(tmp) / "run"
        run.mkdir()
        write_run_folder(run, tax, logits, true, parents)
        _, seconds, mb = timed(lambda: results_view(run, index))
        row("after: results view (load the run, leaf confusion figure)", seconds, mb)


def write_run_folder(run: Path, tax, logits, true, parents) -> None:
    """A finished run's folder as `training.train` writes it, with these predictions."""
    from hiercore.config import RunConfig
    from hiercore.evaluation import Collected

    RunConfig(model="tiny-random").save(run / "config.json")
    (run / "taxonomy.json").write_text(json.dumps(tax.to_dict()))
    (run / "metrics.json").write_text("{}")
    feats = np.zeros((len(true), 512), dtype=np.float32)
    paths = [f"{i}.jpg" for i in range(len(true))]
    Collected(logits, true, feats, paths).save(run / "predictions.npz", parents)


def results_view(run: Path, index) -> None:
    """What the Results tab computes to show a run: load it, draw the leaf confusion."""
    from hiercore.figures import tree_confusion_figure
    from hiercore.run_results import RunResults

    res = RunResults.load(run)
    level = index.depth
    fig = tree_confusion_figure(res.confusion(level), res.index, res.taxonomy, level, 60)
    return fig


def hca_dense(logits, true, parents) -> float:
    """HCA the direct way (float64 copies, an N x nodes mask per level): the definition,
    as `hiercore.metrics` computed it before its per-parent tables; tests/test_metrics.py
    checks the current code against it."""
    true = np.asarray(true)
    full = (true >= 0).all(axis=1)
    if not full.any():
        return math.nan
    true = true[full]
    scores = [np.asarray(z, dtype=np.float64)[full] for z in logits]
    ok = scores[-1].argmax(axis=1) == true[:, -1]
    for level, z in enumerate(scores):
        restricted = z
        if level:
            is_child = np.asarray(parents[level])[None, :] == true[:, level - 1][:, None]
            restricted = np.where(is_child, z, -np.inf)
        ok &= restricted.argmax(axis=1) == true[:, level]
    return float(ok.mean())


def bench_evaluation(n_val: int) -> None:
    from benchmarks.scale_project import inat_like_taxonomy
    from hiercore.metrics import evaluate_predictions

    tax = inat_like_taxonomy()
    logits, true, index = scale_predictions(tax, n_val)
    _, seconds, mb = timed(lambda: evaluate_predictions(logits, true, index.parents))
    inputs = sum(z.nbytes for z in logits) / 2**20
    row("evaluate_predictions (full metric set)", seconds, mb, f"logits themselves {inputs:.0f} MB")


def bench_zero_shot(model: str) -> None:
    """Zero-shot suggestions on the 16k-node tree: a rebuild after an edit, cached or not."""
    import torch

    from benchmarks.scale_project import inat_like_taxonomy
    from hiercore.models import load_clip
    from hiercore.predict import Predictor, PromptFeatures

    torch.set_num_threads(1)
    print(f"Zero-shot suggestions ({model} model)")
    tax = inat_like_taxonomy()
    bundle = load_clip(model)
    cache = PromptFeatures()
    first, seconds, _ = timed(
        lambda: Predictor.zero_shot(tax, device="cpu", prompt_cache=cache, bundle=bundle)
    )
    row(f"before (every edit): encode all {len(first.model.prompts):,} prompts", seconds)
    edited = tax.copy()
    edited.rename(next(n for n in tax.iter_dfs() if n.startswith("g")), "Corvus")
    encoded = cache.encoded
    _, seconds, _ = timed(
        lambda: Predictor.zero_shot(edited, device="cpu", prompt_cache=cache, bundle=bundle)
    )
    row(f"after: rebuild after a rename ({cache.encoded - encoded} prompts encoded)", seconds)


UMAP_FIT = """
import sys, time, warnings
import numpy as np
from hiercore import embedding_map
warnings.simplefilter("ignore")
old = sys.argv[1] == "before"
if old:  # umap-learn's defaults, as the map was fitted before
    import umap
    def fit(x):
        reducer = umap.UMAP(n_components=2, n_neighbors=15, metric="cosine", random_state=0)
        return reducer.fit_transform(x)
else:
    fit = embedding_map.umap_2d
rng = np.random.default_rng(0)
images = rng.normal(size=(671, 512)).astype(np.float32)  # the demo's validation images
nodes = rng.normal(size=(2 * 752, 512)).astype(np.float32)  # its nodes before and after
start, cpu = time.perf_counter(), time.process_time()
fit(nodes), fit(images)
cold, cold_cpu = time.perf_counter() - start, time.process_time() - cpu
start, cpu = time.perf_counter(), time.process_time()
fit(nodes), fit(images)
print(cold, cold_cpu, time.perf_counter() - start, time.process_time() - cpu)
"""


def bench_umap() -> None:
    """Both maps of the demo's results view, in a fresh process (numba compiles on the
    first fit) and again in the same process, with the old and the current settings."""
    import subprocess
    import sys

    print("UMAP maps for the demo (671 images, 752 nodes before and after)")
    env = {**os.environ, "NUMBA_NUM_THREADS": "1"}  # CPU time then tracks the work
    for which in ("before", "after"):
        done = subprocess.run(
            [sys.executable, "-c", UMAP_FIT, which],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
        cold, cold_cpu, warm, warm_cpu = (float(v) for v in done.stdout.split())
        row(
            f"{which}: both maps, first fit in a process (compiles)",
            cold,
            note=f"{cold_cpu:.1f} s CPU",
        )
        row(f"{which}: both maps, fitted again in that process", warm, note=f"{warm_cpu:.1f} s CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000, help="labelled image rows")
    parser.add_argument("--val", type=int, default=5000, help="validation images in results")
    parser.add_argument(
        "--only", choices=["taxonomy", "results", "evaluation", "zero-shot", "umap"]
    )
    parser.add_argument("--model", default="tiny-random", help="CLIP model for zero-shot")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "taxonomy"):
            bench_taxonomy(Path(tmp) / "ws", args.images)
    if args.only in (None, "results"):
        bench_results(args.val)
    if args.only in (None, "evaluation"):
        bench_evaluation(args.val)
    if args.only in (None, "zero-shot"):
        bench_zero_shot(args.model)
    if args.only in (None, "umap"):
        bench_umap()


if __name__ == "__main__":
    main()
