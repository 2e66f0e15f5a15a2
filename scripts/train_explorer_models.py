#!/usr/bin/env python3
"""Train the small teacher + KD student bundled for the temperature explorer (runs offline).

The app's Temperature explorer page works without any training run by loading these models:

    assets/explorer/spec.yaml            the experiment spec they were trained with
    assets/explorer/teacher.safetensors  the trimodal teacher (best-on-validation weights)
    assets/explorer/kd.safetensors       the KD student of the same spec
    assets/explorer/baseline.safetensors the same student trained without the teacher
    assets/explorer/result.json          test accuracies of the three (one seed, for display)

Usage:
    .venv/bin/python scripts/train_explorer_models.py [--out assets/explorer] [--epochs 30]

Deterministic given the spec's seed (CPU, one thread).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from kdcore.engine.experiment import Experiment  # noqa: E402
from kdcore.presets import DEFAULT_PRESET, load_preset  # noqa: E402
from kdcore.store.checkpoints import save_state  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "assets" / "explorer"))
    ap.add_argument("--epochs", type=int, default=30, help="teacher and student epochs")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    spec = load_preset(DEFAULT_PRESET).with_overrides([
        "name=explorer", f"train.teacher_epochs={args.epochs}", f"train.student_epochs={args.epochs}",
        "train.device=cpu",
        # milder noise than the preset, so the teacher is confident but not one-hot: a clearer picture
        # of soft targets for teaching
        "data.noise.image_sigma=0.3", "data.noise.audio_snr_db=10", "data.noise.text_corruption=0.2",
    ])
    spec = spec.model_copy(update={"description": "Models bundled for the temperature explorer (trained by "
                                                  "scripts/train_explorer_models.py from the default preset)."})
    t0 = time.time()
    exp = Experiment(spec, run_root=None)
    result = exp.run()
    if result.status != "finished":
        print(f"training did not finish: {result.status} {result.message}", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    spec.save(out / "spec.yaml")
    for phase in ("teacher", "baseline", "kd"):
        state = {k: v for k, v in exp.models[phase].state_dict().items()}
        save_state(state, out / f"{phase}.safetensors", {"phase": phase})
    summary = {"phases": {p: {"test_acc": round(r["test_acc"], 4), "params": r["params"]}
                          for p, r in result.to_dict()["phases"].items()},
               "seed": spec.data.seed, "seconds": round(time.time() - t0, 1)}
    (out / "result.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
