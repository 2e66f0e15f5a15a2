"""Shared pieces of the browser tests: waiting for Streamlit to settle, reading plotly charts by
title, failing on an exception element, taking a settled screenshot."""

from __future__ import annotations

import time
from pathlib import Path

from playwright.sync_api import Page, expect

from ui.server import SCRIPT_IDLE

RUN_TIMEOUT_MS = 300_000


def chart_js(expr: str) -> str:
    """A JS function ``(title) => value``: ``expr`` evaluated on ``el``, the first plotly chart whose
    title contains ``title``; -1 when there is none."""
    return f"""(title) => {{
  for (const el of document.querySelectorAll('.js-plotly-plot')) {{
    const t = el.layout && el.layout.title && (el.layout.title.text || el.layout.title);
    if (t && String(t).includes(title)) {{ return {expr}; }}
  }}
  return -1;
}}"""


def wait_idle(page: Page, timeout: float = 120_000) -> None:
    page.wait_for_selector(SCRIPT_IDLE, timeout=timeout)


def wait_charts(page: Page, timeout: float = 60_000) -> None:
    """Every plotly chart on the page has drawn (plotly.js loads lazily)."""
    page.wait_for_function("() => [...document.querySelectorAll('[data-testid=\"stPlotlyChart\"]')]"
                           ".every(c => c.querySelector('.main-svg'))", timeout=timeout)


def no_exception(page: Page) -> None:
    expect(page.locator('[data-testid="stException"]')).to_have_count(0)


def settled_screenshot(page: Page, path: Path, full_page: bool = True) -> None:
    """Wait for the script to finish, check there is no exception, let late charts draw, then shoot."""
    wait_idle(page)
    no_exception(page)
    time.sleep(1.0)
    page.screenshot(path=str(path), full_page=full_page)
