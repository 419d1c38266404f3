"""The curation loop in a real browser, on a generated project with a written run.

Select a confusion cell -> relabel its two images -> undo -> labels restored; then a
lasso on the image map selects exactly the images inside it. Headless Debian chromium
through Playwright, launched as tests/test_browser.py does; skipped when either is
missing. Screenshots go to test-artifacts/ (and the README's to docs/).
"""

from __future__ import annotations

import os
import re

import pytest
from curation_project import add_run, finished_run, generated_run, map_coords
from test_browser import ARGS, ARTIFACTS, CHROMIUM, browser, free_port, project_page  # noqa: F401

pytestmark = pytest.mark.browser
expect = pytest.importorskip("playwright.sync_api", reason="playwright is not installed").expect

# pixel position of data point (x, y) of a plotly graph div, in page coordinates
TO_PIXELS = """
([selector, x, y]) => {
  const gd = document.querySelector(selector);
  const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
  const box = gd.getBoundingClientRect();
  return [box.left + xa._offset + xa.l2p(x), box.top + ya._offset + ya.l2p(y)];
}
"""


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    from webapp.app import launch

    port = free_port()
    app, studio = launch(tmp_path_factory.mktemp("workspace"), port=port, prevent_thread_lock=True)
    pid, _, image_ids = finished_run(studio.workspace)
    try:
        yield f"http://127.0.0.1:{port}/", studio, pid, image_ids
    finally:
        app.close()
        studio.close()


def labels(studio, pid) -> dict[int, str]:
    return studio.workspace.images(pid).set_index("id")["node_id"].to_dict()


def pick(page, picker, name: str) -> None:
    """Type `name` into a filterable dropdown and choose that option.

    Seen once in CI on a loaded machine: after the fill the list still held every option,
    unfiltered, with the wanted one below the screen, and the click waited out its 30 s.
    The text is typed again when the option is not on screen within 5 s.
    """
    option = page.get_by_role("option", name=name, exact=True)
    for _ in range(3):
        picker.click()
        picker.fill(name)
        try:
            expect(option).to_be_in_viewport(timeout=5_000)
        except AssertionError:
            continue
        option.click()
        return
    raise AssertionError(f"the option {name!r} never showed on screen")


def test_relabel_a_confusion_cell_undo_and_lasso_the_map(browser, studio):  # noqa: F811
    url, st, pid, image_ids = studio
    ev = generated_run(True)
    ARTIFACTS.mkdir(exist_ok=True)
    with project_page(browser, url, "generated") as page:
        page.get_by_role("tab", name="Results").click()
        page.locator("#confusion-plot .js-plotly-plot .hm").first.wait_for(timeout=60_000)

        # the cell of true a2 predicted a1 holds two images (see curation_project)
        a1, a2 = (ev.index.index_of(1, n) for n in ("a1", "a2"))
        in_cell = [
            image_ids[r]
            for r in range(len(image_ids))
            if ev.true[r, 1] == a2 and ev.logits[1][r].argmax() == a1
        ]
        assert len(in_cell) == 2
        plot = page.locator("#confusion-plot .js-plotly-plot")
        plot.scroll_into_view_if_needed()
        x, y = page.evaluate(TO_PIXELS, ["#confusion-plot .js-plotly-plot", a1, a2])
        page.mouse.click(x, y)
        page.locator("#selection-note").get_by_text("2 images selected").wait_for(timeout=30_000)
        table = page.locator("#selection-table").inner_text()
        assert all(str(i) in table for i in in_cell)

        before = labels(st, pid)
        pick(page, page.locator("#selection-target input"), "C / c2")
        page.locator("#selection-relabel").click()
        page.locator("#selection-status").get_by_text("Labelled 2 images").wait_for(timeout=30_000)
        after = labels(st, pid)
        assert [after[i] for i in in_cell] == ["c2", "c2"]
        assert {k: v for k, v in after.items() if k not in in_cell} == {
            k: v for k, v in before.items() if k not in in_cell
        }
        expect(page.locator("#selection-table")).to_contain_text("C / c2")
        page.screenshot(path=str(ARTIFACTS / "browser-curation-relabel.png"), full_page=True)

        page.locator("#selection-undo").click()
        page.locator("#selection-status").get_by_text("2 labels restored").wait_for(timeout=30_000)
        assert labels(st, pid) == before

        # a tag on the cell's images, then its undo: only the tag it added goes
        st.workspace.tag_images(pid, in_cell[:1], "check")  # there before the action
        page.locator("#selection-tag input, #selection-tag textarea").first.fill("check")
        page.get_by_role("button", name="Tag", exact=True).click()
        page.locator("#selection-status").get_by_text("Tagged 1 images").wait_for(timeout=30_000)
        assert st.workspace.image_tags(pid) == {i: ["check"] for i in in_cell}
        page.locator("#selection-undo-tag").click()
        page.locator("#selection-status").get_by_text("Undid tagging 'check'").wait_for(
            timeout=30_000
        )
        assert st.workspace.image_tags(pid) == {in_cell[0]: ["check"]}

        # a lasso around the b1 cluster of the image map selects b1's images, no others
        page.get_by_role("tab", name="Embedding maps").click()
        page.get_by_role("button", name="Compute the maps (UMAP, cached per run)").click()
        graph = "#image-map-plot .js-plotly-plot"
        page.locator(f"{graph} .scatterlayer .point").first.wait_for(timeout=60_000)
        page.locator(graph).scroll_into_view_if_needed()
        b1 = ev.index.index_of(1, "b1")
        centre = map_coords(ev)[ev.true[:, 1] == b1].mean(axis=0)
        page.locator(graph).hover()
        page.locator(f'{graph} .modebar-btn[data-val="lasso"]').click()
        corners = [(-3, -3), (3, -3), (3, 3), (-3, 3), (-3, -3)]
        points = [
            page.evaluate(TO_PIXELS, [graph, centre[0] + dx, centre[1] + dy]) for dx, dy in corners
        ]
        page.mouse.move(*points[0])
        page.mouse.down()
        for p in points[1:]:
            page.mouse.move(*p, steps=8)
        page.mouse.up()
        rows = [r for r in range(len(image_ids)) if ev.true[r, 1] == b1]
        page.locator("#selection-note").get_by_text(f"{len(rows)} images selected").wait_for(
            timeout=30_000
        )
        expect(page.locator("#selection-table")).to_contain_text(f"img{rows[0]}.png")
        table = page.locator("#selection-table").inner_text()
        shown = sorted(int(n) for n in re.findall(r"img(\d+)\.png", table))
        assert shown == rows  # the names are img<row>.png
        expect(page.get_by_text(f"{len(rows)} images selected on the image map")).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "browser-curation-lasso.png"), full_page=True)
        # removal deletes files: a first click only asks
        page.get_by_role("button", name="Remove from project").click()
        status = page.locator("#selection-status")
        expect(status).to_contain_text("Click Remove again to confirm", timeout=30_000)
        assert len(st.workspace.images(pid)) == len(image_ids)
        if os.environ.get("HIERTUNE_README_SCREENSHOT"):  # the README's picture
            top = page.locator("#image-map-plot").bounding_box()
            bottom = page.locator("#selection-panel").bounding_box()
            scroll = page.evaluate("window.scrollY")
            clip = {"x": 0, "y": top["y"] + scroll, "width": 1400}
            clip["height"] = bottom["y"] + bottom["height"] - top["y"]
            page.screenshot(path="docs/curation-loop.png", full_page=True, clip=clip)


