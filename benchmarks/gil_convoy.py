#!/usr/bin/env python3
"""The GIL "convoy effect" on a training job — a benchmark, not a test.

A job of the app trains in a thread of the server process. Every torch op releases the GIL and
must win it back; while another thread runs Python code (a page rerun, a garbage collection),
each reacquisition can wait up to one interpreter switch interval (5 ms by default). This script
trains the default preset's teacher for a few epochs in a :class:`JobManager` job, with and
without a busy pure-Python thread beside it, at several switch intervals, and prints the
teacher phase's seconds side by side.

Usage: .venv/bin/python benchmarks/gil_convoy.py [--epochs 3] [--intervals-ms 5 0.5 0.1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kdcore.service.jobs import JobManager  # noqa: E402
from kdcore.presets import load_preset  # noqa: E402


def teacher_seconds(epochs: int, interval_s: float, busy: bool, root: Path) -> float:
    sys.setswitchinterval(interval_s)
    spec = load_preset("digits-av").with_overrides(
        [f"train.teacher_epochs={epochs}", "train.student_epochs=1", "train.threads=1"])
    stop = threading.Event()

    def hog() -> None:  # what a busy server thread looks like to the GIL
        x = 0
        while not stop.is_set():
            for i in range(10_000):
                x += i * i

    hogger = threading.Thread(target=hog, daemon=True)
    if busy:
        hogger.start()
    try:
        job = JobManager(run_root=root).submit(spec)
        job.wait()
    finally:
        stop.set()
    snap = job.snapshot()
    if snap.status != "finished":
        raise RuntimeError(f"job {snap.status}: {snap.message}")
    return float(snap.result["phases"]["teacher"]["seconds"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--intervals-ms", type=float, nargs="+", default=[5.0, 0.5, 0.1])
    a = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="kdlab-gil-"))
    print(f"teacher phase seconds ({a.epochs} epochs, 1 torch thread)")
    print(f"{'switch interval':>16} {'alone':>8} {'beside a busy thread':>21} {'slow-down':>10}")
    for ms in a.intervals_ms:
        alone = teacher_seconds(a.epochs, ms / 1000, False, root)
        busy = teacher_seconds(a.epochs, ms / 1000, True, root)
        print(f"{ms:>13.2f} ms {alone:>8.1f} {busy:>21.1f} {busy / alone:>9.1f}×")
    time.sleep(0.1)


if __name__ == "__main__":
    main()
