"""The background job manager: status life cycle, cap + queue, stop, pause/resume, crash handling."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from kdcore.service.jobs import DecimatingBuffer, JobManager, runs_dir
from kdcore.presets import load_preset
from kdcore.train.callbacks import LambdaCallback

TIMEOUT = 600  # generous: CI machines may be shared


@pytest.fixture
def micro_spec():
    return load_preset("digits-av").with_overrides([
        "name=micro", "data.train_limit=40", "train.teacher_epochs=1", "train.student_epochs=1",
        "train.batch_size=16", "train.probe_samples=16",
    ])


@pytest.fixture
def manager(tmp_path):
    m = JobManager(max_concurrent=1, run_root=tmp_path / "runs")
    yield m
    m.stop_all(wait=60)


def pause_on_first_step(holder):
    """A subscriber that pauses its job at the first optimiser step of the given phase."""
    def sub(ev):
        if ev.kind == "StepLosses" and not holder.get("paused_once"):
            holder["paused_once"] = True
            holder["job"].pause()
    return sub


def test_job_runs_to_the_end_and_exposes_everything(manager, micro_spec, tmp_path):
    seen_epochs = []
    events = []
    job = manager.submit(micro_spec, callbacks=[LambdaCallback(on_epoch_end=lambda run: seen_epochs.append(
        (run.name, run.epoch + 1)))], subscribers=[events.append])
    assert job.wait(TIMEOUT)
    snap = job.snapshot()
    assert snap.status == "finished", snap.message
    assert snap.done and snap.queue_position is None
    assert snap.phases == ("teacher", "baseline", "kd")
    assert set(snap.result["phases"]) == {"teacher", "baseline", "kd"}
    assert snap.result["kd_gain"] == pytest.approx(
        snap.result["phases"]["kd"]["test_acc"] - snap.result["phases"]["baseline"]["test_acc"])
    # events by kind, each term of each step, epochs for every phase
    assert {e["phase"] for e in snap.steps} == {"teacher", "baseline", "kd"}
    assert {"ce", "kd"} <= set(snap.steps[-1]["terms"])
    assert [(e["phase"], e["epoch"]) for e in snap.epochs] == [("teacher", 1), ("baseline", 1), ("kd", 1)]
    assert snap.attention and snap.attention[0]["modalities"] == ["image", "audio", "text"]
    for p in snap.phases:
        prog = snap.progress[p]
        assert prog.state == "done" and prog.fraction == 1.0 and prog.eta_s == 0.0
        assert prog.step == prog.total_steps > 0
    # subscribers and epoch callbacks were called
    assert seen_epochs == [("teacher", 1), ("baseline", 1), ("kd", 1)]
    assert events[0].kind == "RunStarted" and events[-1].kind == "RunFinished"
    assert snap.event_count == len(events) and snap.last_event_t == events[-1].t
    # run folder under the manager's root, models available for inspection
    run_dir = Path(snap.run_dir)
    assert run_dir.parent == tmp_path / "runs"
    assert (run_dir / "result.json").is_file() and (run_dir / "checkpoints" / "kd.safetensors").is_file()
    assert set(job.models) == {"teacher", "baseline", "kd"}
    assert job.experiment.teacher is job.models["teacher"]


def test_snapshot_is_immutable_and_detached(manager, micro_spec):
    job = manager.submit(micro_spec)
    assert job.wait(TIMEOUT)
    snap = job.snapshot()
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.status = "running"  # type: ignore[misc]
    with pytest.raises(TypeError):
        snap.events["StepLosses"] = ()  # type: ignore[index]
    assert isinstance(snap.steps, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.progress["kd"].step = 0  # type: ignore[misc]


def test_cap_queue_position_and_stop(manager, micro_spec):
    holder: dict = {}
    first = manager.submit(micro_spec, subscribers=[pause_on_first_step(holder)])
    holder["job"] = first
    second = manager.submit(micro_spec.with_overrides(["name=second"]))
    third = manager.submit(micro_spec.with_overrides(["name=third"]))
    assert first.snapshot().status == "running"
    s2, s3 = second.snapshot(), third.snapshot()
    assert (s2.status, s2.queue_position) == ("queued", 1)
    assert (s3.status, s3.queue_position) == ("queued", 2)
    assert s3.state_label == "queued (position 2)"
    # stopping a queued job removes it from the queue; the others move up
    third.stop()
    assert third.snapshot().status == "stopped" and third.snapshot().queue_position is None
    assert second.snapshot().queue_position == 1
    # stopping the paused running job ends it as stopped and starts the next one
    deadline = time.time() + TIMEOUT
    while not first.paused and time.time() < deadline:
        time.sleep(0.05)
    first.stop()
    assert first.wait(TIMEOUT)
    assert first.snapshot().status == "stopped"
    deadline = time.time() + 30
    while second.snapshot().status == "queued" and time.time() < deadline:
        time.sleep(0.05)
    assert second.snapshot().status in ("running", "finished")
    second.stop()
    assert second.wait(TIMEOUT)
    assert second.snapshot().status in ("stopped", "finished")


def test_pause_holds_training_between_steps_and_resume_continues(manager, micro_spec):
    holder: dict = {}
    job = manager.submit(micro_spec, subscribers=[pause_on_first_step(holder)])
    holder["job"] = job
    deadline = time.time() + TIMEOUT
    while not job.paused and time.time() < deadline:
        time.sleep(0.05)
    assert job.paused
    time.sleep(0.3)  # let the trainer reach its between-steps check
    n = len(job.snapshot().steps)
    time.sleep(1.0)
    snap = job.snapshot()
    assert len(snap.steps) == n and snap.status == "running" and snap.state_label == "paused"
    elapsed = snap.progress["teacher"].elapsed_s
    time.sleep(0.5)
    assert job.snapshot().progress["teacher"].elapsed_s == pytest.approx(elapsed)  # paused time is not counted
    job.resume()
    assert job.wait(TIMEOUT)
    assert job.snapshot().status == "finished"
    assert len(job.snapshot().steps) > n


def test_crash_marks_job_failed_and_manager_keeps_serving(manager, micro_spec):
    def boom(run):
        if run.name == "baseline":
            raise RuntimeError("callback exploded")

    bad = manager.submit(micro_spec, callbacks=[LambdaCallback(on_epoch_end=boom)])
    assert bad.wait(TIMEOUT)
    snap = bad.snapshot()
    assert snap.status == "failed"
    assert "callback exploded" in snap.message
    assert "teacher" in bad.models  # the phases that finished stay inspectable
    good = manager.submit(micro_spec)
    assert good.wait(TIMEOUT)
    assert good.snapshot().status == "finished"


def test_crash_outside_the_experiment_loop_is_caught(tmp_path, micro_spec):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    m = JobManager(max_concurrent=1, run_root=blocker)  # cannot create run folders under a file
    job = m.submit(micro_spec)
    assert job.wait(TIMEOUT)
    snap = job.snapshot()
    assert snap.status == "failed" and snap.message
    assert m.running() == []


def test_runs_dir_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("KDLAB_RUNS_DIR", str(tmp_path / "elsewhere"))
    assert runs_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv("KDLAB_RUNS_DIR")
    assert runs_dir() == Path("runs")


def test_bad_cap_is_rejected(monkeypatch):
    with pytest.raises(ValueError, match="max_concurrent"):
        JobManager(max_concurrent=0)
    monkeypatch.setenv("KDLAB_MAX_JOBS", "many")
    with pytest.raises(ValueError, match="KDLAB_MAX_JOBS"):
        JobManager()


def test_decimating_buffer_is_bounded_and_spans_the_stream():
    buf = DecimatingBuffer(cap=100)
    for i in range(10_000):
        buf.append(i)
    items = buf.view()
    assert len(items) <= 101
    assert items[0] == 0 and items[-1] == 9_999
    gaps = {b - a for a, b in zip(items[:-2], items[1:-1])}
    assert len(gaps) == 1  # evenly spaced
    with pytest.raises(ValueError):
        DecimatingBuffer(1)


def test_job_applies_threads_from_spec_or_manager(tmp_path, micro_spec):
    import torch

    seen: list[int] = []
    record = LambdaCallback(on_epoch_end=lambda run: seen.append(torch.get_num_threads()))  # in the job thread
    m = JobManager(run_root=tmp_path, threads=1)
    job = m.submit(micro_spec, callbacks=[record])  # train.threads unset: the manager's default applies
    assert job.wait(120) and job.status == "finished", job.message
    assert seen and set(seen) == {1}
    seen.clear()
    job2 = m.submit(micro_spec.with_overrides(["train.threads=2"]), callbacks=[record])  # the spec wins
    assert job2.wait(120) and job2.status == "finished", job2.message
    assert seen and set(seen) == {2}


def test_ui_job_threads_default_and_env(monkeypatch):
    import os

    from kdcore.service.jobs import ui_job_threads

    monkeypatch.delenv("KDLAB_JOB_THREADS", raising=False)
    assert ui_job_threads() == max(1, (os.cpu_count() or 1) - 1)  # one CPU left for the server
    monkeypatch.setenv("KDLAB_JOB_THREADS", "3")
    assert ui_job_threads() == 3
    monkeypatch.setenv("KDLAB_JOB_THREADS", "zero")
    with pytest.raises(ValueError, match="KDLAB_JOB_THREADS"):
        ui_job_threads()


def test_ast_guard_serialises_ast_work_across_threads():
    """CPython 3.11 shares the AST converters' recursion counter between threads: a finalizer run
    by the garbage collector mid-conversion can switch threads and break it (SystemError "AST
    constructor recursion depth mismatch", seen in CI with the app's 0.1 ms switch interval).
    Three threads parse / compile / literal_eval while a fourth makes cyclic garbage with
    finalizers; with the guard installed none of them fails."""
    import ast
    import sys
    import threading

    from kdcore.service import ast_guard

    src = "\n".join(f"x{i} = [{', '.join(f'{j} + {j}' for j in range(30))}]" for i in range(50))

    class Junk:
        def __del__(self):
            sum(range(50))

    def run(seconds: float) -> list[str]:
        errors: list[str] = []
        end = time.time() + seconds

        def parse():
            while time.time() < end and not errors:
                try:
                    compile(ast.parse(src), "<t>", "exec")
                    ast.literal_eval("{'descr': '<f4', 'fortran_order': False, 'shape': (10, 20)}")
                except SystemError as exc:
                    errors.append(str(exc))

        def garbage():
            while time.time() < end and not errors:
                a, b = Junk(), Junk()
                a.other, b.other = b, a

        threads = [threading.Thread(target=parse) for _ in range(3)] + [threading.Thread(target=garbage)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return errors

    before = sys.getswitchinterval()
    was = ast_guard.installed()
    sys.setswitchinterval(1e-6)
    try:
        ast_guard.install()
        assert ast_guard.installed() and run(2.0) == []
        assert eval(compile("1 + 2", "<s>", "eval")) == 3  # plain source compiles as before
        assert isinstance(compile("x = 1", "<s>", "exec", ast.PyCF_ONLY_AST), ast.Module)
    finally:
        sys.setswitchinterval(before)
        if not was:
            ast_guard.uninstall()
