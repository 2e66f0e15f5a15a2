"""The Python API: ``from kdcore import run, load_run``.

>>> from kdcore import run, load_run
>>> result = run("digits-av", train__student_epochs=2)   # a preset name, a YAML path or an ExperimentSpec
>>> model = load_run(result).student("kd")               # the trained KD student, eval mode

Overrides are any spec field, as keyword arguments with ``__`` between the sections
(``train__student_epochs=2``, ``distill__temperature=4``, ``distill__losses__kd__weight=0.5``) or as
a dict of dotted keys (``run("digits-av", {"train.lr": 0.003})``); they are checked exactly like
``python -m kdcore run --set key=value`` (an unknown key raises :class:`kdcore.core.spec.SpecError`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping


class RunError(ValueError):
    """A run cannot be found or read (unknown id, not a run folder, unknown phase)."""


def _assignment(key: str, value: Any) -> str:
    if isinstance(value, str):
        return f"{key}={value}"
    return f"{key}={json.dumps(value)}"  # JSON is YAML: numbers, booleans, null, lists, mappings


def build_spec(preset: Any = "digits-av", overrides: Mapping[str, Any] | list[str] | None = None,
               **kw_overrides: Any):
    """An :class:`~kdcore.core.spec.ExperimentSpec` from a preset name / YAML path / spec and overrides."""
    from kdcore.core.spec import ExperimentSpec
    from kdcore.presets import PRESETS, load_preset

    if isinstance(preset, ExperimentSpec):
        spec = preset
    elif isinstance(preset, (str, Path)) and str(preset) in PRESETS:
        spec = load_preset(str(preset))
    elif isinstance(preset, (str, Path)) and Path(preset).suffix.lower() in (".yaml", ".yml"):
        spec = ExperimentSpec.load(preset)
    else:
        spec = load_preset(str(preset))  # raises PresetError naming the presets
    items: list[str] = []
    if isinstance(overrides, (list, tuple)):
        items += [str(x) for x in overrides]
    elif overrides:
        items += [_assignment(k, v) for k, v in overrides.items()]
    items += [_assignment(k.replace("__", "."), v) for k, v in kw_overrides.items()]
    return spec.with_overrides(items) if items else spec


def run(preset: Any = "digits-av", overrides: Mapping[str, Any] | list[str] | None = None, *,
        runs_dir: str | Path | None = None, save: bool = True, progress: bool = False, **kw_overrides: Any):
    """Run an experiment (teacher → baseline → KD student …) and return its
    :class:`~kdcore.pipeline.experiment.ExperimentResult` (``.status``, ``.phases``, ``.kd_gain``,
    ``.run_dir``). With ``save`` (default) the run folder goes to ``runs_dir`` (default
    ``$KDLAB_RUNS_DIR`` or ``runs``) and shows up in the app and ``python -m kdcore runs``."""
    import torch

    from kdcore.pipeline.experiment import Experiment
    from kdcore.store.recorder import RunRecorder
    from kdcore.store.registry import default_root

    spec = build_spec(preset, overrides, **kw_overrides)
    if spec.train.threads:
        torch.set_num_threads(spec.train.threads)
    subs = []
    if progress:
        from kdcore.pipeline.report import ProgressPrinter

        subs.append(ProgressPrinter())
    store = [RunRecorder(Path(runs_dir) if runs_dir else default_root())] if save else []
    exp = Experiment(spec, subs, callbacks=store)
    return exp.run()


def resolve_run_dir(key: Any, runs_dir: str | Path | None = None) -> Path:
    """A run folder from a path, an :class:`ExperimentResult`, or a run id / unique prefix / name in
    the registry of ``runs_dir`` (default ``$KDLAB_RUNS_DIR`` or ``runs``)."""
    from kdcore.store.registry import DB_NAME, RunNotFound, default_root, open_registry

    if hasattr(key, "run_dir") and not isinstance(key, (str, Path)):
        if not key.run_dir:
            raise RunError("this result has no run folder (it was run with save=False)")
        key = key.run_dir
    p = Path(str(key))
    if (p / "spec.yaml").is_file():
        return p
    root = Path(runs_dir) if runs_dir else default_root()
    if not (root / DB_NAME).is_file():
        raise RunError(f"no run {str(key)!r}: not a run folder, and no registry in {root}")
    try:
        rec = open_registry(root).resolve(str(key))
    except RunNotFound as exc:
        raise RunError(str(exc)) from None
    run_dir = Path(rec.run_dir)
    if not (run_dir / "spec.yaml").is_file():
        raise RunError(f"the folder of run {rec.id} is missing or has no spec.yaml: {run_dir}")
    return run_dir


class Run:
    """A stored run: its spec, result and trained models (loaded on first use, from safetensors)."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.id = self.run_dir.name
        self._spec = None
        self._data = None
        self._models: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"Run({self.id!r}, phases={self.phases})"

    @property
    def spec(self):
        if self._spec is None:
            from kdcore.core.spec import ExperimentSpec, SpecError

            try:
                self._spec = ExperimentSpec.load(self.run_dir / "spec.yaml")
            except SpecError as exc:
                raise RunError(f"{self.run_dir / 'spec.yaml'}: {exc}") from None
        return self._spec

    @property
    def data(self):
        """The run's data (:class:`~kdcore.data.TensorData`: ``.split("test")``, ``.inputs``, ``.labels``)."""
        if self._data is None:
            from kdcore.data import load_data

            self._data = load_data(self.spec.data)
        return self._data

    @property
    def result(self) -> dict[str, Any] | None:
        p = self.run_dir / "result.json"
        try:
            return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else None
        except json.JSONDecodeError:
            return None

    @property
    def phases(self) -> list[str]:
        """Phases with a checkpoint (finished phases)."""
        from kdcore.export.onnx_export import available_phases

        return available_phases(self.run_dir)

    def modalities(self, phase: str) -> list[str]:
        return self.spec.teacher_modalities() if phase == "teacher" else self.spec.student_modalities()

    def model(self, phase: str):
        """The model of ``phase`` with its best-on-validation weights, on the CPU, in eval mode
        (``model({"image": x, ...}).logits``)."""
        if phase not in self._models:
            if phase not in self.phases:
                raise RunError(f"unknown phase {phase!r} for run {self.id}: it has checkpoints for "
                               f"{', '.join(self.phases) or 'no phase'}")
            from kdcore.models import build_model
            from kdcore.models.checkpoints import CheckpointError, load_into

            mspec = self.spec.teacher if phase == "teacher" else self.spec.student
            net = build_model(mspec, self.modalities(phase), self.data)
            try:
                load_into(net, self.run_dir / "checkpoints" / f"{phase}.safetensors")
            except CheckpointError as exc:
                raise RunError(str(exc)) from None
            self._models[phase] = net.eval()
        return self._models[phase]

    def student(self, phase: str = "kd"):
        return self.model(phase)

    def teacher(self):
        return self.model("teacher")

    def inputs(self, split: str = "test", n: int | None = None, phase: str = "kd") -> dict[str, Any]:
        """The first ``n`` samples (default all) of ``split`` as the model of ``phase`` takes them."""
        import torch

        s = self.data.split(split)
        rows = torch.arange(len(s) if n is None else min(n, len(s)))
        return dict(s.batch(rows, self.modalities(phase)).inputs)

    def export_onnx(self, out_dir: str | Path, phases: list[str] | None = None, **kw) -> dict[str, Any]:
        from kdcore.export.onnx_export import export_onnx

        return export_onnx(self.run_dir, out_dir, phases, **kw)

    def export_tensorboard(self, logdir: str | Path) -> Path:
        from kdcore.export.tensorboard_replay import write_from_metrics

        out = Path(logdir) / self.id
        write_from_metrics(self.run_dir, out)
        return out


def load_run(key: Any, runs_dir: str | Path | None = None) -> Run:
    """A stored run by folder path, :class:`ExperimentResult`, or registry id / prefix / name."""
    return Run(resolve_run_dir(key, runs_dir))
