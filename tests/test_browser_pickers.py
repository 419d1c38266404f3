"""Node pickers of a large taxonomy in a real browser: typing asks the server for matches.

Above `ALL_CHOICES_UP_TO` nodes a picker holds only its value, and each key press asks the
server for the best matches of the text in the box. The list shown after typing must be
the matches of every word typed (an answer to an earlier press landing last used to leave
the matches of "rank3 1" under "rank3 12"), in the Node picker and in the Move target
picker, which has no element id of its own. Headless Debian chromium through Playwright,
as in tests/test_browser.py.
"""

from __future__ import annotations

import pytest
from test_browser import browser, free_port, project_page  # noqa: F401
from test_scale_views import layered_taxonomy

from webapp import pickers
from webapp.pickers import ALL_CHOICES_UP_TO, search_picker

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def studio_url(tmp_path_factory):
    from webapp.app import launch

    port = free_port()
    app, studio = launch(tmp_path_factory.mktemp("workspace"), port=port, prevent_thread_lock=True)
    pid = studio.workspace.create_project("wide")
    studio.workspace.set_taxonomy(pid, layered_taxonomy((5, 10, 30)))  # 1,555 nodes
    try:
        yield f"http://127.0.0.1:{port}/", studio, pid
    finally:
        app.close()
        studio.close()


def shown_options(page, picker_id: str) -> list[str]:
    return [t.strip() for t in page.locator(f"#{picker_id} li").all_inner_texts()]


def type_and_wait(page, box, text: str, picker_id: str) -> list[str]:
    box.click()
    box.press_sequentially(text)  # one key press at a time, each answered by the server
    last = text.split()[-1]
    page.locator(f"#{picker_id} li").filter(has_text=f"{text.split()[0]} {last}").first.wait_for(
        timeout=30_000
    )
    page.wait_for_timeout(1500)  # any answer still on its way lands now
    return shown_options(page, picker_id)


def test_typing_in_a_large_pickers_lists_the_matches_of_the_whole_text(
    browser,  # noqa: F811
    studio_url,
    monkeypatch,
):
    url, studio, pid = studio_url
    asked = []

    def recording(search, query, *args, **kwargs):
        asked.append(query)
        return search_picker(search, query, *args, **kwargs)

    monkeypatch.setattr(pickers, "search_picker", recording)
    assert len(studio.workspace.taxonomy(pid)) > ALL_CHOICES_UP_TO
    with project_page(browser, url, "wide") as page:
        page.get_by_role("tab", name="Taxonomy").click()
        page.get_by_text("Taxonomy: 1,555 nodes").first.wait_for(timeout=60_000)

        options = type_and_wait(page, page.locator("#tax-node input"), "rank3 12", "tax-node")
        # each press asks for the text in the box a moment after it: presses typed within
        # that moment ask the same question, so their answers may land in any order
        assert len(asked) == len("rank3 12") and asked[-1] == "rank3 12"
        assert len(set(asked)) < len(asked), asked
        # every listed path holds every typed word (the list of "rank3 1" has "rank3 10"
        # under "rank2 0", which has no "12")
        assert options and all("rank3" in o and "12" in o for o in options), options[:5]
        # exact name first, then names it starts: "rank3 12", "rank3 120", ...
        assert options[0].endswith("/ rank3 12")
        page.locator("#tax-node li").filter(has_text="/ rank3 12").first.click()
        page.get_by_text("rank3 12", exact=False).first.wait_for(timeout=30_000)

        page.get_by_role("tab", name="Move / merge").click()
        target = page.get_by_label("Target node (type to search)")
        picker_id = target.evaluate("el => el.closest('[id^=node-picker-]').id")
        options = type_and_wait(page, target, "rank2 4", picker_id)
        names = [o for o in options if o != "(top level)"]
        assert names and all("rank2" in o and "4" in o for o in names), options[:5]
        assert names[0].endswith("/ rank2 4")
