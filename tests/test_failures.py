"""Failures end a run cleanly: NaN → diverged (with the step and a hint), exceptions → failed (message in
the registry, the log and the job), CUDA OOM → a message suggesting a smaller batch; concurrent jobs
keep their own results."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from helpers_store import tiny_spec

from kdcore.pipeline.experiment import Experiment
from kdcore.methods.losses import LOSSES
from kdcore.store.registry import open_registry
from kdcore.store.recorder import RunRecorder


def _patch_loss(monkeypatch, name: str, fn):
    cls = LOSSES[name]
    orig = cls.forward

    def forward(self, student, teacher, ctx):
        out = orig(self, student, teacher, ctx)
        return fn(out, ctx)

    monkeypatch.setattr(cls, "forward", forward)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_loss_ends_as_diverged_within_one_step(tmp_path, monkeypatch, bad):
    def inject(out, ctx):
        if ctx.step >= 3:
            out = {k: v * bad for k, v in out.items()}
        return out

    _patch_loss(monkeypatch, "kd", inject)
    events = []
    exp = Experiment(tiny_spec("nan"), [events.append], callbacks=[RunRecorder(tmp_path)])
    res = exp.run()
    assert res.status == "diverged"
    assert "at step 3 of phase kd" in res.message and "lower learning rate" in res.message
    assert "kd" in res.message.split("non-finite terms:")[1]
    kd_steps = [e.step for e in events if e.kind == "StepLosses" and e.phase == "kd"]
    assert kd_steps == [0, 1, 2]  # no optimiser step was taken with the bad loss
    div = [e for e in events if e.kind == "RunDiverged"]
    assert len(div) == 1 and div[0].step == 3 and div[0].phase == "kd"
    rec = open_registry(tmp_path).get(exp.run_id)
    assert rec.status == "diverged" and "step 3" in rec.message
    assert "diverged in phase kd" in (exp.run_dir / "run.log").read_text()
    assert json.loads((exp.run_dir / "result.json").read_text())["status"] == "diverged"


def test_huge_learning_rate_diverges_or_finishes_never_crashes(tmp_path):
    spec = tiny_spec("lr", student_epochs=2).with_overrides(["train.lr=10", "train.optimizer=sgd",
                                                            "train.momentum=0.99"])
    res = Experiment(spec, callbacks=[RunRecorder(tmp_path)]).run()
    assert res.status in ("diverged", "finished")
    if res.status == "diverged":
        assert "lower learning rate" in res.message


def test_exception_in_training_marks_the_run_failed_everywhere(tmp_path, monkeypatch):
    def boom(out, ctx):
        if ctx.step == 2:
            raise RuntimeError("boom in the kd loss")
        return out

    _patch_loss(monkeypatch, "kd", boom)
    exp = Experiment(tiny_spec("boom"), callbacks=[RunRecorder(tmp_path)])
    res = exp.run()
    assert res.status == "failed" and res.message == "RuntimeError: boom in the kd loss"
    assert set(res.phases) == {"teacher", "baseline"}  # finished phases are kept
    rec = open_registry(tmp_path).get(exp.run_id)
    assert rec.status == "failed" and "boom in the kd loss" in rec.message
    assert rec.result["status"] == "failed"
    assert "failed in phase kd: RuntimeError: boom in the kd loss" in (exp.run_dir / "run.log").read_text()
    assert "Traceback" in (exp.run_dir / "error.log").read_text()


def test_exception_in_a_job_thread_is_shown_and_the_manager_keeps_serving(tmp_path, monkeypatch):
    from kdcore.service.jobs import JobManager

    def boom(out, ctx):
        if ctx.temperature == 3.0:  # only the job whose spec says T=3 crashes
            raise ValueError("bad batch")
        return out

    _patch_loss(monkeypatch, "kd", boom)
    mgr = JobManager(max_concurrent=2, run_root=tmp_path)
    bad = mgr.submit(tiny_spec("bad", student_epochs=1).with_overrides(["distill.temperature=3"]))
    good = mgr.submit(tiny_spec("good", student_epochs=1))
    assert bad.wait(600) and good.wait(600)
    snap = bad.snapshot()
    assert snap.status == "failed" and "ValueError: bad batch" in snap.message
    assert good.snapshot().status == "finished"
    reg = open_registry(tmp_path)
    by_name = {r.name: r for r in reg.list()}
    assert by_name["bad"].status == "failed" and "bad batch" in by_name["bad"].message
    assert by_name["good"].status == "finished"


def test_cuda_out_of_memory_suggests_a_smaller_batch(tmp_path, monkeypatch):
    import kdcore.pipeline.experiment as E

    def oom(*a, **k):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(E, "train_phase", oom)
    exp = Experiment(tiny_spec("oom"), callbacks=[RunRecorder(tmp_path)])
    res = exp.run()
    assert res.status == "failed"
    assert "CUDA out of memory" in res.message and "smaller batch size (e.g. 16)" in res.message
    assert "train.batch_size=32" in res.message
    assert open_registry(tmp_path).get(exp.run_id).status == "failed"


def test_four_concurrent_jobs_finish_with_their_own_results(tmp_path):
    from kdcore.service.jobs import JobManager

    mgr = JobManager(max_concurrent=4, run_root=tmp_path)
    specs = [tiny_spec(f"job{i}", seed=i, student_epochs=2) for i in range(4)]
    jobs = [mgr.submit(s) for s in specs]
    assert len(mgr.running()) == 4
    for j in jobs:
        assert j.wait(900)
    reg = open_registry(tmp_path)
    dirs = set()
    for i, j in enumerate(jobs):
        snap = j.snapshot()
        assert snap.status == "finished", snap.message
        run_dir = Path(snap.result["run_dir"])
        dirs.add(run_dir)
        # the folder, the registry and the job agree, and the folder holds this job's spec
        assert json.loads((run_dir / "result.json").read_text())["phases"] == snap.result["phases"]
        rec = reg.get(run_dir.name)
        assert rec.status == "finished" and rec.name == f"job{i}"
        assert rec.result["phases"] == snap.result["phases"]
        assert f"seed: {i}" in (run_dir / "spec.yaml").read_text()
        kd_epochs = [e for e in snap.events.get("EpochMetrics", ()) if e["phase"] == "kd"]
        assert [e["epoch"] for e in kd_epochs] == [1, 2]
    assert len(dirs) == 4


def test_failed_job_message_is_shown_on_the_train_page(tmp_path, monkeypatch):
    """A crash in the training thread: the Train page shows the run as failed with its message, and
    the app keeps serving (the page reruns without an exception)."""
    import time

    import streamlit as st
    from streamlit.testing.v1 import AppTest

    def boom(out, ctx):
        raise RuntimeError("simulated crash in the training thread")

    _patch_loss(monkeypatch, "kd", boom)
    monkeypatch.setenv("KDLAB_RUNS_DIR", str(tmp_path))
    monkeypatch.delenv("KDLAB_FAST", raising=False)
    st.cache_resource.clear()
    try:
        at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=300)
        at.switch_page("pages/2_Train.py")
        at.session_state["spec"] = tiny_spec("crashy", student_epochs=1).to_dict()
        at.run()
        at.button(key="train-run-current").click().run()
        assert not at.exception
        from ui.state import get_manager

        job = get_manager().get(at.session_state["job_id"])
        # wait without rerunning the script meanwhile (CPython 3.11 can trip over ast.parse in two threads)
        assert job.wait(600)
        shown = []
        for _ in range(3):
            at.run()
            assert not at.exception, [e.value for e in at.exception]
            shown = [e.value for e in at.error]
            if any("failed" in m for m in shown):
                break
            time.sleep(0.5)
        assert any("The run failed: RuntimeError: simulated crash in the training thread" in m for m in shown), shown
        rec = [r for r in open_registry(tmp_path).list() if r.name == "crashy"][0]
        assert rec.status == "failed" and "simulated crash" in rec.message
    finally:
        from ui.state import get_manager

        get_manager().stop_all(wait=60)
        st.cache_resource.clear()
