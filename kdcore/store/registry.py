"""The run registry: one SQLite database (WAL journal) per runs folder, one row per run.

A row holds the run's id (= its folder name, already sanitised by ``folder.safe_name``), name,
status, the process that runs it, timestamps, folder, spec hash, result JSON and last message.
The folder (``folder.py``) holds the data; the registry is the index the app and the CLI list.

Statuses: ``queued`` → ``running`` → ``finished`` | ``stopped`` | ``failed`` | ``diverged``;
a run whose process died while ``running`` (SIGKILL, power loss, app restart) is marked
``interrupted`` by :meth:`Registry.recover`, which every :func:`open_registry` call runs.
Stopped, interrupted and failed runs can be resumed from their last epoch checkpoint
(``kdcore.store.resume``).

SQLite gives atomic commits: a killed process leaves either the old or the new row, never a
half-written one. Every call opens its own short-lived connection, so the registry is safe to
use from several threads and processes at once (``busy_timeout`` waits for the writer lock).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import threading
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from kdcore.core.events import (
    AttentionSnapshot,
    EpochMetrics,
    Event,
    PhaseFinished,
    PhaseStarted,
    RunDiverged,
    RunFailed,
    RunFinished,
    RunStarted,
    RunStopped,
    StepLosses,
)
from kdcore.core.status import ACTIVE, RESUMABLE, RunStatus

STATUSES = tuple(RunStatus)
DB_NAME = "registry.sqlite"
LOG_NAME = "run.log"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    status     TEXT NOT NULL,
    pid        INTEGER,
    proc_start TEXT,
    created    REAL NOT NULL,
    updated    REAL NOT NULL,
    run_dir    TEXT NOT NULL,
    spec_hash  TEXT,
    phase      TEXT,
    epoch      INTEGER,
    result     TEXT,
    message    TEXT DEFAULT ''
);
CREATE INDEX IF NOT EXISTS runs_status ON runs(status);
"""


