"""Property tests: any spec-shaped input either validates or raises SpecError — never anything else
(no TypeError, KeyError, AttributeError, pydantic ValidationError or crash leaking out)."""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kdcore.core.spec import ExperimentSpec, SpecError, validate_spec

SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))

# values of every JSON-ish type, including the awkward ones
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-10**12, max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["digits-av", "mfeat", "mnist-5k", "custom", "cnn", "gru", "mlp", "attention", "concat",
                     "kd", "ce", "adam", "sgd", "cpu", "auto", "cuda", "image", "audio", "text", "fou", "zer",
                     "../../etc/passwd", "", "nan", "1e309"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=8)

FIELDS = {
    "data": ["dataset", "path", "modalities", "noise", "train_fraction", "val_fraction", "train_limit", "seed",
             "aux_tasks"],
    "teacher": ["modalities", "encoders", "encoder", "feature_dim", "fusion", "dropout", "modality_dropout",
                "checkpoint"],
    "student": ["modalities", "encoders", "encoder", "feature_dim", "fusion", "dropout", "modality_dropout"],
    "distill": ["losses", "temperature", "weighting", "weighting_params", "temperature_schedule",
                "temperature_params", "extra_phases"],
    "train": ["teacher_epochs", "student_epochs", "batch_size", "optimizer", "lr", "teacher_lr", "weight_decay",
              "momentum", "device", "threads", "teacher_cache", "probe_samples"],
}


@st.composite
def spec_dicts(draw):
    """Spec-shaped dicts: known sections and fields (mostly), with values of any type."""
    out = {}
    if draw(st.booleans()):
        out["name"] = draw(st.one_of(st.text(max_size=100), scalars))
    for section, fields in FIELDS.items():
        if not draw(st.booleans()):
            continue
        if draw(st.integers(0, 9)) == 0:
            out[section] = draw(values)  # a section that is not even a mapping
            continue
        sec = {}
        for f in draw(st.lists(st.sampled_from(fields + ["bogus"]), max_size=4, unique=True)):
            if f == "losses":
                sec[f] = draw(st.dictionaries(st.sampled_from(["kd", "ce", "fitnet", "nope", "dkd"]),
                                              st.one_of(values, st.fixed_dictionaries(
                                                  {"weight": scalars}, optional={"params": values})),
                                              max_size=3))
            elif f in ("encoder",):
                sec[f] = draw(st.one_of(values, st.fixed_dictionaries(
                    {}, optional={"arch": scalars, "width": scalars, "depth": scalars})))
            else:
                sec[f] = draw(values)
        out[section] = sec
    if draw(st.integers(0, 9)) == 0:
        out[draw(st.text(max_size=6))] = draw(values)
    return out


def _leaves(d, prefix=()):
    for k, v in d.items():
        if isinstance(v, dict) and v:
            yield from _leaves(v, prefix + (k,))
        else:
            yield prefix + (k,)


BASES = [ExperimentSpec().to_dict(),
         ExperimentSpec(data={"dataset": "mfeat"}).to_dict(),
         ExperimentSpec(data={"dataset": "mnist-5k"}).to_dict()]
plausible = st.one_of(
    st.integers(-3, 3000), st.floats(-2, 1e4, allow_nan=False), st.sampled_from([0, 1, 0.5, 1e-9, 2.0, 64]),
    st.lists(st.sampled_from(["image", "audio", "text", "fou", "zer", "pix", "bogus"]), max_size=3, unique=True),
    st.sampled_from(["digits-av", "mfeat", "mnist-5k", "custom", "cnn", "resnet18", "gru", "transformer", "mlp",
                     "attention", "mean", "concat", "adam", "sgd", "adamw", "fixed", "constant", "linear",
                     "cosine", "learnable", None, True, "", "x"]),
    st.dictionaries(st.sampled_from(["image_sigma", "audio_snr_db", "text_corruption", "fou_sigma", "x"]),
                    st.floats(-100, 100, allow_nan=False), max_size=2),
)


