"""Real-browser tests (Chromium via pytest-playwright): run the default preset from the home page and
watch a live chart update before the run ends, then the result table; use the temperature explorer;
open every page with no exception. Screenshots go to pytest's temporary folder (the README's come from scripts/take_screenshots.py)."""

from __future__ import annotations

import time

import pytest
from helpers_browser import RUN_TIMEOUT_MS, chart_js, no_exception, wait_charts, wait_idle
from playwright.sync_api import Page, expect

from ui.server import page_paths

pytestmark = pytest.mark.browser

POINTS_JS = chart_js("el.data.reduce((n, tr) => n + (tr.x ? tr.x.length : 0), 0)")  # points over all traces
# the last optimiser step drawn: grows with every new step (the point count need not: long series are thinned)
LAST_STEP_JS = chart_js("el.data.reduce((m, tr) => Math.max(m, ...(tr.x || [0])), 0)")


def poll_until(page: Page, what: str, check, timeout_s: float = RUN_TIMEOUT_MS / 1000, every: float = 0.5):
    """Evaluate ``check(page)`` every ``every`` s until truthy; on timeout, fail with the page's text."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = check(page)
        if value:
            return value
        time.sleep(every)
    text = page.locator('[data-testid="stMain"]').inner_text()[:1500]
    pytest.fail(f"timed out waiting for {what}; the page shows:\n{text}")


def has_result(page: Page) -> bool:
    return page.locator('[data-testid="stDataFrame"]').count() > 0


def chart_points(page: Page, title: str) -> int:
    return int(page.evaluate(POINTS_JS, title))


def last_step(page: Page, title: str) -> int:
    return int(page.evaluate(LAST_STEP_JS, title))


def test_run_default_preset_live_chart_then_result(page: Page, app_server, screenshots):
    page.goto(app_server.url + "/")
    wait_idle(page)
    no_exception(page)
    wait_charts(page)
    page.screenshot(path=str(screenshots / "home.png"), full_page=True)
    page.get_by_role("button", name="▶ Run the default preset").click()
    page.wait_for_url("**/Train", timeout=60_000)
    # a live loss chart appears, then gains points while the job is still running
    first = poll_until(page, "the live loss chart", lambda p: chart_points(p, "Loss terms per step") > 0
                       and last_step(p, "Loss terms per step") + 1)
    assert not has_result(page), "finished before the first chart"
    def grown_or_done(p: Page):
        n, done = last_step(p, "Loss terms per step") + 1, has_result(p)
        return (n > first or done) and (n, not done)

    grew = poll_until(page, "a live chart update", grown_or_done, every=0.2)
    assert grew[0] > first and grew[1], "the chart did not update while the job ran"
    wait_charts(page)
    page.screenshot(path=str(screenshots / "train-live.png"), full_page=True)
    # the result table and the verdict after the run
    poll_until(page, "the result table", has_result)
    expect(page.get_by_text("Verdict:")).to_be_visible(timeout=30_000)
    wait_idle(page)
    no_exception(page)
    wait_charts(page)
    page.screenshot(path=str(screenshots / "train-result.png"), full_page=True)


def test_temperature_explorer_slider_changes_the_softmax(page: Page, app_server, screenshots):
    page.goto(app_server.url + "/Temperature_explorer")
    wait_idle(page, timeout=300_000)
    no_exception(page)
    page.wait_for_function(f"() => ({POINTS_JS})('Softmax at T = 4') > 0", timeout=60_000)
    slider = page.get_by_role("slider", name="temperature T")
    slider.focus()
    for _ in range(8):  # 0.5 per step: T 4 → 8
        slider.press("ArrowRight")
    page.wait_for_function(f"() => ({POINTS_JS})('Softmax at T = 8') > 0", timeout=60_000)
    wait_idle(page)
    no_exception(page)
    wait_charts(page)
    page.screenshot(path=str(screenshots / "temperature-explorer.png"), full_page=True)


def test_sidebar_navigation_starts_with_home_and_links_every_page(page: Page, app_server):
    """The sidebar's first entry reads "Home" (not the entry script's name "app"); a click on an entry
    opens the page under its file's URL path."""
    page.goto(app_server.url + "/")
    wait_idle(page)
    no_exception(page)
    links = page.locator('[data-testid="stSidebarNav"] a')
    expect(links.first).to_be_visible()
    texts = [t.strip().splitlines()[-1].strip() for t in links.all_inner_texts()]  # the label after the icon
    assert texts[0] == "Home", texts
    assert "app" not in [t.lower() for t in texts]
    assert len(texts) == len(page_paths()), texts
    links.filter(has_text="Methods").first.click()
    page.wait_for_url("**/Methods", timeout=60_000)
    wait_idle(page)
    no_exception(page)
    links.first.click()
    page.wait_for_url(app_server.url + "/", timeout=60_000)
    wait_idle(page)
    expect(page.get_by_role("button", name="▶ Run the default preset")).to_be_visible()


@pytest.mark.parametrize("page_file", list(page_paths()))
def test_every_page_opens_without_exception(page: Page, app_server, screenshots, page_file):
    path = page_paths()[page_file]
    page.goto(app_server.url + path)
    wait_idle(page, timeout=300_000)
    time.sleep(1.5)  # let late elements (charts, fragments) render
    wait_idle(page, timeout=300_000)
    no_exception(page)
    expect(page.locator('[data-testid="stMain"]')).to_be_visible()
    name = "home" if path == "/" else path.strip("/").lower()
    if path not in ("/", "/Train", "/Temperature_explorer"):  # those have their own screenshots
        wait_charts(page)
        page.screenshot(path=str(screenshots / f"{name}.png"), full_page=True)


def test_setup_yaml_upload_replaces_the_spec_and_the_url(page: Page, app_server, tmp_path):
    from kdcore.presets import load_preset

    spec = load_preset("classic-kd").with_overrides(["name=uploaded-spec", "train.student_epochs=3"])
    path = tmp_path / "uploaded.yaml"
    spec.save(path)
    page.goto(app_server.url + "/Setup")
    wait_idle(page, timeout=300_000)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(path))
    poll_until(page, "the uploaded spec in the form",
               lambda p: any(el.input_value() == "uploaded-spec"  # a rerun may briefly show old + new widget
                              for el in p.get_by_label("experiment name").all()), timeout_s=120)
    wait_idle(page, timeout=120_000)
    no_exception(page)
    poll_until(page, "the uploaded spec in the URL",
               lambda p: "train.student_epochs=3" in p.url and "preset=" in p.url, timeout_s=60)
