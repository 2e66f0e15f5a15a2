"""The one hook protocol (kdcore.train.callbacks): which hooks run when, with what; the order of
callbacks; a callback's own state carried through resume by state_dict/load_state_dict; and an
experiment that writes nothing unless the caller attaches the run store."""

from __future__ import annotations

import os

import pytest
import torch
from helpers_store import accuracies, tiny_spec

from kdcore.pipeline.experiment import Experiment
from kdcore.store.recorder import RunRecorder
from kdcore.store.resume_run import prepare_resume
from kdcore.train.callbacks import Callback, LambdaCallback, PhaseMetrics, ordered


class Recorder(Callback):
    """Logs every hook call of one phase as (hook, phase, epoch, step)."""

    def __init__(self, phase: str):
        self.phase, self.calls = phase, []

    def _log(self, hook, run):
        if run.name == self.phase:
            self.calls.append((hook, run.epoch, run.step))

    def on_phase_start(self, run):
        self._log("phase_start", run)
        assert run.optimizer is not None and run.scheduler is not None and run.order_gen is not None

    def on_before_forward(self, run, inputs, labels):
        self._log("before_forward", run)
        return inputs

    def on_train_batch_end(self, run):
        self._log("batch_end", run)

    def on_validation_end(self, run):
        self._log("validation_end", run)
        return {"my_metric": float(run.epoch + 1)} if run.name == self.phase else None

    def on_epoch_end(self, run):
        self._log("epoch_end", run)

    def on_phase_end(self, run):
        self._log("phase_end", run)
        return {"phase_metric": 7.0} if run.name == self.phase else None


def test_hooks_run_in_order_with_the_phase_state_and_their_metrics_reach_the_events():
    spec = tiny_spec("hooks", student_epochs=2)
    events = []
    rec = Recorder("kd")
    res = Experiment(spec, [events.append], callbacks=[rec]).run()
    assert res.status == "finished", res.message
    steps = next(ev.steps_per_epoch for ev in events if ev.kind == "PhaseStarted" and ev.phase == "kd")
    want = [("phase_start", 0, 0)]
    for epoch in range(2):
        for i in range(steps):
            step = epoch * steps + i
            want += [("before_forward", epoch, step), ("batch_end", epoch, step)]
        want += [("validation_end", epoch, (epoch + 1) * steps), ("epoch_end", epoch, (epoch + 1) * steps)]
    want.append(("phase_end", 1, 2 * steps))
    assert rec.calls == want
    kd_epochs = [ev for ev in events if ev.kind == "EpochMetrics" and ev.phase == "kd"]
    assert [ev.extra["my_metric"] for ev in kd_epochs] == [1.0, 2.0]  # on_validation_end → the epoch's metrics
    assert res.phases["kd"]["phase_metric"] == 7.0  # on_phase_end → the phase's result row
    assert "phase_metric" not in res.phases["baseline"]


def test_a_transform_changes_what_the_student_sees():
    """on_before_forward's return value is the student's input: a student trained on zeroed inputs
    learns only biases, so it predicts one class (about 1 in 10 of the balanced test split)."""
    spec = tiny_spec("zeroed", student_epochs=4)
    zero = LambdaCallback(on_before_forward=lambda run, inputs, labels: (
        {m: torch.zeros_like(x) for m, x in inputs.items()} if run.name == "kd" else inputs))
    res = Experiment(spec, callbacks=[zero]).run()
    assert res.status == "finished"
    assert res.phases["kd"]["test_acc"] <= 0.13 < res.phases["baseline"]["test_acc"]  # 10 balanced classes


def test_callbacks_run_by_order_then_as_added():
    a, b, c = Callback(), Callback(), Callback()
    c.order = -1
    late = RunRecorder("/nonexistent")
    assert ordered([late, a, b, c]) == [c, a, b, late]
    with pytest.raises(ValueError, match="unknown hook.*on_epoch_ending"):
        LambdaCallback(on_epoch_ending=lambda run: None)
    assert PhaseMetrics(lambda e, n, m: {"x": 1.0}, phases={"kd"}).on_phase_end(
        type("R", (), {"name": "baseline", "context": None, "model": None})()) is None


class StepCounter(Callback):
    """State of its own (a per-phase step count and a tensor), checked after resume."""

    def __init__(self):
        self.count, self.total = 0, torch.zeros(())

    def on_train_batch_end(self, run):
        self.count += 1
        self.total += run.step

    def state_dict(self):
        return {"count": self.count, "total": self.total.clone()}

    def load_state_dict(self, state):
        self.count, self.total = int(state["count"]), state["total"].clone()


class Interrupt(BaseException):
    """The process dying mid-run (not an Exception: the experiment does not catch it)."""


def test_a_callbacks_own_state_survives_resume(tmp_path):
    """A callback's state_dict goes into the resume checkpoint and comes back through
    load_state_dict: the resumed run ends with the counts an uninterrupted run ends with, though
    the phases loaded from checkpoints are not trained (and not counted) again."""
    spec = tiny_spec("counted", student_epochs=3)
    full_counter = StepCounter()
    full = Experiment(spec, callbacks=[full_counter]).run()
    assert full.status == "finished" and full_counter.count > 0

    def die(run):
        if (run.name, run.epoch + 1) == ("kd", 2):
            raise Interrupt()

    exp = Experiment(spec, callbacks=[StepCounter(), LambdaCallback(on_epoch_end=die), RunRecorder(tmp_path)])
    with pytest.raises(Interrupt):
        exp.run()
    counter = StepCounter()
    res = prepare_resume(exp.run_id, tmp_path, callbacks=[counter]).run()
    assert res.status == "finished", res.message
    assert (counter.count, float(counter.total)) == (full_counter.count, float(full_counter.total))
    assert accuracies(res.to_dict()) == accuracies(full.to_dict())


def test_the_experiment_writes_nothing_without_the_run_store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KDLAB_RUNS_DIR", str(tmp_path / "runs"))
    exp = Experiment(tiny_spec("nowrite", student_epochs=1))
    assert exp.run().status == "finished" and exp.run_dir is None and exp.run_id is None
    assert os.listdir(tmp_path) == []


def test_a_raising_on_run_end_still_lets_the_store_write_the_result(tmp_path):
    import json

    boom = LambdaCallback(on_run_end=lambda exp, result: (_ for _ in ()).throw(RuntimeError("observer broke")))
    store = RunRecorder(tmp_path)
    exp = Experiment(tiny_spec("end-raises", student_epochs=1), callbacks=[boom, store])
    with pytest.raises(RuntimeError, match="observer broke"):
        exp.run()
    assert json.loads((store.run_dir / "result.json").read_text())["status"] == "finished"


def test_two_callbacks_of_one_class_keep_their_own_checkpoint_state():
    from kdcore.store.resume import _callback_prefixes

    a, b = StepCounter(), StepCounter()
    run = type("R", (), {"callbacks": [a, Callback(), b]})()
    assert [p for _, p in _callback_prefixes(run)] == ["callback.StepCounter.", "callback.Callback.",
                                                      "callback.StepCounter#1."]
