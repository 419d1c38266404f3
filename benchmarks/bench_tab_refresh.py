"""What each studio tab's refresh costs on the server for the 10k-leaf project.

Builds the tabs over a workspace holding `benchmarks.scale_project`'s project (16,327
nodes, 20,000 labelled image rows) and times `refresh` of each, three times (the first
includes reading the tree and filling caches). Opening a project runs the refresh of
Projects, Data & labels and Train; the other tabs refresh when they are opened.

    OMP_NUM_THREADS=1 python -m benchmarks.bench_tab_refresh
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from benchmarks.scale_project import scale_workspace


def main() -> None:
    os.environ.setdefault("HIERTUNE_MODEL", "tiny-random")
    import gradio as gr

    from webapp.state import Studio
    from webapp.tabs import annotate, predict, projects, results, taxonomy, train

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ws"
        ws, pid = scale_workspace(root, 20000)
        ws.close()
        studio = Studio(root)
        try:
            with gr.Blocks():
                project = gr.BrowserState(None)
                tabs = [
                    (m.__name__.rsplit(".", 1)[-1], m.build(studio, project))
                    for m in (projects, taxonomy, annotate, train, results, predict)
                ]
            for name, tab in tabs:
                times = []
                for _ in range(3):
                    start = time.perf_counter()
                    tab.refresh(pid)
                    times.append(time.perf_counter() - start)
                print(f"{name:10s} refresh: " + ", ".join(f"{t:.3f}" for t in times) + " s")
        finally:
            studio.close()


if __name__ == "__main__":
    main()
