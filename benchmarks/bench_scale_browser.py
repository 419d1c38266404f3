"""The Taxonomy tab of the real studio in headless Chromium on the 10,000-leaf project.

Opens the iNaturalist-shaped project of `benchmarks.scale_project`, times until the
Taxonomy tab's sunburst is drawn, then searches a genus in the node picker, renames it and
times until the edit's message and the redrawn tab are there; then opens the Results tab
on a finished run of 5,000 validation images and times its headline and leaf confusion,
and the confusion at another level. Last it prints the longest full garbage collection
the server ran during those steps: Python runs one in whichever handler allocates past
its threshold, so it lands inside an edit. `--no-freeze` starts the studio without
freezing its start-up heap (`webapp.app.freeze_startup_heap`), to see what that costs.

    OMP_NUM_THREADS=1 python -m benchmarks.bench_scale_browser [--chromium /usr/bin/chromium]
        [--no-freeze]
"""

from __future__ import annotations

import argparse
import gc
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


class FullCollections:
    """Times the full (generation 2) garbage collections run between `start` and `stop`."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._began = 0.0

    def _callback(self, phase: str, info: dict) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.seconds.append(time.perf_counter() - self._began)

    def start(self) -> None:
        gc.callbacks.append(self._callback)

    def stop(self) -> None:
        gc.callbacks.remove(self._callback)

    def longest(self) -> float:
        return max(self.seconds, default=0.0)


# Times a step inside the page: from the first pointer press or key press after `arm` to
# the first animation frame in which every awaited element is there, visible and holds
# its text. Playwright's own waits poll with growing pauses and add 0.1-0.4 s that no
# user sees; that wall time is printed beside the page's, for comparison.
CLOCK_JS = """() => {
  const bench = (window.__bench = { conditions: null });
  const visible = (el) => el.checkVisibility();
  const met = () => bench.conditions.every(([selector, text]) =>
    [...document.querySelectorAll(selector)].some(
      (el) => el.textContent.includes(text) && visible(el)));
  const pressed = (ev) => {
    if (bench.conditions && bench.start === null) bench.start = ev.timeStamp;
  };
  document.addEventListener('pointerdown', pressed, true);
  document.addEventListener('keydown', pressed, true);
  new MutationObserver(() => {
    if (!bench.conditions || bench.start === null || bench.seen || !met()) return;
    bench.seen = true;
    requestAnimationFrame(() => { bench.shown = performance.now(); });
  }).observe(document.documentElement, {
    subtree: true, childList: true, characterData: true,
    attributes: true, attributeFilter: ['style', 'class', 'hidden'],
  });
}"""


class PageClock:
    """In-page step times (see CLOCK_JS); `arm` before the step's first input."""

    def __init__(self, page) -> None:
        self.page = page
        page.evaluate(CLOCK_JS)
        self._began = 0.0

    def arm(self, *conditions: list[str]) -> None:
        """Wait for a visible element matching each [selector, text] (its own text or its
        descendants': use a selector that hides nothing else)."""
        self.page.evaluate(
            "(c) => Object.assign(window.__bench, {conditions: c, start: null, seen: false,"
            " shown: null})",
            [list(c) for c in conditions],
        )
        self._began = time.perf_counter()

    def report(self, step: str) -> float:
        waited = time.perf_counter() - self._began
        self.page.wait_for_function("() => window.__bench.shown !== null", timeout=120_000)
        shown = self.page.evaluate("() => (window.__bench.shown - window.__bench.start) / 1000")
        print(f"{step}: {shown:6.2f} s in the page ({waited:.2f} s until Playwright saw it)")
        return shown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--chromium", default=os.environ.get("HIERTUNE_CHROMIUM", "/usr/bin/chromium")
    )
    parser.add_argument(
        "--no-freeze", action="store_true", help="start without freezing the start-up heap"
    )
    args = parser.parse_args()
    os.environ.setdefault("HIERTUNE_MODEL", "tiny-random")
    from playwright.sync_api import sync_playwright

    import webapp.app
    from webapp.app import launch

    if args.no_freeze:
        webapp.app.freeze_startup_heap = lambda: None
    pauses = FullCollections()

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
                clock = PageClock(page)
                page.get_by_role("tab", name="Projects").click()
                picker = page.get_by_label("Open a project")
                picker.click()
                page.get_by_role("option", name="iNat-like 10k").click()
                clock.arm([".js-plotly-plot .gtitle", "Taxonomy: 16,327 nodes"])
                page.get_by_role("button", name="Open", exact=True).click()
                page.get_by_role("tab", name="Taxonomy").click()
                page.get_by_text("Taxonomy: 16,327 nodes").first.wait_for(timeout=120_000)
                clock.report("open the project, Taxonomy tab drawn")
                pauses.start()

                node = page.locator("#tax-node input")
                node.click()
                clock.arm(["#tax-node li", "/ Genus 12"])
                node.press_sequentially("Genus 12")  # key presses: the server is asked
                option = page.locator("#tax-node li").filter(has_text="/ Genus 12").first
                option.wait_for(timeout=60_000)
                clock.report("type 'Genus 12' in the node picker, matches shown")
                option.click()
                page.get_by_role("tab", name="Rename").click()
                page.get_by_label("New name").fill("Corvus")
                clock.arm(["#tax-status", "Renamed to 'Corvus'"], ["p", "/ Corvus —"])
                page.get_by_role("button", name="Rename node").click()
                page.locator("#tax-status").get_by_text("Renamed to 'Corvus'").wait_for(
                    timeout=120_000
                )
                page.locator("p").filter(has_text="/ Corvus —").first.wait_for(timeout=60_000)
                clock.report("rename a genus, message and redrawn tab shown")

                # the tab alone: a node added behind the studio's back shows when the
                # Taxonomy tab is opened again (it is re-read on every opening)
                projects = studio.workspace.list_projects()
                pid = int(projects.loc[projects["name"] == "iNat-like 10k", "id"].iloc[0])
                studio.workspace.add_node(pid, "Tab probe", ROOT)
                page.get_by_role("tab", name="Projects").click()
                clock.arm([".js-plotly-plot .gtitle", "Taxonomy: 16,328 nodes"])
                page.get_by_role("tab", name="Taxonomy").click()
                page.get_by_text("Taxonomy: 16,328 nodes").first.wait_for(timeout=120_000)
                clock.report("open the Taxonomy tab of the open project, drawn")

                # Results: the run's headline and its leaf-level confusion (10,000 classes
                # grouped to at most 60), then the confusion at another level
                clock.arm(["#results-headline", "FPA"], ["#confusion-plot .js-plotly-plot .hm", ""])
                page.get_by_role("tab", name="Results").click()
                page.locator("#results-headline").get_by_text("FPA").first.wait_for(timeout=120_000)
                page.locator("#confusion-plot .js-plotly-plot .hm").first.wait_for(timeout=120_000)
                clock.report("open the Results tab, headline and leaf confusion drawn")
                page.get_by_label("Level", exact=True).click()
                # (the leaf title names "class" too: "... grouped into 51 subtrees at class")
                title = "Confusion at class:"
                clock.arm(["#confusion-plot .js-plotly-plot .gtitle", title])
                page.get_by_role("option", name="3. class").click()
                page.locator("#confusion-plot .js-plotly-plot .gtitle").filter(
                    has_text=title
                ).first.wait_for(timeout=120_000)
                clock.report("confusion at level 3 (51 classes) drawn")
                pauses.stop()
                print(
                    f"longest full garbage collection during these steps: {pauses.longest():6.2f} s"
                    f" ({len(pauses.seconds)} full collections)"
                )
                browser.close()
        finally:
            app.close()
            studio.close()


if __name__ == "__main__":
    main()
