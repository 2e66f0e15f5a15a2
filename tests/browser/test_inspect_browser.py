"""Real-browser test of the inspection pages: after the default preset has run, the Attention page
shows the class × modality heatmap and the Attributions page an attribution figure, with no
exception. Screenshots go to docs/screenshots/ (shown in the README)."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
RUN_TIMEOUT_MS = 600_000

TRACES_JS = """(title) => {
  for (const el of document.querySelectorAll('.js-plotly-plot')) {
    const t = el.layout && el.layout.title && (el.layout.title.text || el.layout.title);
    if (t && String(t).includes(title)) {
      return el.data.length;  // traces drawn (heatmaps carry typed arrays in z, not x)
    }
  }
  return -1;
}"""


# Rows (y categories) of the first trace of the chart whose title contains `title`.
ROWS_JS = """(title) => {
  for (const el of document.querySelectorAll('.js-plotly-plot')) {
    const t = el.layout && el.layout.title && (el.layout.title.text || el.layout.title);
    if (t && String(t).includes(title) && el.data.length && el.data[0].y) {
      return el.data[0].y.length;
    }
  }
  return -1;
}"""


def wait_chart(page: Page, title: str, timeout: float = RUN_TIMEOUT_MS) -> None:
    """Until a plotly chart whose title contains ``title`` has at least one trace."""
    page.wait_for_function(f"() => ({TRACES_JS})({title!r}) > 0", timeout=timeout)


def no_exception(page: Page) -> None:
    expect(page.locator('[data-testid="stException"]')).to_have_count(0)


def test_attention_and_attributions_after_the_default_preset(page: Page, app_server, screenshots):
    page.goto(app_server.url + "/")
    page.wait_for_selector(IDLE, timeout=120_000)
    page.get_by_role("button", name="▶ Run the default preset").click()
    page.wait_for_url("**/Train", timeout=60_000)
    no_exception(page)

    # the Attention page follows the job live: the heatmap appears after the first teacher epoch, the
    # per-sample view once the teacher's checkpoint exists
    page.goto(app_server.url + "/Attention")
    wait_chart(page, "Mean attention α per true class")
    wait_chart(page, "α of this sample")
    page.wait_for_selector(IDLE, timeout=120_000)
    no_exception(page)
    time.sleep(1.0)
    page.screenshot(path=str(screenshots / "inspect-attention.png"), full_page=True)

    page.goto(app_server.url + "/Attributions")
    wait_chart(page, "Share of total |attribution| per modality")
    # the page reloads the models when a phase finishes: wait for teacher, baseline and KD student
    page.wait_for_function(f"() => ({ROWS_JS})('Share of total |attribution| per modality') >= 3",
                           timeout=RUN_TIMEOUT_MS)
    wait_chart(page, "image (image) — ig")
    wait_chart(page, "text: characters coloured by ig attribution")
    page.wait_for_selector(IDLE, timeout=120_000)
    no_exception(page)
    time.sleep(1.0)
    page.screenshot(path=str(screenshots / "inspect-attributions.png"), full_page=True)
    # the per-sample maps: image, spectrogram and characters, teacher and students side by side
    page.locator(".js-plotly-plot").nth(2).scroll_into_view_if_needed()
    page.wait_for_selector(IDLE, timeout=120_000)
    time.sleep(1.0)
    page.screenshot(path=str(screenshots / "inspect-attribution-maps.png"))
