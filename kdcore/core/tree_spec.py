"""The gradient-boosted-tree student's spec (``student.kind: tree``, ``student.tree``): LightGBM's
knobs as a pydantic model with ranges, and the rules that keep a tree student on inputs it can split.

Torch-free (kdcore.core): the spec validates without importing LightGBM or torch.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# modality kinds a tree can split on: fixed-length numeric vectors (mfeat views, custom numeric columns);
# images, spectrograms and token ids have no per-feature meaning a split threshold could use
TREE_MODALITY_KINDS = ("vector",)
STUDENT_KINDS = ("neural", "tree")
# loss terms a tree student can fit: ce (hard labels) and kd (Hinton's soft targets at temperature T)
TREE_LOSSES = ("ce", "kd")


class TreeSpec(BaseModel):
    """LightGBM parameters of a tree student (one multiclass booster, ``num_class`` trees per round)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    rounds: int = Field(300, ge=1, le=5000, description="maximum boosting rounds (the Train chart's x axis)")
    learning_rate: float = Field(0.1, gt=0.0, le=1.0, description="shrinkage of every tree's leaf values")
    num_leaves: int = Field(15, ge=2, le=1024, description="leaves per tree (leaf-wise growth)")
    max_depth: int = Field(-1, ge=-1, le=64, description="tree depth limit (-1: none, num_leaves limits)")
    min_data_in_leaf: int = Field(10, ge=1, le=10000, description="fewest training samples in a leaf")
    feature_fraction: float = Field(1.0, gt=0.0, le=1.0, description="fraction of features tried per tree")
    bagging_fraction: float = Field(1.0, gt=0.0, le=1.0, description="fraction of rows sampled per round")
    lambda_l2: float = Field(0.0, ge=0.0, le=1000.0, description="L2 penalty on leaf values")
    early_stopping: int = Field(30, ge=0, le=5000, description="stop after this many rounds without a better "
                                "validation accuracy (0: train all rounds)")
    eval_every: int = Field(1, ge=1, le=500, description="evaluate on the validation split every this many rounds")
    threads: int = Field(1, ge=1, le=256, description="LightGBM threads")


class StudentMixin(BaseModel):
    """What the student has beyond a network's fields: its kind, and the tree's knobs."""

    kind: Literal["neural", "tree"] = Field("neural", description="neural network, or a gradient-boosted "
                                            "tree ensemble (LightGBM; vector modalities only)")
    tree: TreeSpec = Field(default_factory=TreeSpec, description="tree student parameters (kind: tree)")


def tree_problems(spec) -> str | None:
    """The first reason an :class:`~kdcore.core.spec.ExperimentSpec` cannot run a tree student, naming the
    field (None when it can, or when the student is neural)."""
    if spec.student.kind != "tree":
        return None
    kinds = spec.data.dataset_info().modality_kinds()
    for m in spec.student_modalities():
        if kinds[m] not in TREE_MODALITY_KINDS:
            return (f"student.kind=tree: modality {m!r} has kind {kinds[m]}, and a tree student takes "
                    f"{'/'.join(TREE_MODALITY_KINDS)} modalities only (set student.modalities to vector ones, "
                    f"or student.kind=neural)")
    bad = [n for n in spec.distill.losses if n not in TREE_LOSSES]
    if bad:
        return (f"distill.losses: a tree student fits {' and '.join(TREE_LOSSES)} only, not {', '.join(bad)} "
                f"(remove them, or set student.kind=neural)")
    d = spec.distill
    if d.extra_phases:
        return f"distill.extra_phases: {', '.join(d.extra_phases)} train neural students, and a tree student takes none"
    if d.weighting != "fixed":
        return f"distill.weighting={d.weighting}: a tree student uses fixed weights (allowed: fixed)"
    if d.temperature_schedule != "constant":
        return (f"distill.temperature_schedule={d.temperature_schedule}: a tree student uses a constant "
                f"temperature (allowed: constant)")
    if spec.data.aux_tasks:
        return "data.aux_tasks: a tree student has no auxiliary heads (leave data.aux_tasks empty)"
    return None
