"""Loading trained models for inspection pages: the bundled explorer models, or any run folder.

A *model source* is a folder holding ``spec.yaml`` and ``<phase>.safetensors`` files (either directly,
as ``assets/explorer/``, or under ``checkpoints/`` as a run folder). Loading never unpickles.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st
import torch

from kdcore.data import TensorData, load_data
from kdcore.service.jobs import runs_dir
from kdcore.models import MultimodalNet, build_model
from kdcore.core.spec import ExperimentSpec
from kdcore.models.checkpoints import load_into
from kdcore.viz.teaching import pick_teaching_sample

ROOT = Path(__file__).resolve().parents[1]
EXPLORER_DIR = ROOT / "assets" / "explorer"
BUNDLED = "bundled explorer models"


@dataclass
class LoadedModels:
    source: str
    spec: ExperimentSpec
    data: TensorData
    teacher: MultimodalNet
    students: dict[str, MultimodalNet]  # phase -> model (kd, baseline, ...)
    info: dict
    memo: dict = field(default_factory=dict)  # per-load results (test-split logits, default sample)


def _ckpt(folder: Path, phase: str) -> Path | None:
    for p in (folder / f"{phase}.safetensors", folder / "checkpoints" / f"{phase}.safetensors"):
        if p.is_file():
            return p
    return None


def model_sources() -> dict[str, Path]:
    """Label → folder: the bundled models first, then finished run folders (newest first) that have a
    teacher and a KD student checkpoint."""
    out: dict[str, Path] = {}
    if _ckpt(EXPLORER_DIR, "teacher") and (EXPLORER_DIR / "spec.yaml").is_file():
        out[BUNDLED] = EXPLORER_DIR
    root = runs_dir()
    if root.is_dir():
        for d in sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.name, reverse=True):
            if (d / "spec.yaml").is_file() and _ckpt(d, "teacher") and _ckpt(d, "kd"):
                out[f"run {d.name}"] = d
    return out


@st.cache_resource(show_spinner="Loading models…", max_entries=4)
def load_models(folder: str) -> LoadedModels:
    path = Path(folder)
    spec = ExperimentSpec.load(path / "spec.yaml")
    spec_cpu = spec.with_overrides(["train.device=cpu"])
    data = load_data(spec_cpu.data)
    teacher = build_model(spec.teacher, spec.teacher_modalities(), data)
    load_into(teacher, _ckpt(path, "teacher"))
    students = {}
    for phase in ("kd", "baseline"):
        ck = _ckpt(path, phase)
        if ck is not None:
            m = build_model(spec.student, spec.student_modalities(), data)
            load_into(m, ck)
            students[phase] = m.eval()
    info_file = path / "result.json"
    info = json.loads(info_file.read_text(encoding="utf-8")) if info_file.is_file() else {}
    return LoadedModels(str(path), spec, data, teacher.eval(), students, info)


def split_logits(models: LoadedModels, split: str = "test", batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's logits [N, C] and the labels [N] of every sample of ``split`` (computed once per load)."""
    key = ("logits", split)
    if key not in models.memo:
        sp = models.data.split(split)
        t_mods = models.spec.teacher_modalities()
        outs, labels = [], []
        with torch.no_grad():
            for start in range(0, len(sp), batch):
                b = sp.batch(torch.arange(start, min(start + batch, len(sp))), t_mods)
                outs.append(models.teacher({m: b.inputs[m] for m in t_mods}).logits)
                labels.append(b.labels)
        models.memo[key] = (torch.cat(outs), torch.cat(labels))
    return models.memo[key]


def default_sample(models: LoadedModels, temperature: float = 4.0, split: str = "test") -> int:
    """The sample the home figure and the Temperature explorer open with: one the teacher classifies
    correctly whose soft target at ``temperature`` shows a visible second choice
    (:func:`kdcore.viz.teaching.pick_teaching_sample`)."""
    key = ("default", split, float(temperature))
    if key not in models.memo:
        z, y = split_logits(models, split)
        models.memo[key] = pick_teaching_sample(z.numpy(), y.numpy(), temperature)
    return models.memo[key]


def logits_for(models: LoadedModels, index: int | None = None, split: str = "test") -> dict[str, torch.Tensor]:
    """Teacher and student logits ([C] each) for sample ``index`` of ``split`` (default:
    :func:`default_sample`)."""
    if index is None:
        index = default_sample(models, split=split)
    sp = models.data.split(split)
    rows = torch.tensor([index])
    mods = sorted(set(models.spec.teacher_modalities()) | set(models.spec.student_modalities()))
    b = sp.batch(rows, mods)
    out = {}
    with torch.no_grad():
        out["teacher"] = models.teacher({m: b.inputs[m] for m in models.spec.teacher_modalities()}).logits[0]
        for phase, model in models.students.items():
            out[phase] = model({m: b.inputs[m] for m in models.spec.student_modalities()}).logits[0]
    out["label"] = int(b.labels[0])
    out["sample"] = int(sp.indices[index])
    out["index"] = int(index)
    return out
