"""Training figures: loss terms per step (EMA-smoothed), accuracy per epoch for every phase on one
chart, adaptive weights / temperature, learning rate; the result table and a plain-words verdict.

Inputs are event dicts (``Event.to_dict()``): the same shape comes from a live job snapshot and from
a run folder's ``metrics.jsonl``, so the Train and Compare pages share these builders.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd
import plotly.graph_objects as go

import kdcore.viz.fast as fast

PHASE_COLORS = {"teacher": "#495057", "baseline": "#F08C00", "kd": "#4C6EF5", "ard": "#2F9E44", "prune": "#AE3EC9"}
PALETTE = ["#4C6EF5", "#F03E3E", "#2F9E44", "#F08C00", "#AE3EC9", "#1098AD", "#E64980", "#5C940D", "#495057",
           "#D9480F"]
PHASE_DASH = {"teacher": "dot", "baseline": "dash", "kd": "solid"}
# A fixed colour per loss term name, the same in every run and on every chart (loss terms, weights):
# the registered losses have their own; any other name is hashed into the palette.
TERM_COLORS = {"total": "#212529", "ce": "#F03E3E", "kd": "#4C6EF5", "dkd": "#1098AD", "logit_mse": "#7048E8",
               "fitnet": "#2F9E44", "at": "#F08C00", "ab": "#AE3EC9", "sp": "#E64980", "rkd": "#5C940D",
               "pkt": "#D9480F", "attention_kd": "#0B7285", "modality_feature_kd": "#862E9C",
               "crossmodal_feature_kd": "#C2255C", "aux_kd": "#364FC7"}


def term_color(term: str) -> str:
    """The colour of loss term ``term``: fixed for the registered losses, else a stable hash of the name."""
    if term in TERM_COLORS:
        return TERM_COLORS[term]
    import zlib

    return PALETTE[zlib.crc32(term.encode("utf-8")) % len(PALETTE)]


def phase_color(phase: str, i: int = 0) -> str:
    return PHASE_COLORS.get(phase, PALETTE[i % len(PALETTE)])


def ema(values: Sequence[float], smoothing: float) -> list[float]:
    """Debiased exponential moving average (TensorBoard's smoothing): ``smoothing`` ∈ [0, 1).

    s_t = smoothing · s_{t−1} + (1 − smoothing) · v_t, divided by (1 − smoothingᵗ) so the first
    points are not pulled towards zero. Non-finite values pass through unsmoothed."""
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    out, acc, n = [], 0.0, 0
    for v in values:
        if v is None or not math.isfinite(v):
            out.append(v)
            continue
        n += 1
        acc = smoothing * acc + (1.0 - smoothing) * v
        out.append(acc / (1.0 - smoothing ** n) if smoothing > 0 else v)
    return out


MAX_POINTS = 400  # per trace: a chart is ~700 px wide; more points only cost the browser redraw time


def thin(xs: Sequence[Any], ys: Sequence[Any], max_points: int = MAX_POINTS) -> tuple[list, list]:
    """At most ``max_points`` evenly spaced points of a series, always keeping the first and last
    (smooth first, then thin: the EMA is computed on every step)."""
    n = len(xs)
    if n <= max_points:
        return list(xs), list(ys)
    idx = [round(i * (n - 1) / (max_points - 1)) for i in range(max_points)]
    return [xs[i] for i in idx], [ys[i] for i in idx]


def _phase_offsets(steps: Iterable[Mapping[str, Any]]) -> tuple[dict[str, int], list[str]]:
    """x offset of each phase so the whole run reads left to right on one step axis."""
    order: list[str] = []
    last: dict[str, int] = {}
    for e in steps:
        p = e["phase"]
        if p not in last:
            order.append(p)
        last[p] = max(last.get(p, 0), int(e["step"]))
    offsets, acc = {}, 0
    for p in order:
        offsets[p] = acc
        acc += last[p] + 1
    return offsets, order


def loss_terms_figure(steps: Sequence[Mapping[str, Any]], smoothing: float = 0.6, log_y: bool = False,
                      uirevision: str = "losses", x_title: str = "optimiser step (phases in order)") -> go.Figure:
    """Every named loss term (and the weighted total) per optimiser step, phases side by side.

    Raw values are drawn faint, the EMA-smoothed curve solid (``smoothing`` = 0 shows raw only)."""
    offsets, order = _phase_offsets(steps)
    series: dict[tuple[str, str], tuple[list[int], list[float]]] = {}
    for e in steps:
        x = offsets[e["phase"]] + int(e["step"])
        for term, value in {**e["terms"], "total": e["total"]}.items():
            xs, ys = series.setdefault((e["phase"], term), ([], []))
            xs.append(x)
            ys.append(float(value))
    term_names = sorted({t for _, t in series}, key=lambda t: (t == "total", t))
    terms_per_phase: dict[str, int] = {}
    for p, _ in series:
        terms_per_phase[p] = terms_per_phase.get(p, 0) + 1
    traces: list[dict[str, Any]] = []
    shown: set[str] = set()
    for (phase, term), (xs, ys) in series.items():
        if term == "total" and terms_per_phase[phase] == 2:
            continue  # a single term: the total is the same curve
        color = term_color(term)
        if smoothing > 0:
            rx, ry = thin(xs, ys)
            traces.append(fast.scatter(x=rx, y=ry, mode="lines", line={"color": color, "width": 1}, opacity=0.25,
                                       legendgroup=term, showlegend=False, hoverinfo="skip",
                                       name=f"{term} raw ({phase})"))
        sx, sy = thin(xs, ema(ys, smoothing))
        traces.append(fast.scatter(x=sx, y=sy, mode="lines", line={"color": color, "width": 2},
                                   legendgroup=term, showlegend=term not in shown, name=term,
                                   customdata=[phase] * len(sx),
                                   hovertemplate=f"{term}<br>phase %{{customdata}}<br>step %{{x}}<br>%{{y:.4g}}"
                                                 "<extra></extra>"))
        shown.add(term)
    lay = fast.layout("Loss terms per step", x_title, "loss", uirevision,
                      legend_lines=fast.legend_rows(term_names),
                      shapes=[fast.vline(offsets[p], color="#adb5bd", dash="dot", width=1) for p in order],
                      annotations=[{"x": offsets[p], "y": 0.99, "yref": "paper", "text": p, "showarrow": False,
                                    "xanchor": "left", "yanchor": "top",
                                    "font": {"size": 11, "color": phase_color(p)}} for p in order])
    if log_y:
        lay["yaxis"]["type"] = "log"
        positive = [v for _, ys in series.values() for v in ys if v > 0 and math.isfinite(v)]
        if positive:  # readable ticks (0.01, 0.02, 0.05, …) instead of plotly's minor-digit labels
            ticks = fast.log_ticks(min(positive), max(positive))
            lay["yaxis"].update(tickvals=ticks, ticktext=fast.tick_text(ticks))
    return fast.figure(traces, lay)


def accuracy_figure(epochs: Sequence[Mapping[str, Any]], result: Mapping[str, Any] | None = None,
                    uirevision: str = "accuracy", x_title: str = "epoch") -> go.Figure:
    """Validation accuracy per epoch for teacher, baseline student and KD student on one chart
    (train accuracy dotted); with a ``result``, each phase's final test accuracy as a marker. Tree
    students report one point per boosting round (``x_title`` then says so)."""
    traces: list[dict[str, Any]] = []
    by_phase: dict[str, list[Mapping[str, Any]]] = {}
    for e in epochs:
        by_phase.setdefault(e["phase"], []).append(e)
    for i, (phase, rows) in enumerate(by_phase.items()):
        color = phase_color(phase, i)
        xs = [r["epoch"] for r in rows]
        traces.append(fast.scatter(x=xs, y=[100 * r["val_acc"] for r in rows], mode="lines+markers",
                                   name=f"{phase} (val)", line={"color": color, "width": 2}, legendgroup=phase))
        traces.append(fast.scatter(x=xs, y=[100 * r["train_acc"] for r in rows], mode="lines",
                                   name=f"{phase} (train)", line={"color": color, "width": 1, "dash": "dot"},
                                   legendgroup=phase, opacity=0.7))
    if result:
        for i, (phase, r) in enumerate((result.get("phases") or {}).items()):
            if r.get("test_acc") is None:
                continue
            x = r.get("best_epoch") or 0
            traces.append(fast.scatter(x=[x], y=[100 * r["test_acc"]], mode="markers", legendgroup=phase,
                                       marker={"symbol": "star", "size": 14, "color": phase_color(phase, i)},
                                       name=f"{phase} test (best-val epoch)"))
    lay = fast.layout("Accuracy per epoch", x_title, "accuracy (%)", uirevision, height=380,
                      legend={"orientation": "v", "x": 1.02, "y": 1.0, "yanchor": "top", "xanchor": "left"})
    lay["yaxis"]["rangemode"] = "tozero"
    return fast.figure(traces, lay)


def uses_adaptive_strategy(steps: Sequence[Mapping[str, Any]]) -> bool:
    """True when weights or temperature change during a phase (adaptive weighting, T schedule)."""
    seen_w: dict[tuple[str, str], float] = {}
    seen_t: dict[str, float] = {}
    for e in steps:
        for k, w in e["weights"].items():
            key = (e["phase"], k)
            if key in seen_w and abs(seen_w[key] - w) > 1e-9:
                return True
            seen_w[key] = w
        t = e.get("temperature")
        if t is not None:
            if e["phase"] in seen_t and abs(seen_t[e["phase"]] - t) > 1e-9:
                return True
            seen_t[e["phase"]] = t
    return False


def strategy_figure(steps: Sequence[Mapping[str, Any]], phases: Iterable[str] | None = None,
                    uirevision: str = "strategy") -> go.Figure:
    """Effective weight of every term (left axis) and the temperature (right axis) per step,
    for the distillation phases (those with a temperature) unless ``phases`` is given."""
    keep = set(phases) if phases is not None else {e["phase"] for e in steps if e.get("temperature") is not None}
    rows = [e for e in steps if e["phase"] in keep]
    offsets, order = _phase_offsets(rows)
    weights: dict[str, tuple[list[int], list[float]]] = {}
    temps: tuple[list[int], list[float]] = ([], [])
    for e in rows:
        x = offsets[e["phase"]] + int(e["step"])
        for k, w in e["weights"].items():
            xs, ys = weights.setdefault(k, ([], []))
            xs.append(x)
            ys.append(float(w))
        if e.get("temperature") is not None:
            temps[0].append(x)
            temps[1].append(float(e["temperature"]))
    traces = [fast.scatter(**dict(zip(("x", "y"), thin(xs, ys))), mode="lines", name=f"weight {k}",
                           line={"color": term_color(k), "width": 2})
              for k, (xs, ys) in sorted(weights.items())]
    if temps[0]:
        tx, ty = thin(*temps)
        traces.append(fast.scatter(x=tx, y=ty, mode="lines", name="temperature T", yaxis="y2",
                                   line={"color": "#212529", "width": 2, "dash": "dash"}))
    return fast.figure(traces, fast.layout(
        "Loss weights and temperature", "optimiser step (" + ", ".join(order) + ")", "effective weight", uirevision,
        legend_lines=fast.legend_rows([t["name"] for t in traces]),
        yaxis2={"title": {"text": "temperature"}, "overlaying": "y", "side": "right", "rangemode": "tozero"}))


def lr_figure(steps: Sequence[Mapping[str, Any]], uirevision: str = "lr") -> go.Figure:
    """Learning rate per step for every phase (cosine annealing within each phase)."""
    offsets, order = _phase_offsets(steps)
    by_phase: dict[str, tuple[list[int], list[float]]] = {}
    for e in steps:
        xs, ys = by_phase.setdefault(e["phase"], ([], []))
        xs.append(offsets[e["phase"]] + int(e["step"]))
        ys.append(float(e["lr"]))
    traces = [fast.scatter(**dict(zip(("x", "y"), thin(xs, ys))), mode="lines", name=phase,
                           line={"color": phase_color(phase, i)})
              for i, (phase, (xs, ys)) in enumerate(by_phase.items())]
    return fast.figure(traces, fast.layout("Learning rate", "optimiser step (phases in order)", "learning rate",
                                           uirevision, height=260))


def overlay_figure(runs: Mapping[str, Sequence[Mapping[str, Any]]], metric: str = "val_acc", phase: str = "kd",
                   uirevision: str = "overlay") -> go.Figure:
    """One curve per run: ``metric`` of ``EpochMetrics`` events of ``phase`` against the epoch."""
    pct = metric.endswith("acc")
    traces = []
    for i, (label, events) in enumerate(runs.items()):
        rows = [e for e in events if e.get("kind", "EpochMetrics") == "EpochMetrics" and e.get("phase") == phase
                and metric in e]
        if rows:
            traces.append(fast.scatter(x=[r["epoch"] for r in rows], y=[(100 if pct else 1) * r[metric] for r in rows],
                                       mode="lines+markers", name=label, line={"color": PALETTE[i % len(PALETTE)]}))
    return fast.figure(traces, fast.layout(f"{metric} of phase '{phase}' per epoch", "epoch",
                                           metric + (" (%)" if pct else ""), uirevision,
                                           height=340 + 24 * max(0, fast.legend_rows(list(runs)) - 1),
                                           legend_lines=fast.legend_rows(list(runs))))


# ---- result -------------------------------------------------------------------------------
def result_table(result: Mapping[str, Any]) -> pd.DataFrame:
    """One row per phase: test / val accuracy (%), best epoch, parameters, seconds, and the gain over
    the no-KD baseline for student phases."""
    phases = result.get("phases") or {}
    base = phases.get("baseline", {}).get("test_acc")
    rows = []
    for name, r in phases.items():
        gain = None
        if base is not None and name not in ("teacher", "baseline") and r.get("test_acc") is not None:
            gain = round(100 * (r["test_acc"] - base), 2)
        rows.append({
            "phase": name,
            "test acc (%)": round(100 * r["test_acc"], 2) if r.get("test_acc") is not None else None,
            "val acc (%)": round(100 * r["val_acc"], 2) if r.get("val_acc") is not None else None,
            "best epoch": r.get("best_epoch"),
            "parameters": r.get("params"),
            "seconds": r.get("seconds"),
            "gain vs baseline (points)": gain,
        })
    return pd.DataFrame(rows)


def verdict(result: Mapping[str, Any], seeds: int = 1, noise_points: float = 0.5) -> str:
    """A plain-words verdict on the KD gain (test accuracy, KD student − no-KD baseline).

    Gains within ±``noise_points`` are called "no clear difference"; a single seed is flagged as
    such because seed-to-seed spread on these small sets is often a point or more."""
    status = result.get("status", "finished")
    phases = result.get("phases") or {}
    if status != "finished" and ("kd" not in phases or "baseline" not in phases):
        msg = result.get("message") or status
        return f"The run ended early ({status}: {msg}); there is no KD result to judge."
    if "kd" not in phases or "baseline" not in phases:
        return "No KD result yet."
    gain = 100 * (phases["kd"]["test_acc"] - phases["baseline"]["test_acc"])
    runs = f"{seeds} seed{'s' if seeds != 1 else ''}"
    caveat = "" if seeds >= 3 else " — one run is not evidence; repeat over ≥3 seeds (python -m kdcore sweep)"
    t_acc = phases.get("teacher", {}).get("test_acc")
    teacher = f" The teacher scored {100 * t_acc:.1f}%." if t_acc is not None else ""
    if gain >= noise_points:
        head = f"KD helped by {gain:+.1f} points ({runs})"
    elif gain <= -noise_points:
        head = (f"KD hurt: the distilled student is {-gain:.1f} points below the same student trained without "
                f"the teacher ({runs})")
    else:
        head = f"No clear difference: KD changed test accuracy by {gain:+.1f} points ({runs})"
    return head + caveat + "." + teacher


def aggregate_results(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean test / val accuracy per phase over finished runs of the same spec with different seeds,
    plus ``gain_std`` (points) — the seed-to-seed spread of the KD gain. Feed it to :func:`verdict`."""
    done = [r for r in results if r.get("status") == "finished" and r.get("phases")]
    if not done:
        return {"status": "running", "phases": {}, "message": "no finished seed yet"}
    phases: dict[str, dict[str, Any]] = {}
    for name in done[0]["phases"]:
        rows = [r["phases"][name] for r in done if name in r["phases"]]
        phases[name] = {k: sum(x[k] for x in rows) / len(rows) for k in ("test_acc", "val_acc")}
        phases[name]["params"] = rows[0].get("params")
    gains = [100 * (r["phases"]["kd"]["test_acc"] - r["phases"]["baseline"]["test_acc"]) for r in done
             if "kd" in r["phases"] and "baseline" in r["phases"]]
    std = None
    if len(gains) > 1:
        mean = sum(gains) / len(gains)
        std = (sum((g - mean) ** 2 for g in gains) / (len(gains) - 1)) ** 0.5
    return {"status": "finished", "phases": phases, "message": "", "seeds": len(done), "gains": gains,
            "gain_std": std}
