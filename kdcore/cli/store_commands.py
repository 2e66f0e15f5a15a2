"""CLI commands for stored runs and user data: ``runs``, ``resume``, ``export``, ``delete``,
``import-data`` (registered in :mod:`kdcore.cli.main`). Store, torch and export modules are
imported inside the commands."""

from __future__ import annotations

import argparse
import json
import sys
import time
import zipfile
from pathlib import Path

from kdcore.cli.common import UsageError


def _usage(msg: str) -> UsageError:
    return UsageError(msg)


def _root_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs-dir", default=None,
                   help="runs folder holding registry.sqlite (default: $KDLAB_RUNS_DIR or runs)")


def _registry(args):
    from kdcore.store.registry import default_root, open_registry

    root = Path(args.runs_dir) if args.runs_dir else default_root()
    return open_registry(root)


def _resolve(reg, key: str):
    from kdcore.store.registry import RunNotFound

    try:
        return reg.resolve(key)
    except RunNotFound as exc:
        raise _usage(str(exc)) from None


# ---- runs ---------------------------------------------------------------------------------
def _runs_args(p):
    _root_arg(p)
    p.add_argument("--json", action="store_true", help="print the runs as JSON")
    p.add_argument("--status", help="only runs with this status")


def _fmt_time(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def _runs(args) -> int:
    from kdcore.store.registry import STATUSES

    if args.status and args.status not in STATUSES:
        raise _usage(f"--status must be one of {', '.join(STATUSES)}")
    reg = _registry(args)
    rows = reg.list(args.status)
    if args.json:
        print(json.dumps([r.to_dict() for r in rows], indent=2, default=str))
        return 0
    if not rows:
        print(f"no runs in {reg.root}")
        return 0
    width = max(len(r.id) for r in rows)
    print(f"{'id':<{width}}  {'status':<11} {'where':<14} {'kd gain':>8}  updated")
    for r in rows:
        where = f"{r.phase or '-'}" + (f" ep {r.epoch}" if r.epoch else "")
        gain = (r.result or {}).get("kd_gain")
        g = f"{100 * gain:+.2f}" if isinstance(gain, (int, float)) else "-"
        print(f"{r.id:<{width}}  {r.status:<11} {where:<14} {g:>8}  {_fmt_time(r.updated)}")
        if r.status in ("failed", "diverged", "interrupted") and r.message:
            print(f"{'':<{width}}  └ {r.message.splitlines()[0][:160]}")
    return 0


# ---- resume -------------------------------------------------------------------------------
def _resume_args(p):
    p.add_argument("run_id", help="run id (or a unique prefix / name) from `python -m kdcore runs`")
    _root_arg(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _resume(args) -> int:
    import torch

    from kdcore.pipeline.report import ProgressPrinter, result_table
    from kdcore.store.resume_run import ResumeError, loaded_phases, prepare_resume

    reg = _registry(args)
    rec = _resolve(reg, args.run_id)
    subs = [] if args.quiet else [ProgressPrinter()]
    try:
        exp = prepare_resume(rec.id, reg.root, subs)
    except ResumeError as exc:
        raise _usage(str(exc)) from None
    if exp.spec.train.threads:
        torch.set_num_threads(exp.spec.train.threads)
    if not args.quiet:
        sys.stderr.write(f"resuming {rec.id} ({rec.status})\n")
    result = exp.run().to_dict()
    loaded = loaded_phases(exp)
    if loaded and not args.quiet:
        sys.stderr.write(f"loaded finished phases from checkpoints: {', '.join(loaded)}\n")
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print()
        print(result_table(result))
        if result.get("status") != "finished":
            print(f"{result['status']}: {result.get('message', '')}")
    return 0 if result["status"] == "finished" else 1


# ---- export -------------------------------------------------------------------------------
def figures_html(run_dir: Path) -> str:
    """One self-contained HTML page (plotly.js inlined, works offline) with the run's curves."""
    from kdcore.store.folder import read_events
    from kdcore.viz import accuracy_figure, loss_terms_figure, lr_figure

    events = read_events(run_dir)
    steps = [e for e in events if e.get("kind") == "StepLosses"]
    epochs = [e for e in events if e.get("kind") == "EpochMetrics"]
    result = None
    if (run_dir / "result.json").is_file():
        try:
            result = json.loads((run_dir / "result.json").read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            result = None
    figs = []
    if steps:
        figs.append(loss_terms_figure(steps))
        figs.append(lr_figure(steps))
    if epochs:
        figs.append(accuracy_figure(epochs, result))
    import html

    parts = [f"<h1>KD Lab run {html.escape(run_dir.name)}</h1>"]
    if not figs:
        parts.append("<p>No metrics were recorded for this run.</p>")
    for i, fig in enumerate(figs):
        parts.append(fig.to_html(full_html=False, include_plotlyjs=(i == 0)))
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>KD Lab run</title></head><body>"
            + "\n".join(parts) + "</body></html>")


def export_run(run_dir: Path, out: Path, record: dict | None = None, onnx_dir: Path | None = None) -> list[str]:
    """Zip spec, metrics, result, log, checkpoints and TensorBoard event files of a run, plus
    ``figures.html``; with ``onnx_dir``, also its ``*.onnx`` files and parity report under ``onnx/``."""
    run_dir = Path(run_dir)
    names: list[str] = []
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for rel in ("spec.yaml", "metrics.jsonl", "result.json", "run.log", "error.log"):
            if (run_dir / rel).is_file():
                zf.write(run_dir / rel, rel)
                names.append(rel)
        for f in sorted(run_dir.glob("events.out.tfevents.*")):
            if f.is_file():
                zf.write(f, f.name)
                names.append(f.name)
        ck = run_dir / "checkpoints"
        if ck.is_dir():
            for f in sorted(ck.iterdir()):
                if f.is_file() and f.suffix in (".safetensors", ".json", ".txt"):  # .lgb.txt: tree students
                    zf.write(f, f"checkpoints/{f.name}")
                    names.append(f"checkpoints/{f.name}")
        if onnx_dir is not None:
            for f in sorted(Path(onnx_dir).iterdir()):
                if f.is_file() and (f.suffix == ".onnx" or f.name == "onnx_report.json"):
                    zf.write(f, f"onnx/{f.name}")
                    names.append(f"onnx/{f.name}")
        zf.writestr("figures.html", figures_html(run_dir))
        names.append("figures.html")
        if record is not None:
            zf.writestr("registry.json", json.dumps(record, indent=2, default=str))
            names.append("registry.json")
    tmp.replace(out)
    return names


def _export_args(p):
    p.add_argument("run_id", help="run id (or a unique prefix / name)")
    p.add_argument("out", nargs="?", help="zip file to write, e.g. run.zip (with --onnx, the zip holds the "
                                          "ONNX files too)")
    _root_arg(p)
    p.add_argument("--onnx", metavar="DIR", help="export the teacher and student phases to DIR/<phase>.onnx, "
                                                 "checked with onnxruntime on the test split, with latency")
    p.add_argument("--phase", action="append", metavar="PHASE",
                   help="student phase(s) to export with the teacher (default kd; repeat for more)")
    p.add_argument("--exporter", default="dynamo", help="dynamo (torch.export, default) or torchscript (legacy, "
                                                        "faster to export)")
    p.add_argument("--no-latency", action="store_true", help="skip the onnxruntime / PyTorch latency table")
    p.add_argument("--tensorboard", metavar="DIR",
                   help="write TensorBoard event files of the run (from metrics.jsonl) to DIR/<run id>")


def _writable_dir(path: Path) -> Path:
    if path.exists() and not path.is_dir():
        raise _usage(f"cannot write to {path}: it is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".kdlab-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise _usage(f"cannot write to {path}: {exc.strerror or exc}") from None
    return path


def _export(args) -> int:
    if not (args.out or args.onnx or args.tensorboard):
        raise _usage("give OUT.zip, --onnx DIR or --tensorboard DIR")
    if args.phase and not args.onnx:
        raise _usage("--phase goes with --onnx DIR")
    reg = _registry(args)
    rec = _resolve(reg, args.run_id)
    run_dir = Path(rec.run_dir)
    if not run_dir.is_dir():
        raise _usage(f"the folder of run {rec.id} is missing: {run_dir}")
    out = Path(args.out) if args.out else None
    if out is not None and out.suffix.lower() != ".zip":
        raise _usage(f"OUT must end in .zip, got {args.out!r}")
    code = 0
    onnx_dir = None
    if args.onnx:
        from kdcore.export.onnx_export import (
            EXPORTERS,
            OnnxExportError,
            ParityError,
            latency_table,
            parity_lines,
            select_phases,
        )

        if args.exporter not in EXPORTERS:
            raise _usage(f"--exporter must be {' or '.join(EXPORTERS)}, got {args.exporter!r}")
        try:
            select_phases(run_dir, args.phase)  # unknown phase: fail before loading anything
        except OnnxExportError as exc:
            raise _usage(str(exc)) from None
        onnx_dir = _writable_dir(Path(args.onnx))
        from kdcore.export.onnx_export import export_onnx

        try:
            rep = export_onnx(run_dir, onnx_dir, args.phase, exporter=args.exporter, latency=not args.no_latency,
                              progress=lambda s: print(s, file=sys.stderr, flush=True))
        except ParityError as exc:
            print(f"error: parity check FAILED: {exc}", file=sys.stderr)
            return 1
        except OnnxExportError as exc:
            raise _usage(str(exc)) from None
        print(f"wrote {', '.join(str(onnx_dir / r['file']) for r in rep['models'].values())} "
              f"(exporter {rep['exporter']}; report {onnx_dir / 'onnx_report.json'})")
        print("parity (onnxruntime vs PyTorch):")
        print("\n".join(parity_lines(rep)))
        table = latency_table(rep)
        if table:
            print(table)
    if args.tensorboard:
        from kdcore.export.tensorboard_replay import write_from_metrics

        logdir = _writable_dir(Path(args.tensorboard)) / rec.id
        w = write_from_metrics(run_dir, logdir)
        print(f"wrote {w._file.path} ({len(w.tags)} scalar tags): tensorboard --logdir {args.tensorboard}")
    if out is not None:
        _writable_dir(out.parent if str(out.parent) else Path("."))
        names = export_run(run_dir, out, rec.to_dict(), onnx_dir)
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): {', '.join(names)}")
    return code


# ---- delete -------------------------------------------------------------------------------
def _delete_args(p):
    p.add_argument("run_id", help="run id (or a unique prefix / name)")
    _root_arg(p)
    p.add_argument("--keep-files", action="store_true", help="remove the registry row only")


def _delete(args) -> int:
    reg = _registry(args)
    rec = _resolve(reg, args.run_id)
    try:
        reg.delete(rec.id, remove_files=not args.keep_files)
    except ValueError as exc:
        raise _usage(str(exc)) from None
    print(f"deleted {rec.id}" + (" (files kept)" if args.keep_files else ""))
    return 0


# ---- import-data --------------------------------------------------------------------------
def _import_args(p):
    p.add_argument("path", help="an image folder (one subfolder per class) or a CSV manifest")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--max-errors", type=int, default=20, help="bad rows to list (default 20)")
    p.add_argument("--spec", metavar="OUT.yaml", help="also write a starter spec that trains on this data")


def _import(args) -> int:
    from kdcore.data.custom import DataImportError, inspect_source

    try:
        report = inspect_source(args.path)
    except DataImportError as exc:
        raise _usage(str(exc)) from None
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.summary(max_errors=args.max_errors))
    if args.spec:
        from kdcore.core.spec import SpecError
        from kdcore.data.custom import starter_spec

        if not report.kept:
            raise _usage("no usable rows: no spec written")
        try:
            starter_spec(args.path, report).save(args.spec)
        except SpecError as exc:
            raise _usage(f"cannot build a spec for this data: {exc}") from None
        print(f"wrote {args.spec}: python -m kdcore run --config {args.spec}",
              file=sys.stderr if args.json else sys.stdout)
    return 0 if report.kept else 1


COMMANDS = [
    ("runs", "list stored runs with their status (registry)", (_runs_args, _runs)),
    ("resume", "continue an interrupted, stopped or failed run from its last epoch checkpoint",
     (_resume_args, _resume)),
    ("export", "zip a run (spec, metrics, checkpoints, log, figures); ONNX files with a parity check; "
               "TensorBoard event files", (_export_args, _export)),
    ("delete", "delete a run (registry row and folder)", (_delete_args, _delete)),
    ("import-data", "check an image folder or CSV manifest and print what would be kept / dropped",
     (_import_args, _import)),
]
