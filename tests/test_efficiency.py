"""Efficiency report: FLOPs against a hand count, safetensors size against the file on disk, the
result keys every run carries, and the CLI's efficiency columns."""

import math

import pytest
import torch
from torch import nn

from kdcore.train.efficiency import (EFFICIENCY_KEYS, count_flops, latency_ms, measure_model, relative,
                                      size_on_disk)


class Lin(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(10, 3)

    def forward(self, inputs):
        return self.fc(inputs["x"])


def test_flops_per_sample_of_a_linear_layer():
    # 2 FLOPs per multiply-add: 2 · 10 · 3 per sample (the bias add is not counted)
    assert count_flops(Lin(), {"x": torch.randn(8, 10)}) == 2 * 10 * 3


def test_flops_of_a_convolution():
    conv = nn.Conv2d(1, 4, 3, padding=1, bias=False)
    net = lambda inputs: conv(inputs["x"])  # noqa: E731
    # every output pixel: 4 channels · 9 multiply-adds → 2 · 4 · 9 · 8 · 8 per sample
    assert count_flops(net, {"x": torch.randn(2, 1, 8, 8)}) == 2 * 4 * 9 * 64


def test_size_on_disk_is_the_safetensors_file(tmp_path):
    from safetensors.torch import save_file

    m = Lin()
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, tmp_path / "m.safetensors")
    assert size_on_disk(m) == (tmp_path / "m.safetensors").stat().st_size


def test_latency_is_positive_and_restores_threads():
    threads = torch.get_num_threads()
    ms = latency_ms(Lin(), {"x": torch.randn(1, 10)}, repeats=3)
    assert ms > 0 and torch.get_num_threads() == threads


def test_relative_compression_and_speedup():
    t = {"params": 1000.0, "latency_ms_b1": 4.0, "latency_ms_b64": 1.0}
    s = {"params": 100.0, "latency_ms_b1": 2.0, "latency_ms_b64": 0.25}
    assert relative(s, t) == {"compression": 10.0, "speedup_b1": 2.0, "speedup_b64": 4.0}
    assert relative(t, t) == {"compression": 1.0, "speedup_b1": 1.0, "speedup_b64": 1.0}


@pytest.fixture(scope="module")
def result():
    from kdcore.pipeline.experiment import Experiment
    from kdcore.presets import load_preset

    spec = load_preset("digits-av").with_overrides([
        "train.teacher_epochs=1", "train.student_epochs=1", "train.batch_size=128", "data.train_limit=200"])
    res = Experiment(spec).run()
    assert res.status == "finished", res.message
    return res.to_dict()


def test_every_phase_reports_efficiency(result):
    phases = result["phases"]
    for name in ("teacher", "baseline", "kd"):
        for k in EFFICIENCY_KEYS:
            assert isinstance(phases[name][k], float) and math.isfinite(phases[name][k]), (name, k)
    t, s = phases["teacher"], phases["kd"]
    assert t["compression"] == 1.0 and t["speedup_b1"] == 1.0
    assert s["compression"] == pytest.approx(t["params"] / s["params"])
    assert s["flops"] < t["flops"] and s["size_bytes"] < t["size_bytes"]
    # baseline and KD students share an architecture: measured once, identical numbers
    assert {k: phases["baseline"][k] for k in EFFICIENCY_KEYS} == {k: s[k] for k in EFFICIENCY_KEYS}


def test_measure_model_matches_the_parts():
    from kdcore.data import load_data
    from kdcore.models import build_model
    from kdcore.presets import load_preset

    spec = load_preset("digits-av").with_overrides(["data.train_limit=100"])
    data = load_data(spec.data)
    student = build_model(spec.student, spec.student_modalities(), data)
    m = measure_model(student, data, spec.student_modalities(), repeats_b1=2, repeats_b64=1)
    assert m["params"] == sum(p.numel() for p in student.parameters())
    assert m["size_bytes"] == size_on_disk(student)
    assert m["flops"] > 0 and m["latency_ms_b1"] > 0 and m["latency_ms_b64"] > 0


def test_cli_table_shows_efficiency_columns(result):
    from kdcore.cli import result_table

    text = result_table(result)
    assert "MFLOPs" in text and "compr." in text and "speed-up" in text
    kd_line = next(line for line in text.splitlines() if line.startswith("kd ") and "×" in line)
    assert f"{result['phases']['kd']['compression']:.1f}×" in kd_line
