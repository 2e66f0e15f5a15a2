"""``python -m kdcore bench``: argument parsing and dispatch; the benchmark is :mod:`kdcore.bench`
(imported when the command runs, so ``--help`` stays torch-free)."""

from __future__ import annotations

import sys

from kdcore.cli.common import UsageError, add_spec_args, spec_from_args


def bench_args(p) -> None:
    add_spec_args(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--repeats", type=int, default=5, help="interleaved timed repeats per variant (default 5)")
    p.add_argument("--epochs", type=int, default=5, help="student epochs per timed run (default 5)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")


def bench_run(args) -> int:
    if not 1 <= args.repeats <= 100:
        raise UsageError("--repeats must be between 1 and 100")
    if not 1 <= args.epochs <= 1000:
        raise UsageError("--epochs must be between 1 and 1000")
    if not 1 <= args.threads <= 256:
        raise UsageError("--threads must be between 1 and 256")
    from kdcore.bench import BENCH_OVERRIDES, main_bench

    args.set = [*BENCH_OVERRIDES, f"train.student_epochs={args.epochs}", *(args.set or [])]
    spec = spec_from_args(args)
    try:
        main_bench(spec, args.repeats, args.threads, args.json,
                   progress=lambda s: print(s, file=sys.stderr, flush=True))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return 0


COMMANDS = [("bench", "engine vs a hand-written PyTorch loop, cached KD vs student-only (samples/s)",
             (bench_args, bench_run))]
