"""`kdcore sweep --backend ray`: a 2 × 2 grid on a local Ray instance gives the same numbers as the
in-process backend without stacking (CPU, one thread each, same seeds); the two backends share one cache; a clear
message when ray is missing."""

from __future__ import annotations

import sys

import pytest
import torch
from helpers_store import tiny_spec

from kdcore.core.spec import SpecError
from kdcore.pipeline.grid import run_grid
from kdcore.pipeline.ray_backend import RAY_MISSING, run_grid_ray

AXES = {"distill.temperature": [1.0, 4.0], "distill.losses.kd.weight": [0.5, 0.9]}


@pytest.mark.slow
def test_ray_grid_equals_the_in_process_grid(tmp_path):
    spec = tiny_spec("ray-grid", student_epochs=2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the Ray tasks train with one thread each: the same arithmetic
    try:
        local = run_grid(spec, AXES, 1, stack=False)  # one model at a time, as each Ray task trains
    finally:
        torch.set_num_threads(threads)
    remote = run_grid_ray(spec, AXES, 1, cache_root=tmp_path, threads=1)
    assert remote.trained == 4 and len(remote.rows) == 4
    want = {(tuple(sorted(r["point"].items())), r["seed"]): r["acc"] for r in local.rows}
    got = {(tuple(sorted(r["point"].items())), r["seed"]): r["acc"] for r in remote.rows}
    assert got == want
    assert [e["gain"] for e in remote.summary()] == [e["gain"] for e in local.summary()]
    # the cache is the in-process backend's format: a local rerun trains nothing
    again = run_grid(spec, AXES, 1, cache_root=tmp_path, stack=False)
    assert again.trained == 0 and len(again.rows) == 4


def test_missing_ray_names_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(SpecError, match="--backend ray needs the 'ray' package"):
        run_grid_ray(tiny_spec("no-ray"), AXES, 1)
    assert "requirements.txt" in RAY_MISSING


def test_cli_ray_backend_needs_a_grid(capsys):
    from kdcore.cli import main

    code = main(["sweep", "--preset", "digits-av", "--seeds", "1", "--backend", "ray"])
    assert code != 0
    assert "--backend ray: give at least one --vary" in capsys.readouterr().err
