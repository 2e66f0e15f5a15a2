"""GPU throughput of KD: the engine's GPU path vs a naive hand-written PyTorch loop.

ResNet-18 teacher → MobileNetV2 student (the repo's ``resnet18`` / ``mobilenet_v2`` encoders:
stride-1 stems for small inputs) on synthetic 3×32×32 tensors (throughput only: random labels,
no accuracy claim), batch 256 unless ``--batch`` says otherwise. All variants run in ONE process,
side by side, each timed over whole epochs after a warm-up epoch (compilation happens there).

Variants
  naive fp32      : the loop most KD code bases write — CPU tensors indexed per step and copied
                    with ``.to(device)`` (pageable, blocking), teacher forward every step, student
                    forward, CE·0.1 + KD·0.9 (T=4), backward, Adam (default foreach), per-step
                    ``loss.item()`` meter.
  naive bf16      : the same under ``torch.autocast(bfloat16)``.
  engine fp32     : ``kdcore.train.trainer.train_phase``: train split on the device (gathered
                    once), teacher outputs cached, fused Adam, one host sync per step, events.
  engine bf16     : + bf16 autocast and channels_last.
  engine +compile : + ``torch.compile(mode="reduce-overhead")`` (CUDA graphs) of the student's
                    forward/backward, fp32 and bf16.
Then the batch-size advisor on the fastest engine configuration.

On a machine without CUDA it prints "no GPU" and exits 0 (``--smoke`` runs every code path on
the CPU with tiny models, for testing the script itself).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def make_data(n_train: int, n_eval: int, shape=(3, 32, 32), classes: int = 10, seed: int = 0):
    from kdcore.data.base import ModalityInfo, TensorData

    g = torch.Generator().manual_seed(seed)
    n = n_train + 2 * n_eval
    x = torch.randn(n, *shape, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    idx = torch.arange(n)
    return TensorData(
        name="synthetic-32", modalities={"image": ModalityInfo("image", "image", tuple(shape))},
        inputs={"image": x}, labels=y, num_classes=classes, class_names=[str(i) for i in range(classes)],
        split_index={"train": idx[:n_train], "val": idx[n_train:n_train + n_eval], "test": idx[n_train + n_eval:]},
    )


def make_models(data, teacher_arch: str, student_arch: str, device):
    from kdcore.models.network import MultimodalNet
    from kdcore.core.spec import EncoderSpec, ModelSpec

    torch.manual_seed(0)
    t_spec = ModelSpec(encoder=EncoderSpec(arch=teacher_arch), feature_dim=128, fusion="mean", dropout=0.0)
    s_spec = ModelSpec(encoder=EncoderSpec(arch=student_arch), feature_dim=128, fusion="mean", dropout=0.0)
    teacher = MultimodalNet(t_spec, ["image"], data.modalities, data.num_classes).to(device).eval()
    teacher.requires_grad_(False)
    student = MultimodalNet(s_spec, ["image"], data.modalities, data.num_classes)
    return teacher, student.state_dict(), s_spec


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---- naive loop ------------------------------------------------------------------------------
def naive_epochs(student, teacher, data, device, batch: int, epochs: int, bf16: bool, T: float = 4.0) -> float:
    tr = data.split("train")
    x, y = data.inputs["image"][tr.indices], data.labels[tr.indices]
    opt = torch.optim.Adam(student.parameters(), lr=1e-3)
    student.train()
    n = len(tr)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(n)
        meter = 0.0
        for s in range(0, n, batch):
            idx = perm[s:s + batch]
            xb, yb = x[idx].to(device), y[idx].to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                with torch.no_grad():
                    zt = teacher({"image": xb}).logits
                zs = student({"image": xb}).logits
                loss = 0.1 * F.cross_entropy(zs, yb) + 0.9 * F.kl_div(
                    F.log_softmax(zs.float() / T, 1), F.softmax(zt.float() / T, 1), reduction="batchmean") * T * T
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            meter += loss.item()
    sync(device)
    return epochs * n / (time.perf_counter() - t0)


# ---- engine ----------------------------------------------------------------------------------
def engine_phase(student, teacher, cache, data, device, batch: int, epochs: int, precision: str, compile_: bool):
    from kdcore.train.trainer import PhaseConfig, train_phase
    from kdcore.methods.losses import LOSSES, LossSetup
    from kdcore.core.spec import TrainSpec
    from kdcore.methods.strategies import TEMPERATURE_SCHEDULES, WEIGHTINGS

    probe_rows = torch.arange(2)
    b = data.split("train").batch(probe_rows, ["image"]).to(device)
    with torch.no_grad():
        student.eval()
        sp, tp = student(b.inputs), teacher(b.inputs)
        student.train()
    setup = LossSetup(sp, tp, data.num_classes, epochs)
    losses = {"ce": LOSSES["ce"](setup), "kd": LOSSES["kd"](setup)}
    weights = {"ce": 0.1, "kd": 0.9}
    cfg = PhaseConfig(name="kd", model=student, modalities=["image"], losses=losses, loss_weights=weights,
                      weighting=WEIGHTINGS["fixed"](weights), schedule=TEMPERATURE_SCHEDULES["constant"](4.0),
                      epochs=epochs, lr=1e-3, seed=0, teacher=teacher, teacher_modalities=["image"],
                      teacher_cache=cache)
    train = TrainSpec(batch_size=batch, lr=1e-3, device=device.type, precision=precision, compile=compile_)
    sync(device)
    t0 = time.perf_counter()
    train_phase(cfg, data, train, device, lambda e: None, lambda: False)
    sync(device)
    return time.perf_counter() - t0


def run(args) -> dict:
    from kdcore.train.cache import TeacherCache
    from kdcore.train.fastpath import suggest_batch_size
    from kdcore.models.network import MultimodalNet

    device = torch.device("cuda" if not args.smoke else "cpu")
    if args.smoke:
        args.n_train, args.n_eval, args.batch, args.epochs = 256, 64, 64, 1
        archs = ("cnn", "cnn")
    else:
        archs = ("resnet18", "mobilenet_v2")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32
        torch.backends.cudnn.allow_tf32 = False
    data = make_data(args.n_train, args.n_eval)
    teacher, init, s_spec = make_models(data, *archs, device)
    cache = TeacherCache.build(teacher, data.split("train"), ["image"], device)

    def fresh():
        s = MultimodalNet(s_spec, ["image"], data.modalities, data.num_classes)
        s.load_state_dict(init)
        return s.to(device)

    results, t_start = [], time.time()

    def record(name, sps, note=""):
        results.append({"variant": name, "samples_per_s": round(sps, 1), "note": note})
        print(f"  {name:<28} {sps:>10,.0f} samples/s {note}", file=sys.stderr, flush=True)

    n = len(data.split("train"))
    for bf16 in (False, True):
        s = fresh()
        naive_epochs(s, teacher, data, device, args.batch, 1, bf16)  # warm-up (cudnn autotune)
        record(f"naive {'bf16' if bf16 else 'fp32'}", naive_epochs(s, teacher, data, device, args.batch,
                                                                   args.epochs, bf16))
    variants = [("engine fp32", "fp32", False), ("engine bf16 + channels_last", "bf16", False),
                ("engine fp32 + compile", "fp32", True), ("engine bf16 + compile", "bf16", True)]
    if args.smoke and not args.smoke_compile:
        variants = variants[:2]
    for name, precision, comp in variants:
        if time.time() - t_start > args.budget_s:
            results.append({"variant": name, "samples_per_s": None, "note": "skipped: time budget"})
            continue
        s = fresh()
        # the first call warms up (cudnn autotune, compilation, CUDA-graph capture); then one timed call
        warm = engine_phase(s, teacher, cache, data, device, args.batch, 1, precision, comp)
        secs = engine_phase(s, teacher, cache, data, device, args.batch, args.epochs, precision, comp)
        record(name, args.epochs * n / secs, f"(warm-up epoch {warm:.1f}s)")
        torch._dynamo.reset() if comp else None

    # batch-size advisor on the engine's bf16 step (uncompiled, so each size needs no recompilation)
    advice = None
    if time.time() - t_start < args.budget_s:
        s = fresh().to(memory_format=torch.channels_last) if device.type == "cuda" else fresh()
        opt = torch.optim.Adam(s.parameters(), lr=1e-3, **({"fused": True} if device.type == "cuda" else {}))
        k = min(4096, n)  # the first k training rows (the train split is rows 0..n-1)
        x_all = data.inputs["image"][:k].to(device)
        y_all = data.labels[:k].to(device)
        zt_all = cache.output.logits[:k]

        def step(bsz: int) -> None:
            idx = torch.randint(0, x_all.shape[0], (bsz,), device=device)
            xb = x_all.index_select(0, idx)
            if device.type == "cuda":
                xb = xb.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                zs = s({"image": xb}).logits
                loss = 0.1 * F.cross_entropy(zs, y_all[idx]) + 0.9 * 16 * F.kl_div(
                    F.log_softmax(zs.float() / 4, 1), F.softmax(zt_all[idx] / 4, 1), reduction="batchmean")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss.item()

        advice = suggest_batch_size(step, device, start=args.batch // 4 if not args.smoke else 16,
                                    limit=4096 if not args.smoke else 64, iters=5 if not args.smoke else 1)
    base = results[0]["samples_per_s"]
    for r in results:
        r["x_naive_fp32"] = round(r["samples_per_s"] / base, 2) if r["samples_per_s"] else None
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (smoke test)",
        "torch": torch.__version__, "batch": args.batch, "epochs": args.epochs, "train_samples": n,
        "teacher": archs[0], "student": archs[1], "results": results, "batch_advisor": advice,
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "seconds": round(time.time() - t_start, 1),
    }


def table(rep: dict) -> str:
    lines = [f"KD throughput — {rep['teacher']} teacher → {rep['student']} student, 3×32×32 synthetic, batch "
             f"{rep['batch']}, {rep['train_samples']} samples × {rep['epochs']} epochs per timing, "
             f"{rep['device']}, torch {rep['torch']}, {rep['date_utc']} UTC",
             f"{'variant':<30} {'samples/s':>11} {'× naive fp32':>13}"]
    for r in rep["results"]:
        sps = f"{r['samples_per_s']:>11,.0f}" if r["samples_per_s"] else f"{'—':>11}"
        x = f"{r['x_naive_fp32']:>12.2f}×" if r["x_naive_fp32"] else f"{r['note']:>13}"
        lines.append(f"{r['variant']:<30} {sps} {x}")
    adv = rep.get("batch_advisor")
    if adv:
        curve = ", ".join(f"{c['batch']}: {c['samples_per_s']:,.0f}" for c in adv["curve"])
        lines.append(f"batch-size advisor (engine bf16 step): suggest {adv['batch_size']} ({adv['reason']}); "
                     f"samples/s by batch: {curve}")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--epochs", type=int, default=2, help="timed epochs per variant")
    p.add_argument("--n-train", type=int, default=16384)
    p.add_argument("--n-eval", type=int, default=512)
    p.add_argument("--budget-s", type=float, default=240, help="skip remaining variants after this many seconds")
    p.add_argument("--json", help="also write the report to this JSON file")
    p.add_argument("--smoke", action="store_true", help="tiny CPU run of every code path (tests the script)")
    p.add_argument("--smoke-compile", action="store_true", help="with --smoke: include the compiled variants")
    args = p.parse_args()
    if not args.smoke and not torch.cuda.is_available():
        print("no GPU: torch.cuda.is_available() is False on this machine, so there is nothing to measure. "
              "benchmarks/gpu.sh measures CUDA throughput (engine vs naive loop, fp32 vs bf16, compiled vs "
              "not); run it on a machine with an NVIDIA GPU.")
        return 0
    torch.set_num_threads(min(torch.get_num_threads(), 8))
    rep = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(rep, indent=2))
    print(table(rep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
