"""Exports: ONNX with an onnxruntime parity check, TensorBoard event files, the Python API."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from helpers_store import tiny_spec

from kdcore.pipeline.experiment import Experiment
from kdcore.store.folder import read_events
from kdcore.store.recorder import RunRecorder

ROOT = Path(__file__).resolve().parents[1]


def cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "kdcore", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=os.environ.copy())


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A finished tiny run (mfeat vectors: MLP encoders, attention fusion) in its own runs folder."""
    root = tmp_path_factory.mktemp("runs")
    exp = Experiment(tiny_spec("exported", student_epochs=2), callbacks=[RunRecorder(root)])
    res = exp.run()
    assert res.status == "finished", res.message
    return root, exp.run_id, Path(exp.run_dir)


def accumulator(logdir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


# ---- TensorBoard ----------------------------------------------------------------------------
def app_scalar_names(events: list[dict]) -> set[str]:
    """The tags the Train page's charts correspond to, derived from the charts' own trace names."""
    from kdcore.viz import accuracy_figure, loss_terms_figure, lr_figure
    from kdcore.viz.training import strategy_figure

    steps = [e for e in events if e["kind"] == "StepLosses"]
    epochs = [e for e in events if e["kind"] == "EpochMetrics"]
    phases = {e["phase"] for e in steps}
    want: set[str] = set()
    loss_terms = {t.name for t in loss_terms_figure(steps).data if t.showlegend is not False}
    for p in phases:
        terms = {k for e in steps if e["phase"] == p for k in e["terms"]}
        want |= {f"{p}/loss/{t}" for t in loss_terms & (terms | {"total"})}
    for t in accuracy_figure(epochs).data:  # "kd (val)", "kd (train)"
        phase, split = re.fullmatch(r"(.+) \((val|train)\)", t.name).groups()
        want.add(f"{phase}/accuracy/{split}")
    for t in lr_figure(steps).data:  # one trace per phase
        want.add(f"{t.name}/lr")
    for p in phases:
        for t in strategy_figure(steps, [p]).data:  # "weight ce", "temperature T"
            want.add(f"{p}/weight/{t.name.removeprefix('weight ')}" if t.name.startswith("weight ")
                     else f"{p}/temperature")
    return want


def test_run_folder_has_event_files_with_the_train_page_names(stored):
    _, _, run_dir = stored
    assert list(run_dir.glob("events.out.tfevents.*"))
    acc = accumulator(run_dir)
    tags = set(acc.Tags()["scalars"])
    events = read_events(run_dir)
    want = app_scalar_names(events)
    assert {"kd/loss/kd", "kd/loss/ce", "kd/accuracy/val", "kd/temperature", "kd/weight/kd", "teacher/lr"} <= want
    assert want <= tags, sorted(want - tags)
    # values are the run's: one point per step / epoch, accuracy in % as the chart shows it
    kd_epochs = [e for e in events if e["kind"] == "EpochMetrics" and e["phase"] == "kd"]
    val = acc.Scalars("kd/accuracy/val")
    assert [v.step for v in val] == [e["epoch"] for e in kd_epochs]
    assert [round(v.value, 4) for v in val] == [round(100 * e["val_acc"], 4) for e in kd_epochs]
    kd_steps = [e for e in events if e["kind"] == "StepLosses" and e["phase"] == "kd"]
    assert len(acc.Scalars("kd/loss/kd")) == len(kd_steps)
    assert acc.Scalars("kd/lr")[-1].value == pytest.approx(kd_steps[-1]["lr"], rel=1e-6)
    result = json.loads((run_dir / "result.json").read_text())
    assert acc.Scalars("result/kd/test_acc")[0].value == pytest.approx(100 * result["phases"]["kd"]["test_acc"])
    # the spec as text, the result as an hparams session
    assert "spec" in acc.Tags()["tensors"]
    spec_text = acc.Tensors("spec")[0].tensor_proto.string_val[0].decode()
    assert "student_epochs: 2" in spec_text
    assert {"_hparams_/experiment", "_hparams_/session_start_info", "_hparams_/session_end_info"} <= set(
        acc.PluginTagToContent("hparams"))


def test_export_tensorboard_for_an_older_run(stored, tmp_path):
    root, run_id, run_dir = stored
    old = tmp_path / "old-run"  # an older run: no event files, only metrics.jsonl
    shutil.copytree(run_dir, old, ignore=shutil.ignore_patterns("events.out.tfevents.*"))
    from kdcore.export.tensorboard_replay import write_from_metrics

    write_from_metrics(old, tmp_path / "tb-fn")
    live, replayed = accumulator(run_dir), accumulator(tmp_path / "tb-fn")
    assert set(replayed.Tags()["scalars"]) == set(live.Tags()["scalars"])
    assert [s.value for s in replayed.Scalars("kd/loss/total")] == [s.value for s in live.Scalars("kd/loss/total")]
    out = cli("export", run_id, "--runs-dir", str(root), "--tensorboard", str(tmp_path / "tb"))
    assert out.returncode == 0, out.stderr
    assert set(accumulator(tmp_path / "tb" / run_id).Tags()["scalars"]) == set(live.Tags()["scalars"])


def test_tensorboard_can_be_switched_off_and_never_breaks_a_run(tmp_path, monkeypatch):
    monkeypatch.setenv("KDLAB_TENSORBOARD", "0")
    exp = Experiment(tiny_spec("no-tb", student_epochs=1), callbacks=[RunRecorder(tmp_path)])
    assert exp.run().status == "finished"
    assert not list(Path(exp.run_dir).glob("events.out.tfevents.*"))
    monkeypatch.delenv("KDLAB_TENSORBOARD")
    from kdcore.store import tensorboard_log

    def boom(self, ev):
        raise OSError("disk full")

    monkeypatch.setattr(tensorboard_log.TensorBoardWriter, "_handle", boom)
    exp = Experiment(tiny_spec("tb-fails", student_epochs=1), callbacks=[RunRecorder(tmp_path)])
    assert exp.run().status == "finished"
    assert "TensorBoard logging off: OSError: disk full" in (Path(exp.run_dir) / "run.log").read_text()


def test_event_file_crc_is_tensorboards():
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as reference

    from kdcore.store.tensorboard_log import masked_crc32c

    for data in (b"", b"a", bytes(range(256)) * 3, os.urandom(999)):
        assert masked_crc32c(data) == reference(data)


# ---- ONNX -----------------------------------------------------------------------------------
def test_onnx_export_cli_parity_named_inputs_dynamic_batch(stored, tmp_path):
    import numpy as np
    import onnx

    root, run_id, run_dir = stored
    out_dir = tmp_path / "onnx"
    out = cli("export", run_id, str(tmp_path / "run.zip"), "--runs-dir", str(root), "--onnx", str(out_dir),
              "--exporter", "torchscript")
    assert out.returncode == 0, out.stderr
    assert re.search(r"teacher .*max \|Δ logits\| [0-9.e+-]+ .*top-1 agreement 100\.00% .*PASS", out.stdout)
    assert re.search(r"^kd .*PASS", out.stdout, re.M)
    assert "ORT ms @b1" in out.stdout and "torch ms @b1" in out.stdout
    rep = json.loads((out_dir / "onnx_report.json").read_text())
    assert set(rep["models"]) == {"teacher", "kd"}
    from kdcore.core.spec import ExperimentSpec

    spec = ExperimentSpec.load(run_dir / "spec.yaml")
    from kdcore.export.onnx_export import session

    for phase, mods in (("teacher", spec.teacher_modalities()), ("kd", spec.student_modalities())):
        r = rep["models"][phase]
        assert r["passed"] and r["rel_diff"] <= 1e-4 and r["top1_agreement"] == 1.0
        assert r["samples"] == 400  # the whole test split
        assert r["onnx_ms_b1"] > 0 and r["torch_ms_b64"] > 0
        model = onnx.load(out_dir / f"{phase}.onnx")
        assert [i.name for i in model.graph.input] == mods
        assert all(i.type.tensor_type.shape.dim[0].dim_param for i in model.graph.input)  # dynamic batch
        sess = session(out_dir / f"{phase}.onnx")
        for b in (1, 7):
            feed = {i.name: np.random.rand(b, *i.shape[1:]).astype(np.float32) for i in sess.get_inputs()}
            assert sess.run(["logits"], feed)[0].shape == (b, 10)
    with zipfile.ZipFile(tmp_path / "run.zip") as zf:  # the run zip holds them on request
        assert {"onnx/teacher.onnx", "onnx/kd.onnx", "onnx/onnx_report.json"} <= set(zf.namelist())
        assert any(n.startswith("events.out.tfevents.") for n in zf.namelist())


def test_onnx_bad_input_one_line_exit_2(stored, tmp_path):
    root, run_id, _ = stored
    afile = tmp_path / "a-file"
    afile.write_text("x")
    cases = {
        "no run 'no-such-run'": ("export", "no-such-run", "--runs-dir", str(root), "--onnx", str(tmp_path / "o")),
        "unknown phase 'ard'": ("export", run_id, "--runs-dir", str(root), "--onnx", str(tmp_path / "o"),
                                "--phase", "ard"),
        "cannot write to": ("export", run_id, "--runs-dir", str(root), "--onnx", str(afile / "sub")),
        "it is a file, not a folder": ("export", run_id, "--runs-dir", str(root), "--tensorboard", str(afile)),
        "--exporter must be": ("export", run_id, "--runs-dir", str(root), "--onnx", str(tmp_path / "o"),
                               "--exporter", "tf"),
    }
    for needle, args in cases.items():
        out = cli(*args)
        assert out.returncode == 2, (needle, out.stdout, out.stderr)
        assert needle in out.stderr and "Traceback" not in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_a_part_that_cannot_export_is_named(stored, tmp_path, monkeypatch):
    from kdcore.export import onnx_export

    real = onnx_export._export

    def fussy(module, sample, path, names, exporter, output_names=("logits",)):
        if any(type(m).__name__ == "AttentionFusion" for m in module.modules()):
            raise RuntimeError("Exporting the operator 'aten::fancy' to ONNX is not supported")
        return real(module, sample, path, names, exporter, output_names)

    monkeypatch.setattr(onnx_export, "_export", fussy)
    with pytest.raises(onnx_export.OnnxExportError) as err:
        onnx_export.export_onnx(stored[2], tmp_path / "o", exporter="torchscript", latency=False)
    msg = str(err.value)
    assert "phase teacher: part fusion (AttentionFusion) cannot be exported" in msg
    assert "aten::fancy" in msg and "try --exporter dynamo" in msg and "\n" not in msg


def test_parity_failure_is_loud_and_removes_the_file(stored, tmp_path, monkeypatch):
    from kdcore.export import onnx_export

    def off(*a, **k):
        return {"samples": 400, "max_abs_diff": 0.5, "max_abs_logit": 5.0, "rel_diff": 0.1, "top1_agreement": 0.9}

    monkeypatch.setattr(onnx_export, "parity", off)
    with pytest.raises(onnx_export.ParityError, match=r"phase teacher: .* 1\.00e-01 relative .* > 0\.0001"):
        onnx_export.export_onnx(stored[2], tmp_path / "o", exporter="torchscript", latency=False)
    assert not (tmp_path / "o" / "teacher.onnx").exists()


def test_export_zip_bytes_for_a_download_button(stored):
    from kdcore.export.onnx_export import export_zip_bytes

    data = export_zip_bytes(stored[2], ["kd", "baseline"], exporter="torchscript")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert set(zf.namelist()) == {"teacher.onnx", "kd.onnx", "baseline.onnx", "onnx_report.json", "parity.txt"}
        assert "PASS" in zf.read("parity.txt").decode()


@pytest.mark.slow
def test_digits_av_gru_and_attention_export_with_dynamo(tmp_path):
    """The default dynamo exporter on the digits-av networks: GRU text encoder + attention fusion."""
    from kdcore import load_run, run
    from kdcore.export.onnx_export import export_onnx

    res = run("digits-av", runs_dir=tmp_path / "runs", train__teacher_epochs=1, train__student_epochs=1,
              train__batch_size=128, data__train_limit=200)
    assert res.status == "finished", res.message
    rep = export_onnx(res.run_dir, tmp_path / "onnx", latency=False)
    assert rep["exporter"] == "dynamo"
    for phase in ("teacher", "kd"):
        r = rep["models"][phase]
        assert r["passed"] and r["top1_agreement"] == 1.0, r
        assert set(r["inputs"]) == {"image", "audio", "text"} and r["inputs"]["text"]["dtype"] == "int64"
    import onnx

    ops = {n.op_type for n in onnx.load(tmp_path / "onnx" / "kd.onnx").graph.node}
    assert "GRU" in ops
    assert sorted(p.name for p in (tmp_path / "onnx").iterdir()) == ["kd.onnx", "onnx_report.json", "teacher.onnx"]
    assert load_run(res).student("kd").training is False


# ---- Python API -----------------------------------------------------------------------------
def readme_snippet() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Exports: ONNX, TensorBoard, Python API", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_snippet_runs(tmp_path, monkeypatch):
    code = readme_snippet()
    assert code.count("\n") <= 4 and "from kdcore import run, load_run" in code
    monkeypatch.setenv("KDLAB_RUNS_DIR", str(tmp_path))
    # tiny epochs via overrides, added to the snippet's own call
    tiny = code.replace('run("digits-av", ', 'run("digits-av", train__teacher_epochs=1, train__batch_size=128, '
                                               'data__train_limit=200, ', 1)
    assert tiny != code
    ns: dict = {}
    exec(compile(tiny, "README.md", "exec"), ns)
    result, student = ns["result"], ns["student"]
    assert result.status == "finished" and Path(result.run_dir).parent == tmp_path
    assert student.training is False
    assert ns["logits"].shape[1] == 10


def test_api_overrides_and_errors(stored, tmp_path):
    from kdcore import build_spec, load_run
    from kdcore.export.api import RunError
    from kdcore.core.spec import SpecError

    spec = build_spec("digits-av", {"train.lr": 0.003, "distill.losses.kd.weight": 0.5}, train__student_epochs=3)
    assert (spec.train.lr, spec.distill.losses["kd"].weight, spec.train.student_epochs) == (0.003, 0.5, 3)
    with pytest.raises(SpecError, match="no_such"):
        build_spec("digits-av", train__no_such=1)
    root, run_id, run_dir = stored
    r = load_run(run_id, runs_dir=root)
    assert r.run_dir == run_dir and set(r.phases) >= {"teacher", "baseline", "kd"}
    assert load_run(run_dir).student("kd").training is False
    with pytest.raises(RunError, match="unknown phase 'ard'"):
        r.student("ard")
    with pytest.raises(RunError, match="no run 'nope'"):
        load_run("nope", runs_dir=root)
    with pytest.raises(RunError, match="no registry"):
        load_run("nope", runs_dir=tmp_path / "empty")


def test_import_kdcore_stays_light():
    code = ("import sys, kdcore; light = 'torch' not in sys.modules; "
            "from kdcore import run, load_run; print(light, callable(run) and callable(load_run))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["True", "True"], out.stderr