def test_a_suggestion_applies_and_undoes_from_the_results_tab(browser, studio):  # noqa: F811
    url, st, pid, _ = studio
    with project_page(browser, url, "generated") as page:
        page.get_by_role("tab", name="Results").click()
        page.locator("#results-headline").get_by_role("heading").wait_for(timeout=60_000)
        page.get_by_role("tab", name="Suggestions").click()
        page.locator("#suggestions-find").click()
        table = page.locator("#suggestions-table")
        expect(table).to_contain_text("Move 'p' under 'B'", timeout=30_000)
        table.get_by_text("Move 'p' under 'B'").first.click()
        page.get_by_role("button", name="Apply the selected suggestion").click()
        expect(page.locator("#suggestions-status")).to_contain_text("Applied", timeout=30_000)
        assert st.workspace.taxonomy(pid).parent("p") == "B"
        page.get_by_role("button", name="Undo the last taxonomy edit").click()
        expect(page.locator("#suggestions-status")).to_contain_text("Undid", timeout=30_000)
        assert st.workspace.taxonomy(pid).parent("p") == "A"


def test_batch_filter_finds_a_subtree(browser, studio):  # noqa: F811
    url, st, pid, _ = studio
    with project_page(browser, url, "generated") as page:
        page.get_by_role("tab", name="Data & labels").click()
        page.get_by_text("Batch: filter images and act on them").click()
        pick(page, page.get_by_label("Label in subtree"), "B / b1")
        page.locator("#batch-find").click()
        expected = len(st.workspace.find_images(pid, subtree="b1"))
        note = page.locator("#batch-note")
        expect(note).to_contain_text(f"{expected} images selected", timeout=30_000)
        # clicks in the queue grid add to the selection
        page.get_by_label("Clicking an image in the queue grid adds it").check()
        thumbs = page.locator("#label-gallery .thumbnail-item")
        thumbs.nth(0).click()
        expect(note).to_contain_text(f"{expected + 1} images selected", timeout=30_000)
        thumbs.nth(1).click()
        expect(note).to_contain_text(f"{expected + 2} images selected", timeout=30_000)


def test_run_comparison_shows_settings_curves_and_a_node_diff(browser, studio):  # noqa: F811
    url, st, pid, image_ids = studio
    add_run(st.workspace, pid, image_ids, generated_run(False), "control run", epochs=3)
    with project_page(browser, url, "generated") as page:
        page.get_by_role("tab", name="Results").click()
        page.locator("#results-headline").get_by_role("heading").wait_for(timeout=60_000)
        page.get_by_role("tab", name="Run comparison").click()
        page.locator("#compare-runs-btn").click()
        # the two runs differ in epochs only; the control recorded three epochs
        expect(page.locator("#compare-settings")).to_contain_text("epochs", timeout=30_000)
        expect(page.locator("#compare-settings")).to_contain_text("control run")
        expect(page.get_by_text("Validation FPA per epoch")).to_be_visible(timeout=30_000)
        page.get_by_role("button", name="Per-node diff (B - A)").click()
        diff = page.locator("#compare-diff")
        expect(diff).to_contain_text("A / a1", timeout=30_000)
        expect(diff).to_contain_text("0.75")  # a1: 2 of 8 right in A, 8 of 8 in B