@st.composite
def near_valid_specs(draw):
    """A valid spec with one to three fields replaced: reaches the cross-field validators."""
    import copy

    d = copy.deepcopy(draw(st.sampled_from(BASES)))
    paths = sorted(_leaves(d))
    for path in draw(st.lists(st.sampled_from(paths), min_size=1, max_size=3, unique=True)):
        node = d
        for k in path[:-1]:
            node = node[k]
        old = node[path[-1]]
        if draw(st.integers(0, 3)) == 0:
            node[path[-1]] = draw(plausible)  # any plausible value, often of the wrong type
        elif isinstance(old, bool):
            node[path[-1]] = draw(st.booleans())
        elif isinstance(old, int):
            node[path[-1]] = draw(st.integers(-2, 2 * max(abs(old), 4)))
        elif isinstance(old, float):
            node[path[-1]] = draw(st.one_of(st.floats(-0.5, 2 * max(abs(old), 1.0)), st.just(float("nan"))))
        elif isinstance(old, list):
            node[path[-1]] = draw(st.lists(st.sampled_from(["image", "audio", "text", "fou", "zer", "pix", "parity",
                                                            "ard", "prune", "bogus"]), max_size=3, unique=True))
        else:
            node[path[-1]] = draw(st.sampled_from(["digits-av", "mfeat", "mnist-5k", "cnn", "gru", "mlp", "mean",
                                                   "attention", "adam", "sgd", "fixed", "linear", "cosine", None,
                                                   "x", ""]))
    return d


def _only_spec_errors(fn, *args):
    try:
        result = fn(*args)
    except SpecError as exc:
        assert str(exc), "a SpecError must say what is wrong"
        return None
    assert isinstance(result, ExperimentSpec)
    return result


@SETTINGS
@given(spec_dicts())
def test_generated_specs_validate_or_raise_spec_error(data):
    spec = _only_spec_errors(validate_spec, data)
    if spec is not None:  # a valid spec round-trips through YAML unchanged
        assert ExperimentSpec.from_yaml(spec.to_yaml()) == spec


@SETTINGS
@given(near_valid_specs())
def test_near_valid_specs_validate_or_raise_spec_error(data):
    spec = _only_spec_errors(validate_spec, data)
    if spec is not None:
        assert ExperimentSpec.from_yaml(spec.to_yaml()) == spec


@SETTINGS
@given(st.lists(st.tuples(
    st.sampled_from(["train.lr", "train.batch_size", "data.dataset", "data.path", "data.noise.image_sigma",
                     "distill.losses.kd.weight", "distill.losses.foo.weight", "student.encoders.image.arch",
                     "teacher.feature_dim", "name", "nope.nope", "train", "", "data..seed", "distill.temperature"]),
    st.one_of(st.text(max_size=10), st.sampled_from(["1e9", "-1", "nan", "[1, 2]", "{a: 1}", "null", "0", "custom",
                                                      "mfeat", ": :", "'", "!!python/object:os.system"]))),
    max_size=4))
def test_overrides_validate_or_raise_spec_error(pairs):
    base = ExperimentSpec()
    _only_spec_errors(base.with_overrides, [f"{k}={v}" for k, v in pairs])


@SETTINGS
@given(st.one_of(st.text(max_size=200), spec_dicts().map(lambda d: yaml.safe_dump(d, allow_unicode=True))))
def test_yaml_text_validates_or_raises_spec_error(text):
    _only_spec_errors(ExperimentSpec.from_yaml, text)


def test_yaml_never_constructs_python_objects(tmp_path):
    marker = tmp_path / "executed"
    text = f"name: !!python/object/apply:os.system ['touch {marker}']\n"
    try:
        ExperimentSpec.from_yaml(text)
    except SpecError:
        pass
    assert not marker.exists()


def test_line_break_characters_in_names_round_trip_through_yaml():
    """PyYAML writes NEL (\\x85) raw under allow_unicode and reads it back as a space (found by the
    fuzz test above); to_yaml then escapes, and ordinary Unicode stays readable."""
    from kdcore.presets import load_preset

    for name in ("\x85", "a\u2028b", "run\x85x"):
        d = load_preset("multiview-kd").to_dict()
        d["name"] = name
        spec = validate_spec(d)
        assert ExperimentSpec.from_yaml(spec.to_yaml()) == spec
    d["name"] = "é-run"
    assert "é-run" in validate_spec(d).to_yaml()
