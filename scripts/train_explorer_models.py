#!/usr/bin/env python3
"""Train the small teacher + KD student bundled for the temperature explorer (runs offline).

The app's home figure and Temperature explorer page work without any training run by loading these
models:

    assets/explorer/spec.yaml            the experiment spec they were trained with
    assets/explorer/teacher.safetensors  the trimodal teacher (best-on-validation weights)
    assets/explorer/kd.safetensors       the KD student of the same spec
    assets/explorer/baseline.safetensors the same student trained without the teacher
    assets/explorer/result.json          test accuracies of the three (one seed, for display)

The spec is the digits-av preset (image + speech + text: the explorer shows a digit you can see and
hear) with milder noise and the teacher trained at lr 0.003 for 30 epochs, and with the students
given labels for only 20 % of the training split:
the rest is an unlabelled transfer set that the KD student learns from through the teacher's soft
targets alone, the baseline not at all (Hinton et al. 2015 §6; Lopez-Paz et al. 2016). With every
label available the KD gain of this small student is small next to seed noise (the digits-av
preset); with scarce labels the soft targets are what the KD student has more, so the bundled KD student beats its
baseline by a wide margin — the picture the explorer teaches with.

Usage:
    .venv/bin/python scripts/train_explorer_models.py [--out assets/explorer] [--labelled 0.2]
        [--teacher-epochs 30] [--teacher-lr 0.003] [--student-epochs 40] [--set key=value ...]

Measured (seed 0, one CPU thread, ~3 min): teacher 90.6 %, student without KD 58.3 %, KD student 78.6 %
(test accuracy). With all labels (--labelled 1), same seed: 90.6 % / 74.2 % / 79.2 % — KD also ahead,
but by one seed only, and the digits-av preset (other settings) measures its gain at +0.6 ± 1.5
points over 3 seeds. The bundled models use scarce labels, where the gain is large (+20 points) and
its reason (soft targets on unlabelled samples) can be stated on the page.

Deterministic given the spec's seed (CPU, one thread). Refuses to write models whose KD student is
worse than the baseline unless --allow-worse is given.
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

from kdcore.pipeline.experiment import Experiment  # noqa: E402
from kdcore.presets import load_preset  # noqa: E402
from kdcore.models.checkpoints import save_state  # noqa: E402

BASE_PRESET = "digits-av"  # the explorer shows image, spectrogram (+ playback) and text of one digit


def explorer_spec(labelled: float, epochs: tuple[int, int], teacher_lr: float, extra: list[str]):
    overrides = [
        "name=explorer", f"train.teacher_epochs={epochs[0]}", f"train.student_epochs={epochs[1]}",
        f"train.teacher_lr={teacher_lr}", "train.device=cpu",
        # milder noise than the preset, so the teacher is confident but not one-hot: a clearer picture
        # of soft targets for teaching
        "data.noise.image_sigma=0.3", "data.noise.audio_snr_db=10", "data.noise.text_corruption=0.2",
    ]
    if labelled < 1.0:
        overrides += [f"data.regime.labelled_fraction={labelled}", "data.regime.transfer=labelled+unlabelled"]
    spec = load_preset(BASE_PRESET).with_overrides(overrides + list(extra))
    share = f"{100 * labelled:g} %"
    desc = (f"Models bundled for the temperature explorer (trained by scripts/train_explorer_models.py from "
            f"the {BASE_PRESET} preset, milder noise). The students see the labels of {share} of the training "
            "split; the KD student also learns from the rest through the teacher's soft targets.") \
        if labelled < 1.0 else (f"Models bundled for the temperature explorer (trained by "
                                f"scripts/train_explorer_models.py from the {BASE_PRESET} preset, milder noise).")
    return spec.model_copy(update={"description": desc})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "assets" / "explorer"))
    ap.add_argument("--labelled", type=float, default=0.2,
                    help="fraction of the training split whose labels the students see (1 = all)")
    ap.add_argument("--teacher-epochs", type=int, default=30)
    ap.add_argument("--teacher-lr", type=float, default=0.003, help="(the students keep the preset's lr)")
    ap.add_argument("--student-epochs", type=int, default=40)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra spec override")
    ap.add_argument("--allow-worse", action="store_true", help="write the models even if KD < baseline")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    spec = explorer_spec(args.labelled, (args.teacher_epochs, args.student_epochs), args.teacher_lr, args.set)
    t0 = time.time()
    exp = Experiment(spec)
    result = exp.run()
    if result.status != "finished":
        print(f"training did not finish: {result.status} {result.message}", file=sys.stderr)
        return 1
    phases = result.to_dict()["phases"]
    summary = {"phases": {p: {"test_acc": round(r["test_acc"], 4), "params": r["params"]}
                          for p, r in phases.items()},
               "seed": spec.data.seed, "labelled_fraction": args.labelled,
               "seconds": round(time.time() - t0, 1)}
    print(json.dumps(summary, indent=2))
    if phases["kd"]["test_acc"] < phases["baseline"]["test_acc"] and not args.allow_worse:
        print("the KD student is worse than the baseline: models not written (use --allow-worse)", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    spec.save(out / "spec.yaml")
    for phase in ("teacher", "baseline", "kd"):
        state = {k: v for k, v in exp.models[phase].state_dict().items()}
        save_state(state, out / f"{phase}.safetensors", {"phase": phase})
    (out / "result.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
