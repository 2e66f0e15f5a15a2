"""Take the README's screenshots (docs/screenshots/*.png) from a real default-preset run.

    .venv/bin/python scripts/take_screenshots.py              # writes docs/screenshots/
    .venv/bin/python scripts/take_screenshots.py --out /tmp/shots --fast   # quick check (KDLAB_FAST=1 preset)

Starts the app (``ui.server.AppServer``, runs in a temporary folder), opens it in headless Debian
Chromium (``/usr/bin/chromium``, or ``$KDLAB_CHROMIUM``), runs the default preset from the home page,
shoots the Train page once while it trains and again when it has finished, then every page the README
shows. Each shot waits until the page has *settled*: Streamlit's script is idle, no skeleton placeholder,
no spinner and no "running" status widget, every plotly chart drawn, and that state held for a few
consecutive checks. The test suite never writes here (its screenshots go to pytest's temp folder).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ui.server import CHROMIUM, CHROMIUM_ARGS, SCRIPT_IDLE, AppServer  # noqa: E402

RUN_TIMEOUT_S = 1200
# True when the page has settled (evaluated in the browser)
SETTLED_JS = f"""() => {{
  if (!document.querySelector({SCRIPT_IDLE!r})) return false;
  if (document.querySelector('[data-testid="stSkeleton"], [data-testid="stSpinner"], .stSpinner')) return false;
  const status = document.querySelector('[data-testid="stStatusWidget"]');
  if (status && /running/i.test(status.innerText || '')) return false;
  return [...document.querySelectorAll('[data-testid="stPlotlyChart"]')].every(c => c.querySelector('.main-svg'));
}}"""
CHART_POINTS_JS = """(title) => {
  for (const el of document.querySelectorAll('.js-plotly-plot')) {
    const t = el.layout && el.layout.title && (el.layout.title.text || el.layout.title);
    if (t && String(t).includes(title)) return el.data.reduce((n, tr) => n + (tr.x ? tr.x.length : 0), 0);
  }
  return -1;
}"""
# (file name, URL path) of the pages shot after the run, besides home / train-*
PAGES = [("setup", "/Setup"), ("temperature-explorer", "/Temperature_explorer"), ("methods", "/Methods"),
         ("compare", "/Compare"), ("attention", "/Attention"), ("inspect-attention", "/Attention"),
         ("inspect-attributions", "/Attributions"), ("data", "/Data")]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def settle(page, timeout_s: float = 300, hold: int = 4, every: float = 0.5) -> None:
    """Until the page has been settled for ``hold`` consecutive checks ``every`` seconds apart."""
    deadline, ok = time.time() + timeout_s, 0
    while time.time() < deadline:
        ok = ok + 1 if page.evaluate(SETTLED_JS) else 0
        if ok >= hold:
            if page.locator('[data-testid="stException"]').count():
                raise RuntimeError(f"{page.url}: the page shows an exception")
            return
        time.sleep(every)
    raise TimeoutError(f"{page.url}: did not settle within {timeout_s:.0f} s")


def wait_for(page, what: str, check, timeout_s: float = RUN_TIMEOUT_S, every: float = 1.0):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"timed out waiting for {what}; the page shows:\n"
                       + page.locator('[data-testid="stMain"]').inner_text()[:1500])


def shoot(page, out: Path, name: str, full_page: bool = True) -> None:
    path = out / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    log(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshots"), help="folder for the PNGs")
    ap.add_argument("--fast", action="store_true", help="the shrunken test preset (KDLAB_FAST=1), for a quick check")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=1000)
    args = ap.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"Chromium not found at {CHROMIUM}; run scripts/ensure_chromium.sh (or apt-get install -y chromium)",
              file=sys.stderr)
        return 1
    from playwright.sync_api import sync_playwright

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kdlab-shots-") as tmp, \
            AppServer(Path(tmp) / "runs", fast=args.fast, log=Path(tmp) / "streamlit.log") as srv, \
            sync_playwright() as pw:
        log(f"app at {srv.url} ({'fast test preset' if args.fast else 'real default preset'})")
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_context(viewport={"width": args.width, "height": args.height}).new_page()
        page.set_default_timeout(RUN_TIMEOUT_S * 1000)

        page.goto(srv.url + "/")
        settle(page)
        shoot(page, out, "home")

        page.get_by_role("button", name="▶ Run the default preset").click()
        page.wait_for_url("**/Train", timeout=60_000)
        has_result = lambda: page.locator('[data-testid="stDataFrame"]').count() > 0  # noqa: E731
        points = lambda: page.evaluate(CHART_POINTS_JS, "Loss terms per step")  # noqa: E731
        first = wait_for(page, "the live loss chart", lambda: points() > 0 and points())
        if not has_result():
            wait_for(page, "the live chart to grow", lambda: points() > first + 5 or has_result())
        if not has_result():
            page.wait_for_function(
                "() => [...document.querySelectorAll('[data-testid=\"stPlotlyChart\"]')]"
                ".every(c => c.querySelector('.main-svg'))", timeout=60_000)
            time.sleep(1.0)
            shoot(page, out, "train-live")
        else:
            log("the run finished before a live shot could be taken; train-live.png not written")

        log("waiting for the run to finish…")
        wait_for(page, "the result table", has_result)
        page.get_by_text("Verdict:").first.wait_for(timeout=60_000)
        settle(page)
        shoot(page, out, "train-result")

        for name, path in PAGES:
            page.goto(srv.url + path)
            settle(page)
            if path == "/Attributions":  # models of teacher, baseline and KD student loaded
                time.sleep(2.0)
                settle(page)
            shoot(page, out, name)
            if path == "/Attributions":
                page.locator(".js-plotly-plot").nth(2).scroll_into_view_if_needed()
                time.sleep(1.0)
                settle(page)
                shoot(page, out, "inspect-attribution-maps", full_page=False)
        browser.close()
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
