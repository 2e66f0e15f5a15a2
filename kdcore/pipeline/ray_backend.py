"""Grid sweeps past one machine: every (grid point, seed) of :func:`kdcore.pipeline.grid.run_grid`'s
grid as one Ray task.

    python -m kdcore sweep --preset digits-av --vary distill.temperature=1,2,4,8 --seeds 3 --backend ray
    python -m kdcore sweep ... --backend ray --ray-address ray://head-node:10001   # an existing cluster

Ray schedules the tasks over the cluster's CPUs (or GPUs, with ``--ray-gpus``); this module only
builds the tasks and gathers their rows: no scheduler of its own. Without ``--ray-address`` (and
without ``$RAY_ADDRESS``) a local Ray instance is started for the sweep and shut down after it.

Each task runs one full experiment (teacher, baseline, KD student) of its grid point and seed, so
nothing is shared between tasks; every run is deterministic for its seed on CPU (same thread
count), so the numbers equal the in-process backend's, whose shared phases are exact reuse. Rows
go into the same cache file as the in-process backend's, so either backend continues the other's
half-finished sweep.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TextIO

from kdcore.core.spec import ExperimentSpec, SpecError
from kdcore.pipeline.grid import GridResult, point_key, point_spec, result_row, save_cache, start_grid

RAY_MISSING = ("--backend ray needs the 'ray' package (it is in requirements.txt: run `make test` or "
               "`.venv/bin/pip install ray`), or use the in-process backend (--backend local)")


def run_point(base: dict[str, Any], point: dict[str, Any], seed: int, threads: int) -> dict[str, Any]:
    """One grid row: the experiment of ``point`` at ``seed`` (run inside a Ray worker)."""
    import torch

    from kdcore.core.spec import validate_spec
    from kdcore.pipeline.experiment import Experiment

    torch.set_num_threads(threads)
    spec = point_spec(validate_spec(base), point, seed)
    res = Experiment(spec).run()
    if res.status != "finished":
        raise RuntimeError(f"{point} seed {seed}: run {res.status}: {res.message}")
    return {"point": point, "seed": seed, "acc": result_row(res), "shared": []}


def run_grid_ray(base: ExperimentSpec, axes: dict[str, list[Any]], seeds: int, progress: TextIO | None = None,
                 cache_root: str | Path | None = None, address: str | None = None, cpus_per_task: float = 1.0,
                 gpus_per_task: float = 0.0, threads: int = 1) -> GridResult:
    """The grid of :func:`~kdcore.pipeline.grid.run_grid` with one Ray task per missing row.

    ``address``: an existing cluster (default ``$RAY_ADDRESS``; none: a local instance for this
    sweep); ``threads``: torch threads in each task (its CPU share)."""
    try:
        import ray
    except ImportError:
        raise SpecError(RAY_MISSING) from None
    result, path, cache = start_grid(base, axes, seeds, cache_root)
    points = result.points()
    todo = [(p, s) for s in range(seeds) for p in points if point_key(p, s) not in cache]
    address = address or os.environ.get("RAY_ADDRESS") or None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 **({} if address else {"num_cpus": max(1, os.cpu_count() or 1)}))
    try:
        task = ray.remote(num_cpus=cpus_per_task, num_gpus=gpus_per_task)(run_point)
        pending = {task.remote(base.to_dict(), p, s, threads): (p, s) for p, s in todo}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            point, seed = pending.pop(done[0])
            row = ray.get(done[0])
            cache[point_key(point, seed)] = row
            result.trained += 1
            if path is not None:
                save_cache(path, cache)
            if progress is not None:
                a = row["acc"]
                progress.write(f"[{base.name}] {point} seed {seed}: baseline {100 * a['baseline']:.1f} "
                               f"kd {100 * a['kd']:.1f} (ray task)\n")
                progress.flush()
    finally:
        if started_here:
            ray.shutdown()
    result.rows = [cache[point_key(p, s)] for s in range(seeds) for p in points]
    return result
