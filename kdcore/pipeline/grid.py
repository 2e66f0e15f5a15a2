"""Grid sweeps: one or two spec fields × seeds, with the paired KD − baseline gain per grid point.

    python -m kdcore sweep --preset P --vary distill.temperature=1,2,4,8 [--vary student.encoder.width=4,8] --seeds 3

Sharing. Within a seed, the phases a varied field cannot affect are trained once and reused at every
grid point of that seed:

* fields that only the KD student reads (temperature, loss terms and weights, weighting and
  temperature strategies) share the **teacher and the baseline**;
* fields of the students or of who-sees-which-label (student architecture, student epochs, the
  labelled fraction / transfer set / omitted classes) share the **teacher**;
* anything else (data, noise, teacher, optimiser) trains every phase.

Reuse is exact: a shared phase is the same object the first grid point of the seed trained (same
data, same seed, same weights), so a shared run equals a full run of the same spec.

Caching. Each (grid point, seed) row is stored in a JSON file named after the base spec and the
grid (``runs/sweeps/<hash>.json``); a rerun only trains the rows that are missing, so an interrupted
sweep resumes where it stopped.

Saving (optional: ``run_grid(..., store=...)``, a :class:`RunStore` such as
``kdcore.store.sweep_store.SweepRunStore``; the app's sweeps, ``sweep --save``). Every grid point ×
seed experiment then gets the store's callbacks (the run store's ``RunRecorder``: a run folder and a
registry row), is named after its point (``"multiview-kd · temperature=2 · seed 1"``, the sweep and
the point in its description), and its row keeps its ``run_id``; a phase it shares is stored in its
folder too and named, with the run that trained it, under ``adopted`` in its result (and
``shared_from`` in the row). A cached row without a stored run is trained again. Without a store,
nothing but the cache is written.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

from kdcore.pipeline.experiment import Experiment
from kdcore.train.callbacks import Callback
from kdcore.train.trainer import StopRequested
from kdcore.core.verdict import seed_verdict
from kdcore.core.spec import ExperimentSpec, SpecError, apply_assignment, validate_spec

KD_ONLY = ("distill.temperature", "distill.losses", "distill.weighting", "distill.weighting_params",
           "distill.temperature_schedule", "distill.temperature_params")
TEACHER_FREE = (*KD_ONLY, "student.", "train.student_epochs", "data.regime.labelled_fraction",
                "data.regime.labels_per_class", "data.regime.transfer", "data.regime.omit_classes",
                "data.regime.omitted_in_transfer")
MAX_AXES = 2
MAX_ROWS_TOGETHER = 64  # stack_seeds: the most grid point × seed experiments set up and trained at once


def shared_phases(fields: list[str]) -> tuple[str, ...]:
    """Which phases every grid point of a seed can share, given the varied fields."""
    if all(f.startswith(KD_ONLY) for f in fields):
        return ("teacher", "baseline")
    if all(f.startswith(TEACHER_FREE) for f in fields):
        return ("teacher",)
    return ()


def _affecting(point: dict[str, Any], free: tuple[str, ...]) -> tuple:
    """The values of the varied fields that are not in ``free`` (points equal here can share)."""
    return tuple(json.dumps(v, sort_keys=True, default=str) for k, v in sorted(point.items()) if not k.startswith(free))


def parse_vary(items: list[str]) -> dict[str, list[Any]]:
    """``["distill.temperature=1,2,4"]`` → ``{"distill.temperature": [1, 2, 4]}`` (YAML-parsed values)."""
    import yaml

    axes: dict[str, list[Any]] = {}
    for item in items:
        if "=" not in item:
            raise SpecError(f"--vary expects FIELD=v1,v2,..., got {item!r}")
        key, raw = item.split("=", 1)
        key = key.strip()
        values = [yaml.safe_load(v.strip()) for v in _split_values(raw)]
        if not key or not values or any(v is None for v in values):
            raise SpecError(f"--vary {key or '?'}: give at least one value, e.g. {key or 'distill.temperature'}=1,2,4")
        if key in axes:
            raise SpecError(f"--vary {key}: the field is varied twice")
        axes[key] = values
    if len(axes) > MAX_AXES:
        raise SpecError(f"--vary: at most {MAX_AXES} fields at once")
    return axes


def _split_values(raw: str) -> list[str]:
    """Split on commas outside brackets, so ``[image],[image,audio]`` gives two values."""
    out, depth, cur = [], 0, ""
    for ch in raw:
        depth += ch in "[{"
        depth -= ch in "]}"
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur)
    return out


def point_spec(base: ExperimentSpec, point: dict[str, Any], seed: int, name: str | None = None,
               description: str | None = None) -> ExperimentSpec:
    """The spec of one (grid point, seed): ``base`` with the point's fields and ``data.seed``
    (and the run's ``name`` / ``description`` when given)."""
    data = base.to_dict()
    for key, value in point.items():
        apply_assignment(data, f"{key}={json.dumps(value)}")
    data["data"]["seed"] = seed
    if name is not None:
        data["name"] = name
    if description is not None:
        data["description"] = description
    return validate_spec(data)


def point_label(point: dict[str, Any]) -> str:
    """A short label of a grid point: ``{"distill.temperature": 2}`` → ``"temperature=2"``: the last
    part of each field, more parts where that would be generic (``kd.weight=0.5``) or ambiguous."""
    fields = list(point)

    def short(f: str, n: int) -> str:
        return ".".join(f.split(".")[-n:])

    out = []
    for f in fields:
        n = 2 if f.split(".")[-1] in ("weight", "params") else 1
        while n < len(f.split(".")) and sum(short(g, n) == short(f, n) for g in fields) > 1:
            n += 1
        out.append(f"{short(f, n)}={_value_text(point[f])}")
    return ", ".join(out)


def _value_text(v: Any) -> str:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return f"{v:g}"
    return v if isinstance(v, str) else json.dumps(v, default=str)


def point_run_name(base_name: str, point: dict[str, Any], seed: int) -> str:
    """The name of a saved grid point's run: ``"multiview-kd · temperature=2 · seed 1"`` (within the
    spec's 80 characters: the base name is shortened first)."""
    tail = f" · {point_label(point)} · seed {seed}"
    room = 80 - len(tail)
    if room < 8:  # a very long label: keep the seed, cut the label
        return (f"{base_name[:20]} · {point_label(point)}")[:80 - len(f" · seed {seed}")] + f" · seed {seed}"
    return (base_name if len(base_name) <= room else base_name[:room - 1] + "…") + tail


class RunStore(Protocol):
    """Where a saved sweep stores its runs (``run_grid(..., store=...)``; implemented above this
    layer, by ``kdcore.store.sweep_store.SweepRunStore``)."""

    def callbacks(self) -> list[Callback]:
        """The callbacks that store one more experiment (a run folder and a registry row)."""

    def has_run(self, run_id: str) -> bool:
        """Whether a finished run with this id is stored, with its result."""


class _RunsBegun(Callback):
    """Keeps ``runs`` = the experiments of a saved sweep that began and have not ended (a stop or a
    failure during a stacked group's training leaves the group's other runs begun)."""

    def __init__(self, runs: list[Experiment]):
        self.runs = runs

    def on_run_start(self, experiment: Any) -> None:
        self.runs.append(experiment)

    def on_run_end(self, experiment: Any, result: Any) -> None:
        if experiment in self.runs:
            self.runs.remove(experiment)


@dataclass
class _Saving:
    """How a saved sweep stores its experiments: the store's callbacks, each run's name and
    description, and the runs begun but not ended (ended by :meth:`abandon_begun`)."""

    store: RunStore
    base: ExperimentSpec
    axes: dict[str, list[Any]]
    seeds: int
    sweep: str  # the sweep's id: its cache file's stem ("" without a cache)
    begun: list[Experiment] = field(default_factory=list)

    def spec(self, point: dict[str, Any], seed: int) -> ExperimentSpec:
        over = "; ".join(f"{f} = {', '.join(json.dumps(v, default=str) for v in vs)}" for f, vs in self.axes.items())
        desc = (f"Grid point {point_label(point)}, seed {seed} (of seeds 0–{self.seeds - 1}), of the sweep "
                f"{self.sweep + ' ' if self.sweep else ''}of {self.base.name} over {over}. Phases shared with the "
                "seed's other grid points are under `adopted` in result.json, with the run that trained them.")
        return point_spec(self.base, point, seed, point_run_name(self.base.name, point, seed), desc)

    def callbacks(self) -> list[Callback]:
        return [*self.store.callbacks(), _RunsBegun(self.begun)]

    def has_run(self, row: dict[str, Any]) -> bool:
        return bool(row.get("run_id")) and self.store.has_run(row["run_id"])

    def abandon_begun(self, exc: BaseException) -> None:
        """End every run begun and not ended (stopped by a stop, failed by anything else), so no
        stored run stays ``running``."""
        why = "" if isinstance(exc, StopRequested) else \
            f"not trained: the sweep failed before this grid point's run ({type(exc).__name__}: {exc})"
        for exp in list(self.begun):
            exp.abandon(exc, why)


def _spec_of(base: ExperimentSpec, point: dict[str, Any], seed: int, saving: _Saving | None) -> ExperimentSpec:
    return saving.spec(point, seed) if saving is not None else point_spec(base, point, seed)


def _callbacks_of(saving: _Saving | None) -> list[Callback]:
    return saving.callbacks() if saving is not None else []


class _SharingExperiment(Experiment):
    """An experiment that takes the named phases from a donor experiment of the same seed."""

    def __init__(self, spec: ExperimentSpec, donor: Experiment | None, share: tuple[str, ...],
                 should_stop=None, callbacks: list[Callback] | tuple[Callback, ...] = ()):
        super().__init__(spec, callbacks=callbacks, should_stop=should_stop)
        self.donor, self.share = donor, set(share) if donor is not None else set()

    def _adopt(self, name: str) -> None:
        self.adopt(name, self.donor)

    def _teacher(self) -> None:
        if "teacher" not in self.share:
            return super()._teacher()
        for name in self.donor.results:
            if name.startswith("teacher") or name == "ensemble":
                self._adopt(name)
        self.teacher = self.donor.teacher
        self.models["teacher"] = self.donor.models["teacher"]

    def run_phase(self, cfg, train=None):
        if cfg.name == "baseline" and "baseline" in self.share:
            self._adopt("baseline")
            return self.results["baseline"]
        return super().run_phase(cfg, train)


def result_row(res) -> dict[str, Any]:
    """The accuracies (and fidelity numbers) of one finished run, as a grid row stores them."""
    row: dict[str, Any] = {name: r["test_acc"] for name, r in res.phases.items()}
    for name, r in res.phases.items():
        for k in ("agreement", "kl_to_teacher", "ece", "omitted_acc", "omitted_acc_corrected"):
            if isinstance(r.get(k), float):
                row[f"{name}.{k}"] = r[k]
    return row


@dataclass
class GridResult:
    base: str
    axes: dict[str, list[Any]]
    seeds: int
    shared: tuple[str, ...]
    rows: list[dict[str, Any]] = field(default_factory=list)  # one per (point, seed)
    trained: int = 0  # rows trained now (the rest came from the cache)
    cache_file: str | None = None
    stacked: list[str] = field(default_factory=list)  # per group of points: what trained stacked, or why not

    def points(self) -> list[dict[str, Any]]:
        keys = list(self.axes)
        return [dict(zip(keys, combo)) for combo in itertools.product(*self.axes.values())]

    def summary(self) -> list[dict[str, Any]]:
        out = []
        for point in self.points():
            rows = [r for r in self.rows if r["point"] == point]
            if not rows:
                continue
            entry: dict[str, Any] = {"point": point, "n": len(rows)}
            for phase in ("teacher", "baseline", "kd"):
                xs = [100 * r["acc"][phase] for r in rows if phase in r["acc"]]
                if xs:
                    entry[phase] = {"mean": statistics.fmean(xs), "std": statistics.stdev(xs) if len(xs) > 1 else 0.0}
            gains = [100 * (r["acc"]["kd"] - r["acc"]["baseline"]) for r in rows
                     if "kd" in r["acc"] and "baseline" in r["acc"]]
            v = seed_verdict(gains)
            entry["gain"] = {"mean": v.mean, "std": v.std, "per_seed": gains}
            entry["verdict"] = v.label
            for k in ("kd.agreement", "baseline.agreement"):
                xs = [100 * r["acc"][k] for r in rows if k in r["acc"]]
                if xs:
                    entry[k] = statistics.fmean(xs)
            out.append(entry)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"base": self.base, "axes": self.axes, "seeds": self.seeds, "shared": list(self.shared),
                "trained": self.trained, "cache_file": self.cache_file,
                "stacked": self.stacked, "points": self.summary(), "rows": self.rows}

    def table(self) -> str:
        keys = list(self.axes)
        head = "| " + " | ".join(keys) + " | teacher | baseline | KD | KD gain (points) | verdict | agreement KD |"
        lines = [head, "|" + "---|" * (len(keys) + 6)]
        for e in self.summary():
            f = lambda p: f"{e[p]['mean']:.1f} ± {e[p]['std']:.1f}" if p in e else "–"  # noqa: E731
            lines.append("| " + " | ".join(str(e["point"][k]) for k in keys) +
                         f" | {f('teacher')} | {f('baseline')} | {f('kd')} | "
                         f"{e['gain']['mean']:+.1f} ± {e['gain']['std']:.1f} | {e['verdict']} ({e['n']}) | "
                         f"{e.get('kd.agreement', float('nan')):.1f} |")
        shares = sorted({", ".join(r.get("shared") or []) for r in self.rows} - {""})
        if self.shared:
            shared = " and ".join(self.shared) + " trained once per seed and shared by every grid point"
        elif shares:
            shared = (f"{' / '.join(shares)} shared between grid points that differ only in fields those phases "
                      "do not read")
        else:
            shared = "nothing (every varied field affects the teacher)"
        lines.append(f"Test accuracy %, mean ± std over {self.seeds} seeds; gain paired per seed. Shared: {shared}. "
                     f"Rows trained now: {self.trained} of {len(self.rows)} (the rest from {self.cache_file or 'no cache'}).")
        lines += [f"Students trained together: {note}" for note in self.stacked]
        stored = [r["run_id"] for r in self.rows if r.get("run_id")]
        if stored:
            lines.append(f"Stored runs: {len(stored)} of {len(self.rows)} rows (one per grid point and seed; "
                         f"`python -m kdcore runs`, the Compare page), e.g. {stored[0]}.")
        return "\n".join(lines)


