"""Wall time of the light commands — ``python -m kdcore presets``, ``python -m kdcore --help`` and
validating a YAML spec — in this checkout beside another checkout (default: the commit before the
one-way layers, issue 12), measured side by side in one run, alternating, median of N.

    .venv/bin/python benchmarks/import_time.py --before /path/to/old/checkout [--repeats 5]
    (make one with: git worktree add /tmp/kd-before 31dca04)

Prints a table with the ratio after / before and whether torch was imported, and writes
benchmarks/results/import_time.json. Absolute times depend on the machine's load (printed).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = "data: {dataset: digits-av}\ndistill: {temperature: 2}\n"
# runs `kdcore presets` in-process, then says whether torch got imported
TORCH_PROBE = ("import runpy, sys\nsys.argv = ['kdcore', 'presets']\n"
               "try:\n    runpy.run_module('kdcore', run_name='__main__')\nexcept SystemExit:\n    pass\n"
               "print('TORCH' if 'torch' in sys.modules else 'NOTORCH')")


def commands(spec_path: Path, spec_module: str) -> dict[str, list[str]]:
    validate = (f"import sys; from {spec_module} import ExperimentSpec; ExperimentSpec.load(sys.argv[1]); "
                "print('torch' in sys.modules)")
    return {
        "presets": [sys.executable, "-m", "kdcore", "presets"],
        "--help": [sys.executable, "-m", "kdcore", "--help"],
        "validate a YAML spec": [sys.executable, "-c", validate, str(spec_path)],
        "_torch_presets": [sys.executable, "-c", TORCH_PROBE],
    }


def timed(cmd: list[str], cwd: Path) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed in {cwd}: {out.stderr[-400:]}")
    return dt, out.stdout


def spec_module(checkout: Path) -> str:
    return "kdcore.core.spec" if (checkout / "kdcore" / "core" / "spec.py").is_file() else "kdcore.spec"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", type=Path, required=True, help="checkout to compare with")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "import_time.json")
    args = p.parse_args()
    spec_path = Path(os.environ.get("TMPDIR", "/tmp")) / "kdlab-import-time.yaml"
    spec_path.write_text(SPEC)
    sides = {"before": args.before.resolve(), "after": ROOT}
    cmds = {s: commands(spec_path, spec_module(c)) for s, c in sides.items()}
    times: dict[str, dict[str, list[float]]] = {s: {k: [] for k in cmds[s] if not k.startswith("_")} for s in sides}
    torch_loaded = {}
    for s, c in sides.items():  # warm the file cache once, and see whether torch is imported
        _, out = timed(cmds[s]["_torch_presets"], c)
        torch_loaded[s] = out.strip().splitlines()[-1] == "TORCH"
    load = os.getloadavg()
    for _ in range(args.repeats):
        for name in times["after"]:
            for s in ("before", "after"):  # alternating, so load changes hit both sides
                times[s][name].append(timed(cmds[s][name], sides[s])[0])
    rows = []
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores; "
          f"median of {args.repeats} runs, alternating")
    print(f"{'command':<22} {'before s':>9} {'after s':>9} {'after/before':>13}")
    for name in times["after"]:
        b, a = statistics.median(times["before"][name]), statistics.median(times["after"][name])
        rows.append({"command": name, "before_s": round(b, 3), "after_s": round(a, 3), "ratio": round(a / b, 3)})
        print(f"{name:<22} {b:9.2f} {a:9.2f} {a / b:13.2f}")
    print(f"torch imported by `presets`: before {torch_loaded['before']}, after {torch_loaded['after']}")
    rep = {"before": str(sides["before"]), "after": str(ROOT), "repeats": args.repeats, "load_avg": load,
           "cpus": os.cpu_count(), "rows": rows, "torch_imported_by_presets": torch_loaded,
           "target_s": 1.5, "measured_at": time.strftime("%Y-%m-%d %H:%M:%S")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rep, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
