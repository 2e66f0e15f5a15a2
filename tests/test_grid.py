"""Grid sweeps: sharing is exact, cached rows are reused, bad --vary gives one clear line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kdcore.pipeline.experiment import Experiment
from kdcore.pipeline.grid import parse_vary, point_spec, run_grid, shared_phases
from kdcore.presets import load_preset
from kdcore.core.spec import SpecError

FAST = ["train.teacher_epochs=3", "train.student_epochs=3", "train.threads=1"]


def base():
    return load_preset("mfh-gamma").with_overrides(FAST)


def test_shared_phases_by_field():
    assert shared_phases(["distill.temperature"]) == ("teacher", "baseline")
    assert shared_phases(["distill.losses.kd.weight", "distill.temperature"]) == ("teacher", "baseline")
    assert shared_phases(["student.encoder.width"]) == ("teacher",)
    assert shared_phases(["data.regime.labelled_fraction"]) == ("teacher",)
    assert shared_phases(["data.noise.gamma"]) == ()
    assert shared_phases(["data.regime.teacher_label_noise"]) == ()


def test_shared_rows_equal_full_runs_and_cache_resumes(tmp_path):
    axes = {"distill.temperature": [2.0, 8.0]}
    grid = run_grid(base(), axes, seeds=2, cache_root=tmp_path, stack=False)
    assert grid.trained == 4 and grid.shared == ("teacher", "baseline")
    shared_rows = [r for r in grid.rows if r["shared"]]
    assert len(shared_rows) == 2 and all(r["point"]["distill.temperature"] == 8.0 for r in shared_rows)
    # the shared row equals a full, independent run of the same spec
    full = Experiment(point_spec(base(), {"distill.temperature": 8.0}, 1)).run()
    row = next(r for r in shared_rows if r["seed"] == 1)
    for phase in ("teacher", "baseline", "kd"):
        assert row["acc"][phase] == pytest.approx(full.phases[phase]["test_acc"], abs=1e-9), phase
    again = run_grid(base(), axes, seeds=3, cache_root=tmp_path)  # fills only the missing seed
    assert again.trained == 2 and len(again.rows) == 6
    summary = again.summary()
    assert [e["n"] for e in summary] == [3, 3] and summary[0]["verdict"] in (
        "KD helps", "KD hurts", "within noise")
    assert "Shared: teacher and baseline" in again.table()


def test_teacher_shared_when_only_the_student_changes(tmp_path):
    grid = run_grid(base(), {"student.encoder.width": [4, 8]}, seeds=1, cache_root=None)
    assert [r["shared"] for r in grid.rows] == [[], ["teacher"]]
    assert grid.rows[0]["acc"]["teacher"] == grid.rows[1]["acc"]["teacher"]


@pytest.mark.parametrize("items, msg", [
    (["distill.temperature"], "FIELD=v1,v2"),
    (["distill.temperature="], "give at least one value"),
    (["a=1", "b=2", "c=3"], "at most 2"),
    (["a=1", "a=2"], "varied twice"),
])
def test_parse_vary_errors(items, msg):
    with pytest.raises(SpecError, match=msg):
        parse_vary(items)


def test_parse_vary_values_with_brackets():
    assert parse_vary(["student.modalities=[view_s],[view_s]"]) == {"student.modalities": [["view_s"], ["view_s"]]}
    assert parse_vary(["distill.temperature=1,2.5"]) == {"distill.temperature": [1, 2.5]}


def test_cli_bad_vary_value_exit_2(tmp_path):
    out = subprocess.run([sys.executable, "-m", "kdcore", "sweep", "--preset", "mfh-gamma", "--seeds", "1",
                          "--vary", "data.noise.gamma=0,3"], capture_output=True, text=True, cwd=tmp_path,
                         env={**__import__("os").environ, "PYTHONPATH": str(__import__("pathlib").Path(__file__).resolve().parents[1])})
    assert out.returncode == 2, out.stderr
    assert "data.noise.gamma" in out.stderr and "Traceback" not in out.stderr