def cache_path(base: ExperimentSpec, axes: dict[str, list[Any]], root: Path) -> Path:
    d = base.to_dict()
    d.pop("name", None)
    d.pop("description", None)
    key = json.dumps({"spec": d, "axes": axes}, sort_keys=True, default=str)
    return root / "sweeps" / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def point_key(point: dict[str, Any], seed: int) -> str:
    """The cache key of one (grid point, seed) row."""
    return json.dumps({"point": point, "seed": seed}, sort_keys=True, default=str)


def save_cache(path: Path, cache: dict[str, Any]) -> None:
    """Write the sweep cache atomically (temp file + rename), so a stop never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(cache, indent=1, default=str), encoding="utf-8")
    tmp.replace(path)


def start_grid(base: ExperimentSpec, axes: dict[str, list[Any]], seeds: int,
               cache_root: str | Path | None) -> tuple["GridResult", Path | None, dict[str, Any]]:
    """An empty :class:`GridResult`, its cache file (None without ``cache_root``) and the rows
    already in it; every grid point is checked to be a valid spec before anything trains."""
    if seeds < 1:
        raise SpecError("--seeds must be ≥ 1")
    result = GridResult(base.name, axes, seeds, shared_phases(list(axes)))  # shared at every point
    for point in result.points():
        point_spec(base, point, 0)
    cache: dict[str, Any] = {}
    path = None
    if cache_root is not None:
        path = cache_path(base, axes, Path(cache_root))
        result.cache_file = str(path)
        if path.is_file():
            cache = json.loads(path.read_text(encoding="utf-8"))
    return result, path, cache


def run_grid(base: ExperimentSpec, axes: dict[str, list[Any]], seeds: int, progress: TextIO | None = None,
             cache_root: str | Path | None = None, on_row=None, should_stop=None, stack: bool = True,
             store: RunStore | None = None, stack_seeds: bool = True) -> GridResult:
    """Train the grid (``axes`` × seeds 0..seeds−1), reusing shared phases and cached rows.

    ``on_row(row)`` is called after every finished row (the app's live chart); ``should_stop()``
    is checked between rows. ``stack``: train the students of every group of points that differ only
    in ``distill.*`` together (:mod:`kdcore.pipeline.stacked_grid`; ``result.stacked`` says how),
    and, with ``stack_seeds``, the teachers and students of every seed at once (faster; the rows
    then all arrive at the end instead of seed by seed).
    ``store``: save every grid point × seed as a stored run (module docstring, "Saving")."""
    result, path, cache = start_grid(base, axes, seeds, cache_root)
    saving = None if store is None else _Saving(store, base, dict(axes), seeds, path.stem if path else "")
    try:
        _train_rows(result, base, cache, path, progress, on_row, should_stop, stack, saving, stack_seeds)
    except BaseException as exc:
        if saving is not None:
            saving.abandon_begun(exc)
        if not isinstance(exc, StopRequested):
            raise
    if saving is not None:  # a stop inside a stacked group leaves its other runs begun: they stopped too
        saving.abandon_begun(StopRequested())
    return result


def _train_rows(result: GridResult, base: ExperimentSpec, cache: dict[str, Any], path: Path | None,
                progress: TextIO | None, on_row, should_stop, stack: bool, saving: _Saving | None,
                stack_seeds: bool = True) -> None:
    """Fill ``result.rows``: cached rows first, then the missing ones trained (and cached) — seed by
    seed, or every seed at once when the students of all seeds train stacked (``stack_seeds``);
    returns early when a run stops, raises ``StopRequested`` when stopped mid-group."""
    points = result.points()
    # seeds together: as many seeds per round as keep ≤ MAX_ROWS_TOGETHER experiments (each with its own
    # data and models) alive at once
    per_round = max(1, MAX_ROWS_TOGETHER // len(points)) if (stack and stack_seeds) else 1
    rounds = [list(range(s, min(result.seeds, s + per_round))) for s in range(0, result.seeds, per_round)]
    for seeds in rounds:
        todo: dict[int, list[dict[str, Any]]] = {}
        for seed in seeds:
            for point in points:
                key = point_key(point, seed)
                if key in cache and (saving is None or saving.has_run(cache[key])):
                    result.rows.append(cache[key])
                else:
                    todo.setdefault(seed, []).append(point)
        if stack:
            runs = _stacked_runs(base, todo, should_stop, result.stacked, saving)
        else:
            runs = ((seed, *run) for seed in seeds for run in _sequential_runs(base, todo.get(seed, []), seed,
                                                                               should_stop, saving))
        for seed, point, exp, res in runs:
            if res.status == "stopped":
                return
            if res.status != "finished":
                raise RuntimeError(f"{point} seed {seed}: run {res.status}: {res.message}")
            row = _row(point, seed, exp, res, saving)
            result.rows.append(row)
            result.trained += 1
            cache[point_key(point, seed)] = row
            if path is not None:
                save_cache(path, cache)
            if progress is not None:
                a = row["acc"]
                progress.write(f"[{base.name}] {point} seed {seed}: baseline {100 * a['baseline']:.1f} "
                               f"kd {100 * a['kd']:.1f}" + (f" (shared: {', '.join(row['shared'])})"
                                                           if row["shared"] else "") + "\n")
                progress.flush()
            if on_row is not None:
                on_row(row)
        if should_stop is not None and should_stop():
            return


def _row(point: dict[str, Any], seed: int, exp: Experiment, res, saving: _Saving | None) -> dict[str, Any]:
    """The cached row of one finished (grid point, seed) run; a saved run's row names its run and,
    per shared phase, the run that trained it."""
    row: dict[str, Any] = {"point": point, "seed": seed, "acc": result_row(res), "shared": sorted(exp.share)}
    if saving is not None:
        row["run_id"] = exp.run_id
        row["shared_from"] = dict(exp.adopted)
    return row


def _sequential_runs(base: ExperimentSpec, todo: list[dict[str, Any]], seed: int, should_stop=None,
                     saving: _Saving | None = None):
    """One run per grid point of ``seed``, sharing the phases a varied field cannot affect."""
    donors: dict[tuple, Experiment] = {}  # per seed: the first experiment of each group of points
    for point in todo:
        if should_stop is not None and should_stop():
            return
        spec = _spec_of(base, point, seed, saving)
        b_key, t_key = ("b", _affecting(point, KD_ONLY)), ("t", _affecting(point, TEACHER_FREE))
        # should_stop: a stop ends the row in training, not only between rows
        if b_key in donors:
            donor, share = donors[b_key], ("teacher", "baseline")
        elif t_key in donors:
            donor, share = donors[t_key], ("teacher",)
        else:
            donor, share = None, ()
        exp = _SharingExperiment(spec, donor, share, should_stop, _callbacks_of(saving))
        res = exp.run()
        yield point, exp, res
        donors.setdefault(b_key, exp)
        donors.setdefault(t_key, exp)


def _stacked_runs(base: ExperimentSpec, todo: dict[int, list[dict[str, Any]]], should_stop, notes: list[str],
                  saving: _Saving | None = None):
    """The grid points of every seed in ``todo`` grouped (per seed) by what is not ``distill.*``;
    the teachers and the students (baseline and KD) of all of them train in as few stacked models
    as they allow (:mod:`kdcore.pipeline.stacked_grid`). Yields ``(seed, point, experiment, result)``."""
    from kdcore.pipeline.stacked_grid import run_stacked_groups

    if base.student.kind == "tree":  # boosted trees grow one at a time (LightGBM), nothing to stack
        for seed, points in todo.items():
            notes.append(f"seed {seed}: one at a time: tree students (student.kind=tree) are not stacked")
            for run in _sequential_runs(base, points, seed, should_stop, saving):
                yield (seed, *run)
        return
    groups: list[tuple[int, list]] = []
    for seed, points in todo.items():
        by_key: dict[tuple, list] = {}
        for point in points:
            by_key.setdefault(_affecting(point, KD_ONLY), []).append(
                (point, _spec_of(base, point, seed, saving), _affecting(point, TEACHER_FREE)))
        groups += [(seed, group) for group in by_key.values()]
    if groups:
        yield from run_stacked_groups(groups, should_stop, notes,
                                      callbacks=saving.callbacks if saving is not None else None)
