"""Statistics of the attention fusion's modality weights α (rows of ``ModelOutput.attention``).

α_b,m = softmax_m(s_b,m) over the modalities present for sample b, so every row sums to 1. These
functions evaluate a model (always an eval-mode deep copy) and summarise α:

* :func:`alpha_on_split` — per-sample α, predictions and accuracy on a split;
* :func:`class_modality_mean` — mean α per true class: the class × modality heatmap;
* :func:`attention_history` — the per-epoch ``AttentionSnapshot`` events of a run, per phase;
* :func:`noise_sweep` — α and accuracy on the **test** split as one noise knob rises (the data are
  rebuilt with the changed noise through ``load_data``): attention should move to clean modalities;
* :func:`removal_sweep` — α and accuracy with each modality removed in turn (masked as absent).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from kdcore.data.base import Split
from kdcore.train.evaluate import attention_by_class, predict
from kdcore.explain.attribution import inspect_copy


@dataclass
class AlphaStats:
    modalities: list[str]
    alpha: Tensor | None  # [N, M] (None: the model has no attention fusion)
    labels: Tensor  # [N]
    preds: Tensor  # [N]
    acc: float
    num_classes: int

    def class_mean(self) -> Tensor | None:
        return None if self.alpha is None else class_modality_mean(self.alpha, self.labels, self.num_classes)

    def mean(self) -> dict[str, float]:
        if self.alpha is None:
            return {}
        return {m: float(v) for m, v in zip(self.modalities, self.alpha.mean(0))}

    def to_dict(self) -> dict:
        cm = self.class_mean()
        return {"modalities": self.modalities, "acc": self.acc, "mean": self.mean(),
                "class_mean": None if cm is None else cm.nan_to_num(float("nan")).tolist(),
                "samples": int(self.labels.numel())}


def class_modality_mean(alpha: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """[C, M] mean α per true class (NaN rows for classes without samples)."""
    return attention_by_class(alpha.float(), labels, num_classes)


def alpha_on_split(model: nn.Module, split: Split, modalities: list[str] | None = None,
                   present: Tensor | None = None, rows: Tensor | None = None) -> AlphaStats:
    """Evaluate an eval-mode copy of ``model`` on ``split`` (or the given ``rows`` of it)."""
    net = inspect_copy(model)
    first = next(iter(net.parameters()), None)  # None: a tree student (no torch parameters, CPU)
    dev = first.device if first is not None else "cpu"
    mods = list(modalities or net.modalities)
    if rows is not None:
        split = Split(split.data, split.indices[rows])
        present = None if present is None else present[rows]
    out = predict(net, split, mods, device=dev, present=present)
    labels = split.labels
    preds = out.logits.argmax(1)
    return AlphaStats(list(out.modalities), out.attention, labels, preds,
                      float((preds == labels).float().mean()) if len(labels) else float("nan"),
                      split.data.num_classes)


def attention_history(events: list[dict]) -> dict[str, list[dict]]:
    """``{phase: [{"epoch", "modalities", "class_mean", "mean"}, ...]}`` from run events (dicts or
    event objects), sorted by epoch; the last snapshot of an epoch wins."""
    out: dict[str, dict[int, dict]] = {}
    for ev in events:
        d = ev if isinstance(ev, dict) else ev.to_dict()
        if d.get("kind") != "AttentionSnapshot":
            continue
        out.setdefault(d["phase"], {})[int(d["epoch"])] = {
            "epoch": int(d["epoch"]), "modalities": list(d["modalities"]),
            "class_mean": d["class_mean"], "mean": d["mean"]}
    return {p: [v[e] for e in sorted(v)] for p, v in out.items()}


def noise_knobs_for(dataset: str, modality: str) -> list[str]:
    """The dataset's noise knobs that act on ``modality`` (by name prefix)."""
    from kdcore.data import DATASETS

    return [k for k in DATASETS[dataset].noise_knobs() if k.startswith(modality + "_")]


def noise_sweep(models: dict[str, nn.Module], data_spec, knob: str, levels: list[float],
                modalities: dict[str, list[str]], split: str = "test",
                progress: Callable[[float], None] | None = None) -> list[dict]:
    """α and accuracy of every model as ``data.noise[knob]`` takes each of ``levels``.

    ``data_spec`` is the run's :class:`~kdcore.core.spec.DataSpec`; the other noise knobs keep their
    values. The data are rebuilt per level (``load_data``), so the noise is the dataset's own
    (deterministic from the seed). Returns ``[{"level", "model", "acc", "alpha": {m: ᾱ}}]``."""
    from kdcore.data import DATASETS, load_data
    from kdcore.core.spec import DataSpec

    knobs = DATASETS[data_spec.dataset].noise_knobs()
    if knob not in knobs:
        raise ValueError(f"noise knob {knob!r} unknown for {data_spec.dataset}; allowed: {', '.join(knobs)}")
    lo, hi, _ = knobs[knob]
    rows = []
    copies = {name: inspect_copy(m) for name, m in models.items()}
    for i, level in enumerate(levels):
        if not lo <= float(level) <= hi:
            raise ValueError(f"noise level {knob}={level} is outside the allowed range [{lo}, {hi}]")
        ds = DataSpec.model_validate({**data_spec.model_dump(), "noise": {**data_spec.noise, knob: float(level)}})
        data = load_data(ds)
        sp = data.split(split)
        for name, net in copies.items():
            st = alpha_on_split(net, sp, modalities[name])
            rows.append({"level": float(level), "model": name, "acc": st.acc, "alpha": st.mean()})
        if progress is not None:
            progress((i + 1) / len(levels))
    return rows


def removal_sweep(models: dict[str, nn.Module], split: Split, modalities: dict[str, list[str]]) -> list[dict]:
    """α and accuracy of every model with nothing removed, then with each modality removed in turn.

    Returns ``[{"removed": "none"|m, "model", "acc", "alpha": {m: ᾱ}}]`` (a removed modality gets α = 0)."""
    rows = []
    for name, model in models.items():
        mods = modalities[name]
        net = inspect_copy(model)
        base = alpha_on_split(net, split, mods)
        rows.append({"removed": "none", "model": name, "acc": base.acc, "alpha": base.mean()})
        if len(mods) < 2:
            continue
        for m in mods:
            present = torch.ones(len(split), len(net.modalities), dtype=torch.bool)
            present[:, list(net.modalities).index(m)] = False
            st = alpha_on_split(net, split, mods, present=present)
            rows.append({"removed": m, "model": name, "acc": st.acc, "alpha": st.mean()})
    return rows