class RunNotFound(KeyError):
    """No run with that id (or unique id prefix / name) in the registry."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else "run not found"


def default_root() -> Path:
    """Where run folders and the registry live: ``$KDLAB_RUNS_DIR`` or ``./runs``."""
    return Path(os.environ.get("KDLAB_RUNS_DIR", "runs"))


def spec_hash(spec) -> str:
    """sha256 (first 16 hex digits) of the spec's canonical JSON: equal specs, equal hashes."""
    payload = json.dumps(spec.to_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def process_start(pid: int) -> str | None:
    """Start time of ``pid`` (Linux /proc clock ticks), so a recycled pid is not mistaken for our run."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def process_alive(pid: int | None, start: str | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    if start is not None:
        now = process_start(pid)
        if now is not None and now != start:
            return False  # the pid was reused by another process
    return True


@dataclass
class RunRecord:
    id: str
    name: str
    status: str
    pid: int | None
    proc_start: str | None
    created: float
    updated: float
    run_dir: str
    spec_hash: str | None
    phase: str | None
    epoch: int | None
    result: dict[str, Any] | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def resumable(self) -> bool:
        return self.status in RESUMABLE


def _record(row: sqlite3.Row) -> RunRecord:
    d = dict(row)
    try:
        d["result"] = json.loads(d["result"]) if d["result"] else None
    except json.JSONDecodeError:
        d["result"] = None
    d["message"] = d["message"] or ""
    return RunRecord(**d)


class Registry:
    """SQLite index of the runs under ``root`` (``root/registry.sqlite``)."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_root()
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / DB_NAME
        with self._connect() as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(_SCHEMA)

    # ---- connections -------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        con.row_factory = sqlite3.Row
        con.execute("PRAGMA busy_timeout=30000")
        con.execute("PRAGMA synchronous=NORMAL")
        return con

    def _tx(self):
        reg = self

        class _Tx:
            def __enter__(self_inner) -> sqlite3.Connection:
                self_inner.con = reg._connect()
                self_inner.con.execute("BEGIN IMMEDIATE")
                return self_inner.con

            def __exit__(self_inner, exc_type, exc, tb) -> None:
                try:
                    self_inner.con.execute("ROLLBACK" if exc_type else "COMMIT")
                finally:
                    self_inner.con.close()

        return _Tx()

    # ---- writes ------------------------------------------------------------------------
    def create(self, run_id: str, name: str, run_dir: str | Path, spec=None, status: str = RunStatus.RUNNING,
               pid: int | None = None) -> RunRecord:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; allowed: {', '.join(STATUSES)}")
        now = time.time()
        pid = os.getpid() if pid is None and status == RunStatus.RUNNING else pid
        with self._tx() as con:
            con.execute(
                "INSERT INTO runs (id, name, status, pid, proc_start, created, updated, run_dir, spec_hash, message)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '')",
                (run_id, name, status, pid, process_start(pid) if pid else None, now, now,
                 str(Path(run_dir).resolve()), spec_hash(spec) if spec is not None else None),
            )
        return self.get(run_id)

    def update(self, run_id: str, **fields: Any) -> None:
        allowed = {"status", "pid", "proc_start", "phase", "epoch", "result", "message", "name"}
        bad = set(fields) - allowed
        if bad:
            raise ValueError(f"cannot update {sorted(bad)}")
        if "status" in fields and fields["status"] not in STATUSES:
            raise ValueError(f"unknown status {fields['status']!r}; allowed: {', '.join(STATUSES)}")
        if "result" in fields and not isinstance(fields["result"], (str, type(None))):
            fields["result"] = json.dumps(fields["result"], default=float)
        fields["updated"] = time.time()
        cols = ", ".join(f"{k} = ?" for k in fields)
        with self._tx() as con:
            cur = con.execute(f"UPDATE runs SET {cols} WHERE id = ?", (*fields.values(), run_id))
            if cur.rowcount == 0:
                raise RunNotFound(f"no run {run_id!r} in {self.path}")

    def claim(self, run_id: str, from_statuses: tuple[str, ...] = RESUMABLE) -> bool:
        """Atomically mark a run ``running`` by this process if its status is one of ``from_statuses``."""
        pid = os.getpid()
        marks = ",".join("?" * len(from_statuses))
        with self._tx() as con:
            cur = con.execute(
                f"UPDATE runs SET status='running', pid=?, proc_start=?, updated=?, message='' "
                f"WHERE id=? AND status IN ({marks})",
                (pid, process_start(pid), time.time(), run_id, *from_statuses),
            )
            return cur.rowcount == 1

    def delete(self, run_id: str, remove_files: bool = True) -> RunRecord:
        rec = self.get(run_id)
        if rec.status in ACTIVE and process_alive(rec.pid, rec.proc_start):
            raise ValueError(f"run {run_id} is {rec.status}; stop it before deleting it")
        if remove_files:
            folder = Path(rec.run_dir).resolve()
            # only ever remove a folder that sits directly inside this registry's root
            if folder.parent == self.root.resolve() and folder.is_dir():
                shutil.rmtree(folder)
        with self._tx() as con:
            con.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        return rec

    def recover(self) -> list[str]:
        """Mark ``running`` runs whose process is gone as ``interrupted``; returns their ids."""
        with self._connect() as con:
            rows = con.execute("SELECT id, pid, proc_start FROM runs WHERE status = 'running'").fetchall()
        dead = [r["id"] for r in rows if not process_alive(r["pid"], r["proc_start"])]
        for run_id in dead:
            with self._tx() as con:
                con.execute(
                    "UPDATE runs SET status='interrupted', updated=?, message=? WHERE id=? AND status='running'",
                    (time.time(), "the process running it ended without finishing (killed or crashed); "
                     "resume it with `python -m kdcore resume " + run_id + "`", run_id))
            rec = self.find(run_id)
            if rec is not None:
                _clean_temp_files(Path(rec.run_dir))
                append_log(Path(rec.run_dir), "interrupted: the process running it is gone")
        return dead

    # ---- reads -------------------------------------------------------------------------
    def find(self, run_id: str) -> RunRecord | None:
        with self._connect() as con:
            row = con.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return _record(row) if row else None

    def get(self, run_id: str) -> RunRecord:
        rec = self.find(run_id)
        if rec is None:
            raise RunNotFound(f"no run {run_id!r} in {self.path}")
        return rec

    def resolve(self, key: str) -> RunRecord:
        """A run by exact id, unique id prefix, or unique name (latest wins among equal names)."""
        rec = self.find(key)
        if rec is not None:
            return rec
        with self._connect() as con:
            rows = con.execute("SELECT * FROM runs WHERE id LIKE ? ESCAPE '\\' ORDER BY created DESC",
                               (_like_prefix(key),)).fetchall()
            if not rows:
                rows = con.execute("SELECT * FROM runs WHERE name = ? ORDER BY created DESC", (key,)).fetchall()
        if len(rows) == 1:
            return _record(rows[0])
        if not rows:
            raise RunNotFound(f"no run {key!r} in {self.path} (see `python -m kdcore runs`)")
        ids = ", ".join(r["id"] for r in rows[:5])
        raise RunNotFound(f"{key!r} matches {len(rows)} runs ({ids}); give the full id")

    def list(self, status: str | None = None) -> list[RunRecord]:
        with self._connect() as con:
            if status:
                rows = con.execute("SELECT * FROM runs WHERE status = ? ORDER BY created DESC", (status,))
            else:
                rows = con.execute("SELECT * FROM runs ORDER BY created DESC")
            return [_record(r) for r in rows.fetchall()]

    def __iter__(self) -> Iterator[RunRecord]:
        return iter(self.list())


def _like_prefix(key: str) -> str:
    return key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _clean_temp_files(run_dir: Path) -> None:
    ck = run_dir / "checkpoints"
    if ck.is_dir():
        for tmp in ck.glob("*.tmp"):  # half-written by a killed process; the real file is intact
            try:
                tmp.unlink()
            except OSError:
                pass


_REG_LOCK = threading.Lock()


def open_registry(root: str | Path | None = None, recover: bool = True) -> Registry:
    """The registry of ``root`` (default :func:`default_root`), with dead ``running`` runs marked
    ``interrupted`` (at start-up of the app or a CLI command, and on every later look: cheap, one
    query plus a signal-0 probe per running run)."""
    reg = Registry(root)
    if recover:
        with _REG_LOCK:
            reg.recover()
    return reg


# ---- the run log ------------------------------------------------------------------------
def append_log(run_dir: Path, line: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    try:
        with open(Path(run_dir) / LOG_NAME, "a", encoding="utf-8") as fh:
            fh.write(f"{stamp} {line}\n")
    except OSError:
        pass


class RegistrySubscriber:
    """Keeps the registry row and ``run.log`` in step with the events of one run.

    Step events are ignored (the hot loop stays free of I/O); the row is updated when a phase
    starts, after every epoch and when the run ends."""

    def __init__(self, registry: Registry, run_id: str, run_dir: Path):
        self.registry, self.run_id, self.run_dir = registry, run_id, Path(run_dir)
        self._lock = threading.Lock()

    def __call__(self, ev: Event) -> None:
        if isinstance(ev, (StepLosses, AttentionSnapshot)):
            return
        try:
            with self._lock:
                self._handle(ev)
        except Exception:  # the registry must never take a training run down
            append_log(self.run_dir, "registry update failed: " + traceback.format_exc(limit=2).replace("\n", " | "))

    def _handle(self, ev: Event) -> None:
        reg, rid = self.registry, self.run_id
        match ev:
            case RunStarted():
                append_log(self.run_dir, f"started: {ev.name} (phases {', '.join(ev.phases)}), pid {os.getpid()}")
                pid = os.getpid()
                reg.update(rid, status=RunStatus.RUNNING, pid=pid, proc_start=process_start(pid), message="")
            case PhaseStarted():
                append_log(self.run_dir, f"phase {ev.phase}: {ev.epochs} epochs × {ev.steps_per_epoch} steps, "
                                         f"{ev.params:,} parameters" + (f", teacher cache {ev.teacher_cache}"
                                                                        if ev.teacher_cache else ""))
                reg.update(rid, phase=ev.phase, epoch=0)
            case EpochMetrics():
                append_log(self.run_dir, f"{ev.phase} epoch {ev.epoch}: train loss {ev.train_loss:.4f} "
                                         f"acc {ev.train_acc:.4f}, val loss {ev.val_loss:.4f} acc {ev.val_acc:.4f} "
                                         f"({ev.seconds:.1f}s)")
                reg.update(rid, phase=ev.phase, epoch=ev.epoch)
            case PhaseFinished():
                append_log(self.run_dir, f"phase {ev.phase} done: best epoch {ev.best_epoch}, val {ev.val_acc:.4f}, "
                                         f"test {ev.test_acc:.4f}")
            case RunFinished():
                append_log(self.run_dir, "finished")
                reg.update(rid, status=ev.status, result=ev.result, message="")
            case RunStopped() | RunFailed() | RunDiverged():
                append_log(self.run_dir, f"{ev.status} in phase {ev.phase}: {ev.message}")
                reg.update(rid, status=ev.status, message=ev.message)


def track_run(run_dir: str | Path, spec, subscribe: Callable[[Callable[[Event], None]], None],
              registry: Registry | None = None) -> str:
    """Register the run stored in ``run_dir`` (which exists) and ``subscribe`` the registry to its events.

    A fresh run gets a new row; a resumed run (row already there) is kept. Returns the run id."""
    run_dir = Path(run_dir)
    run_id = run_dir.name
    try:
        reg = registry or open_registry(run_dir.parent)
        if reg.find(run_id) is None:
            reg.create(run_id, spec.name, run_dir, spec, status=RunStatus.RUNNING)
    except (sqlite3.Error, OSError) as exc:  # the run itself must not depend on the index
        append_log(run_dir, f"registry unavailable, run not indexed: {exc}")
        return run_id
    subscribe(RegistrySubscriber(reg, run_id, run_dir))
    return run_id


def set_run_result(run_id: str, run_dir: str | Path, result: dict[str, Any]) -> None:
    """Store the final result JSON once ``result.json`` is written. A run that ended without a
    terminal event (KeyboardInterrupt, SystemExit in its thread) is marked ``interrupted``."""
    try:
        reg = open_registry(Path(run_dir).parent, recover=False)
        rec = reg.find(run_id)
        if rec is None:
            return
        fields: dict[str, Any] = {"result": result}
        if rec.status in ACTIVE:
            fields.update(status=RunStatus.INTERRUPTED, message="the run ended without finishing; resume it")
            append_log(Path(run_dir), "interrupted")
        reg.update(run_id, **fields)
    except Exception:  # noqa: BLE001 - bookkeeping must never mask the run's own outcome
        append_log(Path(run_dir), "registry result update failed: " + traceback.format_exc(limit=2))
