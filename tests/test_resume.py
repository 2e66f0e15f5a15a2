"""Resume: per-epoch checkpoints let an interrupted run finish with the same numbers as an
uninterrupted one; a CLI run killed with SIGKILL mid-phase is shown interrupted and resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers_store import accuracies, tiny_spec

from kdcore.pipeline.experiment import Experiment
from kdcore.models.checkpoints import load_state
from kdcore.store.registry import open_registry
from kdcore.store.resume import ResumeError, read_resume
from kdcore.store.resume_run import resume
from kdcore.store.recorder import RunRecorder
from kdcore.train.callbacks import LambdaCallback

ROOT = Path(__file__).resolve().parents[1]


class Interrupt(BaseException):
    """Stands for the process dying: not an Exception, so the experiment does not catch it."""


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run every resumed run must reproduce."""
    root = tmp_path_factory.mktemp("ref")
    res = Experiment(tiny_spec("resume-me"), callbacks=[RunRecorder(root)]).run()
    assert res.status == "finished"
    return res.to_dict()


@pytest.mark.parametrize("phase,epoch", [("teacher", 2), ("baseline", 3), ("kd", 2)])
def test_interrupted_run_resumes_to_the_same_result(tmp_path, reference, phase, epoch):
    exp = Experiment(tiny_spec("resume-me"), callbacks=[RunRecorder(tmp_path)])

    def die(run):
        if (run.name, run.epoch + 1) == (phase, epoch):
            raise Interrupt()

    exp.add_callback(LambdaCallback(on_epoch_end=die))
    with pytest.raises(Interrupt):
        exp.run()
    reg = open_registry(tmp_path)
    assert reg.get(exp.run_id).status == "interrupted"
    res = resume(exp.run_id, tmp_path)
    assert res.status == "finished", res.message
    # CPU, same threads: the continuation is exact, not just close
    assert accuracies(res.to_dict()) == accuracies(reference)
    rec = reg.get(exp.run_id)
    assert rec.status == "finished" and accuracies(rec.result) == accuracies(reference)
    assert json.loads((exp.run_dir / "result.json").read_text())["status"] == "finished"


def test_finished_phases_are_loaded_not_retrained(tmp_path, reference):
    from kdcore.store.resume_run import loaded_phases, prepare_resume

    exp = Experiment(tiny_spec("resume-me"), callbacks=[RunRecorder(tmp_path)])
    exp.add_callback(LambdaCallback(on_epoch_end=lambda run: (_ for _ in ()).throw(Interrupt())
                                    if run.name == "kd" else None))
    with pytest.raises(Interrupt):
        exp.run()
    seen = []
    again = prepare_resume(exp.run_id, tmp_path, [lambda ev: seen.append(ev)])
    res = again.run()
    assert loaded_phases(again) == ["teacher", "baseline"]
    started = [ev.phase for ev in seen if ev.kind == "PhaseStarted"]
    assert started == ["kd"]  # teacher and baseline were not trained again
    assert accuracies(res.to_dict()) == accuracies(reference)


def test_stopped_run_resumes_and_finished_run_does_not(tmp_path, reference):
    import threading

    stop = threading.Event()
    exp = Experiment(tiny_spec("resume-me"), callbacks=[RunRecorder(tmp_path)], stop_event=stop)
    exp.add_callback(LambdaCallback(on_epoch_end=lambda run: stop.set() if (run.name, run.epoch + 1) == ("baseline", 2)
                                    else None))
    assert exp.run().status == "stopped"
    reg = open_registry(tmp_path)
    assert reg.get(exp.run_id).status == "stopped"
    res = resume(exp.run_id, tmp_path)
    assert res.status == "finished" and accuracies(res.to_dict()) == accuracies(reference)
    with pytest.raises(ResumeError, match="already finished"):
        resume(exp.run_id, tmp_path)


