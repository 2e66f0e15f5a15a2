"""Teaching figures for the temperature explorer: softmax at temperature T, hard vs soft targets, and
how the KD loss and its gradient scale move with T.

With p^T = softmax(z / T), the KD term for one sample is

    L_KD(T) = T² · KL(p_t^T ‖ p_s^T),     ∂L_KD / ∂z_s = T · (p_s^T − p_t^T)

(Hinton et al. 2015). For large T and zero-mean logits, p^T ≈ 1/N + z/(N·T), so
p_s − p_t ≈ (z_s − z_t)/(N·T): with the T² factor the gradient tends to (z_s − z_t)/N (logit
matching), without it it would vanish like 1/T². The T² keeps the soft term on the same scale as
the hard-label CE while T changes.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go

import kdcore.viz.fast as fast

TEACHER_COLOR, STUDENT_COLOR, HARD_COLOR = "#4C6EF5", "#F08C00", "#495057"


def softmax_t(logits: Sequence[float] | np.ndarray, temperature: float) -> np.ndarray:
    """softmax(z / T), numerically stable; works on [C] or [B, C]."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def kd_quantities(teacher_logits: Sequence[float], student_logits: Sequence[float],
                  temperatures: Sequence[float]) -> dict[str, np.ndarray]:
    """For one sample and each T: KL(p_t^T‖p_s^T), the KD loss T²·KL, the L2 norm of the KD gradient
    w.r.t. the student logits with (T‖p_s−p_t‖) and without (‖p_s−p_t‖/T) the T² factor, and the
    teacher's entropy (nats) — how "soft" its targets are. Vectorised over T."""
    ts = np.asarray(temperatures, dtype=np.float64).reshape(-1)
    if np.any(ts <= 0):
        raise ValueError(f"temperature must be > 0, got {ts.min()}")
    zt = np.asarray(teacher_logits, dtype=np.float64)[None, :] / ts[:, None]
    zs = np.asarray(student_logits, dtype=np.float64)[None, :] / ts[:, None]
    log_pt = zt - zt.max(1, keepdims=True)
    log_pt -= np.log(np.exp(log_pt).sum(1, keepdims=True))
    log_ps = zs - zs.max(1, keepdims=True)
    log_ps -= np.log(np.exp(log_ps).sum(1, keepdims=True))
    pt, ps = np.exp(log_pt), np.exp(log_ps)
    kl = np.sum(pt * (log_pt - log_ps), axis=1)
    diff = np.linalg.norm(ps - pt, axis=1)
    return {"kl": kl, "kd_loss": ts * ts * kl, "grad_norm": ts * diff, "grad_norm_no_t2": diff / ts,
            "teacher_entropy": -np.sum(pt * log_pt, axis=1)}


