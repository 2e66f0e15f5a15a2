"""Benchmark: Integrated Gradients (32 steps) on 8 test samples for the teacher and the student of the
default preset (digits-av: image + spectrogram + text), with 2 CPU threads.

Target: ≤ 3 s for teacher + student together. The models are built with the preset's architectures
(weights do not change the cost); each variant is timed as the median of ``--repeats`` runs after one
warm-up, side by side in this one process, and the other methods are timed alongside for context.

    .venv/bin/python benchmarks/explain_speed.py [--threads 2] [--repeats 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from kdcore.data import load_data  # noqa: E402
from kdcore.explain.attribution import AttributionParams, attribute  # noqa: E402
from kdcore.explain.probe import probe_rows  # noqa: E402
from kdcore.models import build_model, count_parameters  # noqa: E402
from kdcore.presets import DEFAULT_PRESET, load_preset  # noqa: E402

TARGET_S = 3.0


CPU_S: dict[int, float] = {}


def timed(fn, repeats: int) -> float:
    """Median wall seconds; the median CPU seconds of the process go to ``CPU_S[id(fn)]``."""
    fn()  # warm-up (Captum import, allocator)
    times, cpu = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    CPU_S[id(fn)] = statistics.median(cpu)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--json", help="also write the numbers to this JSON file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    spec = load_preset(DEFAULT_PRESET)
    data = load_data(spec.data)
    torch.manual_seed(0)
    teacher = build_model(spec.teacher, spec.teacher_modalities(), data).eval()
    student = build_model(spec.student, spec.student_modalities(), data).eval()
    test = data.split("test")
    rows = probe_rows(test, args.samples)
    b = test.batch(rows)
    params = AttributionParams(steps=args.steps)

    def run(model, method, p=params):
        return lambda: attribute(model, b.inputs, method, b.labels, p)

    res = {"preset": DEFAULT_PRESET, "threads": args.threads, "samples": len(rows), "steps": args.steps,
           "teacher_params": count_parameters(teacher), "student_params": count_parameters(student),
           "torch": torch.__version__}
    load_before = os.getloadavg()[0]
    ft, fs = run(teacher, "ig"), run(student, "ig")
    t_teacher = timed(ft, args.repeats)
    t_student = timed(fs, args.repeats)
    res["ig_teacher_s"], res["ig_student_s"] = t_teacher, t_student
    res["ig_total_s"] = t_teacher + t_student
    res["ig_total_cpu_s"] = CPU_S[id(ft)] + CPU_S[id(fs)]
    res["load_average_1min"] = [load_before, os.getloadavg()[0]]
    others = {}
    for method in ("saliency", "smoothgrad", "occlusion", "gradcam"):
        others[method] = timed(run(teacher, method), max(1, args.repeats // 2)) + \
            timed(run(student, method), max(1, args.repeats // 2))
    res["other_methods_total_s"] = others
    print(f"IG ({args.steps} steps) on {len(rows)} samples, {args.threads} threads, preset {DEFAULT_PRESET}")
    print(f"  teacher ({res['teacher_params']:,} params): {t_teacher:.3f} s")
    print(f"  student ({res['student_params']:,} params): {t_student:.3f} s")
    print(f"  teacher + student: {res['ig_total_s']:.3f} s  (target ≤ {TARGET_S:.0f} s: "
          f"{'met' if res['ig_total_s'] <= TARGET_S else 'MISSED'})")
    print(f"  CPU time of teacher + student: {res['ig_total_cpu_s']:.3f} s (all threads); 1-min load average "
          f"{load_before:.1f} → {res['load_average_1min'][1]:.1f} on {os.cpu_count()} cores — wall time is only "
          "meaningful on an otherwise idle machine")
    print("  other methods, teacher + student: " + ", ".join(f"{k} {v:.3f} s" for k, v in others.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
