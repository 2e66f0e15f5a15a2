"""Run store: SQLite registry, run folders, export / delete, checkpoint safety, name sanitising."""

from __future__ import annotations

import json
import os
import pickle
import sqlite3
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest
import torch
from helpers_store import accuracies, tiny_spec

from kdcore.pipeline.experiment import Experiment
from kdcore.models.checkpoints import CheckpointError, load_into, load_state, save_state
from kdcore.store.folder import safe_name
from kdcore.store.registry import Registry, RunNotFound, open_registry
from kdcore.store.resume import ResumeError, read_resume
from kdcore.store.recorder import RunRecorder

ROOT = Path(__file__).resolve().parents[1]


def cli(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "kdcore", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    exp = Experiment(tiny_spec("stored", student_epochs=2), callbacks=[RunRecorder(root)])
    res = exp.run()
    assert res.status == "finished", res.message
    return root, exp.run_id, res


def test_registry_row_follows_the_run(finished_run):
    root, run_id, res = finished_run
    reg = open_registry(root)
    rec = reg.get(run_id)
    assert rec.status == "finished" and rec.name == "stored" and rec.pid == os.getpid()
    assert rec.phase == "kd" and rec.epoch == 2 and len(rec.spec_hash) == 16
    assert accuracies(rec.result) == accuracies(res.to_dict())
    run_dir = Path(rec.run_dir)
    assert {p.name for p in run_dir.iterdir()} >= {"spec.yaml", "metrics.jsonl", "result.json", "run.log",
                                                   "checkpoints"}
    log = (run_dir / "run.log").read_text()
    assert "phase teacher" in log and "kd epoch 2" in log and log.rstrip().endswith("finished")
    assert json.loads((run_dir / "result.json").read_text())["status"] == "finished"
    for phase in ("teacher", "baseline", "kd"):
        assert load_state(run_dir / "checkpoints" / f"{phase}.safetensors")
    with sqlite3.connect(root / "registry.sqlite") as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_dead_running_run_becomes_interrupted(tmp_path):
    reg = Registry(tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    reg.create("r1", "x", tmp_path / "r1", status="running", pid=int(dead.stdout))
    reg.create("r2", "y", tmp_path / "r2", status="running")  # this process: alive
    assert reg.recover() == ["r1"]
    assert reg.get("r1").status == "interrupted" and "resume" in reg.get("r1").message
    assert reg.get("r2").status == "running"


def test_registry_concurrent_writers(tmp_path):
    reg = Registry(tmp_path)
    errors = []

    def work(i):
        try:
            r = Registry(tmp_path)
            r.create(f"run-{i}", f"n{i}", tmp_path / f"run-{i}")
            for e in range(20):
                r.update(f"run-{i}", epoch=e)
            r.update(f"run-{i}", status="finished", result={"i": i})
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    rows = reg.list()
    assert len(rows) == 8 and all(r.status == "finished" and r.epoch == 19 for r in rows)
    assert {r.result["i"] for r in rows} == set(range(8))


def test_resolve_by_prefix_and_name(tmp_path):
    reg = Registry(tmp_path)
    reg.create("20260101-000000-alpha", "alpha", tmp_path / "a")
    reg.create("20260101-000001-beta", "beta", tmp_path / "b")
    assert reg.resolve("20260101-000001").id == "20260101-000001-beta"
    assert reg.resolve("alpha").id == "20260101-000000-alpha"
    with pytest.raises(RunNotFound, match="matches 2 runs"):
        reg.resolve("2026")
    with pytest.raises(RunNotFound, match="no run"):
        reg.resolve("%")  # LIKE wildcards are escaped


def test_traversal_run_name_is_neutralised(tmp_path):
    root = tmp_path / "runs"
    spec = tiny_spec("../../etc/passwd", student_epochs=1).with_overrides(["train.teacher_epochs=1"])
    exp = Experiment(spec, callbacks=[RunRecorder(root)])
    assert exp.run().status == "finished"
    assert exp.run_dir.parent == root and ".." not in exp.run_dir.name and "/" not in exp.run_id
    assert exp.run_id.endswith("etc-passwd")
    assert not (tmp_path / "etc").exists()
    assert safe_name("../..") == "run" and safe_name("a/b\\c") == "a-b-c" and safe_name(".hidden") == "hidden"
    # a second run with the same name never overwrites the first
    exp2 = Experiment(spec, callbacks=[RunRecorder(root)])
    exp2.run()
    assert exp2.run_dir != exp.run_dir and (exp.run_dir / "result.json").is_file()
    # delete never removes anything outside the runs folder, even with a forged row
    reg = open_registry(root)
    outside = tmp_path / "precious"
    outside.mkdir()
    reg.create("forged", "forged", outside, status="finished")
    reg.delete("forged")
    assert outside.is_dir()


def test_runs_export_delete_cli(finished_run, tmp_path):
    root, run_id, _ = finished_run
    out = cli("runs", "--json", "--runs-dir", str(root))
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert any(r["id"] == run_id and r["status"] == "finished" for r in rows)
    table = cli("runs", "--runs-dir", str(root))
    assert run_id in table.stdout and "finished" in table.stdout
    z = tmp_path / "export.zip"
    out = cli("export", run_id, str(z), "--runs-dir", str(root))
    assert out.returncode == 0, out.stderr
    with zipfile.ZipFile(z) as zf:
        names = set(zf.namelist())
        assert {"spec.yaml", "metrics.jsonl", "result.json", "run.log", "figures.html",
                "checkpoints/kd.safetensors", "checkpoints/teacher.safetensors"} <= names
        html = zf.read("figures.html").decode()
        assert "plotly" in html.lower() and "<script" in html  # plotly.js inlined: opens offline
    bad = cli("export", "no-such-run", str(z), "--runs-dir", str(root))
    assert bad.returncode == 2 and "no run" in bad.stderr and "Traceback" not in bad.stderr


def test_delete_cli(tmp_path):
    exp = Experiment(tiny_spec("doomed", student_epochs=1), callbacks=[RunRecorder(tmp_path)])
    exp.run()
    out = cli("delete", exp.run_id, "--runs-dir", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert not exp.run_dir.exists() and open_registry(tmp_path).find(exp.run_id) is None


# ---- checkpoints: corrupt, truncated, pickle ----------------------------------------------------
def test_truncated_and_corrupted_checkpoints_give_clear_errors(tmp_path):
    model = torch.nn.Linear(4, 3)
    good = tmp_path / "good.safetensors"
    save_state(model.state_dict(), good)
    data = good.read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable safetensors checkpoint"):
        load_into(model, tmp_path / "trunc.safetensors")
    corrupt = bytearray(data)
    corrupt[8:20] = b"\xff" * 12  # garbage inside the JSON header
    (tmp_path / "corrupt.safetensors").write_bytes(bytes(corrupt))
    with pytest.raises(CheckpointError, match="not a readable safetensors checkpoint"):
        load_into(model, tmp_path / "corrupt.safetensors")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError):
        load_state(tmp_path / "empty.safetensors")
    with pytest.raises(CheckpointError, match="does not match the architecture"):
        load_into(torch.nn.Linear(5, 3), good)


class _Payload:
    """Unpickling this would create a marker file (what an attacker's checkpoint would do)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_pickle_posing_as_checkpoint_is_refused_without_running_it(tmp_path, protocol):
    marker = tmp_path / "executed"
    evil = tmp_path / "teacher.safetensors"
    evil.write_bytes(pickle.dumps({"weight": _Payload(str(marker))}, protocol=protocol))
    with pytest.raises(CheckpointError, match="never unpickles"):
        load_into(torch.nn.Linear(4, 3), evil)
    assert not marker.exists()
    # torch.save's zip format with the payload inside: refused too
    zipped = tmp_path / "zipped.safetensors"
    torch.save({"weight": _Payload(str(marker))}, zipped)
    with pytest.raises(CheckpointError, match="never unpickles"):
        load_state(zipped)
    with pytest.raises(CheckpointError):
        read_resume(zipped)
    assert not marker.exists()


def test_pickle_teacher_checkpoint_in_a_spec_fails_the_run_cleanly(tmp_path):
    marker = tmp_path / "executed"
    evil = tmp_path / "teacher.safetensors"
    evil.write_bytes(pickle.dumps(_Payload(str(marker))))
    spec = tiny_spec("evil", student_epochs=1).with_overrides([f"teacher.checkpoint={evil}"])
    res = Experiment(spec, callbacks=[RunRecorder(tmp_path / "runs")]).run()
    assert res.status == "failed" and "never unpickles" in res.message
    assert not marker.exists()


def test_corrupt_resume_checkpoint_gives_a_clear_error(tmp_path):
    from kdcore.store.resume_run import prepare_resume

    root = tmp_path / "runs"
    exp = Experiment(tiny_spec("c", student_epochs=2), callbacks=[RunRecorder(root)])
    exp.run()
    reg = open_registry(root)
    reg.update(exp.run_id, status="interrupted")
    ck = exp.run_dir / "checkpoints" / "resume.safetensors"
    ck.write_bytes(ck.read_bytes()[:100])
    with pytest.raises(ResumeError, match="not a readable safetensors"):
        prepare_resume(exp.run_id, root)
    assert reg.get(exp.run_id).status == "interrupted"  # a refused resume does not claim the run
    out = cli("resume", exp.run_id, "--runs-dir", str(root))
    assert out.returncode == 2 and "not a readable safetensors" in out.stderr and "Traceback" not in out.stderr


def test_no_code_path_can_unpickle():
    """Static guard: no pickle loads, no torch.load without weights_only=True, no unsafe YAML, no
    numpy object arrays anywhere in the engine, the app or the scripts."""
    import re

    bad = []
    pattern = re.compile(r"pickle\.loads?\(|cPickle|dill\.|joblib\.load|allow_pickle\s*=\s*True|yaml\.load\(|"
                         r"yaml\.unsafe_load|torch\.load\((?![^)]*weights_only\s*=\s*True)")
    files = [ROOT / "app.py"] + [f for d in ("kdcore", "pages", "ui", "scripts", "benchmarks")
                                  for f in (ROOT / d).rglob("*.py")]
    for f in files:
        if f.is_file():
            for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
                if pattern.search(line):
                    bad.append(f"{f.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not bad, "\n".join(bad)


def test_safetensors_whose_header_length_looks_like_a_pickle_byte_loads(tmp_path):
    """A real safetensors file whose header length N has N mod 256 = 0x80 (or 'PK') is not a pickle."""
    from safetensors.torch import save_file

    for target in (0x80, 0x4B50):
        for pad in range(0, 600):
            path = tmp_path / f"w{target}.safetensors"
            save_file({"w": torch.zeros(1)}, str(path), metadata={"pad": "x" * pad})
            n = int.from_bytes(path.read_bytes()[:8], "little")
            if n % (256 if target < 256 else 65536) == target:
                break
        else:
            continue
        assert torch.equal(load_state(path)["w"], torch.zeros(1))
