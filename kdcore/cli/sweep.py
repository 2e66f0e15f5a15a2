"""``python -m kdcore sweep``: a spec over several seeds, optionally over a grid (``--vary``)."""

from __future__ import annotations

import json
import sys

from kdcore.cli.common import UsageError, add_spec_args, spec_from_args


def _sweep_args(p):
    add_spec_args(p)
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (0..N-1)")
    p.add_argument("--vary", action="append", metavar="FIELD=V1,V2,...",
                   help="a spec field and its values, e.g. distill.temperature=1,2,4,8 (at most two --vary); "
                        "the table then has one row per grid point with the paired KD gain")
    p.add_argument("--no-cache", action="store_true", help="--vary: retrain every row (default: reuse the "
                   "rows cached under runs/sweeps/ and train only the missing ones)")
    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="--vary: local = this process (shares teacher/baseline between grid points); ray = one "
                        "Ray task per grid point × seed, on a local Ray instance or --ray-address")
    p.add_argument("--ray-address", default=None, metavar="ADDRESS",
                   help="--backend ray: an existing cluster, e.g. ray://head:10001 (default: $RAY_ADDRESS, "
                        "else a local instance for this sweep)")
    p.add_argument("--ray-cpus", type=float, default=1.0, help="--backend ray: CPUs per task (default 1)")
    p.add_argument("--ray-gpus", type=float, default=0.0, help="--backend ray: GPUs per task (default 0)")
    p.add_argument("--no-stack", action="store_true", help="--vary: train every student on its own (default: the "
                   "baseline and KD students of points that differ only in distill.* train as one stacked model)")
    p.add_argument("--seed-by-seed", action="store_true", help="--vary: stack the students of one seed at a time, "
                   "so rows arrive seed by seed (default: the teachers and students of every seed train together: "
                   "the same numbers, faster)")
    p.add_argument("--save", action="store_true", help="--vary: store every grid point x seed as a run (a run folder "
                   "and a registry row under --runs-dir: listed by `runs`, opened on the Compare page); a cached row "
                   "without a stored run trains again")
    p.add_argument("--runs-dir", default=None, help="--vary: where the sweep cache (sweeps/) and, with --save, "
                   "the run folders go (default: $KDLAB_RUNS_DIR or runs)")
    p.add_argument("--json", action="store_true")


def _sweep(args) -> int:
    from kdcore.core.spec import SpecError
    from kdcore.pipeline.sweep import run_sweep, sweep_table

    spec = spec_from_args(args)
    if args.seeds < 1:
        raise UsageError("--seeds must be ≥ 1")
    if args.backend == "ray" and not args.vary:
        raise UsageError("--backend ray: give at least one --vary FIELD=V1,V2,... (a grid to hand out)")
    if args.save and (not args.vary or args.backend == "ray"):
        raise UsageError("--save stores the runs of a grid: give --vary FIELD=V1,V2,... with --backend local")
    if args.vary:
        from kdcore.pipeline.grid import parse_vary, run_grid
        from kdcore.store.registry import default_root

        try:
            axes = parse_vary(args.vary)
            root = args.runs_dir or default_root()
            cache_root = None if args.no_cache else root
            if args.backend == "ray":
                from kdcore.pipeline.ray_backend import run_grid_ray

                grid = run_grid_ray(spec, axes, args.seeds, progress=sys.stderr, cache_root=cache_root,
                                    address=args.ray_address, cpus_per_task=args.ray_cpus,
                                    gpus_per_task=args.ray_gpus, threads=max(1, int(args.ray_cpus)))
            else:
                store = None
                if args.save:
                    from kdcore.store.sweep_store import SweepRunStore

                    store = SweepRunStore(root)
                grid = run_grid(spec, axes, args.seeds, progress=sys.stderr, cache_root=cache_root,
                                stack=not args.no_stack, store=store, stack_seeds=not args.seed_by_seed)
        except SpecError as exc:
            raise UsageError(str(exc)) from None
        print(json.dumps(grid.to_dict(), indent=2, default=str) if args.json else grid.table())
        return 0
    summary = run_sweep(spec, args.seeds, progress=sys.stderr)
    print(json.dumps(summary, indent=2) if args.json else sweep_table(summary))
    return 0


COMMANDS = [("sweep", "run a preset over several seeds; mean ± std of every phase", (_sweep_args, _sweep))]
