"""Tiny specs shared by the store / resume / failure tests (mfeat vectors: a run takes ~1 s)."""

from __future__ import annotations

from kdcore.core.spec import validate_spec


def tiny_spec_dict(name: str = "tiny", seed: int = 0, student_epochs: int = 4, **train) -> dict:
    return {
        "name": name,
        "data": {"dataset": "mfeat", "modalities": ["fou", "kar", "zer"], "train_limit": 300, "seed": seed},
        "teacher": {"feature_dim": 16, "encoder": {"width": 16, "depth": 1}},
        "student": {"modalities": ["zer"], "feature_dim": 8, "encoder": {"width": 8, "depth": 1}, "dropout": 0.3},
        "train": {"teacher_epochs": 2, "student_epochs": student_epochs, "batch_size": 32, "threads": 1, **train},
    }


def tiny_spec(name: str = "tiny", seed: int = 0, student_epochs: int = 4, **train):
    return validate_spec(tiny_spec_dict(name, seed, student_epochs, **train))


def accuracies(result: dict) -> dict:
    return {k: (v["test_acc"], v["val_acc"], v["best_epoch"]) for k, v in result["phases"].items()}
