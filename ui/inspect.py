"""Run picker shared by the inspection pages (Attention, Attributions): a live job of this server
or a run folder on disk, plus a cache of the loaded checkpoints."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from kdcore.service.jobs import Job, runs_dir
from kdcore.explain.runs import LoadedRun, checkpoint_key, list_runs, load_run
from kdcore.store.folder import read_events
from ui import state


def sources() -> dict[str, str]:
    """Selectable runs: ``job:<id>`` for jobs of this server, ``dir:<path>`` for other run folders."""
    opts: dict[str, str] = {}
    job_dirs = set()
    for j in sorted(state.get_manager().jobs(), key=lambda j: j.created, reverse=True):
        snap = j.snapshot()
        opts[f"job:{j.id}"] = f"▶ job {snap.name} · {j.id} · {snap.state_label}"
        if snap.run_dir:
            job_dirs.add(str(Path(snap.run_dir).resolve()))
    for p in list_runs(runs_dir()):
        if str(p.resolve()) not in job_dirs:
            opts[f"dir:{p}"] = f"📁 {p.name}" + ("" if (p / "result.json").is_file() else " (unfinished)")
    return opts


@st.cache_resource(max_entries=4, show_spinner="Loading the run's checkpoints…")
def cached_run(run_dir: str, key: tuple) -> LoadedRun:
    return load_run(run_dir)


def pick_run(key: str) -> tuple[Job | None, str, bool]:
    """The run selector; returns (job or None, run folder, live?). Stops the page when there is no run."""
    ss = st.session_state
    opts = sources()
    if not opts:
        st.info("No run yet. Start one on the home page or the Train page; this page follows it live.")
        st.page_link("pages/2_Train.py", label="Go to Train")
        st.stop()
    cur = state.current_job()
    default = f"job:{cur.id}" if cur is not None and f"job:{cur.id}" in opts else next(iter(opts))
    st.selectbox("run", list(opts), index=list(opts).index(ss.get(key, default))
                 if ss.get(key, default) in opts else 0, format_func=opts.get, key=key,
                 help="A job of this server (live while it trains) or a run folder on disk.")
    choice = ss[key]
    job = state.get_manager().get(choice[4:]) if choice.startswith("job:") else None
    run_dir = job.snapshot().run_dir if job is not None else choice[4:]
    return job, run_dir, job is not None and not job.done


def run_events(job: Job | None, run_dir: str) -> tuple[list[dict], bool]:
    """(events, still running) — from the job's live buffers or the folder's metrics.jsonl."""
    if job is not None:
        snap = job.snapshot()
        evs = sorted((e for v in snap.events.values() for e in v), key=lambda e: e.get("t", 0.0))
        return evs, not snap.done
    return read_events(run_dir), not (Path(run_dir) / "result.json").is_file()


__all__ = ["cached_run", "checkpoint_key", "pick_run", "run_events", "sources"]
