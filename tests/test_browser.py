"""The studio in a real browser: open the demo, train a short run, read its results.

Headless Debian chromium through Playwright; skipped with a reason when either is
missing. The run uses tiny-random and a 3-step cap (HIERTUNE_MODEL,
HIERTUNE_DEMO_MAX_STEPS) so it ends in seconds on a CPU. Screenshots go to
test-artifacts/.
"""

from __future__ import annotations

import os
import shutil
import socket
from contextlib import contextmanager
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("HIERTUNE_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        pytest.skip(f"chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


@contextmanager
def project_page(browser, url: str, project: str):
    """A 1400 x 1000 page of the studio at `url` once it shows `project` open; closed after."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(url)
        page.get_by_text(f"Project: {project}").wait_for(timeout=60_000)
        yield page
    finally:
        page.close()


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    """(url, app) of a studio on a fresh workspace."""
    saved = {k: os.environ.get(k) for k in ("HIERTUNE_MODEL", "HIERTUNE_DEMO_MAX_STEPS")}
    os.environ["HIERTUNE_MODEL"] = "tiny-random"
    os.environ["HIERTUNE_DEMO_MAX_STEPS"] = "3"
    from webapp.app import launch

    port = free_port()
    app, studio = launch(tmp_path_factory.mktemp("workspace"), port=port, prevent_thread_lock=True)
    try:
        yield f"http://127.0.0.1:{port}/", app
    finally:
        app.close()
        studio.close()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def fn_ids(app, name: str) -> set[int]:
    """The ids of the app's event handlers whose function is called `name`."""
    return {i for i, f in app.fns.items() if getattr(f.fn, "__name__", "") == name}


def test_demo_train_and_results(browser, studio):
    studio_url, app = studio
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(studio_url)
        # plotly.js is loaded and run at page load (by a figure never shown), so the
        # first tab with a figure does not wait for it
        page.locator(".plotly-warmup .js-plotly-plot").wait_for(state="attached", timeout=60_000)
        assert not page.locator(".plotly-warmup").first.is_visible()
        page.get_by_role("button", name="Open the demo project").click()
        page.get_by_text("Project: Emoji demo").wait_for(timeout=90_000)

        page.get_by_role("tab", name="Train").click()
        page.locator("#start-training").click()
        status = page.locator("#train-status")
        status.get_by_text("running").or_(status.get_by_text("finished")).wait_for(timeout=60_000)
        status.get_by_text("finished").wait_for(timeout=120_000)
        assert "failed" not in status.inner_text()
        page.screenshot(path=str(ARTIFACTS / "browser-train.png"), full_page=True)

        page.get_by_role("tab", name="Results").click()
        headline = page.locator("#results-headline")
        title = headline.get_by_role("heading")
        title.wait_for(timeout=60_000)
        assert title.inner_text().startswith("FPA ") and "TICE" in title.inner_text()
        heatmap = page.locator("#confusion-plot .js-plotly-plot .hm")
        heatmap.first.wait_for(timeout=60_000)

        # picking a level asks for its confusion once (the dropdown's input event fired
        # on the pick and again on the blur, and each computed the view)
        confusion_fns = fn_ids(app, "confusion_views")
        asked = []
        page.on(
            "request",
            lambda r: (
                asked.append(r)
                if "/queue/join" in r.url and r.post_data_json.get("fn_index") in confusion_fns
                else None
            ),
        )
        page.get_by_label("Level", exact=True).click()
        page.get_by_role("option", name="1. category").click()
        page.locator("#confusion-plot .gtitle").filter(has_text="Confusion at category:").wait_for(
            timeout=30_000
        )
        page.wait_for_timeout(1000)  # a second request came 30 ms after the first
        assert len(asked) == 1

        # a click on a cell opens the images behind it
        area = page.locator("#confusion-plot .nsewdrag").first
        area.scroll_into_view_if_needed()
        box = area.bounding_box()
        page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
        page.get_by_text("with true").wait_for(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "browser-results.png"), full_page=True)
    finally:
        page.close()
