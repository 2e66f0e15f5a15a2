"""Continue a stored run: check that it can be resumed, and build the :class:`Experiment` that picks
up its run folder (finished phases loaded, the interrupted one from its last epoch checkpoint).

Kept apart from :mod:`kdcore.store.resume` (the checkpoint format the experiment writes), so the
experiment imports the format without the format importing the experiment.
"""

from __future__ import annotations

from pathlib import Path

from kdcore.store.resume import RESUME_FILE, ResumeError, read_resume


def check_resumable(run_id: str, root: str | Path | None = None):
    """``(registry, record, spec)`` of a run that can be resumed, without claiming it.

    Raises :class:`ResumeError` with a clear message when it cannot (unknown id, wrong status,
    unusable spec, corrupt checkpoint)."""
    from kdcore.core.spec import ExperimentSpec, SpecError
    from kdcore.store.registry import RESUMABLE, RunNotFound, open_registry

    reg = open_registry(root)
    try:
        rec = reg.resolve(run_id)
    except RunNotFound as exc:
        raise ResumeError(str(exc)) from None
    if rec.status not in RESUMABLE:
        why = {"finished": "it already finished", "diverged": "it diverged: it would diverge again; "
               "start a new run with a lower train.lr", "queued": "it has not started yet",
               "running": "it is still running"}
        raise ResumeError(f"run {rec.id} cannot be resumed: {why.get(rec.status, rec.status)} "
                          f"(resumable: {', '.join(RESUMABLE)})")
    run_dir = Path(rec.run_dir)
    try:
        spec = ExperimentSpec.load(run_dir / "spec.yaml")
    except SpecError as exc:
        raise ResumeError(f"run {rec.id}: its spec.yaml is unusable: {exc}") from None
    # validate the checkpoint before anyone claims the run, so a corrupt file gives a clear error
    if (run_dir / "checkpoints" / RESUME_FILE).is_file():
        read_resume(run_dir / "checkpoints" / RESUME_FILE)
    return reg, rec, spec


def prepare_resume(run_id: str, root: str | Path | None = None, subscribers: list | None = None,
                   stop_event=None, callbacks: list | tuple = (), should_stop=None):
    """An :class:`Experiment` ready to continue run ``run_id`` (status set to running), with a
    :class:`~kdcore.store.recorder.RunRecorder` of its folder after ``callbacks``.

    The app's Resume button queues it as a job (``JobManager.submit_resume``), which calls this
    when the job starts. Raises :class:`ResumeError` with a clear message when it cannot."""
    from kdcore.pipeline.experiment import Experiment
    from kdcore.store.recorder import RunRecorder
    from kdcore.store.registry import RESUMABLE

    reg, rec, spec = check_resumable(run_id, root)
    if not reg.claim(rec.id, RESUMABLE):
        raise ResumeError(f"run {rec.id} is being resumed by another process")
    recorder = RunRecorder(reg.root, resume=rec.run_dir)
    return Experiment(spec, subscribers, callbacks=[*callbacks, recorder], stop_event=stop_event,
                      should_stop=should_stop)


def resume(run_id: str, root: str | Path | None = None, subscribers: list | None = None, stop_event=None):
    """Continue an interrupted, stopped or failed run from its last epoch checkpoint; returns the
    :class:`~kdcore.pipeline.experiment.ExperimentResult`."""
    return prepare_resume(run_id, root, subscribers, stop_event).run()


def loaded_phases(experiment) -> list[str]:
    """The phases a resumed ``experiment`` loaded from their checkpoints instead of retraining them."""
    from kdcore.store.recorder import RunRecorder

    return [p for cb in experiment.callbacks if isinstance(cb, RunRecorder) for p in cb.loaded]
