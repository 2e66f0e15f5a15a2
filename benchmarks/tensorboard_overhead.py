"""Does writing TensorBoard event files slow training? The KD phase of a preset, run through the
engine (``train_phase``, as ``python -m kdcore bench`` does) with the run folder's writer

* ``jsonl``: :class:`~kdcore.store.folder.RunFolderWriter` with ``tensorboard=False`` (metrics.jsonl only),
* ``jsonl+tb``: the same writer with TensorBoard event files (what every run does now),
* ``none``: no subscriber at all (a reference),

interleaved over repeats (the order rotating), one torch thread, process CPU time and wall-clock.
The ratio is the median over repeats of ``time(jsonl+tb) / time(jsonl)`` within a repeat (target ≤ 1.03).

    .venv/bin/python benchmarks/tensorboard_overhead.py [--preset digits-av] [--repeats 7] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="digits-av")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    import torch

    from kdcore.bench import BENCH_OVERRIDES
    from kdcore.pipeline.experiment import Experiment
    from kdcore.train.trainer import train_phase
    from kdcore.presets import load_preset
    from kdcore.store.folder import RunFolderWriter

    torch.set_num_threads(1)
    spec = load_preset(args.preset).with_overrides([*BENCH_OVERRIDES, f"train.student_epochs={args.epochs}"])
    exp = Experiment(spec)
    print("setup: data, a 2-epoch teacher, the teacher cache", file=sys.stderr, flush=True)
    exp.setup()
    tmp = Path(tempfile.mkdtemp(prefix="kdlab-tb-bench-"))
    (tmp / "spec.yaml").write_text(spec.to_yaml(), encoding="utf-8")

    def once(kind: str, r: int) -> dict:
        d = tmp / f"{kind}-{r}"
        d.mkdir()
        (d / "spec.yaml").write_text(spec.to_yaml(), encoding="utf-8")
        writer = None if kind == "none" else RunFolderWriter(d, tensorboard=(kind == "jsonl+tb"))
        sub = writer if writer is not None else (lambda ev: None)
        cfg = exp.student_phase("kd", spec.distill.losses)
        t0, c0 = time.perf_counter(), time.process_time()
        res = train_phase(cfg, exp.data, spec.train, exp.device, sub, lambda: False)
        if writer is not None:
            writer.close()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        return {"wall": wall, "cpu": cpu, "val_acc": [h["val_acc"] for h in res.history],
                "steps": sum(1 for _ in open(d / "metrics.jsonl")) if writer is not None else None}

    kinds = ["none", "jsonl", "jsonl+tb"]
    load0 = os.getloadavg()[0]
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    for k in kinds:  # untimed warm-up
        once(k, -1)
    runs: dict[str, list[dict]] = {k: [] for k in kinds}
    for r in range(args.repeats):
        for k in kinds[r % 3:] + kinds[: r % 3]:
            runs[k].append(once(k, r))
        print(f"repeat {r + 1}/{args.repeats}", file=sys.stderr, flush=True)

    # the writer's own cost, isolated from the machine's noise: replay one run's events (as the
    # engine emitted them) into a fresh TensorBoard writer, several times, CPU time per phase
    from kdcore.core import events as ev_mod
    from kdcore.store.tensorboard_log import TensorBoardWriter

    recorded = [json.loads(line) for line in open(tmp / "jsonl-0" / "metrics.jsonl")]
    objs = []
    for e in recorded:
        kind = e.pop("kind")
        objs.append(getattr(ev_mod, kind)(**e))
    replay = []
    for i in range(max(3, args.repeats)):
        w = TensorBoardWriter(tmp / f"replay-{i}", tmp / "spec.yaml")
        c0 = time.process_time()
        for o in objs:
            w(o)
        w.close()
        replay.append(time.process_time() - c0)
    writer_cpu = statistics.median(replay)
    train_cpu = statistics.median(x["cpu"] for x in runs["jsonl"])

    def paired(a: str, b: str, clock: str) -> float:
        return statistics.median(x[clock] / y[clock] for x, y in zip(runs[a], runs[b]))

    ratios = {f"{a}_over_{b}": {"cpu": round(paired(a, b, "cpu"), 4), "wall": round(paired(a, b, "wall"), 4),
                                "cpu_min": round(min(x["cpu"] for x in runs[a]) / min(y["cpu"] for y in runs[b]), 4)}
              for a, b in (("jsonl+tb", "jsonl"), ("jsonl+tb", "none"), ("jsonl", "none"))}
    same = runs["jsonl+tb"][0]["val_acc"] == runs["jsonl"][0]["val_acc"] == runs["none"][0]["val_acc"]
    rep = {"preset": spec.name, "epochs": args.epochs, "repeats": args.repeats, "batch_size": spec.train.batch_size,
           "train_samples": len(exp.data.split("train")), "threads": 1, "torch": torch.__version__,
           "teacher_cache": exp.teacher_cache.describe() if exp.teacher_cache else "",
           "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "uptime": uptime, "cpu_count": os.cpu_count(),
           "load_average": [round(load0, 2), round(os.getloadavg()[0], 2)],
           "seconds": {k: {"cpu": [round(x["cpu"], 4) for x in v], "wall": [round(x["wall"], 4) for x in v]}
                       for k, v in runs.items()},
           "ratios": ratios, "same_accuracy": same, "target": 1.03,
           "isolated": {"events": len(objs), "steps": sum(1 for o in objs if o.kind == "StepLosses"),
                        "writer_cpu_s": round(writer_cpu, 5), "train_cpu_s": round(train_cpu, 4),
                        "ratio": round(1 + writer_cpu / train_cpu, 4),
                        "us_per_step": round(1e6 * writer_cpu / max(1, sum(1 for o in objs if o.kind == "StepLosses")), 1)}}
    out = Path(args.out) if args.out else (ROOT / "benchmarks" / "results" /
                                           f"tensorboard-overhead-{spec.name}-{time.strftime('%Y-%m-%d')}.json")
    out.write_text(json.dumps(rep, indent=2), encoding="utf-8")
    print(f"KD phase of {spec.name}: {args.epochs} epochs × {rep['train_samples']} samples, batch "
          f"{rep['batch_size']}, {args.repeats} interleaved repeats, 1 thread")
    for k, v in runs.items():
        print(f"  {k:<9} CPU s median {statistics.median(x['cpu'] for x in v):7.3f}   wall s median "
              f"{statistics.median(x['wall'] for x in v):7.3f}")
    for name, v in ratios.items():
        print(f"  {name:<22} CPU {v['cpu']:.3f}  wall {v['wall']:.3f}  fastest repeats {v['cpu_min']:.3f}")
    iso = rep["isolated"]
    print(f"  isolated: the TensorBoard writer alone takes {iso['writer_cpu_s'] * 1000:.1f} ms CPU for the phase's "
          f"{iso['events']} events ({iso['us_per_step']:.0f} µs per step) vs {iso['train_cpu_s']:.2f} s of training "
          f"→ ratio {iso['ratio']:.4f}")
    t = ratios["jsonl+tb_over_jsonl"]
    print(f"TensorBoard writer overhead ≤ 1.03: CPU {'PASS' if t['cpu'] <= 1.03 else 'FAIL'} ({t['cpu']:.3f}), "
          f"wall {'PASS' if t['wall'] <= 1.03 else 'FAIL'} ({t['wall']:.3f}); same accuracy: {same}")
    print(f"machine: {uptime}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
