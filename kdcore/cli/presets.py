"""``python -m kdcore presets``: the presets with a one-line description (no torch)."""

from __future__ import annotations

import json


def _presets_args(p):
    p.add_argument("--json", action="store_true")


def _presets(args) -> int:
    from kdcore.presets import PRESETS, load_preset

    rows = {name: load_preset(name).description.strip().splitlines()[0] for name in PRESETS}
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        width = max(map(len, rows))
        for name, desc in rows.items():
            print(f"{name:<{width}}  {desc}")
    return 0


COMMANDS = [("presets", "list presets with a one-line description", (_presets_args, _presets))]
