"""The catalog the spec validates against is generated from the live registries, and the spec,
the presets and validation of a YAML file import no torch."""

import subprocess
import sys

from kdcore.core import catalog as C
from kdcore.pipeline.catalog import render


def test_catalog_json_matches_the_registries():
    current = C.CATALOG_FILE.read_text(encoding="utf-8")
    assert current == render(), "kdcore/core/catalog.json is out of date: run python -m kdcore.pipeline.catalog --write"


def test_catalog_sections_follow_the_registries():
    from kdcore.data import DATASETS
    from kdcore.methods.losses import LOSSES
    from kdcore.models.encoders import ENCODERS

    assert C.names("losses") == list(LOSSES)
    assert C.names("datasets") == list(DATASETS)
    assert C.encoder_archs() == list(ENCODERS)
    assert C.archs_by_kind()["tokens"] == ("gru", "transformer")
    assert C.default_arch()["vector"] == "mlp"
    assert C.dataset_info("mfh-gauss").class_count({"classes": 4}) == 4
    assert C.dataset_info("digits-av").class_count({}) == 10


def test_check_params_names_the_field_and_range():
    schema = {"epsilon": {"default": 0.25, "min": 0.0, "max": 10.0}}
    C.check_params("phase_params.ard", {"epsilon": 1.0}, schema)
    for bad, words in (({"epsilon": 11}, "phase_params.ard.epsilon=11: allowed range [0.0, 10.0]"),
                       ({"eps": 1}, "unknown ['eps']")):
        try:
            C.check_params("phase_params.ard", bad, schema)
        except ValueError as exc:
            assert words in str(exc)
        else:
            raise AssertionError("no error")


def test_spec_and_presets_import_no_torch(tmp_path):
    code = (
        "import sys\n"
        "from kdcore.core.spec import ExperimentSpec\n"
        "from kdcore.presets import PRESETS, load_preset\n"
        "specs = [load_preset(p) for p in PRESETS]\n"
        "ExperimentSpec.load(sys.argv[1])\n"
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'torchvision')))\n"
        "print(len(specs), bad[:3])\n"
        "sys.exit(1 if bad else 0)\n"
    )
    spec = tmp_path / "s.yaml"
    spec.write_text("data: {dataset: mfeat}\ndistill: {losses: {kd: {weight: 1}}, extra_phases: [ard]}\n")
    out = subprocess.run([sys.executable, "-c", code, str(spec)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_one_parameter_check_for_losses_weightings_and_schedules():
    from kdcore.methods.strategies import TEMPERATURE_SCHEDULES, WEIGHTINGS

    for build, words in ((lambda: WEIGHTINGS["fixed"]({"ce": 1.0}, bogus=1), "weighting 'fixed': unknown parameter(s)"),
                         (lambda: TEMPERATURE_SCHEDULES["linear"](4.0, bogus=1),
                          "temperature schedule 'linear': unknown parameter(s) ['bogus']; allowed: end")):
        try:
            build()
        except ValueError as exc:
            assert words in str(exc)
        else:
            raise AssertionError("no error")


def test_every_method_declares_a_params_model_and_the_catalog_records_it():
    """Losses, weightings, schedules and phase recipes: one nested pydantic Params model each; the
    catalog's record (default, min/max, choices, ordered rules) is rendered from that model."""
    from kdcore.core.params import MethodParams, params_schema
    from kdcore.methods.losses import LOSSES
    from kdcore.methods.strategies import TEMPERATURE_SCHEDULES, WEIGHTINGS
    from kdcore.pipeline.recipes.registry import RECIPES

    cat = C.catalog()
    for section, reg in (("losses", LOSSES), ("weightings", WEIGHTINGS), ("schedules", TEMPERATURE_SCHEDULES),
                         ("phases", RECIPES)):
        for name, method in reg.items():
            model = method.Params
            assert issubclass(model, MethodParams) and model.model_config["extra"] == "forbid", (section, name)
            assert cat[section][name]["params"] == params_schema(model), (section, name)
            assert cat[section][name].get("ordered", []) == [list(p) for p in model.ordered], (section, name)
            assert {k: r["default"] for k, r in cat[section][name]["params"].items()} == method.defaults
    beta = cat["losses"]["dkd"]["params"]["beta"]
    assert {k: beta[k] for k in ("default", "min", "max")} == {"default": 8.0, "min": 0.0, "max": 1e4}
    assert beta["description"]
    assert cat["losses"]["at"]["params"]["pairs"]["choices"] == ["depth", "last"]
    assert cat["schedules"]["learnable"]["params"]["lambda"]["default"] == 1.0  # the alias a user writes
    assert cat["phases"]["prune_kd"]["ordered"] == [["start", "end"]]


def test_check_params_choices_open_bounds_and_ordered_rules():
    schema = {"mode": {"default": "max", "choices": ["max", "true"]}, "t": {"default": 1.0, "gt": 0.0, "max": 100.0},
              "start": {"default": 0.0, "min": 0.0, "max": 1.0}, "end": {"default": 0.6, "min": 0.0, "max": 1.0}}
    C.check_params("w", {"mode": "true", "t": 100.0, "start": 0.5}, schema, [["start", "end"]])
    for bad, words in (({"mode": "median"}, "w.mode='median'; allowed: max, true"),
                       ({"t": 0}, "w.t=0: allowed range (0.0, 100.0]"),
                       ({"t": "2"}, "w.t='2': allowed range"),
                       ({"start": 0.7}, "w: start must be < end"),
                       ({"start": 0.2, "end": 0.2}, "w: start must be < end")):
        try:
            C.check_params("w", bad, schema, [["start", "end"]])
        except ValueError as exc:
            assert words in str(exc), (bad, str(exc))
        else:
            raise AssertionError(f"no error for {bad}")
