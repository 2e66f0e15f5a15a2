"""The run store attached to an experiment by its caller: one :class:`RunRecorder` callback.

``Experiment(spec, callbacks=[RunRecorder(root)])`` gives the run a folder under ``root``
(``spec.yaml``, ``metrics.jsonl``, ``run.log``, ``checkpoints/``, ``result.json``), a row in the
SQLite registry kept in step with its events, a resumable checkpoint after every epoch and the best
weights of every finished phase — also of a phase the experiment adopted from another one (a sweep's
shared teacher and baseline, ``experiment.adopted``), stored when the run ends, so the folder holds
every phase its result reports. ``RunRecorder(root, resume=run_dir)`` continues a stored run:
finished phases are loaded instead of retrained (:meth:`load_phase`), the interrupted one goes on
from its last epoch checkpoint (:meth:`on_phase_start`). The experiment itself writes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kdcore.models.checkpoints import save_state
from kdcore.models.tree import TreeStudent, has_tree_checkpoint
from kdcore.store import resume as resume_store
from kdcore.store.folder import RunFolderWriter, new_run_dir
from kdcore.store.registry import append_log, set_run_result, track_run
from kdcore.train.callbacks import Callback


class RunRecorder(Callback):
    """Stores one run; see the module docstring. Runs after every other callback (``order`` 100),
    so an epoch's checkpoint holds what the others did in that epoch."""

    order = 100

    def __init__(self, root: str | Path, resume: str | Path | None = None):
        self.root = Path(root)
        self.run_dir: Path | None = Path(resume) if resume is not None else None
        self.resumer = resume_store.Resumer(self.run_dir) if resume is not None else None
        self.run_id: str | None = None
        self._writer: RunFolderWriter | None = None
        self._loaded: set[str] = set()

    def run_location(self) -> Path | None:
        return self.run_dir

    # ---- the run -------------------------------------------------------------------------
    def on_run_start(self, experiment: Any) -> None:
        if self.run_dir is None:  # (a resumed run keeps its folder)
            self.run_dir = new_run_dir(self.root, experiment.spec.name)
            experiment.spec.save(self.run_dir / "spec.yaml")
        self._writer = RunFolderWriter(self.run_dir)
        experiment.subscribe(self._writer)
        self.run_id = track_run(self.run_dir, experiment.spec, experiment.subscribe)  # registry row + run.log

    def on_run_end(self, experiment: Any, result: Any) -> None:
        if self.run_dir is None:
            return
        if experiment.error_traceback:
            (self.run_dir / "error.log").write_text(experiment.error_traceback, encoding="utf-8")
        try:
            self._store_adopted(experiment)
        except Exception as exc:  # noqa: BLE001 - the run's own result must still be written
            append_log(self.run_dir, f"could not store the weights of the adopted phases: {type(exc).__name__}: {exc}")
        data = result.to_dict()
        (self.run_dir / "result.json").write_text(json.dumps(data, indent=2))
        if self._writer is not None:
            self._writer.close()
        if self.run_id is not None:
            set_run_result(self.run_id, self.run_dir, data)

    def _store_adopted(self, experiment: Any) -> None:
        """The best weights of every phase the run took from another run (``experiment.adopted``) into
        this run's ``checkpoints/``, with the phase's result; without an RNG state (it is not this run's).
        A phase with no weights of its own (the ensemble) is skipped."""
        ck = self.run_dir / "checkpoints"
        for name, source in getattr(experiment, "adopted", {}).items():
            res, model = experiment.results.get(name), experiment.models.get(name)
            if res is None:
                continue
            saved = True
            if isinstance(model, TreeStudent):
                model.info.setdefault("result", resume_store.result_record(res))
                model.save(ck, name)
            elif res.best_state:
                meta = {k: v for k, v in resume_store.phase_metadata(res).items() if k != "rng_torch"}
                save_state(res.best_state, ck / f"{name}.safetensors", meta)
            else:
                saved = False
            append_log(self.run_dir, f"phase {name}: adopted from run {source or '(not stored)'}, which trained it "
                                     "(shared by the grid points of a sweep seed)"
                                     + ("; its weights are stored here too" if saved else ""))

    # ---- phases --------------------------------------------------------------------------
    def load_phase(self, run):
        if self.resumer is None:
            return None
        if has_tree_checkpoint(self.run_dir / "checkpoints", run.name):  # a finished tree student
            return self._load_tree(run)
        res = self.resumer.finished(run)
        if res is not None:
            self._loaded.add(run.name)
        return res

    def on_phase_start(self, run) -> None:
        if self.resumer is not None:
            self.resumer.restore(run)

    def on_epoch_end(self, run) -> None:
        resume_store.save_epoch(run, self.run_dir)

    def _load_tree(self, run):
        model = TreeStudent.load(self.run_dir / "checkpoints", run.name)
        r = model.info.get("result")
        if not r:
            return None
        run.model = model
        self._loaded.add(run.name)
        self.resumer.loaded.append(run.name)
        return resume_store.result_from_record(run.name, r, {})

    def on_phase_end(self, run) -> None:
        if run.name in self._loaded:
            self.resumer.restore_rng(run.name)  # the RNG as it was when this phase ended
        elif isinstance(run.model, TreeStudent) and run.result is not None:  # LightGBM text + JSON, no pickle
            run.model.info["result"] = resume_store.result_record(run.result)
            run.model.save(self.run_dir / "checkpoints", run.name)
        elif run.result is not None and run.cfg is not None:
            save_state(run.result.best_state, self.run_dir / "checkpoints" / f"{run.name}.safetensors",
                       resume_store.phase_metadata(run.result))
        return None

    @property
    def loaded(self) -> list[str]:
        """The phases a resume loaded from their checkpoints, in order."""
        return list(self.resumer.loaded) if self.resumer is not None else []

    def __repr__(self) -> str:
        return f"RunRecorder({str(self.run_dir or self.root)!r})"

