"""Background jobs: run :class:`~kdcore.pipeline.experiment.Experiment` in threads, process-wide.

The app keeps one :class:`JobManager` per server process (the pages wrap it in
``st.cache_resource``); every browser session submits to it. Nothing here imports streamlit and
the training thread never touches the UI: it only writes into its :class:`Job` (lock-protected,
bounded buffers), and the pages read immutable :class:`JobSnapshot` objects.

* At most ``max_concurrent`` jobs train at once; further jobs wait in a FIFO queue and report
  their position (1 = next to start).
* ``Job.stop()`` ends a running job between two optimiser steps (status ``stopped``) or removes
  a queued one from the queue. ``Job.pause()`` / ``Job.resume()`` hold the training thread
  between steps; paused time does not count towards the ETA.
* A crash anywhere inside the job thread marks that job ``failed`` with its message; the manager
  keeps serving other jobs.
* Run folders go under ``$KDLAB_RUNS_DIR`` (default ``runs/``).
* A *sweep* job (:meth:`JobManager.submit_sweep`, :class:`SweepJob`) runs a whole grid
  (``kdcore.pipeline.grid.run_grid``) in one slot of the same queue and cap; it stops between grid
  rows, and ``manager.jobs()`` lists run jobs only (``jobs(kind="sweep")``, ``jobs(kind=None)``).
  Unless ``save_runs=False``, every grid point × seed is stored as a run under the run root
  (``kdcore.store.sweep_store``), and each row names its ``run_id``.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping

from kdcore.core.events import (
    TERMINAL,
    EpochMetrics,
    Event,
    PhaseFinished,
    PhaseStarted,
    RunStarted,
    StepLosses,
)
from kdcore.core.status import RunStatus
from kdcore.core.spec import ExperimentSpec

# statuses come from the one enum (kdcore.core.status); short names for this module
QUEUED, RUNNING, FINISHED, STOPPED, FAILED, DIVERGED = (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.FINISHED,
                                                        RunStatus.STOPPED, RunStatus.FAILED, RunStatus.DIVERGED)
STATUSES = (QUEUED, RUNNING, FINISHED, STOPPED, FAILED, DIVERGED)
from kdcore.core.status import DONE as DONE_STATUSES  # noqa: E402

# (subscribers, callbacks, should_stop) -> kdcore.pipeline.experiment.Experiment
ExperimentFactory = Callable[[list, list, Callable[[], bool]], Any]


def runs_dir() -> Path:
    """Where jobs write run folders: ``$KDLAB_RUNS_DIR`` or ``runs/``."""
    return Path(os.environ.get("KDLAB_RUNS_DIR") or "runs")


def default_max_concurrent() -> int:
    """``$KDLAB_MAX_JOBS`` (default 2): jobs that may train at the same time."""
    raw = os.environ.get("KDLAB_MAX_JOBS", "2")
    try:
        return max(1, int(raw))
    except ValueError:
        raise ValueError(f"KDLAB_MAX_JOBS must be a positive integer, got {raw!r}") from None


def ui_job_threads() -> int:
    """Torch CPU threads for the app's jobs when a spec leaves ``train.threads`` unset:
    ``$KDLAB_JOB_THREADS``, default one fewer than the CPUs (at least 1), so the server that draws
    the live charts keeps a core while a job trains. On this project's 2-core machine that costs
    the default preset 20 % more training time (65.7 s vs 54.5 s wall with 2 threads) and keeps
    the UI responsive (README, "Measured UI latency")."""
    raw = os.environ.get("KDLAB_JOB_THREADS")
    if raw is None:
        return max(1, (os.cpu_count() or 1) - 1)
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"KDLAB_JOB_THREADS must be a positive integer, got {raw!r}")
    return value


def ui_switch_interval_s() -> float:
    """The interpreter's thread switch interval for a server process that trains in threads:
    ``$KDLAB_SWITCH_INTERVAL_MS`` (default 0.1 ms; Python's own default is 5 ms).

    Every torch op releases the GIL and must win it back; while a server thread runs Python code
    (a page rerun, JSON for a chart), each reacquisition waits up to one switch interval — the
    "convoy effect". Measured on this project's 2-core machine (``benchmarks/gil_convoy.py``: the
    default preset's teacher, 3 epochs, one torch thread): a busy pure-Python thread beside the job
    made its teacher phase 31× slower at 5 ms, 4.9× at 0.5 ms and 2.3× at 0.1 ms; alone, the job
    took 3.1–3.5 s at every interval."""
    raw = os.environ.get("KDLAB_SWITCH_INTERVAL_MS", "0.1")
    try:
        ms = float(raw)
    except ValueError:
        ms = -1.0
    if not 0.01 <= ms <= 100:
        raise ValueError(f"KDLAB_SWITCH_INTERVAL_MS must be a number of milliseconds in [0.01, 100], got {raw!r}")
    return ms / 1000.0


class DecimatingBuffer:
    """Keeps at most ``cap`` items of an unbounded stream, evenly spread over the whole stream.

    When full, every second stored item is dropped and only every ``stride``-th new item is kept
    (stride doubles each time), so a long run's curve keeps its beginning and its shape in bounded
    memory. The most recent item is always available as :attr:`last`.
    """

    def __init__(self, cap: int):
        if cap < 2:
            raise ValueError("buffer cap must be ≥ 2")
        self.cap = cap
        self.items: list[Any] = []
        self.stride = 1
        self.seen = 0
        self.last: Any = None

    def append(self, item: Any) -> None:
        self.last = item
        if self.seen % self.stride == 0:
            self.items.append(item)
            if len(self.items) >= self.cap:
                self.items = self.items[::2]
                self.stride *= 2
        self.seen += 1

    def view(self) -> tuple[Any, ...]:
        """Stored items, plus the latest item if decimation skipped it."""
        if self.last is not None and (not self.items or self.items[-1] is not self.last):
            return (*self.items, self.last)
        return tuple(self.items)


@dataclass(frozen=True)
class PhaseProgress:
    phase: str
    state: str  # pending | running | done
    epoch: int = 0  # epochs completed
    epochs: int = 0
    step: int = 0  # steps completed
    total_steps: int = 0
    elapsed_s: float = 0.0  # active (unpaused) seconds in this phase
    eta_s: float | None = None  # seconds left in this phase (None: unknown yet)

    @property
    def fraction(self) -> float:
        if self.state == "done":
            return 1.0
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0


@dataclass(frozen=True)
class JobSnapshot:
    """An immutable view of a job at one moment (safe to read while the job keeps training)."""

    id: str
    name: str
    spec: ExperimentSpec
    status: str
    paused: bool
    queue_position: int | None  # 1-based while queued
    message: str
    created: float
    started: float | None
    ended: float | None
    run_dir: str | None
    phases: tuple[str, ...]
    current_phase: str | None
    progress: Mapping[str, PhaseProgress]
    events: Mapping[str, tuple[dict, ...]]  # kind -> event dicts (Event.to_dict()), oldest first
    result: dict | None
    event_count: int  # events received so far (monotone; a cheap "has anything changed" check)
    last_event_t: float | None  # engine timestamp of the latest event

    @property
    def done(self) -> bool:
        return self.status in DONE_STATUSES

    @property
    def state_label(self) -> str:
        if self.status == QUEUED:
            return f"queued (position {self.queue_position})"
        return "paused" if (self.status == RUNNING and self.paused) else self.status

    def of(self, kind: str) -> tuple[dict, ...]:
        return self.events.get(kind, ())

    @property
    def steps(self) -> tuple[dict, ...]:
        return self.of("StepLosses")

    @property
    def epochs(self) -> tuple[dict, ...]:
        return self.of("EpochMetrics")

    @property
    def attention(self) -> tuple[dict, ...]:
        return self.of("AttentionSnapshot")


class _PhaseClock:
    def __init__(self, phase: str):
        self.phase = phase
        self.state = "pending"
        self.epochs = 0
        self.steps_per_epoch = 0
        self.epoch = 0
        self.step = 0
        self.active = 0.0  # accumulated unpaused seconds
        self.resumed_at: float | None = None

    def elapsed(self, now: float) -> float:
        return self.active + (now - self.resumed_at if self.resumed_at is not None else 0.0)

    def freeze(self, now: float) -> PhaseProgress:
        total = self.epochs * self.steps_per_epoch
        el = self.elapsed(now)
        eta = None
        if self.state == "done":
            eta = 0.0
        elif self.state == "running" and self.step > 0 and total:
            eta = el / self.step * max(0, total - self.step)
        return PhaseProgress(self.phase, self.state, self.epoch, self.epochs, self.step, total, el, eta)


class Job:
    """One experiment in the manager. Thread-safe; read it through :meth:`snapshot`."""

    kind = "run"

    def __init__(self, job_id: str, spec: ExperimentSpec, manager: "JobManager",
                 callbacks: Iterable[Any] = (), subscribers: Iterable[Callable[[Event], None]] = (),
                 buffer_cap: int = 4000, factory: ExperimentFactory | None = None, resumes: str | None = None):
        self.id = job_id
        # builds the Experiment when the job starts (default: a fresh run of ``spec``); a resumed
        # run's factory claims the stored run then, so a queued resume does not hold the claim
        self.factory = factory
        self.resumes = resumes  # the stored run id this job continues, if any
        self.spec = spec
        self.manager = manager
        self.callbacks = list(callbacks)  # kdcore.train.callbacks.Callback, added to the experiment's
        self.subscribers = list(subscribers)
        self.buffer_cap = buffer_cap
        self.status = QUEUED
        self.message = ""
        self.created = time.time()
        self.started: float | None = None
        self.ended: float | None = None
        self.run_dir: str | None = None
        self.result: dict | None = None
        self.experiment = None  # kdcore.pipeline.experiment.Experiment, set when the job starts
        self.thread: threading.Thread | None = None
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._resume = threading.Event()
        self._resume.set()  # set = not paused
        self._buffers: dict[str, DecimatingBuffer] = {}
        # the phases the experiment will run (confirmed by its RunStarted event), pending until they start
        self._phase_order: list[str] = ["teacher", "baseline", "kd", *spec.distill.extra_phases]
        self._clocks: dict[str, _PhaseClock] = {p: _PhaseClock(p) for p in self._phase_order}
        self._current: str | None = None
        self._event_count = 0
        self._last_event_t: float | None = None
        self._done = threading.Event()

    # ---- control (any thread) -------------------------------------------------------
    def stop(self) -> None:
        """Stop between two steps (running) or drop from the queue (queued)."""
        self._stop.set()
        self._resume.set()  # a paused job must wake up to stop
        self.manager._cancel_queued(self)

    def pause(self) -> None:
        with self._lock:
            if self.status != RUNNING or self._stop.is_set():
                return
            self._resume.clear()
            clock = self._clocks.get(self._current or "")
            if clock is not None and clock.resumed_at is not None:
                clock.active += time.time() - clock.resumed_at
                clock.resumed_at = None

    def resume(self) -> None:
        with self._lock:
            if not self._resume.is_set():
                clock = self._clocks.get(self._current or "")
                if clock is not None and clock.state == "running":
                    clock.resumed_at = time.time()
            self._resume.set()

    @property
    def paused(self) -> bool:
        return not self._resume.is_set()

    @property
    def done(self) -> bool:
        return self.status in DONE_STATUSES

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job has ended; True if it did within ``timeout``."""
        return self._done.wait(timeout)

    @property
    def models(self) -> dict[str, Any]:
        """Trained models by phase (teacher / baseline / kd / extra phases) once the job ended.

        Models of phases that finished are available even after a stop or a failure."""
        exp = self.experiment
        return dict(exp.models) if (exp is not None and self.done) else {}

    # ---- the training thread's side -------------------------------------------------
    def _should_stop(self) -> bool:
        """Called by the trainer between steps: blocks while paused, True when stop was asked."""
        while not self._resume.is_set():
            self._resume.wait(0.2)
        return self._stop.is_set()

    def _on_event(self, ev: Event) -> None:
        now = time.time()
        d = ev.to_dict()
        kind = ev.kind
        with self._lock:
            self._event_count += 1
            self._last_event_t = ev.t
            buf = self._buffers.get(kind)
            if buf is None:
                buf = self._buffers[kind] = DecimatingBuffer(self.buffer_cap)
            buf.append(d)
            match ev:
                case RunStarted(phases=phases, run_dir=run_dir):
                    self._phase_order = list(phases)
                    self.run_dir = run_dir
                    for p in self._phase_order:
                        self._clocks.setdefault(p, _PhaseClock(p))
                case PhaseStarted(phase=phase):
                    clock = self._clocks.setdefault(phase, _PhaseClock(phase))
                    if phase not in self._phase_order:
                        self._phase_order.append(phase)
                    clock.state, clock.epochs, clock.steps_per_epoch = "running", ev.epochs, ev.steps_per_epoch
                    clock.resumed_at = None if self.paused else now
                    self._current = phase
                case StepLosses(phase=phase, step=step):
                    clock = self._clocks.get(phase)
                    if clock is not None:
                        clock.step = step + 1
                case EpochMetrics(phase=phase, epoch=epoch):
                    clock = self._clocks.get(phase)
                    if clock is not None:
                        clock.epoch = epoch
                case PhaseFinished(phase=phase):
                    clock = self._clocks.setdefault(phase, _PhaseClock(phase))
                    if clock.resumed_at is not None:
                        clock.active += now - clock.resumed_at
                        clock.resumed_at = None
                    clock.state = "done"
                    if clock.steps_per_epoch:
                        clock.step = clock.epochs * clock.steps_per_epoch
                        clock.epoch = clock.epochs
        for sub in self.subscribers:
            try:
                sub(ev)
            except Exception:  # a broken extra subscriber must not kill the run
                traceback.print_exc()

    def _run(self) -> None:
        """The job thread: honour a stop that came first, set the torch threads, :meth:`_work`; a
        crash anywhere marks the job failed, and the manager always hears that the slot is free."""
        try:
            if self._stop.is_set():
                self._finish(STOPPED, "stopped before it started", signal=False)
                return
            threads = self.spec.train.threads or self.manager.threads
            if threads:
                import torch

                torch.set_num_threads(threads)
            self._work()
        except BaseException as exc:  # noqa: BLE001 - a crash in the job thread marks the job failed
            self._finish(FAILED, f"{type(exc).__name__}: {exc}", signal=False)
        finally:
            self.manager._job_done(self)
            self._done.set()  # after the manager's bookkeeping: a waiter sees the slot free

    def _work(self) -> None:
        """Build the experiment (stored under the manager's run root) and run it."""
        if self.factory is not None:
            exp = self.factory([self._on_event], self.callbacks, self._should_stop)
        else:
            from kdcore.pipeline.experiment import Experiment
            from kdcore.store.recorder import RunRecorder

            exp = Experiment(self.spec, [self._on_event],
                             callbacks=[*self.callbacks, RunRecorder(self.manager.run_root or runs_dir())],
                             should_stop=self._should_stop)
        self.experiment = exp
        res = exp.run()
        self._finish(res.status, res.message, res.to_dict(), signal=False)

    def _finish(self, status: str, message: str, result: dict | None = None, signal: bool = True) -> None:
        with self._lock:
            self.status = RunStatus(status) if status in DONE_STATUSES else FAILED
            self.message = message
            self.result = result
            self.ended = time.time()
            if result is not None and result.get("run_dir"):
                self.run_dir = result["run_dir"]
            clock = self._clocks.get(self._current or "")
            if clock is not None and clock.resumed_at is not None:
                clock.active += self.ended - clock.resumed_at
                clock.resumed_at = None
        if signal:
            self._done.set()

    # ---- reading ---------------------------------------------------------------------
    def snapshot(self) -> JobSnapshot:
        now = time.time()
        with self._lock:
            events = MappingProxyType({k: b.view() for k, b in self._buffers.items()})
            progress = MappingProxyType({p: self._clocks[p].freeze(now) for p in self._phase_order
                                         if p in self._clocks})
            return JobSnapshot(
                id=self.id, name=self.spec.name, spec=self.spec, status=self.status, paused=self.paused,
                queue_position=self.manager.queue_position(self), message=self.message, created=self.created,
                started=self.started, ended=self.ended, run_dir=self.run_dir, phases=tuple(self._phase_order),
                current_phase=self._current, progress=progress, events=events,
                result=dict(self.result) if self.result is not None else None,
                event_count=self._event_count, last_event_t=self._last_event_t,
            )


class JobManager:
    """Process-wide registry of jobs with a concurrency cap and a FIFO queue. Thread-safe."""

    def __init__(self, max_concurrent: int | None = None, run_root: str | Path | None = None,
                 buffer_cap: int = 4000, keep_finished: int = 50, threads: int | None = None):
        self.max_concurrent = max_concurrent if max_concurrent is not None else default_max_concurrent()
        # torch CPU threads for specs that leave train.threads unset (None: leave torch's setting);
        # set in the job's own thread (torch's OpenMP thread count is per calling thread)
        self.threads = threads
        if self.max_concurrent < 1:
            raise ValueError("max_concurrent must be ≥ 1")
        self.run_root = Path(run_root) if run_root is not None else None
        self.buffer_cap = buffer_cap
        self.keep_finished = keep_finished
        self._lock = threading.RLock()
        self._jobs: dict[str, Job] = {}
        self._queue: deque[Job] = deque()
        self._running: set[str] = set()
        self._ids = itertools.count(1)

    def submit(self, spec: ExperimentSpec, callbacks: Iterable[Any] = (),
               subscribers: Iterable[Callable[[Event], None]] = (), factory: ExperimentFactory | None = None,
               resumes: str | None = None) -> Job:
        """Queue ``spec``; it starts at once if fewer than ``max_concurrent`` jobs are running.

        ``callbacks`` (:class:`kdcore.train.callbacks.Callback`) are added to the experiment's;
        ``subscribers`` receive every engine event (in the training thread)."""
        if not isinstance(spec, ExperimentSpec):
            raise TypeError("submit expects an ExperimentSpec")
        with self._lock:
            job = Job(f"job-{next(self._ids)}-{int(time.time() * 1000) % 100000:05d}", spec, self,
                      callbacks, subscribers, self.buffer_cap, factory=factory, resumes=resumes)
            self._jobs[job.id] = job
            self._queue.append(job)
            self._prune()
            self._start_ready()
            return job

    def submit_resume(self, run_id: str, callbacks: Iterable[Any] = ()) -> Job:
        """Queue the continuation of a stored interrupted / stopped / failed run as a job, so it
        shows live, obeys the concurrency cap and can be paused or stopped like any other.

        Checks now that the run can be resumed (raises ``ResumeError`` with the reason); the run is
        claimed when the job starts."""
        from kdcore.store.resume_run import check_resumable, prepare_resume

        root = self.run_root or runs_dir()
        _, rec, spec = check_resumable(run_id, root)
        return self.submit(spec, callbacks, resumes=rec.id, factory=lambda subs, cbs, stop: prepare_resume(
            rec.id, root, subscribers=subs, callbacks=cbs, should_stop=stop))

    def submit_sweep(self, spec: ExperimentSpec, axes: Mapping[str, list], seeds: int,
                     cache_root: str | Path | None = None, grid: Callable[..., Any] | None = None,
                     save_runs: bool = True, stack_seeds: bool = False) -> "SweepJob":
        """Queue a grid sweep of ``spec`` over ``axes`` × seeds 0..seeds−1 (``run_grid``; ``grid``
        replaces it, for tests, and gets ``store=`` too). Rows are cached under ``cache_root``
        (default: the run root); ``save_runs``: every grid point × seed is also a stored run (a run
        folder and a registry row under the run root, so Compare can open it). ``stack_seeds``:
        train every seed's teachers and students together (faster; the rows all arrive at the end
        instead of seed by seed)."""
        if not isinstance(spec, ExperimentSpec):
            raise TypeError("submit_sweep expects an ExperimentSpec")
        if not axes or seeds < 1:
            raise ValueError("a sweep needs at least one field to vary and seeds ≥ 1")
        with self._lock:
            job = SweepJob(f"sweep-{next(self._ids)}-{int(time.time() * 1000) % 100000:05d}", spec, self, axes,
                           seeds, cache_root if cache_root is not None else (self.run_root or runs_dir()), grid,
                           save_runs=save_runs, stack_seeds=stack_seeds)
            self._jobs[job.id] = job
            self._queue.append(job)
            self._prune()
            self._start_ready()
            return job

    def get(self, job_id: str | None) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id) if job_id else None

    def jobs(self, kind: str | None = "run") -> list[Job]:
        """The jobs of one kind (``"run"``: experiments, the default; ``"sweep"``), or all (None)."""
        with self._lock:
            return [j for j in self._jobs.values() if kind is None or j.kind == kind]

    def running(self) -> list[Job]:
        with self._lock:
            return [self._jobs[i] for i in self._running]

    def queued(self) -> list[Job]:
        with self._lock:
            return list(self._queue)

    def queue_position(self, job: Job) -> int | None:
        with self._lock:
            for i, j in enumerate(self._queue):
                if j is job:
                    return i + 1
            return None

    def stop_all(self, wait: float | None = None) -> None:
        for job in self.jobs(kind=None):
            job.stop()
        if wait is not None:
            deadline = time.time() + wait
            for job in self.jobs(kind=None):
                job.wait(max(0.0, deadline - time.time()))

    # ---- internals -------------------------------------------------------------------
    def _start_ready(self) -> None:
        with self._lock:
            while self._queue and len(self._running) < self.max_concurrent:
                job = self._queue.popleft()
                self._running.add(job.id)
                job.status = RUNNING
                job.started = time.time()
                job.thread = threading.Thread(target=job._run, name=f"kdlab-{job.id}", daemon=True)
                job.thread.start()

    def _cancel_queued(self, job: Job) -> None:
        with self._lock:
            if job in self._queue:
                self._queue.remove(job)
                job._finish(STOPPED, "removed from the queue")

    def _job_done(self, job: Job) -> None:
        with self._lock:
            self._running.discard(job.id)
            self._start_ready()

    def _prune(self) -> None:
        """Forget the oldest ended jobs beyond ``keep_finished`` (their run folders stay)."""
        ended = [j for j in self._jobs.values() if j.done]
        for j in sorted(ended, key=lambda j: j.created)[: max(0, len(ended) - self.keep_finished)]:
            del self._jobs[j.id]


