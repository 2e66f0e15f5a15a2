"""``python -m kdcore explain RUN``: attention, attributions and teacher–student agreement of a run."""

from __future__ import annotations

import json

from kdcore.cli.common import UsageError


def _explain_args(p):
    p.add_argument("run", metavar="RUN", help="run folder (with spec.yaml, metrics.jsonl, checkpoints/)")
    p.add_argument("--method", default="ig", help="ig, saliency, smoothgrad, occlusion or gradcam (default ig)")
    p.add_argument("--samples", type=int, default=16, help="fixed probe samples of the split (default 16)")
    p.add_argument("--split", default="test", help="train, val or test (default test)")
    p.add_argument("--steps", type=int, default=32, help="IG steps (default 32)")
    p.add_argument("--window", type=int, default=4, help="occlusion window (default 4, stride window // 2)")
    p.add_argument("--baseline", default="zeros", help="zeros or mean (default zeros)")
    p.add_argument("--noise-samples", type=int, default=8, help="SmoothGrad draws (default 8)")
    p.add_argument("--topk", type=float, default=0.1, help="top-k fraction for the overlap (default 0.1)")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")


def _explain(args) -> int:
    from kdcore.core.spec import SpecError
    from kdcore.explain.attribution import AttributionError, AttributionParams
    from kdcore.explain.report import explain_report, report_table
    from kdcore.explain.runs import RunError
    from kdcore.models.checkpoints import CheckpointError

    try:
        params = AttributionParams(steps=args.steps, window=args.window, baseline=args.baseline,
                                   noise_samples=args.noise_samples).check()
        rep = explain_report(args.run, args.method, args.samples, params, args.topk, args.split)
    except (AttributionError, RunError, CheckpointError, SpecError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    print(json.dumps(rep, indent=2) if args.json else report_table(rep))
    return 0


COMMANDS = [("explain", "attention α, attribution shares and teacher–student agreement of a run folder",
             (_explain_args, _explain))]
