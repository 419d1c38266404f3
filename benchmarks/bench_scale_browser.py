"""The Taxonomy tab of the real studio in headless Chromium on the 10,000-leaf project.

Opens the iNaturalist-shaped project of `benchmarks.scale_project`, times until the
Taxonomy tab's sunburst is drawn, then searches a genus in the node picker, renames it and
times until the edit's message and the redrawn tab are there; then opens the Results tab
on a finished run of 5,000 validation images and times its headline and leaf confusion,
and the confusion at another level.

    OMP_NUM_THREADS=1 python -m benchmarks.bench_scale_browser [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
import time
from pathlib import Path

from benchmarks.scale_project import scale_run, scale_workspace
from hiercore.taxonomy import ROOT

ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--chromium", default=os.environ.get("HIERTUNE_CHROMIUM", "/usr/bin/chromium")
    )
    args = parser.parse_args()
    os.environ.setdefault("HIERTUNE_MODEL", "tiny-random")
    from playwright.sync_api import sync_playwright

    from webapp.app import launch

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ws"
        ws, pid = scale_workspace(root, 20000)
        scale_run(ws, pid, 5000)
        ws.close()
        port = free_port()
        app, studio = launch(root, port=port, prevent_thread_lock=True)
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=args.chromium, headless=True, args=ARGS)
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(f"http://127.0.0.1:{port}/")
                page.get_by_role("tab", name="Projects").click()
                picker = page.get_by_label("Open a project")
                picker.click()
                page.get_by_role("option", name="iNat-like 10k").click()
                start = time.perf_counter()
                page.get_by_role("button", name="Open", exact=True).click()
                page.get_by_role("tab", name="Taxonomy").click()
                page.get_by_text("Taxonomy: 16,327 nodes").first.wait_for(timeout=120_000)
                opened = time.perf_counter() - start
                print(f"open the project, Taxonomy tab drawn: {opened:6.2f} s")

                node = page.locator("#tax-node input")
                start = time.perf_counter()
                node.click()
                node.press_sequentially("Genus 12")  # key presses: the server is asked
                option = page.locator("#tax-node li").filter(has_text="/ Genus 12").first
                option.wait_for(timeout=60_000)
                searched = time.perf_counter() - start
                print(f"type 'Genus 12' in the node picker, matches shown: {searched:6.2f} s")
                option.click()
                page.get_by_role("tab", name="Rename").click()
                page.get_by_label("New name").fill("Corvus")
                start = time.perf_counter()
                page.get_by_role("button", name="Rename node").click()
                page.locator("#tax-status").get_by_text("Renamed to 'Corvus'").wait_for(
                    timeout=120_000
                )
                page.locator("p").filter(has_text="/ Corvus —").first.wait_for(timeout=60_000)
                edited = time.perf_counter() - start
                print(f"rename a genus, message and redrawn tab shown: {edited:6.2f} s")

                # the tab alone: a node added behind the studio's back shows when the
                # Taxonomy tab is opened again (it is re-read on every opening)
                projects = studio.workspace.list_projects()
                pid = int(projects.loc[projects["name"] == "iNat-like 10k", "id"].iloc[0])
                studio.workspace.add_node(pid, "Tab probe", ROOT)
                page.get_by_role("tab", name="Projects").click()
                start = time.perf_counter()
                page.get_by_role("tab", name="Taxonomy").click()
                page.get_by_text("Taxonomy: 16,328 nodes").first.wait_for(timeout=120_000)
                tab = time.perf_counter() - start
                print(f"open the Taxonomy tab of the open project, drawn: {tab:6.2f} s")

                # Results: the run's headline and its leaf-level confusion (10,000 classes
                # grouped to at most 60), then the confusion at another level
                start = time.perf_counter()
                page.get_by_role("tab", name="Results").click()
                page.locator("#results-headline").get_by_text("FPA").first.wait_for(timeout=120_000)
                page.locator("#confusion-plot .js-plotly-plot .hm").first.wait_for(timeout=120_000)
                shown = time.perf_counter() - start
                print(f"open the Results tab, headline and leaf confusion drawn: {shown:6.2f} s")
                start = time.perf_counter()
                page.get_by_label("Level", exact=True).click()
                page.get_by_role("option", name="3. class").click()
                page.locator("#confusion-plot .js-plotly-plot .gtitle").filter(
                    has_text="class"
                ).first.wait_for(timeout=120_000)
                other = time.perf_counter() - start
                print(f"confusion at level 3 (51 classes) drawn: {other:6.2f} s")
                browser.close()
        finally:
            app.close()
            studio.close()


if __name__ == "__main__":
    main()