_KILLABLE = """
import sys, time
from kdcore.pipeline import experiment as E
from kdcore.train.callbacks import LambdaCallback
orig = E.Experiment.__init__
def init(self, *a, **k):
    orig(self, *a, **k)
    # hold the process inside kd epoch 2 (after epoch 1's checkpoint) so the test can SIGKILL it there
    self.add_callback(LambdaCallback(on_epoch_end=lambda run: time.sleep(600) if (run.name, run.epoch + 1) == ("kd", 2)
                                     else None))
E.Experiment.__init__ = init
from kdcore.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_cli_run_killed_with_sigkill_resumes_via_cli(tmp_path, reference):
    root = tmp_path / "runs"
    cfg = tmp_path / "spec.yaml"
    tiny_spec("resume-me").save(cfg)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KDLAB_RUNS_DIR": str(root)}
    proc = subprocess.Popen([sys.executable, "-c", _KILLABLE, "run", "--config", str(cfg), "--quiet"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 300
        log = None
        while time.time() < deadline:
            logs = list(root.glob("*/run.log"))
            if logs and "kd epoch 2" in logs[0].read_text():
                log = logs[0]
                break
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.2)
        assert log is not None, "the run never reached kd epoch 2"
        reg = open_registry(root, recover=False)
        run_id = log.parent.name
        assert reg.get(run_id).status == "running"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    # consistent registry: the dead run shows as interrupted (start-up recovery)
    out = subprocess.run([sys.executable, "-m", "kdcore", "runs", "--json"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    rows = {r["id"]: r for r in json.loads(out.stdout)}
    assert rows[run_id]["status"] == "interrupted" and rows[run_id]["phase"] == "kd"
    # loadable checkpoints: finished phases and the mid-phase resume state
    ck = root / run_id / "checkpoints"
    for phase in ("teacher", "baseline"):
        assert load_state(ck / f"{phase}.safetensors")
    meta, _ = read_resume(ck / "resume.safetensors")
    assert meta["phase"] == "kd" and meta["epoch"] == 1
    assert not list(ck.glob("*.tmp"))
    # resume through the CLI finishes the run with the numbers of an uninterrupted run
    out = subprocess.run([sys.executable, "-m", "kdcore", "resume", run_id, "--json", "--quiet"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["status"] == "finished"
    ref = accuracies(reference)
    got = accuracies(result)
    assert got.keys() == ref.keys()
    for k in ref:  # separate processes: allow float noise, same best epochs
        assert got[k][2] == ref[k][2] and abs(got[k][0] - ref[k][0]) < 1e-6 and abs(got[k][1] - ref[k][1]) < 1e-6
    assert open_registry(root).get(run_id).status == "finished"


def test_compare_page_resume_button(tmp_path, monkeypatch, reference):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("KDLAB_RUNS_DIR", str(tmp_path))
    exp = Experiment(tiny_spec("resume-me"), callbacks=[RunRecorder(tmp_path)])
    exp.add_callback(LambdaCallback(on_epoch_end=lambda run: (_ for _ in ()).throw(Interrupt())
                                    if run.name == "kd" else None))
    with pytest.raises(Interrupt):
        exp.run()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)  # the entrypoint, for its page links
    at.switch_page("pages/5_Compare.py")
    at.run()
    assert not at.exception
    assert at.selectbox(key="cmp-resume-pick").value == exp.run_id
    at.button(key="cmp-resume").click()
    at.run()
    assert not at.exception
    assert "Resuming" in at.success[0].value  # queued as a job of the app's job manager
    reg = open_registry(tmp_path)
    deadline = time.time() + 300
    while reg.get(exp.run_id).status != "finished" and time.time() < deadline:
        time.sleep(0.5)
    rec = reg.get(exp.run_id)
    assert rec.status == "finished" and accuracies(rec.result) == accuracies(reference)
    # the resumed run is a job like any other: the Train page shows it with its result table
    train = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    train.switch_page("pages/2_Train.py")
    train.session_state["job_id"] = at.session_state["job_id"]
    for _ in range(60):  # the registry row is final a moment before the job object ends
        train.run()
        assert not train.exception
        if len(train.dataframe):
            break
        time.sleep(0.5)
    assert any("resume-me" in m.value and "finished" in m.value for m in train.markdown)
    table = train.dataframe[0].value
    assert len(table) >= 3  # teacher, baseline and KD student rows


def test_job_manager_resume_queues_claims_at_start_and_streams_events(tmp_path, reference):
    from kdcore.service.jobs import JobManager

    exp = Experiment(tiny_spec("resume-me"), callbacks=[RunRecorder(tmp_path)])
    exp.add_callback(LambdaCallback(on_epoch_end=lambda run: (_ for _ in ()).throw(Interrupt())
                                    if run.name == "kd" else None))
    with pytest.raises(Interrupt):
        exp.run()
    manager = JobManager(max_concurrent=1, run_root=tmp_path)
    blocker = manager.submit(tiny_spec("blocker"))
    blocker.pause()  # holds the only slot, so the resume job waits in the queue
    job = manager.submit_resume(exp.run_id)
    assert job.status == "queued" and job.resumes == exp.run_id and manager.queue_position(job) == 1
    reg = open_registry(tmp_path)
    assert reg.get(exp.run_id).status == "interrupted"  # not claimed while queued
    blocker.stop()
    assert job.wait(300)
    snap = job.snapshot()
    assert snap.status == "finished", snap.message
    assert accuracies(snap.result) == accuracies(reference)
    assert [e["phase"] for e in snap.events["PhaseStarted"]] == ["kd"]  # only the unfinished phase trains
    assert snap.events["StepLosses"] and snap.run_dir == str(exp.run_dir)
    assert reg.get(exp.run_id).status == "finished"
    with pytest.raises(ResumeError, match="already finished"):
        manager.submit_resume(exp.run_id)


def test_run_interrupted_after_a_finished_pruned_phase_resumes(tmp_path):
    """prune_kd finished (its weights saved with the masks made permanent), the run died in prune_ce:
    the resume loads prune_kd into its rebuilt (re-parametrised) model and ends with the same numbers."""
    extra = {"distill": {"extra_phases": ["prune_kd", "prune_ce"],
                         "phase_params": {"prune_kd": {"sparsity": 0.5}, "prune_ce": {"sparsity": 0.5}}}}
    from helpers_store import tiny_spec_dict

    from kdcore.core.spec import validate_spec

    d = tiny_spec_dict("pruned-resume", student_epochs=2)
    d.update(extra)
    spec = validate_spec(d)
    full = Experiment(spec).run()
    assert full.status == "finished", full.message
    exp = Experiment(spec, callbacks=[LambdaCallback(on_epoch_end=lambda run: (_ for _ in ()).throw(Interrupt())
                                                     if run.name == "prune_ce" else None), RunRecorder(tmp_path)])
    with pytest.raises(Interrupt):
        exp.run()
    res = resume(exp.run_id, tmp_path)
    assert res.status == "finished", res.message
    assert accuracies(res.to_dict()) == accuracies(full.to_dict())
    assert res.phases["prune_kd"]["sparsity"] == full.phases["prune_kd"]["sparsity"]