def pick_teaching_sample(teacher_logits: Sequence[Sequence[float]] | np.ndarray, labels: Sequence[int] | np.ndarray,
                         temperature: float = 4.0, margin: float = 0.1) -> int:
    """The index of the sample that shows dark knowledge best: among the samples the teacher classifies
    correctly (argmax at T = 1 is the label), the one whose soft target at ``temperature`` gives the
    *second* most likely class the largest probability, while the true class stays clearly first (at
    least ``margin`` above the runner-up, at ``temperature``).

    Falls back to the correct sample with the largest runner-up when none keeps the margin, and to
    the sample with the largest true-class probability when the teacher gets none right; 0 for an
    empty set."""
    z = np.asarray(teacher_logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    if z.ndim != 2 or z.shape[0] != y.shape[0]:
        raise ValueError(f"teacher_logits must be [N, C] with N = len(labels), got {z.shape} and {y.shape}")
    if z.shape[0] == 0:
        return 0
    p = softmax_t(z, temperature)
    rows = np.arange(len(y))
    p_true = p[rows, y]
    others = p.copy()
    others[rows, y] = -np.inf
    second = others.max(axis=1)
    correct = z.argmax(axis=1) == y
    clear = correct & (p_true - second >= margin)
    for ok in (clear, correct):
        if ok.any():
            return int(np.flatnonzero(ok)[np.argmax(second[ok])])
    return int(np.argmax(p_true))


def _two_panels(titles: tuple[str, str], gap: float = 0.1) -> dict:
    """Layout keys of a 1×2 subplot grid (what ``make_subplots(rows=1, cols=2)`` builds)."""
    half = (1 - gap) / 2
    doms = ([0.0, half], [1 - half, 1.0])
    return {
        "xaxis": {"domain": doms[0], "anchor": "y"}, "yaxis": {"anchor": "x"},
        "xaxis2": {"domain": doms[1], "anchor": "y2"}, "yaxis2": {"anchor": "x2"},
        "annotations": [{"text": t, "x": sum(d) / 2, "y": 1.0, "xref": "paper", "yref": "paper",
                         "xanchor": "center", "yanchor": "bottom", "showarrow": False, "font": {"size": 14}}
                        for t, d in zip(titles, doms)],
    }


def softmax_bars_figure(teacher_logits: Sequence[float], student_logits: Sequence[float] | None,
                        temperature: float, class_names: Sequence[str], label: int | None = None,
                        uirevision: str = "softmax") -> go.Figure:
    """Teacher (and student) class probabilities at temperature T as grouped bars; the true class is
    marked."""
    names = [str(c) for c in class_names]
    traces = [{"type": "bar", "x": names, "y": softmax_t(teacher_logits, temperature).tolist(),
               "name": f"teacher, T={temperature:g}", "marker": {"color": TEACHER_COLOR}}]
    if student_logits is not None:
        traces.append({"type": "bar", "x": names, "y": softmax_t(student_logits, temperature).tolist(),
                       "name": f"student, T={temperature:g}", "marker": {"color": STUDENT_COLOR}})
    notes = []
    if label is not None:
        # inside the plot area (not in the top margin, where it could sit on the title)
        notes.append({"x": names[label], "y": 1.03, "yref": "y", "yanchor": "bottom", "text": "▼ true class",
                      "showarrow": False, "font": {"size": 11}})
    return fast.figure(traces, fast.layout(
        f"Softmax at T = {temperature:g}", None, None, uirevision, barmode="group", annotations=notes,
        xaxis={"title": {"text": "class"}}, yaxis={"title": {"text": "probability"}, "range": [0, 1.15],
                                                   "tickvals": [0, 0.25, 0.5, 0.75, 1.0]}))


def hard_vs_soft_figure(label: int, teacher_logits: Sequence[float], temperature: float,
                        class_names: Sequence[str], uirevision: str = "hard-soft") -> go.Figure:
    """Side by side: the hard target (one-hot label, what CE learns from) and the teacher's soft
    target at T (what KD learns from: the relative sizes of the wrong classes — "dark knowledge")."""
    names = [str(c) for c in class_names]
    hard = [0.0] * len(names)
    hard[label] = 1.0
    traces = [
        {"type": "bar", "x": names, "y": hard, "marker": {"color": HARD_COLOR}, "name": "hard",
         "xaxis": "x", "yaxis": "y"},
        {"type": "bar", "x": names, "y": softmax_t(teacher_logits, temperature).tolist(),
         "marker": {"color": TEACHER_COLOR}, "name": "soft", "xaxis": "x2", "yaxis": "y2"},
    ]
    lay = fast.layout("Hard vs soft targets", None, None, uirevision, height=300, showlegend=False, top=70,
                      **_two_panels(("label (CE)", f"teacher at T={temperature:g} (KD)"), gap=0.04))
    lay["margin"]["b"] = 30  # no legend
    lay["yaxis"].update(title={"text": "probability"}, range=[0, 1.05])
    lay["yaxis2"].update(matches="y", showticklabels=False)  # shared y axis
    return fast.figure(traces, lay)


T_TICKS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)


