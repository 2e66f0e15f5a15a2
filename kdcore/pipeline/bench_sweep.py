"""``python -m kdcore bench --sweep``: students trained together vs one at a time (issue #13, item 4).

Side by side in one process, on the spec's student architecture (the default preset's: image +
speech + text, GRU text encoder):

1. **Per-student time.** N KD students that differ only in the temperature (N = 2, 4, 8, 16 by
   default) train ``epochs`` epochs as one stacked model (:func:`kdcore.train.stacked.train_stacked`);
   the same students train one at a time with :func:`kdcore.train.trainer.train_phase` (two of
   them, every repeat: the sequential cost per student does not depend on N). Repeats interleave
   the variants, so a load spike from other processes hits all of them; the report gives the
   median wall seconds per student and the ratio stacked / sequential (1.00 = no gain).
2. **A temperature sweep vs one run** (off with ``--no-grid``): the wall time of
   ``run_grid(spec, {distill.temperature: [1, 2, 4, 8]}, seeds=3)`` (stacked, nothing cached)
   against one ``Experiment(spec).run()``, both in this process, at the spec's own epochs (not
   ``--epochs``, which sizes part 1 only).

Wall clock (``perf_counter``) and process CPU time (``process_time``, less sensitive to other
processes on a shared machine) with ``threads`` torch threads; the machine's load average is
recorded at the start and the end.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch

from kdcore.core.spec import ExperimentSpec
from kdcore.pipeline.experiment import Experiment

TEMPERATURES = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)


def _load() -> str:
    try:
        return Path("/proc/loadavg").read_text().split(" ")[0]
    except OSError:
        return "?"


def _kd_cfgs(lead: Experiment, n: int):
    """``n`` KD phases of the lead's seed at different temperatures (same init, data, teacher)."""
    cfgs = []
    for i in range(n):
        t = TEMPERATURES[i % len(TEMPERATURES)] + (i // len(TEMPERATURES)) * 0.5
        lead.spec = lead.spec.with_overrides([f"distill.temperature={t}"])
        cfgs.append(lead.student_phase("kd", lead.spec.distill.losses))
    return cfgs


def run_sweep_bench(spec: ExperimentSpec, counts: tuple[int, ...] = (2, 4, 8, 16), repeats: int = 1,
                    threads: int = 2, grid_spec: ExperimentSpec | None = None, seeds: int = 3,
                    progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    from kdcore.pipeline.grid import run_grid
    from kdcore.train.stacked import stack_reason, train_stacked
    from kdcore.train.trainer import train_phase

    say = progress or (lambda s: None)
    torch.set_num_threads(threads)
    report: dict[str, Any] = {"spec": spec.name, "threads": threads, "repeats": repeats,
                              "student_epochs": spec.train.student_epochs, "teacher_epochs": spec.train.teacher_epochs,
                              "load_start": _load(), "host": platform.node(), "cpus": os.cpu_count(),
                              "torch": torch.__version__}
    lead = Experiment(spec)
    t0 = time.perf_counter()
    lead.setup()
    report["setup_s"] = round(time.perf_counter() - t0, 2)
    nothing = lambda e: None  # noqa: E731
    never = lambda: False  # noqa: E731
    probe = _kd_cfgs(lead, 2)
    why = stack_reason(probe, spec.train, lead.device)
    if why:
        raise ValueError(f"--sweep: the students of {spec.name} cannot be stacked: {why}")
    seq: list[float] = []
    seq_cpu: list[float] = []
    stacked: dict[int, list[float]] = {n: [] for n in counts}
    stacked_cpu: dict[int, list[float]] = {n: [] for n in counts}
    for r in range(repeats):
        order = ["seq", *counts] if r % 2 == 0 else [*counts, "seq"]
        for variant in order:
            if variant == "seq":
                for cfg in _kd_cfgs(lead, 2):
                    t, c = time.perf_counter(), time.process_time()
                    train_phase(cfg, lead.data, spec.train, lead.device, nothing, never)
                    seq.append(time.perf_counter() - t)
                    seq_cpu.append(time.process_time() - c)
                say(f"repeat {r + 1}: one at a time {seq[-1]:.2f} s per student (load {_load()})")
            else:
                cfgs = _kd_cfgs(lead, variant)
                t, c = time.perf_counter(), time.process_time()
                train_stacked(cfgs, lead.data, spec.train, lead.device, [nothing] * variant, never)
                dt = (time.perf_counter() - t) / variant
                stacked[variant].append(dt)
                stacked_cpu[variant].append((time.process_time() - c) / variant)
                say(f"repeat {r + 1}: {variant} stacked {dt:.2f} s per student (load {_load()})")
    seq_s, seq_c = statistics.median(seq), statistics.median(seq_cpu)
    report["sequential_s_per_student"] = round(seq_s, 3)
    report["sequential_cpu_s_per_student"] = round(seq_c, 3)
    report["per_student"] = {str(n): {"stacked_s_per_student": round(statistics.median(v), 3),
                                      "ratio": round(statistics.median(v) / seq_s, 3),
                                      "cpu_s_per_student": round(statistics.median(stacked_cpu[n]), 3),
                                      "cpu_ratio": round(statistics.median(stacked_cpu[n]) / seq_c, 3),
                                      "repeats_s": [round(x, 3) for x in v]} for n, v in stacked.items()}
    report["sequential_repeats_s"] = [round(x, 3) for x in seq]
    if grid_spec is not None:
        report["grid_student_epochs"] = grid_spec.train.student_epochs
        report["grid_teacher_epochs"] = grid_spec.train.teacher_epochs
        t = time.perf_counter()
        one = Experiment(grid_spec).run()
        one_s = time.perf_counter() - t
        say(f"one run of {spec.name}: {one_s:.1f} s ({one.status}, load {_load()})")
        t = time.perf_counter()
        g = run_grid(grid_spec, {"distill.temperature": [1.0, 2.0, 4.0, 8.0]}, seeds, cache_root=None, stack=True)
        grid_s = time.perf_counter() - t
        say(f"4 x {seeds} temperature sweep: {grid_s:.1f} s (load {_load()})")
        report["grid"] = {"one_run_s": round(one_s, 2), "sweep_4x%d_s" % seeds: round(grid_s, 2),
                          "ratio": round(grid_s / one_s, 3), "stacked": g.stacked,
                          "naive_estimate_s": round(4 * seeds * one_s, 1)}
    report["load_end"] = _load()
    return report


def sweep_bench_table(rep: dict[str, Any]) -> str:
    lines = [f"Students trained together — {rep['spec']}, {rep['student_epochs']} student epochs, "
             f"{rep['threads']} thread(s), {rep['repeats']} repeat(s), load {rep['load_start']} → {rep['load_end']}",
             f"one at a time: {rep['sequential_s_per_student']:.2f} s per student "
             f"(CPU {rep['sequential_cpu_s_per_student']:.2f} s)",
             "| students | stacked s / student | stacked / one at a time (wall) | (process CPU) |", "|---|---|---|---|"]
    for n, v in rep["per_student"].items():
        lines.append(f"| {n} | {v['stacked_s_per_student']:.2f} | {v['ratio']:.2f}× | {v['cpu_ratio']:.2f}× |")
    g = rep.get("grid")
    if g:
        key = next(k for k in g if k.startswith("sweep_"))
        lines.append(f"temperature sweep {key[6:-2]} ({rep['grid_teacher_epochs']} teacher / "
                     f"{rep['grid_student_epochs']} student epochs): {g[key]:.1f} s vs one run "
                     f"{g['one_run_s']:.1f} s → "
                     f"{g['ratio']:.2f}× (run one at a time it would be ~{g['naive_estimate_s']:.0f} s)")
    return "\n".join(lines)


def main_sweep_bench(spec: ExperimentSpec, repeats: int, threads: int, as_json: bool,
                     grid_spec: ExperimentSpec | None = None,
                     counts: tuple[int, ...] = (2, 4, 8, 16), out_dir: str | Path | None = "benchmarks/results",
                     progress=None) -> dict[str, Any]:
    rep = run_sweep_bench(spec, counts, repeats, threads, grid_spec, progress=progress)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"bench-sweep-{spec.name}-{time.strftime('%Y-%m-%d-%H%M%S')}.json"
        path.write_text(json.dumps(rep, indent=2), encoding="utf-8")
        rep["file"] = str(path)
    print(json.dumps(rep, indent=2) if as_json else sweep_bench_table(rep) + (
        f"\n(JSON: {rep['file']})" if "file" in rep else ""))
    return rep
