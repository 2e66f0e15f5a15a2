"""Older runs → TensorBoard: replay a run folder's ``metrics.jsonl`` into event files
(``python -m kdcore export RUN --tensorboard DIR``). The writer itself is a run-folder subscriber
and lives in the store layer (:mod:`kdcore.store.tensorboard_log`)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from kdcore.store.folder import read_events
from kdcore.store.tensorboard_log import TensorBoardWriter


def write_from_metrics(run_dir: str | Path, logdir: str | Path) -> TensorBoardWriter:
    """Replay a run folder's ``metrics.jsonl`` into a new event file under ``logdir``; a run that
    ended without a ``RunFinished`` event (older runs, crashes) gets its ``result.json`` as hparams."""
    run_dir = Path(run_dir)
    writer = TensorBoardWriter(logdir, run_dir / "spec.yaml")
    events = read_events(run_dir)
    for ev in events:
        if isinstance(ev, dict) and "kind" in ev:
            writer(ev)
    if not any(e.get("kind") == "RunFinished" for e in events) and (run_dir / "result.json").is_file():
        try:
            result = json.loads((run_dir / "result.json").read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            result = None
        if isinstance(result, dict):
            with writer._lock:
                writer._write_steps()
                writer._write_result(time.time(), result, result.get("status") == "finished")
    writer.close()
    return writer
