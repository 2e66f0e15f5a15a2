"""Saved sweeps (issue #13: a sweep point opens on Compare): with a run store every grid point × seed
is a stored run with a complete result, its row names the run; stacked students stay stacked while
saved; a stop in a stacked group leaves no run "running"; cached rows without a stored run train
again; without a store nothing but the cache is written; ``sweep --save`` on the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kdcore.pipeline.grid import point_label, point_run_name, run_grid
from kdcore.presets import load_preset
from kdcore.store.registry import open_registry
from kdcore.store.sweep_store import SweepRunStore
from kdcore.train.callbacks import Callback

MICRO = ["name=micro-sweep", "data.train_limit=60", "train.teacher_epochs=1", "train.student_epochs=1",
         "train.batch_size=32", "train.probe_samples=16", "train.threads=1"]
AXES = {"distill.temperature": [1.0, 4.0]}


def micro():
    return load_preset("mfh-gamma").with_overrides(MICRO)


def stored(root: Path, run_id: str) -> tuple[dict, dict, Path]:
    """(registry row as a dict, result.json, run folder) of a stored run."""
    rec = open_registry(root).get(run_id)
    folder = Path(rec.run_dir)
    return rec.to_dict(), json.loads((folder / "result.json").read_text(encoding="utf-8")), folder


def events(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]


def test_point_names():
    assert point_label({"distill.temperature": 2.0}) == "temperature=2"
    assert point_label({"distill.losses.kd.weight": 0.5, "student.encoder.width": 8}) == "kd.weight=0.5, width=8"
    assert point_label({"teacher.encoder.width": 4, "student.encoder.width": 8}) == \
        "teacher.encoder.width=4, student.encoder.width=8"
    assert point_run_name("multiview-kd", {"distill.temperature": 2}, 1) == "multiview-kd · temperature=2 · seed 1"
    long = point_run_name("x" * 90, {"distill.temperature": 2}, 3)
    assert len(long) <= 80 and long.endswith("· temperature=2 · seed 3")


def test_saved_stacked_sweep_rows_name_complete_runs_and_stay_stacked(tmp_path):
    root = tmp_path / "runs"
    grid = run_grid(micro(), AXES, seeds=2, cache_root=root, store=SweepRunStore(root), stack=True)
    # still stacked: the two seeds' teachers in one stack, their baselines and KD students in another
    assert any("teachers: stacked: 2 students (teacher, teacher)" in n for n in grid.stacked), grid.stacked
    assert any("students: stacked: 6 students (baseline ×2, kd ×4)" in n for n in grid.stacked), grid.stacked
    assert grid.trained == 4 and len({r["run_id"] for r in grid.rows}) == 4
    plain = run_grid(micro(), AXES, seeds=2, stack=True)  # the same sweep unsaved: the same numbers
    for row, other in zip(grid.rows, plain.rows):
        assert (row["point"], row["seed"]) == (other["point"], other["seed"]) and "run_id" not in other
        assert row["acc"] == pytest.approx(other["acc"], abs=1e-9)
    leads = {r["seed"]: r["run_id"] for r in grid.rows if not r["shared"]}
    for row in grid.rows:
        rec, result, folder = stored(root, row["run_id"])
        assert rec["status"] == "finished" and rec["result"]["phases"].keys() == result["phases"].keys()
        assert set(result["phases"]) == {"teacher", "baseline", "kd"} and result["status"] == "finished"
        for phase, acc in result["phases"].items():
            assert acc["test_acc"] == pytest.approx(row["acc"][phase], abs=1e-12), phase
            assert (folder / "checkpoints" / f"{phase}.safetensors").is_file(), phase  # every phase it reports
        spec = yaml.safe_load((folder / "spec.yaml").read_text(encoding="utf-8"))
        t = row["point"]["distill.temperature"]
        assert spec["name"] == f"micro-sweep · temperature={t:g} · seed {row['seed']}" == rec["name"]
        assert spec["data"]["seed"] == row["seed"] and spec["distill"]["temperature"] == t
        assert "Grid point temperature=" in spec["description"] and Path(grid.cache_file).stem in spec["description"]
        kd_start = next(e for e in events(folder) if e["kind"] == "PhaseStarted" and e["phase"] == "kd")
        assert kd_start["stacked"].startswith("stacked: 6 students"), kd_start  # trained in the stack
        if row["shared"]:  # the seed's other point: teacher and baseline from the lead's run, said so
            assert row["shared_from"] == result["adopted"] == {"teacher": leads[row["seed"]],
                                                               "baseline": leads[row["seed"]]}
            lead_result = stored(root, leads[row["seed"]])[1]
            for phase in ("teacher", "baseline"):
                assert result["phases"][phase]["test_acc"] == lead_result["phases"][phase]["test_acc"]
        else:
            assert "adopted" not in result and row["shared_from"] == {}
    cache = json.loads(Path(grid.cache_file).read_text(encoding="utf-8"))
    assert sorted(r["run_id"] for r in cache.values()) == sorted(r["run_id"] for r in grid.rows)
    # again: every row from the cache, with the same runs; a row whose run is gone trains again
    again = run_grid(micro(), AXES, seeds=2, cache_root=root, store=SweepRunStore(root))
    assert again.trained == 0 and [r["run_id"] for r in again.rows] == [r["run_id"] for r in grid.rows]
    gone = open_registry(root).delete(leads[1])
    third = run_grid(micro(), AXES, seeds=2, cache_root=root, store=SweepRunStore(root))
    assert third.trained == 1  # (its new run may get the deleted folder's name, in the same second)
    retrained = next(r for r in third.rows if r["seed"] == 1 and not r["shared"])
    rec = open_registry(root).get(retrained["run_id"])
    assert rec.status == "finished" and rec.created > gone.created
    assert "Stored runs: 4 of 4 rows" in third.table()


def test_unsaved_sweep_writes_no_run_and_its_cache_is_retrained_when_saving(tmp_path):
    root = tmp_path / "runs"
    plain = run_grid(micro(), AXES, seeds=1, cache_root=root, stack=False)
    assert plain.trained == 2 and [p.name for p in root.iterdir()] == ["sweeps"]
    saved = run_grid(micro(), AXES, seeds=1, cache_root=root, store=SweepRunStore(root), stack=False)
    assert saved.trained == 2 and all(stored(root, r["run_id"])[0]["status"] == "finished" for r in saved.rows)
    shared = next(r for r in saved.rows if r["shared"])  # one at a time: adopted just the same
    assert set(stored(root, shared["run_id"])[1]["adopted"]) == {"teacher", "baseline"}


class _StopAfterTeacher(Callback):
    """Asks the sweep to stop once a teacher has trained: the stop lands in the stacked students."""

    def __init__(self, flag: list):
        self.flag = flag

    def on_phase_end(self, run):
        if run.name == "teacher":
            self.flag.append(True)


class _StoppingStore(SweepRunStore):
    def __init__(self, root, flag):
        super().__init__(root)
        self.flag = flag

    def callbacks(self):
        return [*super().callbacks(), _StopAfterTeacher(self.flag)]


def test_a_stop_inside_a_stacked_group_leaves_no_run_running(tmp_path):
    root, flag = tmp_path / "runs", []
    grid = run_grid(micro(), AXES, seeds=1, cache_root=root, store=_StoppingStore(root, flag),
                    should_stop=lambda: bool(flag), stack=True)
    assert flag and grid.rows == [] and grid.trained == 0
    recs = open_registry(root).list()
    assert len(recs) == 2 and {r.status for r in recs} == {"stopped"}  # both points of the group began
    for rec in recs:
        result = json.loads((Path(rec.run_dir) / "result.json").read_text(encoding="utf-8"))
        assert result["status"] == "stopped" and "teacher" in result["phases"]
    done = run_grid(micro(), AXES, seeds=1, cache_root=root, store=SweepRunStore(root), stack=True)
    assert done.trained == 2 and all(stored(root, r["run_id"])[0]["status"] == "finished" for r in done.rows)


def test_cli_sweep_save(tmp_path, capsys):
    from kdcore.cli.main import main

    root = tmp_path / "runs"
    args = ["sweep", "--preset", "mfh-gamma", *[a for s in MICRO for a in ("--set", s)], "--seeds", "1",
            "--vary", "distill.temperature=1,4", "--runs-dir", str(root)]
    assert main([*args, "--save", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    ids = [r["run_id"] for r in out["rows"]]
    assert len(ids) == 2 and all(open_registry(root).get(i).status == "finished" for i in ids)
    assert main(["sweep", "--preset", "mfh-gamma", "--save"]) == 2  # --save needs a grid
    assert "--save" in capsys.readouterr().err


def test_saved_tree_sweep_stores_the_adopted_tree_baseline(tmp_path):
    """Tree students (never stacked): the point that shares the baseline keeps its trees too."""
    from kdcore.models.tree import has_tree_checkpoint
    from test_tree_student import tiny_tree_spec

    root = tmp_path / "runs"
    spec = tiny_tree_spec()
    grid = run_grid(spec, {"distill.temperature": [float(spec.distill.temperature), 1.0]}, 1, cache_root=root,
                    store=SweepRunStore(root))
    shared = next(r for r in grid.rows if r["shared"])
    rec, result, folder = stored(root, shared["run_id"])
    assert rec["status"] == "finished" and "baseline" in result["adopted"]
    assert has_tree_checkpoint(folder / "checkpoints", "baseline") and has_tree_checkpoint(folder / "checkpoints", "kd")
    assert result["phases"]["baseline"]["test_acc"] == shared["acc"]["baseline"]
