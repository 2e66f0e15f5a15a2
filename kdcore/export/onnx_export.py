"""ONNX export of a run's models, verified with onnxruntime against PyTorch.

* One ``<phase>.onnx`` per exported model (the teacher and the requested student phases), inputs
  named after the modalities (``image``, ``audio``, ``text`` …; token ids are int64, the rest float32),
  output ``logits`` [batch, classes], batch size dynamic.
* Exporter: ``dynamo`` (``torch.onnx.export(..., dynamo=True)``, torch.export + onnxscript, what
  torch ≥ 2.9 supports; the default) or ``torchscript`` (the legacy tracer, deprecated but ~50× faster
  to export). Both export the GRU text encoder (ONNX ``GRU``) and the attention fusion.
* Parity: every test sample of the run goes through both runtimes; ``max |Δ logits|``, the relative
  error ``max |Δ| / max |logits|`` and top-1 agreement are reported, and the export fails
  (:class:`ParityError`) when the relative error exceeds ``tolerance`` (1e-4).
* Latency: onnxruntime CPU (one intra-op thread) beside PyTorch (one thread,
  :func:`kdcore.train.efficiency.latency_ms`), batch 1 and 64, median of repeats, thread CPU time.

A model with a part the exporter cannot handle gets :class:`OnnxExportError` naming that part
(``encoders.text (GRUTextEncoder)``, ``fusion (AttentionFusion)``, ...), not a traceback.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import statistics
import tempfile
import time
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable

EXPORTERS = ("dynamo", "torchscript")
DEFAULT_PHASES = ("teacher", "kd")
TOLERANCE = 1e-4
REPORT = "onnx_report.json"


class OnnxExportError(ValueError):
    """A model cannot be exported (the message names the run, phase or part)."""


class ParityError(OnnxExportError):
    """onnxruntime's logits differ from PyTorch's by more than the tolerance."""


def _torch():
    import torch

    return torch


def logits_module(net):
    """``net`` (a :class:`~kdcore.models.MultimodalNet`) as a module taking one positional tensor per
    modality (in ``net.modalities`` order) and returning the logits."""
    from torch import nn

    class LogitsOnly(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.net = inner
            self.modalities = list(inner.modalities)

        def forward(self, *inputs):
            return self.net(dict(zip(self.modalities, inputs))).logits

    return LogitsOnly(net).eval()


@contextlib.contextmanager
def _quiet():
    """The exporters print progress lines and warnings; keep the CLI's output to ours."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def _export(module, sample: tuple, path: str | os.PathLike | io.BytesIO, input_names: list[str],
            exporter: str, output_names: tuple[str, ...] = ("logits",)) -> None:
    torch = _torch()
    with _quiet():
        if exporter == "dynamo":
            batch = torch.export.Dim("batch", min=1)
            torch.onnx.export(module, sample, path, dynamo=True, input_names=input_names,
                              output_names=list(output_names),
                              dynamic_shapes=(tuple({0: batch} for _ in sample),), optimize=True,
                              verify=False, verbose=False, external_data=False)  # weights inside the file
            if isinstance(path, (str, os.PathLike)):
                _strip_debug_info(path)
        elif exporter == "torchscript":
            axes = {n: {0: "batch"} for n in [*input_names, *output_names]}
            torch.onnx.export(module, sample, path, dynamo=False, input_names=input_names,
                              output_names=list(output_names), dynamic_axes=axes, opset_version=17)
        else:
            raise OnnxExportError(f"unknown exporter {exporter!r}: use {' or '.join(EXPORTERS)}")


def _strip_debug_info(path: str | os.PathLike) -> None:
    """Drop the dynamo exporter's per-node debug metadata (FX node, module stack, source lines):
    about three quarters of a small model's file, nothing a runtime reads."""
    import onnx

    model = onnx.load(str(path))
    for node in model.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    for fn in model.functions:
        for node in fn.node:
            del node.metadata_props[:]
    onnx.save(model, str(path))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("Failed to export", "[", "-", "#")):
            return f"{type(exc).__name__}: {line[:240]}"
    return type(exc).__name__


