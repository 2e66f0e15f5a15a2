"""``python -m kdcore run``: one experiment (teacher → baseline → KD student …)."""

from __future__ import annotations

import json
import time

from kdcore.cli.common import ProgressPrinter, add_spec_args, result_table, spec_from_args


def _run_args(p):
    add_spec_args(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.add_argument("--runs-dir", default=None, help="where run folders go (default: $KDLAB_RUNS_DIR or runs)")
    p.add_argument("--no-save", action="store_true", help="do not write a run folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _run(args) -> int:
    import torch

    from kdcore.pipeline.experiment import Experiment
    from kdcore.presets import DEFAULT_PRESET, measured_for

    spec = spec_from_args(args)
    if spec.train.threads:
        torch.set_num_threads(spec.train.threads)
    from kdcore.train import distributed as dist

    dist.init_from_env(spec.train.device)  # under torchrun: process group; only rank 0 logs and saves
    if not dist.is_main():
        code = 0 if Experiment(spec).run().status == "finished" else 1
        dist.shutdown()
        return code
    subs = [] if args.quiet else [ProgressPrinter()]
    from kdcore.store.recorder import RunRecorder
    from kdcore.store.registry import default_root

    store = [] if args.no_save else [RunRecorder(args.runs_dir or default_root())]
    exp = Experiment(spec, subs, callbacks=store)
    t0 = time.time()
    result = exp.run().to_dict()
    result["wall_seconds"] = round(time.time() - t0, 2)
    if dist.active():
        result["world_size"] = dist.world_size()
        dist.shutdown()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print()
        stored = measured_for(spec, args.preset or (None if args.config else DEFAULT_PRESET))
        print(result_table(result, stored))
        if result["run_dir"]:
            print(f"run folder: {result['run_dir']}  (run id {exp.run_id})")
    return 0 if result["status"] == "finished" else 1


COMMANDS = [("run", "run an experiment (teacher → baseline → KD student)", (_run_args, _run))]
