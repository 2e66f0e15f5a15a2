"""One short end-to-end run per loss family on the tiny digits-av spec: the run finishes and every
named term of every requested loss is reported, finite, at every step."""

from __future__ import annotations

import math

import pytest

from kdcore.core.events import StepLosses
from kdcore.pipeline.experiment import Experiment
from kdcore.methods.losses import LOSSES

FAMILIES = {
    "logit": ["distill.losses.dkd.weight=1", "distill.losses.dkd.params.warmup=1",
              "distill.losses.logit_mse.weight=0.1"],
    "feature": ["distill.losses.fitnet.weight=100", "distill.losses.at.weight=1000", "distill.losses.ab.weight=1",
                "distill.losses.sp.weight=3000", "distill.losses.rkd.weight=1", "distill.losses.pkt.weight=30000"],
    "multimodal": ["distill.losses.attention_kd.weight=1", "distill.losses.modality_feature_kd.weight=1",
                   "distill.losses.crossmodal_feature_kd.weight=1",
                   "distill.losses.crossmodal_feature_kd.params.distance=cosine"],
    "multitask": ["data.aux_tasks=[parity,ge5]", "distill.losses.aux_kd.weight=0.9"],
}


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_tiny_run_per_family_has_finite_named_terms(tiny_spec, family):
    spec = tiny_spec.with_overrides(["train.teacher_epochs=1", "train.student_epochs=1", "data.train_limit=256",
                                     *FAMILIES[family]])
    events = []
    result = Experiment(spec, subscribers=[events.append]).run()
    assert result.status == "finished", result.message
    steps = [e for e in events if isinstance(e, StepLosses) and e.phase == "kd"]
    assert steps
    names = [a.split(".")[2] for a in FAMILIES[family] if a.startswith("distill.losses.")]
    for e in steps:
        assert math.isfinite(e.total)
        for name in names:
            mine = [v for k, v in e.terms.items() if k == name or k.startswith(name + "/")]
            assert mine, f"{name} reported no term at step {e.step}: {sorted(e.terms)}"
            assert all(math.isfinite(v) for v in mine)
        assert e.weights  # effective weights are reported with the terms
    assert set(names) <= set(LOSSES)
    if family == "multitask":
        assert {"aux_kd/parity", "aux_kd/ge5", "ce/parity", "ce/ge5"} <= set(steps[-1].terms)