def find_failing_part(net, sample: dict, exporter: str) -> tuple[str, str] | None:
    """Export the network's parts one by one (each encoder, the fusion, the classifier); the first
    one that fails, as ``(name, error line)``, or None when every part exports on its own."""
    torch = _torch()
    from torch import nn

    class First(nn.Module):  # an encoder returns (feature, feature maps): keep the feature
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x)[0]

    class FusionOut(nn.Module):  # fusion returns (fused, attention): keep the fused feature
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, feats, mask):
            return self.inner(feats, mask)[0]

    parts: list[tuple[str, nn.Module, tuple]] = []
    feats = []
    with torch.no_grad():
        for m in net.modalities:
            enc = net.encoders[m]
            parts.append((f"encoders.{m} ({type(enc).__name__})", First(enc), (sample[m],)))
            feats.append(enc(sample[m])[0])
        stacked = torch.stack(feats, dim=1)
        mask = torch.ones(stacked.shape[:2], dtype=torch.bool)
        parts.append((f"fusion ({type(net.fusion).__name__})", FusionOut(net.fusion), (stacked, mask)))
        fused, _ = net.fusion(stacked, mask)
        parts.append(("classifier (Linear)", net.classifier, (fused,)))
    for name, module, args in parts:
        try:
            _export(module.eval(), args, io.BytesIO(), [f"x{i}" for i in range(len(args))], exporter, ("y",))
        except Exception as exc:  # noqa: BLE001 (any exporter failure names the part)
            return name, _first_line(exc)
    return None


# ---- the run -------------------------------------------------------------------------------
def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise OnnxExportError(f"cannot write to {out_dir}: it is a file, not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".kdlab-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OnnxExportError(f"cannot write to {out_dir}: {exc.strerror or exc}") from None


def available_phases(run_dir: Path) -> list[str]:
    ck = Path(run_dir) / "checkpoints"
    if not ck.is_dir():
        return []
    return [p.stem for p in sorted(ck.glob("*.safetensors")) if p.stem != "resume"]


def select_phases(run_dir: Path, phases: list[str] | tuple[str, ...] | None) -> list[str]:
    """The teacher plus the requested student phases (default: kd), each checked to exist."""
    have = available_phases(run_dir)
    wanted = ["teacher", *(phases or [p for p in DEFAULT_PHASES if p != "teacher"])]
    out: list[str] = []
    for p in wanted:
        if p in out:
            continue
        if p not in have:
            from kdcore.models.tree import has_tree_checkpoint

            if has_tree_checkpoint(Path(run_dir) / "checkpoints", p):  # student.kind=tree (LightGBM)
                raise OnnxExportError(
                    f"phase {p!r} of run {Path(run_dir).name} is a gradient-boosted-tree student (LightGBM): ONNX "
                    f"export of tree students is not supported; its model is checkpoints/{p}.lgb.txt (LightGBM's "
                    f"text format, loadable with lightgbm.Booster(model_file=...)); export the teacher alone with "
                    f"--phase teacher")
            raise OnnxExportError(f"unknown phase {p!r} for run {Path(run_dir).name}: it has checkpoints for "
                                  f"{', '.join(have) or 'no phase'}")
        out.append(p)
    return out


def _samples(data, split: str, modalities: list[str], n: int | None = None) -> dict:
    torch = _torch()
    s = data.split(split) if len(data.split(split)) else data.split("val")
    rows = torch.arange(len(s) if n is None else n) % len(s)
    return {m: t.contiguous() for m, t in s.batch(rows, modalities).inputs.items()}


def parity(session, module, inputs: dict, modalities: list[str], batch: int = 256) -> dict[str, float]:
    """Max |Δ logits|, relative error (÷ max |logits|) and top-1 agreement of onnxruntime vs PyTorch."""
    import numpy as np

    torch = _torch()
    n = next(iter(inputs.values())).shape[0]
    max_abs, scale, agree = 0.0, 0.0, 0
    for s in range(0, n, batch):
        xs = [inputs[m][s:s + batch] for m in modalities]
        with torch.no_grad():
            ref = module(*xs).numpy()
        got = session.run(["logits"], {m: x.numpy() for m, x in zip(modalities, xs)})[0]
        max_abs = max(max_abs, float(np.abs(got - ref).max()))
        scale = max(scale, float(np.abs(ref).max()))
        agree += int((got.argmax(1) == ref.argmax(1)).sum())
    return {"samples": n, "max_abs_diff": max_abs, "max_abs_logit": scale,
            "rel_diff": max_abs / scale if scale > 0 else max_abs, "top1_agreement": agree / max(1, n)}


def session(path: str | Path, threads: int = 1):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])