def t_ticks(t_min: float, t_max: float) -> list[float]:
    """Tick values of a log temperature axis: the powers of two within [t_min, t_max] (0.5, 1, 2, 4, …),
    so the axis reads as the doublings of T instead of plotly's minor-digit labels."""
    vals = [t for t in T_TICKS if t_min <= t <= t_max]
    return vals if len(vals) >= 2 else fast.log_ticks(t_min, t_max)


def temperature_curves_figure(teacher_logits: Sequence[float], student_logits: Sequence[float],
                              current_t: float, t_min: float = 0.5, t_max: float = 20.0, points: int = 120,
                              uirevision: str = "t-curves") -> go.Figure:
    """KL and KD loss (left) and KD gradient norm with / without the T² factor (right) against T
    (log axis), with a marker at the current T."""
    ts = np.geomspace(t_min, t_max, points)
    q = kd_quantities(teacher_logits, student_logits, ts)
    now = kd_quantities(teacher_logits, student_logits, [current_t])
    x = ts.tolist()

    def curve(key: str, name: str, panel: str, **line) -> dict:
        return fast.scatter(x=x, y=q[key].tolist(), name=name, line=line, xaxis=f"x{panel}", yaxis=f"y{panel}")

    traces = [
        curve("kl", "KL(p_t‖p_s)", "", color=TEACHER_COLOR),
        curve("kd_loss", "T²·KL (KD loss)", "", color=STUDENT_COLOR),
        curve("grad_norm", "‖∂(T²KL)/∂z_s‖ = T‖p_s−p_t‖", "2", color="#2F9E44"),
        curve("grad_norm_no_t2", "without T²: ‖p_s−p_t‖/T", "2", color="#868E96", dash="dash"),
    ]
    names = [t["name"] for t in traces] + [f"T = {current_t:g}"]
    lay = fast.layout("How T changes the KD signal", None, None, uirevision, height=400,
                      legend_lines=fast.legend_rows(names, 900), top=70,  # the title above the panel titles
                      **_two_panels(("loss vs T", "gradient scale vs T")))
    ticks = t_ticks(t_min, t_max)
    for panel, keys in (("", ("kl", "kd_loss")), ("2", ("grad_norm", "grad_norm_no_t2"))):
        traces.append(fast.scatter(x=[current_t] * 2, y=[float(now[k][0]) for k in keys], mode="markers",
                                   marker={"color": "#212529", "size": 9}, name=f"T = {current_t:g}",
                                   showlegend=panel == "", xaxis=f"x{panel}", yaxis=f"y{panel}"))
        lay[f"xaxis{panel}"].update(type="log", title={"text": "temperature T"}, tickvals=ticks,
                                    ticktext=fast.tick_text(ticks))
    lay["shapes"] = [dict(fast.vline(current_t, color="#adb5bd", dash="dot"), xref=f"x{p}", yref=f"y{p} domain")
                     for p in ("", "2")]
    return fast.figure(traces, lay)


def gradient_split_figure(zs: Sequence[float], zt: Sequence[float], label: int, temperature: float, alpha: float,
                          class_names: Sequence[str], uirevision: str = "tx-grad") -> go.Figure:
    """Per class, the two parts of the gradient on the student's logits:
    (1−α)·∂CE/∂z_s = (1−α)(p_s − y) and α·∂(T²KL)/∂z_s = α·T·(p_s^T − p_t^T)."""
    names = [str(c) for c in class_names]
    onehot = np.eye(len(names))[label]
    ce_grad = (1 - alpha) * (softmax_t(zs, 1.0) - onehot)
    kd_grad = alpha * temperature * (softmax_t(zs, temperature) - softmax_t(zt, temperature))
    traces = [{"type": "bar", "x": names, "y": ce_grad.tolist(), "name": "(1−α)·∂CE/∂z_s",
               "marker": {"color": "#495057"}},
              {"type": "bar", "x": names, "y": kd_grad.tolist(), "name": "α·∂(T²KL)/∂z_s",
               "marker": {"color": "#4C6EF5"}}]
    lay = fast.layout(None, "class", "gradient on the student's logit", uirevision, height=320, barmode="group",
                      top=20)
    return fast.figure(traces, lay)
