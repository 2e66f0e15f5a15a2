"""Spec validation messages, YAML round trip, --set overrides and CLI bad input (issue 2)."""

import subprocess
import sys

import pytest

from kdcore.presets import PRESETS, load_preset
from kdcore.core.spec import ExperimentSpec, SpecError, validate_spec

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", PRESETS)
def test_presets_validate_and_round_trip_yaml_exactly(name):
    spec = load_preset(name)
    text = spec.to_yaml()
    again = ExperimentSpec.from_yaml(text)
    assert again == spec
    assert again.to_yaml() == text
    assert spec.description.strip(), "every preset says what it demonstrates"


@pytest.mark.parametrize("override, fragment", [
    ("distill.temperature=0", "distill.temperature"),
    ("distill.temperature=-1", "greater than 0"),
    ("distill.losses.kd.weight=-0.5", "distill.losses.kd.weight"),
    ("distill.losses.nope.weight=1", "unknown loss 'nope'"),
    ("teacher.encoders.image.arch=vgg99", "unknown architecture 'vgg99'; allowed: cnn"),
    ("student.modalities=[image, smell]", "not among the data modalities; allowed: image, audio, text"),
    ("data.dataset=imagenet", "unknown dataset 'imagenet'; allowed: digits-av"),
    ("data.noise.image_sigma=9", "outside the allowed range [0.0, 5.0]"),
    ("data.noise.colour=1", "unknown knob 'colour'"),
    ("train.batch_size=0", "train.batch_size"),
    ("train.optimizer=lbfgs", "train.optimizer"),
    ("teacher.encoders.text.arch=cnn", "does not fit a tokens modality"),
    ("data.train_fraction=0.9", "train_fraction + val_fraction must be < 1"),
    # method parameters are checked at load time (torch-free) against each method's Params record
    ("distill.losses.dkd.params.beta=-1", "distill.losses.dkd.params.beta=-1: allowed range [0.0, 10000.0]"),
    ("distill.losses.dkd.params.gamma=1", "distill.losses.dkd.params: unknown ['gamma']; allowed: alpha, beta, warmup"),
    ("distill.losses.at.params.pairs=all", "distill.losses.at.params.pairs='all'; allowed: depth, last"),
    ("distill.weighting_params.mode=median", "distill.weighting_params: unknown ['mode']; allowed: none"),
    ("distill.temperature_params.end=0", "distill.temperature_params: unknown ['end']; allowed: none"),
])
def test_validation_messages_name_the_field_and_allowed_values(override, fragment):
    with pytest.raises(SpecError) as exc:
        load_preset("digits-av").with_overrides([override])
    assert fragment in str(exc.value)


def test_unknown_set_key_is_rejected():
    with pytest.raises(SpecError, match="no field 'lrr'"):
        load_preset("digits-av").with_overrides(["train.lrr=1"])
    with pytest.raises(SpecError, match="expects key=value"):
        load_preset("digits-av").with_overrides(["train.lr"])


def test_set_creates_entries_in_open_mappings():
    spec = load_preset("digits-av").with_overrides(["distill.losses.kd.weight=0.5", "student.encoders.audio.width=3"])
    assert spec.distill.losses["kd"].weight == 0.5
    assert spec.student.encoders["audio"].width == 3


def test_invalid_yaml_and_wrong_top_level():
    with pytest.raises(SpecError, match="invalid YAML"):
        ExperimentSpec.from_yaml("data: [unclosed")
    with pytest.raises(SpecError, match="top level must be a mapping"):
        ExperimentSpec.from_yaml("- a\n- b\n")
    with pytest.raises(SpecError, match="unknown field"):
        validate_spec({"trainn": {}})


def _cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "kdcore", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("args, fragment", [
    (("run", "--preset", "nope"), "unknown preset 'nope'"),
    (("run", "--set", "train.nothing=1"), "unknown setting"),
    (("run", "--set", "train.lr=abc"), "train.lr"),
    (("run", "--config", "missing.yaml"), "config file not found"),
])
def test_cli_bad_input_one_line_exit_2(args, fragment):
    p = _cli(*args)
    assert p.returncode == 2
    assert fragment in p.stderr
    assert "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_cli_invalid_yaml_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {lr: [\n")
    p = _cli("run", "--config", str(bad))
    assert p.returncode == 2 and "invalid YAML" in p.stderr and "Traceback" not in p.stderr


def test_cli_presets_lists_every_preset_with_description():
    p = _cli("presets")
    assert p.returncode == 0
    for name in PRESETS:
        assert name in p.stdout


@pytest.mark.slow
def test_cli_run_json(tmp_path):
    import json

    p = _cli("run", "--preset", "digits-av", "--json", "--quiet", "--runs-dir", str(tmp_path),
             "--set", "train.teacher_epochs=2", "--set", "train.student_epochs=1", timeout=900)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["status"] == "finished"
    assert set(out["phases"]) >= {"teacher", "baseline", "kd"}
    assert all(0 <= r["test_acc"] <= 1 for r in out["phases"].values())


def test_strategy_params_are_checked_when_the_spec_loads():
    base = load_preset("digits-av")
    ok = base.with_overrides(["distill.weighting=confidence", "distill.weighting_params.mode='true'",
                              "distill.temperature_schedule=learnable", "distill.temperature_params.max=10"])
    assert ok.distill.weighting_params == {"mode": "true"}
    for override, fragment in (
            (["distill.weighting=confidence", "distill.weighting_params.mode=median"],
             "distill.weighting_params.mode='median'; allowed: max, true"),
            (["distill.weighting=confidence", "distill.weighting_params.temperature=0"],
             "distill.weighting_params.temperature=0: allowed range (0.0, 100.0]"),
            (["distill.temperature_schedule=linear", "distill.temperature_params.end=0"],
             "distill.temperature_params.end=0: allowed range (0.0, 100.0]"),
            (["distill.temperature_schedule=learnable", "distill.temperature_params.min=5",
              "distill.temperature_params.max=3"], "distill.temperature_params: min must be < max")):
        with pytest.raises(SpecError) as exc:
            base.with_overrides(override)
        assert fragment in str(exc.value), (override, str(exc.value))
