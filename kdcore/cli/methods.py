"""``python -m kdcore methods``: distillation losses, weightings, temperature schedules and phases."""

from __future__ import annotations

import json


def _methods_args(p):
    p.add_argument("--json", action="store_true")


def _methods(args) -> int:
    from kdcore.methods.losses import LOSSES
    from kdcore.methods.strategies import TEMPERATURE_SCHEDULES, WEIGHTINGS
    import kdcore.pipeline.recipes  # noqa: F401  (every recipe module registers itself)
    from kdcore.pipeline.recipes.registry import RECIPES

    rows = [{"name": n, "kind": "loss", "family": c.family, "summary": c.summary, "paper": c.paper,
             "default_weight": c.default_weight, "defaults": c.defaults} for n, c in sorted(LOSSES.items())]
    rows += [{"name": n, "kind": "weighting", "summary": c.summary, "defaults": c.defaults}
             for n, c in WEIGHTINGS.items()]
    rows += [{"name": n, "kind": "temperature", "summary": c.summary, "defaults": c.defaults}
             for n, c in TEMPERATURE_SCHEDULES.items()]
    rows += [{"name": n, "kind": "phase", "summary": r.summary, "defaults": r.defaults} for n, r in RECIPES.items()]
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
    else:
        width = max(len(r["name"]) for r in rows)
        for r in rows:
            extra = f" weight {r['default_weight']}" if "default_weight" in r else ""
            params = ", ".join(f"{k}={v}" for k, v in r["defaults"].items())
            print(f"{r['kind']:<11} {r['name']:<{width}} {r['summary']}  [{params}{extra}]")
    return 0


COMMANDS = [("methods", "list distillation methods and strategies with their defaults", (_methods_args, _methods))]
