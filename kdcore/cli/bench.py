"""``python -m kdcore bench``: argument parsing and dispatch; the benchmark is :mod:`kdcore.bench`
(imported when the command runs, so ``--help`` stays torch-free)."""

from __future__ import annotations

import sys

from kdcore.cli.common import UsageError, add_spec_args, spec_from_args


def bench_args(p) -> None:
    add_spec_args(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--repeats", type=int, default=None,
                   help="interleaved timed repeats per variant (default 5; --sweep: 1)")
    p.add_argument("--epochs", type=int, default=None, help="student epochs per timed run (default 5; --sweep: 2)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default 1; --sweep: 2)")
    p.add_argument("--sweep", action="store_true", help="students trained together vs one at a time (2, 4, 8, 16 "
                   "students), and a 4-value x 3-seed temperature sweep vs one run; JSON under benchmarks/results/")
    p.add_argument("--counts", default="2,4,8,16", help="--sweep: numbers of stacked students (default 2,4,8,16)")
    p.add_argument("--no-grid", action="store_true", help="--sweep: skip the temperature sweep vs one run")
    p.add_argument("--grid-repeats", type=int, default=3, help="--sweep: interleaved repeats of one run and the "
                   "sweep (default 3; the ratio is median over median)")


def bench_run(args) -> int:
    sweep = args.sweep
    args.repeats = args.repeats if args.repeats is not None else (1 if sweep else 5)
    args.epochs = args.epochs if args.epochs is not None else (2 if sweep else 5)
    args.threads = args.threads if args.threads is not None else (2 if sweep else 1)
    if not 1 <= args.repeats <= 100:
        raise UsageError("--repeats must be between 1 and 100")
    if not 1 <= args.grid_repeats <= 20:
        raise UsageError("--grid-repeats must be between 1 and 20")
    if not 1 <= args.epochs <= 1000:
        raise UsageError("--epochs must be between 1 and 1000")
    if not 1 <= args.threads <= 256:
        raise UsageError("--threads must be between 1 and 256")
    from kdcore.bench import BENCH_OVERRIDES, main_bench

    if sweep:
        return _sweep_bench(args, BENCH_OVERRIDES)
    args.set = [*BENCH_OVERRIDES, f"train.student_epochs={args.epochs}", *(args.set or [])]
    spec = spec_from_args(args)
    try:
        main_bench(spec, args.repeats, args.threads, args.json,
                   progress=lambda s: print(s, file=sys.stderr, flush=True))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return 0


def _sweep_bench(args, overrides: list[str]) -> int:
    from kdcore.pipeline.bench_sweep import main_sweep_bench

    try:
        counts = tuple(int(c) for c in args.counts.split(","))
    except ValueError:
        raise UsageError(f"--counts expects numbers like 2,4,8,16, got {args.counts!r}") from None
    if not counts or not all(2 <= c <= 64 for c in counts):
        raise UsageError("--counts: every number of stacked students must be between 2 and 64")
    user = list(args.set or [])
    grid_spec = None if args.no_grid else spec_from_args(args)
    args.set = [*overrides, *user, f"train.student_epochs={args.epochs}"]  # part 1: --epochs student epochs
    spec = spec_from_args(args)
    try:
        main_sweep_bench(spec, args.repeats, args.threads, args.json, grid_spec=grid_spec, counts=counts,
                         progress=lambda s: print(s, file=sys.stderr, flush=True), grid_repeats=args.grid_repeats)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return 0


COMMANDS = [("bench", "engine vs a hand-written PyTorch loop, cached KD vs student-only (samples/s); --sweep: "
             "students trained together vs one at a time",
             (bench_args, bench_run))]
