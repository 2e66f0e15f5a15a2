"""Real-browser test of the Explore page: a 3-value × 3-seed temperature sweep of the (quick) default
preset runs from the browser, and the KD-gain chart ends with three points, each with an error bar
over the seeds; a value outside the field's range gives an inline message naming the field; clicking
a point of the KD-gain chart lands on Compare with that point's runs (one per seed) selected."""

from __future__ import annotations

import urllib.parse

import pytest
from helpers_browser import RUN_TIMEOUT_MS, chart_js, no_exception, settled_screenshot, wait_idle
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

# points and error bars of the first trace of the chart whose title contains the given text
GAIN_JS = chart_js("(() => { const t = el.data[0];"
                   " const e = (t.error_y && t.error_y.array) ? Array.from(t.error_y.array) : [];"
                   " return {x: t.x ? t.x.length : 0, err: e.length, errs: e}; })()")


def explore_url(server: str, **query: str) -> str:
    return f"{server}/Explore?{urllib.parse.urlencode(query)}"


def test_explore_runs_a_3x3_temperature_sweep_with_error_bars(page: Page, app_server, screenshots):
    page.goto(explore_url(app_server.url, base="digits-av", knob1="distill.temperature", values1="1, 2, 4",
                          seeds="3", se="2"))
    wait_idle(page)
    no_exception(page)
    expect(page.get_by_text("3 grid points × 3 seeds = 9 runs")).to_be_visible(timeout=30_000)
    page.get_by_role("button", name="▶ Run the sweep").click()
    page.wait_for_function(f"() => {{ const g = ({GAIN_JS})('KD gain vs'); return g !== -1 && g.x === 3; }}",
                           timeout=RUN_TIMEOUT_MS)
    expect(page.get_by_text("status: finished")).to_be_visible(timeout=RUN_TIMEOUT_MS)
    wait_idle(page)
    gain = page.evaluate(GAIN_JS, "KD gain vs")
    assert gain["x"] == 3 and gain["err"] == 3, gain  # three temperatures, one error bar each
    assert all(isinstance(e, (int, float)) and e >= 0 for e in gain["errs"]), gain
    expect(page.get_by_text("9 of 9 runs finished")).to_be_visible()
    settled_screenshot(page, screenshots / "explore-sweep.png")


def test_explore_value_outside_the_range_names_the_field(page: Page, app_server):
    page.goto(explore_url(app_server.url, base="digits-av", knob1="distill.temperature", values1="0, 2",
                          seeds="3"))
    wait_idle(page)
    no_exception(page)
    alert = page.locator('[data-testid="stAlert"]').filter(has_text="distill.temperature")
    expect(alert.first).to_be_visible(timeout=30_000)
    expect(page.get_by_role("button", name="▶ Run the sweep")).to_be_disabled()


def test_explore_click_a_point_opens_its_runs_on_compare(page: Page, app_server):
    page.goto(explore_url(app_server.url, base="digits-av", knob1="distill.temperature", values1="1, 4",
                          seeds="2", se="1"))
    wait_idle(page)
    no_exception(page)
    page.get_by_role("button", name="▶ Run the sweep").click()
    expect(page.get_by_text("status: finished")).to_be_visible(timeout=RUN_TIMEOUT_MS)
    wait_idle(page)
    chart = page.locator('[data-testid="stPlotlyChart"]').filter(
        has=page.locator(".gtitle", has_text="KD gain vs")).first
    marker = chart.locator(".scatterlayer .trace path.point").nth(1)  # T = 4
    expect(marker).to_be_visible(timeout=60_000)
    chart.scroll_into_view_if_needed()
    box = marker.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.click(x, y)
    # Streamlit switches pages in place (the History API): read the address bar from the page itself
    page.wait_for_function("() => location.pathname.endsWith('/Compare') && location.search.includes('runs=')",
                           timeout=60_000)
    wait_idle(page)
    no_exception(page)
    expect(page.get_by_text("From the Explore sweep of")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("temperature T = 4")).to_be_visible()
    href = page.evaluate("location.href")
    runs = urllib.parse.parse_qs(urllib.parse.urlparse(href).query)["runs"][0].split(",")
    assert len(runs) == 2 and all("temperature-4-seed" in r for r in runs), runs
    names_js = chart_js("el.data.map(t => t.name)")
    page.wait_for_function(f"() => {{ const n = ({names_js})('val_acc'); return n !== -1 && n.length === 2; }}",
                           timeout=60_000)
    names = page.evaluate(names_js, "val_acc")
    assert sorted(names) == sorted(runs), names  # the overlay draws the two seeds' curves
