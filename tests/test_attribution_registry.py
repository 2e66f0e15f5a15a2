"""The attribution registry (kdcore.explain.attribution + kdcore.explain.methods): one class per
method, each with its own pydantic params model, one uniform ``.attribute`` call, and the by-name
``attribute()`` function that every caller uses. Runs on a tiny hand-built model (no data, no training)."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from pydantic import Field
from torch import nn

import kdcore.explain.methods as methods_pkg
from kdcore.explain.attribution import (ATTRIBUTIONS, METHODS, AttributionError, AttributionMethod,
                                        AttributionParams, MethodParams, allowed_range, attribute, get_attribution,
                                        method_params, register_attribution)

BUILTIN = ["ig", "saliency", "smoothgrad", "occlusion", "gradcam"]
FAST = {"ig": {"steps": 4}, "smoothgrad": {"noise_samples": 2}, "occlusion": {"window": 2}}


# ---- a tiny multimodal model with the MultimodalNet surface attribution relies on -------------------
class _Conv(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU())

    def forward(self, x):
        return self.blocks(x).mean((2, 3))


class _Text(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(10, 4, padding_idx=0)

    def forward(self, tokens, embedded=None):
        return (self.embedding(tokens) if embedded is None else embedded).mean(1)


class TinyNet(nn.Module):
    modalities = ["vec", "img", "text"]

    def __init__(self):
        super().__init__()
        self.encoders = nn.ModuleDict({"vec": nn.Linear(5, 4), "img": _Conv(), "text": _Text()})
        self.head = nn.Linear(11, 3)

    def forward(self, inputs, embedded=None):
        emb = (embedded or {}).get("text")
        z = torch.cat([self.encoders["vec"](inputs["vec"]), self.encoders["img"](inputs["img"]),
                       self.encoders["text"](inputs["text"], emb)], 1)
        return SimpleNamespace(logits=self.head(z))


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    model = TinyNet()
    inputs = {"vec": torch.randn(3, 5), "img": torch.randn(3, 1, 6, 6),
              "text": torch.tensor([[3, 4, 0, 0], [5, 1, 2, 0], [9, 0, 0, 0]])}
    return model, inputs, torch.tensor([0, 2, 1])


def _same(a, b):
    assert a.method == b.method and a.modalities == b.modalities and a.kinds == b.kinds and a.notes == b.notes
    for m in a.maps:
        assert torch.equal(a.maps[m], b.maps[m]), m
    assert torch.equal(a.target, b.target) and torch.equal(a.logits, b.logits)
    assert (a.shares is None and b.shares is None) or torch.equal(a.shares, b.shares)
    assert a.tokens.keys() == b.tokens.keys() and all(torch.equal(a.tokens[m], b.tokens[m]) for m in a.tokens)


# ---- the registry ------------------------------------------------------------------------------------
def test_registry_lists_every_method_with_its_paper():
    assert set(BUILTIN) <= set(ATTRIBUTIONS)
    assert list(METHODS)[:5] == BUILTIN  # display order (the app's method box, error messages)
    assert METHODS["ig"] == "Integrated Gradients" and METHODS.get("nope") is None
    for name in BUILTIN:
        cls = get_attribution(name)
        assert issubclass(cls, AttributionMethod) and cls.name == name
        assert cls.title and cls.summary and cls.paper
        first_author = cls.paper.split(",")[0].split()[0]
        assert first_author in cls.__doc__ and first_author in sys.modules[cls.__module__].__doc__
        assert issubclass(cls.Params, MethodParams) and cls.Params.model_config["extra"] == "forbid"


def test_one_file_per_method_and_every_file_registers():
    folder = Path(methods_pkg.__file__).parent
    files = {p.stem for p in folder.glob("*.py") if not p.name.startswith("_")}
    modules = {c.__module__ for c in ATTRIBUTIONS.values() if c.__module__.startswith(methods_pkg.__name__ + ".")}
    assert {m.rsplit(".", 1)[1] for m in modules} == files
    assert sorted(files) == sorted(BUILTIN)  # exactly one module per built-in method


def test_a_new_file_registers_itself_through_the_discovery_loop(tmp_path, monkeypatch):
    """The package's own ``__init__`` imports a module it has never heard of: one new file suffices."""
    pkg = tmp_path / "kd_extra_attr"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(Path(methods_pkg.__file__).read_text())
    (pkg / "input_copy.py").write_text(
        "from kdcore.explain.attribution import AttributionMethod, register_attribution\n"
        "@register_attribution\n"
        "class InputCopy(AttributionMethod):\n"
        "    '''The input itself (test only).'''\n"
        "    name, title, summary = 'test-discovered', 'input copy', 'the input itself'\n"
        "    def run(self, ctx):\n"
        "        return tuple(x.detach() for x in ctx.inputs)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        importlib.import_module("kd_extra_attr")
        assert "test-discovered" in ATTRIBUTIONS and "test-discovered" in METHODS
    finally:
        ATTRIBUTIONS.pop("test-discovered", None)
        for mod in ("kd_extra_attr.input_copy", "kd_extra_attr"):
            sys.modules.pop(mod, None)
    assert "test-discovered" not in METHODS


def test_unknown_method_names_it_and_the_allowed_ones(tiny):
    model, inputs, labels = tiny
    for call in (lambda: get_attribution("lime"), lambda: attribute(model, inputs, "lime", labels)):
        with pytest.raises(ValueError, match=r"method='lime'; allowed: ig, saliency, smoothgrad, occlusion, gradcam"):
            call()


def test_registering_a_name_twice_or_a_bad_class_is_refused():
    with pytest.raises(ValueError, match="'ig' registered twice"):
        register_attribution(type("Again", (AttributionMethod,), {"name": "ig", "title": "t", "summary": "s"}))
    with pytest.raises(TypeError, match="summary"):
        register_attribution(type("NoSummary", (AttributionMethod,), {"name": "x-none", "title": "t"}))
    assert "x-none" not in ATTRIBUTIONS


# ---- params models -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", BUILTIN)
def test_params_reject_an_unknown_key_naming_it_and_the_allowed_ones(name):
    cls = ATTRIBUTIONS[name]
    allowed = ", ".join(cls.Params.model_fields)
    for call in (lambda: cls(nope=1), lambda: cls.make_params({"nope": 1})):
        with pytest.raises(AttributionError,
                           match=rf"attribution '{name}': unknown parameter 'nope'; allowed: {allowed}$"):
            call()
    assert "target" in cls.Params.model_fields  # the one knob every method shares


OUT_OF_RANGE = [  # (method, field, bad value, allowed range)
    ("ig", "steps", 0, "[1, 1024]"), ("ig", "steps", 1025, "[1, 1024]"),
    ("ig", "internal_batch_size", 0, "[1, 1048576]"),
    ("smoothgrad", "noise_samples", 257, "[1, 256]"), ("smoothgrad", "noise_std", 0.0, "(0, 5]"),
    ("smoothgrad", "noise_std", 5.5, "(0, 5]"),
    ("occlusion", "window", 0, "[1, 512]"), ("occlusion", "stride", 513, "[1, 512]"),
    ("occlusion", "internal_batch_size", -1, "[1, 1048576]"),
]


@pytest.mark.parametrize("name, field, value, rng", OUT_OF_RANGE)
def test_params_reject_out_of_range_values_naming_field_and_range(name, field, value, rng):
    cls = ATTRIBUTIONS[name]
    assert allowed_range(cls.Params, field) == rng
    with pytest.raises(AttributionError,
                       match=rf"attribution '{name}': {field}={value!r} is outside the allowed range {re.escape(rng)}"):
        cls(**{field: value})


@pytest.mark.parametrize("name", BUILTIN)
def test_params_reject_values_outside_a_choice(name):
    cls = ATTRIBUTIONS[name]
    with pytest.raises(AttributionError, match=rf"'{name}': target='both'; allowed: label, pred"):
        cls(target="both")
    if "baseline" in cls.Params.model_fields:
        with pytest.raises(AttributionError, match=r"baseline='blur'; allowed: zeros, mean"):
            cls(baseline="blur")
    with pytest.raises(AttributionError, match=r"target=3"):
        cls(target=3)


def test_every_bounded_field_is_covered():
    bounded = {(n, f) for n in BUILTIN for f in ATTRIBUTIONS[n].Params.model_fields
               if allowed_range(ATTRIBUTIONS[n].Params, f)}
    assert bounded == {(n, f) for n, f, _, _ in OUT_OF_RANGE}


def test_each_method_gets_only_its_own_knobs_from_the_flat_params():
    flat = AttributionParams(steps=7, window=3, stride=2, noise_samples=5, noise_std=0.4, baseline="mean",
                             internal_batch_size=9, target="pred")
    assert method_params("ig", flat).model_dump() == {"target": "pred", "steps": 7, "baseline": "mean",
                                                      "internal_batch_size": 9}
    assert method_params("saliency", flat).model_dump() == {"target": "pred"}
    assert method_params("smoothgrad", flat).model_dump() == {"target": "pred", "noise_samples": 5, "noise_std": 0.4}
    assert method_params("occlusion", flat).model_dump() == {"target": "pred", "window": 3, "stride": 2,
                                                             "baseline": "mean", "internal_batch_size": 9}
    assert method_params("ig", None) == ATTRIBUTIONS["ig"].Params()  # defaults = the flat defaults
    assert method_params("ig", {"steps": 3}).steps == 3
    with pytest.raises(AttributionError, match=r"steps=0 is outside the allowed range \[1, 1024\]"):
        method_params("ig", AttributionParams(steps=0))  # the flat record is still checked as a whole


# ---- the uniform call -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", BUILTIN)
def test_class_api_and_function_api_give_identical_attributions(tiny, name):
    model, inputs, labels = tiny
    knobs = FAST.get(name, {})
    torch.manual_seed(7)
    by_class = ATTRIBUTIONS[name](**knobs).attribute(model, inputs, labels)
    torch.manual_seed(7)
    by_name = attribute(model, inputs, name, labels, AttributionParams(**knobs))
    torch.manual_seed(7)
    by_dict = attribute(model, inputs, name, labels, knobs)
    _same(by_class, by_name)
    _same(by_class, by_dict)
    expected = ("img",) if name == "gradcam" else ("vec", "img", "text")
    assert by_class.method == name and by_class.modalities == expected
    for m in expected:
        assert by_class.maps[m].shape == inputs[m].shape
    if name != "gradcam":
        assert (by_class.maps["text"][inputs["text"] == 0] == 0).all()  # pads carry nothing
        assert torch.allclose(by_class.shares.sum(1), torch.ones(3), atol=1e-5)


def test_ig_completeness_on_the_tiny_model(tiny):
    model, inputs, labels = tiny
    a = ATTRIBUTIONS["ig"](steps=256).attribute(model, inputs, labels)
    total = sum(a.flat(m).sum(1) for m in a.modalities)
    with torch.no_grad():
        fx = model(inputs).logits.gather(1, labels[:, None]).squeeze(1)
        zeros = {"vec": torch.zeros(3, 5), "img": torch.zeros(3, 1, 6, 6), "text": inputs["text"]}
        f0 = model(zeros, embedded={"text": torch.zeros(3, 4, 4)}).logits.gather(1, labels[:, None]).squeeze(1)
    assert torch.allclose(total, fx - f0, atol=1e-3)


@pytest.fixture
def scaled_input_method():
    """A method defined here, registered for the test and removed afterwards."""

    @register_attribution
    class ScaledInput(AttributionMethod):
        """The input times a factor (test only; no paper)."""

        name = "test-scaled-input"
        title = "scaled input"
        summary = "the input times `scale`"

        class Params(MethodParams):
            scale: float = Field(1.0, gt=0.0, le=10.0)

        def run(self, ctx):
            return tuple(x.detach() * self.params.scale for x in ctx.inputs)

    yield ScaledInput
    ATTRIBUTIONS.pop(ScaledInput.name)


def test_a_method_defined_in_a_test_is_usable_by_name(tiny, scaled_input_method):
    model, inputs, labels = tiny
    assert list(METHODS)[-1] == "test-scaled-input"  # registered last, default order: after the built-ins
    a = attribute(model, inputs, "test-scaled-input", labels, {"scale": 2.0})
    assert a.method == "test-scaled-input" and a.modalities == ("vec", "img", "text")
    assert torch.equal(a.maps["vec"], 2.0 * inputs["vec"]) and torch.equal(a.maps["img"], 2.0 * inputs["img"])
    assert torch.equal(a.target, labels)
    flat = attribute(model, inputs, "test-scaled-input", None, AttributionParams(steps=3))  # scale: default 1
    assert torch.equal(flat.maps["vec"], inputs["vec"]) and torch.equal(flat.target, flat.logits.argmax(1))
    with pytest.raises(AttributionError,
                       match=r"'test-scaled-input': scale=11\.0 is outside the allowed range \(0, 10\]"):
        attribute(model, inputs, "test-scaled-input", labels, {"scale": 11.0})


def test_the_test_method_is_gone_afterwards():
    assert "test-scaled-input" not in ATTRIBUTIONS and "test-scaled-input" not in METHODS


def test_the_call_never_touches_the_given_model(tiny):
    model, inputs, labels = tiny
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for name in BUILTIN:
        ATTRIBUTIONS[name](**FAST.get(name, {})).attribute(model, inputs, labels)
    assert model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
