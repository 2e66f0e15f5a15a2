"""Load what inspection needs from a run folder (finished, or still training) or a live job.

A run folder holds ``spec.yaml``, ``metrics.jsonl`` (every event, including the per-epoch
``AttentionSnapshot`` and ``AttributionSnapshot``) and ``checkpoints/<phase>.safetensors``
(best-on-validation weights, written when a phase ends). Models are rebuilt from the spec with
``build_model`` and filled with ``load_into``; data are rebuilt with ``load_data(spec.data)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from kdcore.data import TensorData, load_data
from kdcore.models import build_model
from kdcore.core.spec import ExperimentSpec, SpecError
from kdcore.models.checkpoints import CheckpointError, load_into
from kdcore.store.folder import read_events

PHASE_ORDER = ("teacher", "baseline", "kd")


class RunError(ValueError):
    """A run folder cannot be inspected; the message says why."""


@dataclass
class LoadedRun:
    run_dir: Path | None
    spec: ExperimentSpec
    data: TensorData
    models: dict[str, nn.Module]  # phase -> model with its best checkpoint (finished phases only)
    events: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def modalities(self, phase: str) -> list[str]:
        return self.spec.teacher_modalities() if phase == "teacher" else self.spec.student_modalities()

    def students(self) -> list[str]:
        return [p for p in self.models if p != "teacher"]


def phase_spec(spec: ExperimentSpec, phase: str):
    return spec.teacher if phase == "teacher" else spec.student


def list_runs(root: str | Path) -> list[Path]:
    """Run folders under ``root`` (those with a spec.yaml), newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir() if p.is_dir() and (p / "spec.yaml").is_file()]
    return sorted(runs, key=lambda p: p.name, reverse=True)


def checkpoint_key(run_dir: str | Path | None) -> tuple:
    """Names and modification times of a run folder's checkpoints (changes when a phase ends)."""
    if run_dir is None or not (Path(run_dir) / "checkpoints").is_dir():
        return ()
    ck = Path(run_dir) / "checkpoints"
    files = [*ck.glob("*.safetensors"), *ck.glob("*.lgb.txt")]  # .lgb.txt: tree students
    return tuple(sorted((p.name, p.stat().st_mtime_ns) for p in files if p.stem != "resume"))


def load_models(spec: ExperimentSpec, data: TensorData,
                run_dir: Path | None) -> tuple[dict[str, nn.Module], list[str]]:
    models: dict[str, nn.Module] = {}
    notes: list[str] = []
    ck_dir = run_dir / "checkpoints" if run_dir is not None else None
    allowed = {*PHASE_ORDER, *spec.distill.extra_phases}  # not resume.safetensors and other files
    files = ({p.stem: p for p in ck_dir.glob("*.safetensors") if p.stem in allowed}
             if ck_dir is not None and ck_dir.is_dir() else {})
    if "teacher" not in files and spec.teacher.checkpoint:
        files["teacher"] = Path(spec.teacher.checkpoint)
    order = [p for p in PHASE_ORDER if p in files] + sorted(p for p in files if p not in PHASE_ORDER)
    for phase in order:
        net = build_model(phase_spec(spec, phase), (spec.teacher_modalities() if phase == "teacher"
                                                      else spec.student_modalities()), data)
        try:
            load_into(net, files[phase])
        except CheckpointError as exc:
            notes.append(f"{phase}: {exc}")
            continue
        net.eval()
        models[phase] = net
    if getattr(spec.student, "kind", "neural") == "tree" and ck_dir is not None:  # LightGBM text checkpoints
        from kdcore.models.tree import TreeCheckpointError, TreeStudent, has_tree_checkpoint

        for phase in ("baseline", "kd"):
            if has_tree_checkpoint(ck_dir, phase):
                try:
                    models[phase] = TreeStudent.load(ck_dir, phase)
                except TreeCheckpointError as exc:
                    notes.append(f"{phase}: {exc}")
    return models, notes


def load_run(run_dir: str | Path) -> LoadedRun:
    """Spec, data, events and the finished phases' models of a run folder."""
    run_dir = Path(run_dir)
    if not (run_dir / "spec.yaml").is_file():
        raise RunError(f"{run_dir} is not a run folder (no spec.yaml)")
    try:
        spec = ExperimentSpec.load(run_dir / "spec.yaml")
    except SpecError as exc:
        raise RunError(f"{run_dir / 'spec.yaml'}: {exc}") from None
    data = load_data(spec.data)
    models, notes = load_models(spec, data, run_dir)
    return LoadedRun(run_dir, spec, data, models, read_events(run_dir), notes)


def from_job(job) -> LoadedRun:
    """A live or ended :class:`~kdcore.service.jobs.Job`: its events from the snapshot, its models
    from the job once it ended, else from the checkpoints its run folder has so far."""
    snap = job.snapshot()
    events = sorted((e for evs in snap.events.values() for e in evs), key=lambda e: e.get("t", 0.0))
    data = load_data(snap.spec.data)
    run_dir = Path(snap.run_dir) if snap.run_dir else None
    models = {k: v for k, v in job.models.items() if k != "teacher" or v is not None}
    notes: list[str] = []
    if not models:
        models, notes = load_models(snap.spec, data, run_dir)
    return LoadedRun(run_dir, snap.spec, data, models, events, notes)