@dataclass(frozen=True)
class SweepSnapshot:
    """An immutable view of a sweep job: the finished (grid point, seed) rows so far."""

    id: str
    name: str
    spec: ExperimentSpec  # the base spec
    status: str
    queue_position: int | None
    message: str
    created: float
    started: float | None
    ended: float | None
    axes: Mapping[str, tuple]
    seeds: int
    total: int  # rows in the whole grid (points × seeds)
    rows: tuple[dict, ...]  # kdcore.pipeline.grid rows: {"point", "seed", "acc", "shared"[, "run_id", "shared_from"]}
    result: dict | None  # GridResult.to_dict() once the grid returned
    kind: str = "sweep"

    @property
    def done(self) -> bool:
        return self.status in DONE_STATUSES

    @property
    def state_label(self) -> str:
        return f"queued (position {self.queue_position})" if self.status == QUEUED else self.status


class SweepJob(Job):
    """A grid sweep as one job: the thread calls ``run_grid(spec, axes, seeds, cache_root=...,
    on_row=..., should_stop=..., store=..., stack_seeds=...)`` (``store``: the runs' store, None with
    ``save_runs=False``); rows already in the grid's cache are visible from the start (when saving,
    those whose run is stored: the others train again).
    A stop ends it between two rows (status ``stopped``, the finished rows kept); a crash marks it
    ``failed`` with its message."""

    kind = "sweep"

    def __init__(self, job_id: str, spec: ExperimentSpec, manager: "JobManager", axes: Mapping[str, list],
                 seeds: int, cache_root: str | Path | None, grid: Callable[..., Any] | None = None,
                 save_runs: bool = True, stack_seeds: bool = False):
        super().__init__(job_id, spec, manager, buffer_cap=manager.buffer_cap)
        self.stack_seeds = bool(stack_seeds)
        self.axes = {k: list(v) for k, v in axes.items()}
        self.seeds = int(seeds)
        self.cache_root = cache_root
        self.grid = grid
        self.total = self.seeds * _product(len(v) for v in self.axes.values())
        self._rows: list[dict] = []
        self.store = None
        if save_runs:
            from kdcore.store.sweep_store import SweepRunStore

            self.store = SweepRunStore(manager.run_root or runs_dir())

    def _on_row(self, row: dict) -> None:
        """A finished row; it replaces a cached row of the same grid point and seed (retrained)."""
        with self._lock:
            self._rows = [r for r in self._rows if (r.get("point"), r.get("seed")) != (row["point"], row["seed"])]
            self._rows.append(row)

    def _cached_rows(self) -> list[dict]:
        """Rows of this grid already in run_grid's cache file (it reports only the rows it trains)."""
        import json

        from kdcore.pipeline.grid import cache_path

        path = cache_path(self.spec, self.axes, Path(self.cache_root))
        if not path.is_file():
            return []
        try:
            cache = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        rows = [r for r in cache.values() if isinstance(r, dict) and r.get("seed", self.seeds) < self.seeds]
        if self.store is not None:  # saving: a row without its stored run trains again
            rows = [r for r in rows if r.get("run_id") and self.store.has_run(r["run_id"])]
        return rows

    def _work(self) -> None:
        grid, extra = self.grid, {}
        if grid is None:
            from kdcore.pipeline.grid import run_grid as grid
            extra = {"stack_seeds": self.stack_seeds}  # (a test's stand-in grid takes the other arguments only)
            if self.cache_root is not None:
                with self._lock:
                    self._rows = self._cached_rows()
        res = grid(self.spec, self.axes, self.seeds, cache_root=self.cache_root, on_row=self._on_row,
                   should_stop=self._should_stop, store=self.store, **extra)
        with self._lock:
            self._rows = list(res.rows)
        n, trained = len(res.rows), getattr(res, "trained", len(res.rows))
        if n < self.total:
            self._finish(STOPPED, f"stopped after {n} of {self.total} rows", res.to_dict(), signal=False)
        else:
            self._finish(FINISHED, f"{n} rows: {trained} trained now, {n - trained} from the cache",
                         res.to_dict(), signal=False)

    def snapshot(self) -> SweepSnapshot:  # type: ignore[override]
        with self._lock:
            return SweepSnapshot(
                id=self.id, name=self.spec.name, spec=self.spec, status=self.status,
                queue_position=self.manager.queue_position(self), message=self.message, created=self.created,
                started=self.started, ended=self.ended, axes=MappingProxyType({k: tuple(v) for k, v in self.axes.items()}),
                seeds=self.seeds, total=self.total, rows=tuple(self._rows),
                result=dict(self.result) if self.result is not None else None)


def _product(xs: Iterable[int]) -> int:
    out = 1
    for x in xs:
        out *= x
    return out


__all__ = ["DONE_STATUSES", "STATUSES", "DecimatingBuffer", "Job", "JobManager", "JobSnapshot", "PhaseProgress",
           "SweepJob", "SweepSnapshot",
           "runs_dir", "TERMINAL", "ui_job_threads", "ui_switch_interval_s"]
