"""The run store of a saved grid sweep: ``run_grid(..., store=SweepRunStore(root))``.

Every grid point × seed experiment of the sweep gets a :class:`~kdcore.store.recorder.RunRecorder`
under ``root`` — a run folder and a registry row, as a run started on its own — so the Compare page
can open the runs of a grid point (``kdcore.pipeline.grid``, "Saving"). A cached row of the sweep
counts as done only while its run is in the registry, finished, with its ``result.json``.
"""

from __future__ import annotations

from pathlib import Path

from kdcore.core.status import RunStatus
from kdcore.store.recorder import RunRecorder
from kdcore.store.registry import Registry, open_registry
from kdcore.train.callbacks import Callback


class SweepRunStore:
    """Stores the experiments of a sweep under ``root`` (see the module docstring); implements
    :class:`kdcore.pipeline.grid.RunStore`."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._registry: Registry | None = None

    def callbacks(self) -> list[Callback]:
        """A fresh run store for one more experiment."""
        return [RunRecorder(self.root)]

    def has_run(self, run_id: str) -> bool:
        """Whether run ``run_id`` is in the registry, finished, with its result and its folder."""
        if self._registry is None:
            self._registry = open_registry(self.root)
        rec = self._registry.find(run_id)
        return (rec is not None and rec.status == RunStatus.FINISHED and bool(rec.result)
                and (Path(rec.run_dir) / "result.json").is_file())

    def __repr__(self) -> str:
        return f"SweepRunStore({str(self.root)!r})"
