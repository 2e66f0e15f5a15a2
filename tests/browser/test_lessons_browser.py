"""Real-browser test of a lesson (issue 11): run `omitted-digit` from its card on the home page, see
what to look at on the Train page, then the omitted-class and per-class charts drawn — with their
legends below the plot, not on the title (bounding boxes of the rendered SVG, issue 10)."""

from __future__ import annotations

import time

import pytest
from helpers_browser import RUN_TIMEOUT_MS, chart_js, no_exception, wait_charts, wait_idle
from playwright.sync_api import Page, expect

from kdcore.presets import lessons

pytestmark = pytest.mark.browser

OMITTED = "Accuracy on the omitted classes"
PER_CLASS = "Per-class test accuracy"

# bounding boxes of a drawn chart's title, legend, x-axis title and plot area (null when absent)
BOXES_JS = chart_js("""(() => {
  const box = (sel) => { const n = el.querySelector(sel); if (!n) return null;
    const r = n.getBoundingClientRect(); return {x: r.x, y: r.y, w: r.width, h: r.height}; };
  if (!el.querySelector('.main-svg')) return -1;
  return {title: box('.gtitle'), legend: box('.legend'), xtitle: box('.xtitle'), plot: box('.nsewdrag'),
          traces: el.data.length};
})()""")


def overlap(a: dict, b: dict) -> bool:
    return (a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"]
            and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"])


def boxes(page: Page, title: str):
    value = page.evaluate(BOXES_JS, title)
    return value if isinstance(value, dict) else None


def poll_until(page: Page, what: str, check, timeout_s: float = RUN_TIMEOUT_MS / 1000, every: float = 0.5):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = check(page)
        if value:
            return value
        time.sleep(every)
    text = page.locator('[data-testid="stMain"]').inner_text()[:1500]
    pytest.fail(f"timed out waiting for {what}; the page shows:\n{text}")


def check_legend_clear_of_title(b: dict, name: str) -> None:
    assert b["title"] and b["legend"] and b["plot"], (name, b)
    assert not overlap(b["legend"], b["title"]), f"{name}: the legend overlaps the title {b}"
    assert b["legend"]["y"] >= b["plot"]["y"] + b["plot"]["h"] - 1, f"{name}: the legend is not below the plot {b}"
    if b["xtitle"]:
        assert not overlap(b["legend"], b["xtitle"]), f"{name}: the legend overlaps the x-axis title {b}"


def test_omitted_digit_from_the_home_card_shows_the_omitted_class_chart(page: Page, app_server, screenshots):
    page.goto(app_server.url + "/")
    wait_idle(page, timeout=300_000)
    no_exception(page)
    expect(page.get_by_role("heading", name="KD helps")).to_be_visible()
    card_button = page.locator(".st-key-run-omitted-digit").get_by_role("button", name="▶ Run")
    expect(card_button).to_have_count(1)
    card_button.click()
    page.wait_for_url("**/Train", timeout=60_000)
    expect(page.get_by_text(lessons()["omitted-digit"]["look_at"], exact=False).first).to_be_visible(timeout=60_000)
    omitted = poll_until(page, "the omitted-class chart", lambda p: boxes(p, OMITTED))
    assert omitted["traces"] == 2  # baseline and KD student
    wait_idle(page)
    no_exception(page)
    wait_charts(page)
    omitted = boxes(page, OMITTED)  # after the page settled
    check_legend_clear_of_title(omitted, OMITTED)
    per_class = poll_until(page, "the per-class chart", lambda p: boxes(p, PER_CLASS), timeout_s=60)
    check_legend_clear_of_title(per_class, PER_CLASS)
    expect(page.get_by_text("Verdict:")).to_be_visible()
    page.screenshot(path=str(screenshots / "train-omitted-digit.png"), full_page=True)
    for title, name in ((OMITTED, "omitted-class-chart"), (PER_CLASS, "per-class-chart")):
        chart = page.locator('[data-testid="stPlotlyChart"]').filter(has_text=title).first
        chart.scroll_into_view_if_needed()
        chart.screenshot(path=str(screenshots / f"{name}.png"))
