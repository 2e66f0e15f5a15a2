"""A run folder: spec.yaml, metrics.jsonl (every event), result.json, checkpoints/*.safetensors."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path

from kdcore.core.paths import safe_name  # noqa: F401  (re-exported: the run folder's name)
from kdcore.core.events import Event

DEFAULT_ROOT = Path("runs")


def new_run_dir(root: str | Path, name: str) -> Path:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = f"{stamp}-{safe_name(name)}"
    for i in range(1000):
        candidate = root / (base if i == 0 else f"{base}-{i}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise RuntimeError("could not create a unique run folder")


class RunFolderWriter:
    """Subscriber that appends every event to ``metrics.jsonl`` (thread-safe, line-buffered) and,
    unless ``tensorboard=False`` or ``$KDLAB_TENSORBOARD=0``, writes TensorBoard event files into the
    run folder (:mod:`kdcore.store.tensorboard_log`; tags as the Train page's charts). A failure of the
    TensorBoard writer never stops training: it is switched off and one line goes to ``run.log``."""

    def __init__(self, run_dir: Path, tensorboard: bool | None = None):
        self.run_dir = Path(run_dir)
        self._lock = threading.Lock()
        self._fh = open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8")
        if tensorboard is None:
            tensorboard = os.environ.get("KDLAB_TENSORBOARD", "1").strip().lower() not in ("0", "false", "no", "off")
        self.tensorboard = None
        if tensorboard:
            try:
                from kdcore.store.tensorboard_log import TensorBoardWriter

                self.tensorboard = TensorBoardWriter(self.run_dir, self.run_dir / "spec.yaml")
            except Exception as exc:  # noqa: BLE001 (no tensorboard installed, unwritable folder, ...)
                self._tensorboard_off(exc)

    def _tensorboard_off(self, exc: Exception) -> None:
        self.tensorboard = None
        try:
            with open(self.run_dir / "run.log", "a", encoding="utf-8") as fh:
                fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} TensorBoard logging off: "
                         f"{type(exc).__name__}: {exc}\n")
        except OSError:
            pass

    def __call__(self, event: Event) -> None:
        line = json.dumps(event.to_dict(), default=float)
        with self._lock:
            self._fh.write(line + "\n")
            if event.kind != "StepLosses":
                self._fh.flush()
        tb = self.tensorboard
        if tb is not None:
            try:
                tb(event)
            except Exception as exc:  # noqa: BLE001
                self._tensorboard_off(exc)

    def close(self) -> None:
        with self._lock:
            self._fh.close()
        tb, self.tensorboard = self.tensorboard, None
        if tb is not None:
            try:
                tb.close()
            except Exception as exc:  # noqa: BLE001
                self._tensorboard_off(exc)


def read_events(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by a crash
    return out
