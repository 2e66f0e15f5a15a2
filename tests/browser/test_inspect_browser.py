"""Real-browser test of the inspection pages: while the trimodal digits-av preset runs (image, speech and
text, so every kind of attribution map is drawn), the Attention page
shows the class × modality heatmap and the Attributions page an attribution figure, with no
exception. Screenshots go to pytest's temporary folder (the README's come from scripts/take_screenshots.py)."""

from __future__ import annotations

import pytest
from helpers_browser import RUN_TIMEOUT_MS, chart_js, no_exception, settled_screenshot, wait_idle
from playwright.sync_api import Page

pytestmark = pytest.mark.browser

TRACES_JS = chart_js("el.data.length")  # traces drawn (heatmaps carry typed arrays in z, not x)
ROWS_JS = chart_js("el.data.length && el.data[0].y ? el.data[0].y.length : 0")  # y categories of trace 0


def wait_chart(page: Page, title: str, timeout: float = RUN_TIMEOUT_MS) -> None:
    """Until a plotly chart whose title contains ``title`` has at least one trace."""
    page.wait_for_function(f"() => ({TRACES_JS})({title!r}) > 0", timeout=timeout)


def test_attention_and_attributions_of_the_trimodal_preset(page: Page, app_server, screenshots):
    page.goto(app_server.url + "/")
    wait_idle(page)
    card = page.locator(".st-key-run-digits-av").get_by_role("button", name="▶ Run")
    card.scroll_into_view_if_needed()
    card.click()
    page.wait_for_url("**/Train", timeout=60_000)
    no_exception(page)

    # the Attention page follows the job live: the heatmap appears after the first teacher epoch, the
    # per-sample view once the teacher's checkpoint exists
    page.goto(app_server.url + "/Attention")
    wait_chart(page, "Mean attention α per true class")
    wait_chart(page, "α of this sample")
    settled_screenshot(page, screenshots / "inspect-attention.png")

    page.goto(app_server.url + "/Attributions")
    wait_chart(page, "Share of total |attribution| per modality")
    # the page reloads the models when a phase finishes: wait for teacher, baseline and KD student
    page.wait_for_function(f"() => ({ROWS_JS})('Share of total |attribution| per modality') >= 3",
                           timeout=RUN_TIMEOUT_MS)
    wait_chart(page, "image (image) — ig")
    wait_chart(page, "text: characters coloured by ig attribution")
    settled_screenshot(page, screenshots / "inspect-attributions.png")
    # the per-sample maps: image, spectrogram and characters, teacher and students side by side
    page.locator(".js-plotly-plot").nth(2).scroll_into_view_if_needed()
    settled_screenshot(page, screenshots / "inspect-attribution-maps.png", full_page=False)
