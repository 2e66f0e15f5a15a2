"""The one list of run / job statuses (jobs, the run registry, results and the CLI all use it)."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """A run's (or a job's) state; values are the strings stored in the registry and in result.json."""

    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    STOPPED = "stopped"
    FAILED = "failed"
    DIVERGED = "diverged"
    INTERRUPTED = "interrupted"  # the process died mid-run (registry only; found at start-up)


DONE = (RunStatus.FINISHED, RunStatus.STOPPED, RunStatus.FAILED, RunStatus.DIVERGED)  # how a run ends
ACTIVE = (RunStatus.QUEUED, RunStatus.RUNNING)
RESUMABLE = (RunStatus.INTERRUPTED, RunStatus.STOPPED, RunStatus.FAILED)