def ort_latency_ms(sess, feed: dict, repeats: int, warmup: int = 3) -> float:
    """Median thread CPU milliseconds of one onnxruntime run (one intra-op thread: it runs on the
    calling thread, timed like :func:`kdcore.train.efficiency.latency_ms`)."""
    times = []
    for i in range(warmup + repeats):
        t0 = time.thread_time()
        sess.run(["logits"], feed)
        if i >= warmup:
            times.append(time.thread_time() - t0)
    return 1000 * statistics.median(times)


def latency_rows(module, sess, data, modalities: list[str], repeats_b1: int = 30,
                 repeats_b64: int = 10) -> dict[str, float]:
    from kdcore.train.efficiency import latency_ms

    out: dict[str, float] = {}
    for b, reps in ((1, repeats_b1), (64, repeats_b64)):
        x = _samples(data, "test", modalities, b)
        feed = {m: x[m].numpy() for m in modalities}
        t = latency_ms(module.net, x, reps, warmup=3)
        o = ort_latency_ms(sess, feed, reps)
        out[f"torch_ms_b{b}"] = t / b
        out[f"onnx_ms_b{b}"] = o / b
    return out


def export_onnx(run_dir: str | Path, out_dir: str | Path, phases: list[str] | tuple[str, ...] | None = None,
                exporter: str = "dynamo", tolerance: float = TOLERANCE, latency: bool = True,
                repeats_b1: int = 30, repeats_b64: int = 10,
                progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Export the run's teacher and student phases to ``out_dir/<phase>.onnx``, check parity on the
    test split, measure latency, write ``out_dir/onnx_report.json``; return the report.

    Raises :class:`OnnxExportError` (unknown phase, unwritable folder, a part that cannot export)
    or :class:`ParityError` (the file is removed) with a one-line message."""
    torch = _torch()
    from kdcore.explain.runs import RunError, load_run as load_loaded

    say = progress or (lambda s: None)
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if exporter not in EXPORTERS:
        raise OnnxExportError(f"unknown exporter {exporter!r}: use {' or '.join(EXPORTERS)}")
    if not (run_dir / "spec.yaml").is_file():
        raise OnnxExportError(f"{run_dir} is not a run folder (no spec.yaml)")
    chosen = select_phases(run_dir, phases)
    _check_out_dir(out_dir)
    try:
        run = load_loaded(run_dir)
    except RunError as exc:
        raise OnnxExportError(str(exc)) from None
    import onnxruntime as ort

    report: dict[str, Any] = {"run": run_dir.name, "exporter": exporter, "tolerance": tolerance,
                              "torch": torch.__version__, "onnxruntime": ort.__version__,
                              "threads": 1, "load_average": list(os.getloadavg()), "models": {}}
    threads = torch.get_num_threads()
    try:
        for phase in chosen:
            if phase not in run.models:
                note = next((n for n in run.notes if n.startswith(phase + ":")), "checkpoint not loadable")
                raise OnnxExportError(f"cannot load phase {phase!r}: {note}")
            net = run.models[phase].cpu().eval()
            mods = list(net.modalities)
            module = logits_module(net)
            test = _samples(run.data, "test", mods)
            path = out_dir / f"{phase}.onnx"
            say(f"{phase}: exporting ({exporter}) …")
            t0 = time.perf_counter()
            try:
                _export(module, tuple(test[m][:2] for m in mods), str(path), mods, exporter)
            except Exception as exc:  # noqa: BLE001
                found = find_failing_part(net, {m: test[m][:2] for m in mods}, exporter)
                where = (f"part {found[0]} cannot be exported ({found[1]})" if found else
                         f"the network's forward cannot be exported ({_first_line(exc)})")
                other = [e for e in EXPORTERS if e != exporter][0]
                raise OnnxExportError(f"phase {phase}: {where} with the {exporter} exporter; "
                                      f"try --exporter {other}") from None
            seconds = time.perf_counter() - t0
            sess = session(path)
            par = parity(sess, module, test, mods)
            row = {"file": path.name, "inputs": {m: {"shape": ["batch", *test[m].shape[1:]],
                                                     "dtype": str(test[m].dtype).removeprefix("torch.")}
                                                 for m in mods},
                   "output": "logits", "classes": int(run.data.num_classes),
                   "params": int(sum(p.numel() for p in net.parameters())),
                   "onnx_bytes": path.stat().st_size, "export_seconds": round(seconds, 2), **par,
                   "passed": par["rel_diff"] <= tolerance}
            say(f"{phase}: parity on {par['samples']} test samples: max |Δ logits| {par['max_abs_diff']:.2e} "
                f"(relative {par['rel_diff']:.2e}), top-1 agreement {100 * par['top1_agreement']:.2f}%")
            if not row["passed"]:
                path.unlink(missing_ok=True)
                report["models"][phase] = row
                raise ParityError(f"phase {phase}: onnxruntime differs from PyTorch by {par['rel_diff']:.2e} "
                                  f"relative (max |Δ logits| {par['max_abs_diff']:.2e}) > {tolerance:g}; "
                                  f"{path.name} removed")
            if latency:
                torch.set_num_threads(1)
                row.update(latency_rows(module, sess, run.data, mods, repeats_b1, repeats_b64))
            report["models"][phase] = row
    finally:
        torch.set_num_threads(threads)
        if report["models"]:
            (out_dir / REPORT).write_text(json.dumps(report, indent=2), encoding="utf-8")
    return report


def parity_lines(report: dict[str, Any]) -> list[str]:
    lines = []
    for phase, r in report["models"].items():
        lines.append(f"{phase:<10} {r['file']:<16} max |Δ logits| {r['max_abs_diff']:.2e}  relative "
                     f"{r['rel_diff']:.2e}  top-1 agreement {100 * r['top1_agreement']:6.2f}% on "
                     f"{r['samples']} test samples  {'PASS' if r['passed'] else 'FAIL'} (≤ {report['tolerance']:g})")
    return lines


def latency_table(report: dict[str, Any]) -> str:
    """The efficiency table's latency columns: PyTorch and onnxruntime, batch 1 and 64 (per sample)."""
    rows = {p: r for p, r in report["models"].items() if "onnx_ms_b1" in r}
    if not rows:
        return ""
    head = (f"{'model':<10} {'params':>8} {'ONNX KB':>8} {'torch ms @b1':>12} {'ORT ms @b1':>10} "
            f"{'torch ms/smp @b64':>17} {'ORT ms/smp @b64':>15} {'ORT speed-up b1':>15} {'b64':>6}")
    out = [head]
    for p, r in rows.items():
        out.append(f"{p:<10} {r['params']:>8,} {r['onnx_bytes'] / 1024:>8.1f} {r['torch_ms_b1']:>12.3f} "
                   f"{r['onnx_ms_b1']:>10.3f} {r['torch_ms_b64']:>17.4f} {r['onnx_ms_b64']:>15.4f} "
                   f"{r['torch_ms_b1'] / r['onnx_ms_b1']:>14.2f}× {r['torch_ms_b64'] / r['onnx_ms_b64']:>5.2f}×")
    out.append("CPU, one thread each (torch.set_num_threads(1); onnxruntime intra_op_num_threads=1), median "
               "thread CPU time of repeated forwards; @b64 is per sample.")
    return "\n".join(out)


def export_zip_bytes(run_dir: str | Path, phases: list[str] | tuple[str, ...] | None = None,
                     exporter: str = "dynamo", latency: bool = False) -> bytes:
    """A zip of ``<phase>.onnx`` for the teacher and ``phases`` (default kd), ``onnx_report.json`` and
    ``parity.txt`` — for a download button. Raises :class:`OnnxExportError` / :class:`ParityError`."""
    with tempfile.TemporaryDirectory(prefix="kdlab-onnx-") as tmp:
        rep = export_onnx(run_dir, tmp, phases, exporter=exporter, latency=latency)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for phase, r in rep["models"].items():
                zf.write(Path(tmp) / r["file"], r["file"])
            zf.write(Path(tmp) / REPORT, REPORT)
            text = "\n".join([f"run {rep['run']}, exporter {rep['exporter']}, torch {rep['torch']}, onnxruntime "
                              f"{rep['onnxruntime']}", *parity_lines(rep), latency_table(rep)]).rstrip() + "\n"
            zf.writestr("parity.txt", text)
        return buf.getvalue()
