#!/usr/bin/env python3
"""UI latency in a real browser (Chromium) while a job trains — a benchmark, not a test.

Measures, in one run of the app:

1. **Widget interaction on another page**: a window on the Temperature explorer moves the T
   slider one step; the time from the key press until the re-drawn softmax chart shows the new T.
   Measured first with no job training (idle), then while the default preset trains and a second
   window (another browser context, as a second user) keeps its Train page polling.
2. **Chart update delay**: the Train page's loss chart carries the engine timestamps of its latest
   steps (``layout.meta.event_ts``). A poller in the page (every 20 ms) records when each new chart
   version appears; per update, *oldest* = appearance − emission of the oldest step that is new in
   this update (the worst case), *latest* = appearance − emission of the newest step. Browser and
   engine share this machine's clock.

Usage:
    .venv/bin/python benchmarks/ui_latency.py [--interactions 15] [--updates 30] [--json out.json]

Needs Debian's chromium (``apt-get install -y chromium``). The app runs on 127.0.0.1 with a
temporary runs folder; the default preset (not the fast test variant) trains during the measurement.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from playwright.sync_api import Page, sync_playwright  # noqa: E402

from ui.server import CHROMIUM, CHROMIUM_ARGS, SCRIPT_IDLE, AppServer  # noqa: E402

FOREGROUND_ARGS = ["--disable-background-timer-throttling", "--disable-renderer-backgrounding",
                   "--disable-backgrounding-occluded-windows"]
TITLE_JS = """(title) => [...document.querySelectorAll('.js-plotly-plot')].some(el => {
  const t = el.layout && el.layout.title && (el.layout.title.text || el.layout.title);
  return t && String(t).replace(/<[^>]+>/g, '') === title;  // streamlit wraps titles in <b>
})"""
WATCH_JS = """() => {
  window.__kd_updates = [];
  let last = null;
  // start over: the next update counts as a first one (it may carry steps from before the reset)
  window.__kd_reset = () => { window.__kd_updates = []; last = null; };
  setInterval(() => {
    for (const el of document.querySelectorAll('.js-plotly-plot')) {
      const m = el.layout && el.layout.meta;
      if (m && m.event_ts && m.event_ts.length) {
        const ts = m.event_ts;
        const newest = ts[ts.length - 1];
        if (last === null || newest > last) {
          const fresh = ts.filter(t => last === null || t > last);
          window.__kd_updates.push({seen: Date.now() / 1000, newest: newest, oldest_new: fresh[0],
                                    first: last === null});
          last = newest;
        }
      }
    }
  }, 20);
}"""


def stats(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    if not xs:
        return {"n": 0}
    p90 = xs[min(len(xs) - 1, int(round(0.9 * (len(xs) - 1))))]
    return {"n": len(xs), "median": statistics.median(xs), "p90": p90, "max": xs[-1], "mean": statistics.fmean(xs)}


def slider_interactions(page: Page, n: int) -> list[float]:
    """Move the explorer's T slider n times (alternating up/down); seconds until the chart shows it."""
    slider = page.get_by_role("slider", name="temperature T")
    out = []
    t_now = 4.0
    for i in range(n):
        key, t_next = ("ArrowRight", t_now + 0.5) if i % 2 == 0 else ("ArrowLeft", t_now - 0.5)
        slider.focus()
        t0 = time.perf_counter()
        slider.press(key)
        page.wait_for_function(TITLE_JS, arg=f"Softmax at T = {t_next:g}", timeout=60_000, polling=10)
        out.append(time.perf_counter() - t0)
        t_now = t_next
        page.wait_for_selector(SCRIPT_IDLE, timeout=60_000)
        time.sleep(0.3)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--interactions", type=int, default=15)
    ap.add_argument("--updates", type=int, default=30, help="chart updates to time")
    ap.add_argument("--json", help="also write the numbers here")
    ap.add_argument("--scenario", choices=("windows", "tab"), default="windows",
                    help="windows: two users, explorer and Train page each in a window, both live (default); "
                         "tab: one user, the Train page in a background tab while they use the explorer, then "
                         "brought to the front to time its chart updates")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="kdlab-bench-"))
    results: dict[str, dict] = {}
    with AppServer(tmp / "runs", fast=False, log=tmp / "streamlit.log") as srv, sync_playwright() as pw:
        # "windows": two users, each in a window of their own (a background *tab* has its timers and
        # animation frames throttled by Chromium, which would delay the chart it draws, not the server)
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *FOREGROUND_ARGS])
        ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
        explorer = ctx.new_page()
        explorer.goto(srv.url + "/Temperature_explorer")
        explorer.wait_for_selector(SCRIPT_IDLE, timeout=300_000)
        explorer.wait_for_function(TITLE_JS, arg="Softmax at T = 4", timeout=120_000)
        slider_interactions(explorer, 2)  # warm-up
        results["widget_idle_s"] = stats(slider_interactions(explorer, args.interactions))

        tabbed = args.scenario == "tab"
        train = (ctx if tabbed else browser.new_context(viewport={"width": 1400, "height": 1000})).new_page()
        train.goto(srv.url + "/")
        train.wait_for_selector(SCRIPT_IDLE, timeout=300_000)
        train.get_by_role("button", name="▶ Run the default preset").click()
        train.wait_for_url("**/Train", timeout=60_000)
        train.evaluate(WATCH_JS)
        deadline = time.time() + 600
        while time.time() < deadline:
            ups = train.evaluate("() => window.__kd_updates.length")
            if ups >= 2:
                break
            time.sleep(0.5)
        # widget latency on the other page while the job trains (and, with windows, the Train page polls)
        if tabbed:
            explorer.bring_to_front()
        results["widget_while_training_s"] = stats(slider_interactions(explorer, args.interactions))
        if tabbed:  # the user comes back to the Train tab: time its updates from now on
            train.bring_to_front()
            train.evaluate("() => window.__kd_reset()")
        while time.time() < deadline:
            if train.evaluate("() => window.__kd_updates.length") >= args.updates + 1:
                break
            time.sleep(0.5)
        ups = [u for u in train.evaluate("() => window.__kd_updates") if not u["first"]]
        results["chart_delay_oldest_new_step_s"] = stats([u["seen"] - u["oldest_new"] for u in ups])
        results["chart_delay_latest_step_s"] = stats([u["seen"] - u["newest"] for u in ups])
        gaps = [b["seen"] - a["seen"] for a, b in zip(ups, ups[1:])]
        results["chart_update_interval_s"] = stats(gaps)
        raw = {"scenario": args.scenario, "chart_updates": ups,
               "note": "seen / newest / oldest_new are epoch seconds"}
        train.locator(".st-key-train-stop button").click()
        time.sleep(1.0)
        browser.close()

    print(f"{'measure':<34}{'n':>4}{'median':>9}{'p90':>9}{'max':>9}")
    for name, s in results.items():
        if s.get("n"):
            print(f"{name:<34}{s['n']:>4}{s['median']:>9.3f}{s['p90']:>9.3f}{s['max']:>9.3f}")
    idle, busy = results["widget_idle_s"], results["widget_while_training_s"]
    if idle.get("n") and busy.get("n"):
        print(f"widget latency while training / idle (median): {busy['median'] / idle['median']:.2f}×")
    if args.json:
        Path(args.json).write_text(json.dumps({**results, "raw": raw}, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
