"""`python -m kdcore bench`: correctness of what it compares (never its timings)."""

import json

import pytest

from kdcore.bench import BENCH_OVERRIDES, bench_table, run_bench
from kdcore.cli import main
from kdcore.presets import load_preset

TINY = [*BENCH_OVERRIDES, "train.teacher_epochs=1", "train.student_epochs=2", "data.train_limit=150"]


@pytest.fixture(scope="module")
def report():
    spec = load_preset("digits-av").with_overrides(TINY)
    return run_bench(spec, repeats=1, threads=1)


def test_engine_and_hand_written_loop_train_identically(report):
    # same initial weights, data order, dropout stream, optimiser and loss: the same accuracies
    assert report["same_accuracy"] == {"kd": True, "kd_cached": True, "student": True}
    assert report["val_acc"]["engine_kd"] == pytest.approx(report["val_acc"]["bare_kd"], abs=1e-6)


def test_report_has_every_variant_and_ratio(report):
    assert set(report["samples_per_s"]) == {"engine_kd", "bare_kd", "engine_kd_cached", "bare_kd_cached",
                                            "engine_student", "bare_student"}
    for v in report["samples_per_s"].values():
        assert v["wall"] > 0 and v["cpu"] > 0
    for key in ("engine_over_bare_kd", "engine_over_bare_kd_cached", "cached_kd_over_student_only"):
        assert report["ratios"][key]["wall"] > 0 and report["ratios"][key]["cpu"] > 0
        assert report["ratios"][key]["cpu_min"] > 0
    secs = report["cpu_seconds"]
    assert report["ratios"]["engine_over_bare_kd"]["cpu_min"] == pytest.approx(
        min(secs["engine_kd"]) / min(secs["bare_kd"]), rel=1e-3)
    assert report["teacher_cache"].startswith("on") and report["repeats"] == 1
    text = bench_table(report)
    assert "engine_over_bare_kd_cached" in text and "≤ 1.05" in text and "samples/s" in text
    assert "cpu min" in text and "fastest repeats" in text


def test_cli_bench_json(capsys):
    args = ["bench", "--json", "--repeats", "1", "--epochs", "1"]
    for s in TINY[1:]:
        if not s.startswith("train.student_epochs"):
            args += ["--set", s]
    assert main(args) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["epochs"] == 1 and "engine_over_bare_kd" in rep["ratios"]


def test_cli_bench_rejects_what_the_bare_loop_cannot_mirror(capsys):
    assert main(["bench", "--set", "train.optimizer=sgd", "--repeats", "1", "--epochs", "1",
                 "--set", "data.train_limit=100", "--set", "train.teacher_epochs=0"]) == 2
    assert "train.optimizer=adam" in capsys.readouterr().err
    assert main(["bench", "--repeats", "0"]) == 2


# ---- the fast path the trainer uses (kdcore/train/fastpath.py) --------------------------------
def test_batch_source_matches_split_batch():
    import torch

    from kdcore.data import load_data
    from kdcore.train.fastpath import BatchSource

    spec = load_preset("digits-av").with_overrides(["data.train_limit=100"])
    data = load_data(spec.data)
    tr = data.split("train")
    mods = spec.teacher_modalities()
    src = BatchSource(tr, mods, "cpu")
    rows = torch.tensor([7, 0, 3, 3, 42])
    got, want = src.batch(rows), tr.batch(rows, mods)
    for m in mods:
        assert torch.equal(got.inputs[m], want.inputs[m]) and got.inputs[m].is_contiguous()
    assert torch.equal(got.labels, want.labels) and got.rows is rows
    cl = BatchSource(tr, mods, "cpu", channels_last=True)
    assert cl.inputs["audio"].is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(cl.batch(rows).inputs["audio"], want.inputs["audio"])


def test_batch_size_advisor_stops_when_doubling_stops_paying():
    import torch

    from kdcore.train.fastpath import suggest_batch_size

    # a throughput curve that saturates at 256 rows (launch-bound below, compute-bound above)
    curve = {64: 1000.0, 128: 1900.0, 256: 3500.0, 512: 3600.0, 1024: 3650.0}
    adv = suggest_batch_size(None, torch.device("cpu"), start=64, limit=2048, measure=curve.__getitem__)
    assert adv["batch_size"] == 256 and [c["batch"] for c in adv["curve"]] == [64, 128, 256, 512]
    assert "gained <" in adv["reason"]
    adv = suggest_batch_size(None, torch.device("cpu"), start=64, limit=128, measure=curve.__getitem__)
    assert adv["batch_size"] == 128 and "limit" in adv["reason"]


def test_bf16_autocast_trains_on_cpu():
    import math

    from kdcore.pipeline.experiment import Experiment
    from kdcore.train.trainer import train_phase

    spec = load_preset("digits-av").with_overrides(["train.teacher_epochs=0", "train.student_epochs=1",
                                                    "data.train_limit=100", "train.precision=bf16"])
    exp = Experiment(spec)
    exp.setup()
    cfg = exp.student_phase("kd", spec.distill.losses)
    events = []
    res = train_phase(cfg, exp.data, spec.train, exp.device, events.append, lambda: False)
    steps = [e for e in events if e.kind == "StepLosses"]
    assert steps and all(math.isfinite(e.total) for e in steps) and 0.0 <= res.test_acc <= 1.0
