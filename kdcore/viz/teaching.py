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
from plotly.subplots import make_subplots

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
    teacher's entropy (nats) — how "soft" its targets are."""
    ts = np.asarray(temperatures, dtype=np.float64)
    out = {k: np.empty_like(ts) for k in ("kl", "kd_loss", "grad_norm", "grad_norm_no_t2", "teacher_entropy")}
    for i, t in enumerate(ts):
        pt, ps = softmax_t(teacher_logits, t), softmax_t(student_logits, t)
        kl = float(np.sum(pt * (np.log(np.clip(pt, 1e-300, None)) - np.log(np.clip(ps, 1e-300, None)))))
        diff = np.linalg.norm(ps - pt)
        out["kl"][i] = kl
        out["kd_loss"][i] = t * t * kl
        out["grad_norm"][i] = t * diff
        out["grad_norm_no_t2"][i] = diff / t
        out["teacher_entropy"][i] = float(-np.sum(pt * np.log(np.clip(pt, 1e-300, None))))
    return out


def _style(fig: go.Figure, title: str, uirevision: str, height: int = 330) -> go.Figure:
    fig.update_layout(title=title, uirevision=uirevision, height=height, template="plotly_white",
                      margin=dict(l=50, r=20, t=50, b=40),
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0))
    return fig


def softmax_bars_figure(teacher_logits: Sequence[float], student_logits: Sequence[float] | None,
                        temperature: float, class_names: Sequence[str], label: int | None = None,
                        uirevision: str = "softmax") -> go.Figure:
    """Teacher (and student) class probabilities at temperature T as grouped bars; the true class is
    marked."""
    names = [str(c) for c in class_names]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=names, y=softmax_t(teacher_logits, temperature), name=f"teacher, T={temperature:g}",
                         marker_color=TEACHER_COLOR))
    if student_logits is not None:
        fig.add_trace(go.Bar(x=names, y=softmax_t(student_logits, temperature),
                             name=f"student, T={temperature:g}", marker_color=STUDENT_COLOR))
    if label is not None:
        fig.add_annotation(x=names[label], y=1.0, yref="paper", text="true class", showarrow=True, arrowhead=2,
                           ax=0, ay=-20, font=dict(size=11))
    _style(fig, f"Softmax at T = {temperature:g}", uirevision)
    fig.update_layout(barmode="group", xaxis_title="class", yaxis_title="probability", yaxis_range=[0, 1.05])
    return fig


def hard_vs_soft_figure(label: int, teacher_logits: Sequence[float], temperature: float,
                        class_names: Sequence[str], uirevision: str = "hard-soft") -> go.Figure:
    """Side by side: the hard target (one-hot label, what CE learns from) and the teacher's soft
    target at T (what KD learns from: the relative sizes of the wrong classes — "dark knowledge")."""
    names = [str(c) for c in class_names]
    hard = np.zeros(len(names))
    hard[label] = 1.0
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True,
                        subplot_titles=("hard target (CE)", f"soft target, teacher at T={temperature:g} (KD)"))
    fig.add_trace(go.Bar(x=names, y=hard, marker_color=HARD_COLOR, name="hard"), row=1, col=1)
    fig.add_trace(go.Bar(x=names, y=softmax_t(teacher_logits, temperature), marker_color=TEACHER_COLOR,
                         name="soft"), row=1, col=2)
    _style(fig, "Hard vs soft targets", uirevision, height=300)
    fig.update_layout(showlegend=False, yaxis_range=[0, 1.05])
    fig.update_yaxes(title_text="probability", row=1, col=1)
    return fig


def temperature_curves_figure(teacher_logits: Sequence[float], student_logits: Sequence[float],
                              current_t: float, t_min: float = 0.5, t_max: float = 20.0, points: int = 120,
                              uirevision: str = "t-curves") -> go.Figure:
    """KL and KD loss (left) and KD gradient norm with / without the T² factor (right) against T
    (log axis), with a marker at the current T."""
    ts = np.geomspace(t_min, t_max, points)
    q = kd_quantities(teacher_logits, student_logits, ts)
    now = kd_quantities(teacher_logits, student_logits, [current_t])
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss vs T", "gradient scale on student logits vs T"))
    fig.add_trace(go.Scatter(x=ts, y=q["kl"], name="KL(p_t‖p_s)", line=dict(color=TEACHER_COLOR)), row=1, col=1)
    fig.add_trace(go.Scatter(x=ts, y=q["kd_loss"], name="T²·KL (KD loss)", line=dict(color=STUDENT_COLOR)),
                  row=1, col=1)
    fig.add_trace(go.Scatter(x=ts, y=q["grad_norm"], name="‖∂(T²KL)/∂z_s‖ = T‖p_s−p_t‖",
                             line=dict(color="#2F9E44")), row=1, col=2)
    fig.add_trace(go.Scatter(x=ts, y=q["grad_norm_no_t2"], name="without T²: ‖p_s−p_t‖/T",
                             line=dict(color="#868E96", dash="dash")), row=1, col=2)
    for col, keys in ((1, ("kl", "kd_loss")), (2, ("grad_norm", "grad_norm_no_t2"))):
        fig.add_trace(go.Scatter(x=[current_t] * 2, y=[float(now[k][0]) for k in keys], mode="markers",
                                 marker=dict(color="#212529", size=9), name=f"T = {current_t:g}",
                                 showlegend=col == 1), row=1, col=col)
        fig.add_vline(x=current_t, line=dict(color="#adb5bd", dash="dot"), row=1, col=col)
    _style(fig, "How T changes the KD signal", uirevision, height=360)
    fig.update_xaxes(type="log", title_text="temperature T")
    return fig
