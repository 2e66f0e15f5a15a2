"""ONNX export of a preset's teacher and KD student, parity with onnxruntime, and the CPU latency
table (PyTorch vs onnxruntime, batch 1 and 64), written to ``benchmarks/results/onnx-latency-*.json``.

    .venv/bin/python benchmarks/onnx_latency.py                      # the default preset
    .venv/bin/python benchmarks/onnx_latency.py --preset digits-av   # GRU text encoder + attention fusion
    .venv/bin/python benchmarks/onnx_latency.py --run RUN_ID         # an existing run
    .venv/bin/python benchmarks/onnx_latency.py --tiny               # a quick 1-2 epoch run

Without ``--run`` it uses the newest finished run of the preset in the registry (``--runs-dir``,
default ``$KDLAB_RUNS_DIR`` or ``runs``), training one (the full preset, or ``--tiny``) when there is none.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TINY = {"train.teacher_epochs": 2, "train.student_epochs": 2}


def find_run(preset: str, runs_dir: Path) -> Path | None:
    from kdcore.store.registry import DB_NAME, open_registry

    if not (runs_dir / DB_NAME).is_file():
        return None
    for rec in open_registry(runs_dir).list("finished"):
        d = Path(rec.run_dir)
        if rec.name == preset and (d / "checkpoints" / "kd.safetensors").is_file() \
                and (d / "checkpoints" / "teacher.safetensors").is_file():
            return d
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    from kdcore.presets import DEFAULT_PRESET

    ap.add_argument("--preset", default=DEFAULT_PRESET)
    ap.add_argument("--run", help="run id / folder to export (default: newest finished run of the preset)")
    ap.add_argument("--runs-dir", default=None)
    ap.add_argument("--tiny", action="store_true", help="train a 2-epoch run instead of the full preset")
    ap.add_argument("--exporter", default="dynamo")
    ap.add_argument("--repeats-b1", type=int, default=50)
    ap.add_argument("--repeats-b64", type=int, default=20)
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/onnx-latency-<preset>-<date>.json)")
    args = ap.parse_args(argv)

    import torch

    from kdcore.export.api import load_run, run
    from kdcore.export.onnx_export import export_onnx, latency_table, parity_lines
    from kdcore.store.registry import default_root

    torch.set_num_threads(1)
    runs_dir = Path(args.runs_dir) if args.runs_dir else default_root()
    trained = False
    if args.run:
        r = load_run(args.run, runs_dir)
    else:
        found = None if args.tiny else find_run(args.preset, runs_dir)
        if found is None:
            print(f"training {args.preset}{' (tiny)' if args.tiny else ''} …", file=sys.stderr, flush=True)
            res = run(args.preset, TINY if args.tiny else None, runs_dir=runs_dir)
            if res.status != "finished":
                print(f"error: the run {res.status}: {res.message}", file=sys.stderr)
                return 1
            found, trained = Path(res.run_dir), True
        r = load_run(found)
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="kdlab-onnx-bench-") as tmp:
        rep = export_onnx(r.run_dir, tmp, ["kd"], exporter=args.exporter, repeats_b1=args.repeats_b1,
                          repeats_b64=args.repeats_b64, progress=lambda s: print(s, file=sys.stderr, flush=True))
    rep.update(preset=r.spec.name, run_dir=str(r.run_dir), trained_here=trained, tiny=args.tiny,
               uptime_before=uptime, uptime_after=subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
               cpu_count=os.cpu_count(), date_utc=time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
               test_acc={p: (r.result or {}).get("phases", {}).get(p, {}).get("test_acc") for p in rep["models"]})
    out = Path(args.out) if args.out else (ROOT / "benchmarks" / "results" /
                                           f"onnx-latency-{r.spec.name}-{time.strftime('%Y-%m-%d')}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rep, indent=2), encoding="utf-8")
    print(f"preset {rep['preset']}, run {rep['run']}, exporter {rep['exporter']}, torch {rep['torch']}, "
          f"onnxruntime {rep['onnxruntime']}")
    print("\n".join(parity_lines(rep)))
    print(latency_table(rep))
    print(f"machine: {uptime} ({os.cpu_count()} CPUs)")
    print(f"wrote {out}")
    return 0 if all(m["passed"] for m in rep["models"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
