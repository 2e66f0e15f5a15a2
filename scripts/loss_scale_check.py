"""Scale check of the distillation losses' anchor default weights on digits-av (the default preset).

    .venv/bin/python scripts/loss_scale_check.py grads     # ‖∇(w·L)‖ / ‖∇CE‖ for every loss
    .venv/bin/python scripts/loss_scale_check.py pkt-scan  # CE + PKT at 300 / 3000 / 30000, 3 student seeds

Both train one teacher (the preset's data seed) first. ``grads`` (with ``data.aux_tasks=[parity]``): for a freshly initialised and a
CE-trained student, the gradient norm over the student's parameters of each loss at its default weight,
relative to CE (weight 1), mean over 5 batches of 64. ``pkt-scan``: test accuracy of students trained
with CE only, CE 0.1 + KD 0.9 and CE 1 + PKT at three weights; 3 student seeds (fresh initial weights
and data order) on the same teacher, mean ± std. Single-threaded; several minutes on a busy CPU.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kdcore.pipeline.experiment import Experiment  # noqa: E402
from kdcore.methods.losses import LOSSES, StepContext  # noqa: E402
from kdcore.models import build_model  # noqa: E402
from kdcore.presets import load_preset  # noqa: E402
from kdcore.core.spec import LossTerm  # noqa: E402


def grads(exp: Experiment) -> None:
    spec = exp.spec
    exp.run_phase(exp.student_phase("baseline", {"ce": LossTerm(weight=1.0)}))
    tr = exp.data.split("train")
    mods = sorted(set(spec.student_modalities()) | set(spec.teacher_modalities()))
    for label, student in (("init", exp.new_student()), ("CE-trained", exp.models["baseline"])):
        student.train()
        params = list(student.parameters())
        built = {}
        for n, c in LOSSES.items():
            try:
                built[n] = exp.build_losses({n: LossTerm(weight=c.default_weight)}, student, 15)[n]
            except ValueError as exc:  # not applicable to this preset
                print(f"  skip {n}: {exc}")
        ratios: dict[str, list[float]] = {n: [] for n in built}
        g = torch.Generator().manual_seed(1)
        for _ in range(5):
            b = tr.batch(torch.randperm(len(tr), generator=g)[:64], mods)
            with torch.no_grad():
                to = exp.teacher({m: b.inputs[m] for m in spec.teacher_modalities()})
            ctx = StepContext(labels=b.labels, epoch=100, total_epochs=15, step=0,
                              temperature=spec.distill.temperature, aux=b.aux)
            norms = {}
            for n, loss in built.items():
                so = student({m: b.inputs[m] for m in spec.student_modalities()})
                terms = loss(so, to, ctx)
                if n == "ce":
                    terms = {"ce": terms["ce"]}
                total = sum(terms.values()) * (1.0 if n == "ce" else LOSSES[n].default_weight)
                gr = torch.autograd.grad(total, params, allow_unused=True)
                norms[n] = torch.sqrt(sum((x ** 2).sum() for x in gr if x is not None)).item()
            for n in built:
                ratios[n].append(norms[n] / norms["ce"])
        print(f"\nstudent {label}: ‖∇(w·L)‖ / ‖∇CE‖ (mean of 5 batches of 64)")
        for n in sorted(built):
            if n != "ce":
                print(f"  {n:22s} w={LOSSES[n].default_weight:<8g} {statistics.mean(ratios[n]):8.2f}")


def pkt_scan(exp: Experiment) -> None:
    spec = exp.spec
    runs = {"ce": {"ce": LossTerm(weight=1.0)},
            "ce0.1+kd0.9": {"ce": LossTerm(weight=0.1), "kd": LossTerm(weight=0.9)}}
    for w in (300, 3000, 30000):
        runs[f"ce+pkt{w}"] = {"ce": LossTerm(weight=1.0), "pkt": LossTerm(weight=w)}
    acc: dict[str, list[float]] = {k: [] for k in runs}
    for seed in range(3):
        torch.manual_seed(1000 + seed)
        init = build_model(spec.student, spec.student_modalities(), exp.data)
        exp.student_init = {k: v.clone() for k, v in init.state_dict().items()}
        for k, losses in runs.items():
            acc[k].append(exp.run_phase(exp.student_phase("kd", losses, seed_offset=10 + seed)).test_acc)
            print(seed, k, round(acc[k][-1], 4), flush=True)
    print("teacher test accuracy", exp.results["teacher"].test_acc)
    for k, v in acc.items():
        print(f"{k:14s} {100 * statistics.mean(v):5.1f} ± {100 * statistics.stdev(v):4.1f}  "
              f"{[round(100 * x, 1) for x in v]}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    what = sys.argv[1] if len(sys.argv) > 1 else "grads"
    if what not in ("grads", "pkt-scan"):
        sys.exit("usage: loss_scale_check.py grads|pkt-scan")
    # grads: with an auxiliary task so that aux_kd has a head to distil
    extra = ["data.aux_tasks=[parity]"] if what == "grads" else []
    exp = Experiment(load_preset("digits-av").with_overrides(extra))
    exp.setup()
    (grads if what == "grads" else pkt_scan)(exp)
