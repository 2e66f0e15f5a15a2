"""The sweep job kind of the job manager: runs run_grid in a slot of the queue, live rows, stop
between rows, a failing grid marks the job failed, cached rows visible, run jobs listed apart, every
row a stored run (unless save_runs=False)."""

from __future__ import annotations

import threading
import time

import pytest

from kdcore.pipeline.grid import GridResult, run_grid
from kdcore.service.jobs import JobManager
from kdcore.presets import load_preset

TIMEOUT = 600


@pytest.fixture
def micro_spec():
    return load_preset("mfh-gamma").with_overrides([
        "name=micro-sweep", "data.train_limit=60", "train.teacher_epochs=1", "train.student_epochs=1",
        "train.batch_size=32", "train.probe_samples=16",
    ])


@pytest.fixture
def manager(tmp_path):
    m = JobManager(max_concurrent=1, run_root=tmp_path / "runs")
    yield m
    m.stop_all(wait=60)


def test_sweep_job_finishes_with_every_row_and_is_cached(manager, micro_spec, tmp_path):
    axes = {"distill.temperature": [1.0, 4.0]}
    job = manager.submit_sweep(micro_spec, axes, 2)
    assert job.kind == "sweep" and job.total == 4
    assert job.wait(TIMEOUT)
    snap = job.snapshot()
    assert snap.status == "finished", snap.message
    assert len(snap.rows) == 4 and snap.total == 4 and snap.done
    assert {(tuple(r["point"].values()), r["seed"]) for r in snap.rows} == {((t,), s) for t in (1.0, 4.0)
                                                                           for s in (0, 1)}
    assert snap.result["cache_file"].startswith(str(tmp_path / "runs" / "sweeps"))
    assert len(snap.result["points"]) == 2 and snap.result["trained"] == 4
    # every row is a stored run under the run root (the Explore page opens them on Compare)
    from kdcore.store.registry import open_registry

    reg = open_registry(tmp_path / "runs")
    assert all(reg.get(r["run_id"]).status == "finished" for r in snap.rows)
    assert len({r["run_id"] for r in snap.rows}) == 4
    # listed as a sweep, not as a run job (the Train / Inspect pages list run jobs only)
    assert manager.jobs() == [] and manager.jobs(kind="sweep") == [job] and manager.jobs(kind=None) == [job]
    # the same sweep again: every row from the cache, visible from the start
    again = manager.submit_sweep(micro_spec, axes, 2)
    assert again.wait(TIMEOUT)
    s2 = again.snapshot()
    assert s2.status == "finished" and s2.result["trained"] == 0 and "4 from the cache" in s2.message
    assert len(s2.rows) == 4 and {r["run_id"] for r in s2.rows} == {r["run_id"] for r in snap.rows}
    # unsaved (save_runs=False): the cached rows are used as they are, and no run is stored
    unsaved = manager.submit_sweep(micro_spec, {"distill.temperature": [2.0]}, 1, save_runs=False)
    assert unsaved.wait(TIMEOUT) and unsaved.snapshot().status == "finished"
    assert "run_id" not in unsaved.snapshot().rows[0] and len(reg.list()) == 4


def test_sweep_job_live_rows_and_stop_between_rows(manager, micro_spec):
    gate = threading.Event()
    calls = []

    def slow_grid(spec, axes, seeds, cache_root=None, on_row=None, should_stop=None, store=None):
        res = GridResult(spec.name, axes, seeds, ())
        for seed in range(seeds):
            for v in axes["distill.temperature"]:
                if should_stop():
                    return res
                row = {"point": {"distill.temperature": v}, "seed": seed,
                       "acc": {"teacher": 0.9, "baseline": 0.5, "kd": 0.6}, "shared": []}
                res.rows.append(row)
                res.trained += 1
                on_row(row)
                calls.append(row)
                gate.wait(10)
        return res

    job = manager.submit_sweep(micro_spec, {"distill.temperature": [1, 2, 4]}, 3, grid=slow_grid)
    deadline = time.time() + 30
    while not calls and time.time() < deadline:
        time.sleep(0.02)
    assert job.snapshot().rows and job.snapshot().status == "running"
    # a second job waits in the queue (cap 1) and can be removed from it
    queued = manager.submit(micro_spec)
    assert queued.snapshot().queue_position == 1
    queued.stop()
    assert queued.snapshot().status == "stopped"
    job.stop()
    gate.set()
    assert job.wait(30)
    snap = job.snapshot()
    assert snap.status == "stopped" and len(snap.rows) == len(calls) < 9
    assert f"stopped after {len(calls)} of 9 rows" in snap.message


def test_failing_grid_marks_the_job_failed_and_frees_the_slot(manager, micro_spec):
    def broken(*a, **k):
        raise RuntimeError("grid exploded")

    bad = manager.submit_sweep(micro_spec, {"distill.temperature": [1]}, 1, grid=broken)
    assert bad.wait(30)
    snap = bad.snapshot()
    assert snap.status == "failed" and "RuntimeError: grid exploded" in snap.message
    # a real grid whose spec cannot be trained fails with the engine's message
    invalid = manager.submit_sweep(micro_spec, {"data.noise.gamma": [0, 3]}, 1)
    assert invalid.wait(60)
    s = invalid.snapshot()
    assert s.status == "failed" and "data.noise.gamma" in s.message
    assert manager.running() == []


def test_submit_sweep_checks_its_arguments(manager, micro_spec):
    with pytest.raises(ValueError):
        manager.submit_sweep(micro_spec, {}, 3)
    with pytest.raises(ValueError):
        manager.submit_sweep(micro_spec, {"distill.temperature": [1]}, 0)
    with pytest.raises(TypeError):
        manager.submit_sweep(micro_spec.to_dict(), {"distill.temperature": [1]}, 1)  # type: ignore[arg-type]
    assert run_grid  # the default grid runner
