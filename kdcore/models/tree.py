"""A gradient-boosted-tree student (LightGBM) wrapped as a module the rest of the engine can evaluate.

:class:`TreeStudent` takes the same ``{modality: tensor}`` inputs as a network and returns a
:class:`~kdcore.models.output.ModelOutput` whose ``logits`` are the booster's raw scores, so evaluation,
agreement with the teacher, missing-modality accuracy and latency are measured by the same code as for a
neural student. It has no torch parameters and is never trained by gradient descent: the trees are grown
by :mod:`kdcore.train.tree`.

Why LightGBM (not XGBoost): its multiclass booster accepts a custom objective with per-class gradient and
Hessian arrays (the soft cross-entropy of :mod:`kdcore.train.tree`), it predicts SHAP-style per-feature
contributions (``pred_contrib=True``, Lundberg et al. 2017/2020 TreeSHAP), it saves and loads a plain text
model format (no pickle), its CPU wheel is small with no GPU runtime, and leaf-wise growth with
``num_leaves`` gives one direct size knob.

Features: the student's modalities, each flattened, concatenated in the student's modality order
(``feature_names`` ``<modality>[<index>]``). A modality absent from the inputs is passed as NaN, which
LightGBM sends down each split's learned default (missing-value) branch.

Saved as ``<phase>.lgb.txt`` (LightGBM's own text model, ``Booster.model_to_string``) plus
``<phase>.tree.json`` (modalities, widths, classes, best round) — never pickled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from kdcore.models.output import ModelOutput

TREE_SUFFIX = ".lgb.txt"
META_SUFFIX = ".tree.json"


class TreeCheckpointError(ValueError):
    """A tree checkpoint is missing or unreadable; the message names the file."""


def features_of(inputs: dict[str, Tensor], modalities: tuple[str, ...], widths: dict[str, int]) -> np.ndarray:
    """[B, F] float64 feature matrix: each modality flattened, in ``modalities`` order; absent ones NaN."""
    ref = next(iter(inputs.values()))
    b = ref.shape[0]
    cols = []
    for m in modalities:
        if m in inputs:
            cols.append(inputs[m].detach().reshape(b, -1).float().cpu().numpy().astype(np.float64))
        else:
            cols.append(np.full((b, widths[m]), np.nan))
    return np.concatenate(cols, axis=1)


class TreeStudent(nn.Module):
    """A LightGBM multiclass booster behind the engine's model interface (see the module docstring)."""

    def __init__(self, booster, modalities: list[str] | tuple[str, ...], widths: dict[str, int], num_classes: int,
                 best_round: int | None = None, info: dict[str, Any] | None = None):
        super().__init__()
        self.booster = booster
        self.modalities = tuple(modalities)
        self.widths = {m: int(widths[m]) for m in self.modalities}
        self.num_classes = int(num_classes)
        self.best_round = int(best_round if best_round is not None else booster.current_iteration())
        self.info = dict(info or {})  # what trained it: phase, temperature, weights, seed
        self.predict_threads = 1

    # ---- the model interface -------------------------------------------------------------
    def raw_scores(self, x: np.ndarray) -> np.ndarray:
        """[B, C] raw scores (the logits) of feature matrix ``x``."""
        out = self.booster.predict(x, raw_score=True, num_threads=self.predict_threads)
        return np.asarray(out, dtype=np.float64).reshape(x.shape[0], self.num_classes)

    def forward(self, inputs: dict[str, Tensor], present: Tensor | None = None, **_: Any) -> ModelOutput:
        """Logits for ``inputs``; ``present`` [B, M] masks modalities off per sample (sent as NaN)."""
        x = features_of(inputs, self.modalities, self.widths)
        if present is not None:
            col = 0
            mask = present.bool().cpu().numpy()
            for j, m in enumerate(self.modalities):
                w = self.widths[m]
                x[~mask[:, j], col:col + w] = np.nan
                col += w
        logits = torch.from_numpy(self.raw_scores(x)).float()
        b = logits.shape[0]
        return ModelOutput(logits=logits, features={}, fused=logits.new_zeros(b, 0), attention=None,
                           modalities=self.modalities)

    def feature_names(self) -> list[str]:
        return [f"{m}[{i}]" for m in self.modalities for i in range(self.widths[m])]

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """[B, C, F + 1] per-feature contributions to each class's raw score (LightGBM ``pred_contrib``,
        TreeSHAP: Lundberg et al., "From local explanations to global understanding with explainable AI for
        trees", Nature MI 2020); the last column is the expected value. Each row sums to the raw score."""
        out = np.asarray(self.booster.predict(x, pred_contrib=True, num_threads=self.predict_threads))
        f = x.shape[1]
        return out.reshape(x.shape[0], self.num_classes, f + 1)

    # ---- size ----------------------------------------------------------------------------
    def tree_stats(self) -> dict[str, int]:
        """Trees, leaves and split nodes of the booster."""
        dump = self.booster.dump_model()
        leaves = [int(t["num_leaves"]) for t in dump["tree_info"]]
        return {"trees": len(leaves), "leaves": sum(leaves), "splits": sum(n - 1 for n in leaves)}

    def parameter_count(self) -> int:
        """Learned numbers: one value per leaf plus one threshold per split (feature indices not counted)."""
        s = self.tree_stats()
        return s["leaves"] + s["splits"]

    def to_text(self) -> str:
        return self.booster.model_to_string()

    def size_bytes(self) -> int:
        """Bytes of the saved model (LightGBM text format, UTF-8)."""
        return len(self.to_text().encode("utf-8"))

    # ---- checkpoints (no pickle) ------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        return {"format": "lightgbm-text", "modalities": list(self.modalities), "widths": self.widths,
                "num_classes": self.num_classes, "best_round": self.best_round, "info": self.info}

    def save(self, folder: str | Path, name: str) -> Path:
        """Write ``<name>.lgb.txt`` and ``<name>.tree.json`` into ``folder``; returns the model file."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}{TREE_SUFFIX}"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.to_text(), encoding="utf-8")
        tmp.replace(path)
        (folder / f"{name}{META_SUFFIX}").write_text(json.dumps(self.meta(), indent=2), encoding="utf-8")
        return path

    @classmethod
    def load(cls, folder: str | Path, name: str) -> "TreeStudent":
        import lightgbm as lgb

        folder = Path(folder)
        path, meta_path = folder / f"{name}{TREE_SUFFIX}", folder / f"{name}{META_SUFFIX}"
        for p in (path, meta_path):
            if not p.is_file():
                raise TreeCheckpointError(f"tree checkpoint {p} not found")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            booster = lgb.Booster(model_str=path.read_text(encoding="utf-8"))
        except (ValueError, OSError, lgb.basic.LightGBMError) as exc:
            raise TreeCheckpointError(f"tree checkpoint {path} is unreadable: {str(exc).splitlines()[0]}") from None
        return cls(booster, meta["modalities"], meta["widths"], meta["num_classes"], meta.get("best_round"),
                   meta.get("info"))


def has_tree_checkpoint(folder: str | Path, name: str) -> bool:
    return (Path(folder) / f"{name}{TREE_SUFFIX}").is_file() and (Path(folder) / f"{name}{META_SUFFIX}").is_file()
