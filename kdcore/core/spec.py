"""The experiment spec: one pydantic model that the app's widgets, YAML files, presets and the
CLI's ``--set key=value`` all build, and that the engine runs.

Validation errors name the field and the allowed values (see :func:`format_validation_error`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kdcore.core import catalog as C
from kdcore.core.tree_spec import StudentMixin, tree_problems

# From the registries (kdcore.models.encoders / fusion), through the generated catalog: no hand-kept lists.
ENCODER_ARCHS = tuple(C.encoder_archs())
ARCHS_BY_KIND = C.archs_by_kind()  # which encoders make sense for which kind of modality input
DEFAULT_ARCH = C.default_arch()
FUSIONS = tuple(C.names("fusions"))
OPTIMIZERS = ("adam", "adamw", "sgd")
DEVICES = ("auto", "cpu", "cuda")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RegimeSpec(Strict):
    """Who sees which training labels (see :mod:`kdcore.data.regimes`). The defaults change nothing."""

    labelled_fraction: float = Field(1.0, description="fraction of the training split whose labels the "
                                     "students see (stratified; the rest is the unlabelled transfer set)")
    labels_per_class: int | None = Field(None, description="instead of a fraction: this many labelled "
                                         "training samples per class")
    transfer: Literal["labelled", "labelled+unlabelled"] = Field(
        "labelled+unlabelled", description="what the KD student trains on: the labelled part only, or also "
        "the unlabelled transfer set (soft targets only, no CE)")
    omit_classes: list[int] = Field(default_factory=list, description="classes removed from the students' "
                                    "labelled data (Hinton's omitted 3)")
    omitted_in_transfer: bool = Field(False, description="keep the omitted classes' samples in the transfer "
                                      "set, unlabelled (false: the students never see them)")
    teacher_label_noise: float = Field(0.0, description="fraction of the teacher's training labels flipped "
                                       "(uniformly, or of the source classes in teacher_noise_pairs)")
    teacher_noise_pairs: dict[int, int] = Field(default_factory=dict, description="flip along these pairs "
                                                "only, e.g. {4: 9}; empty = uniform flips")

    @field_validator("labelled_fraction")
    @classmethod
    def _fraction(cls, v: float) -> float:
        if not 0.0 < v <= 1.0:
            raise ValueError(f"data.regime.labelled_fraction={v} is outside the allowed range (0, 1]")
        return v

    @field_validator("labels_per_class")
    @classmethod
    def _per_class(cls, v: int | None) -> int | None:
        if v is not None and not 1 <= v <= 100000:
            raise ValueError(f"data.regime.labels_per_class={v} is outside the allowed range [1, 100000]")
        return v

    @field_validator("teacher_label_noise")
    @classmethod
    def _noise(cls, v: float) -> float:
        if not 0.0 <= v < 1.0:
            raise ValueError(f"data.regime.teacher_label_noise={v} is outside the allowed range [0, 1)")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "RegimeSpec":
        for s, d in self.teacher_noise_pairs.items():
            if s == d:
                raise ValueError(f"data.regime.teacher_noise_pairs: {s}→{d} flips a class to itself")
        if self.teacher_noise_pairs and self.teacher_label_noise == 0:
            raise ValueError("data.regime.teacher_noise_pairs needs teacher_label_noise > 0")
        if len(set(self.omit_classes)) != len(self.omit_classes):
            raise ValueError("data.regime.omit_classes: a class is listed twice")
        return self

    def has_unlabelled_transfer(self) -> bool:
        """Whether the KD student trains on samples without labels."""
        if self.transfer != "labelled+unlabelled":
            return False
        return (self.labelled_fraction < 1.0 or self.labels_per_class is not None
                or (bool(self.omit_classes) and self.omitted_in_transfer))

    def is_default(self) -> bool:
        return self == RegimeSpec()


class DataSpec(Strict):
    dataset: str = Field("digits-av", description="bundled dataset name, or custom (with data.path)")
    path: str | None = Field(None, description="dataset=custom: image folder (one subfolder per class) or CSV "
                             "manifest; see kdcore.data.custom")
    modalities: list[str] | None = Field(None, description="modalities to load (default: all of the dataset)")
    noise: dict[str, float] = Field(default_factory=dict, description="per-modality noise knobs")
    train_fraction: float = Field(0.6, gt=0.0, lt=1.0)
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    train_limit: int | None = Field(None, ge=10, description="use at most this many training samples")
    seed: int = Field(0, ge=0)
    aux_tasks: list[str] = Field(default_factory=list, description="auxiliary label tasks (e.g. parity)")
    regime: RegimeSpec = Field(default_factory=RegimeSpec, description="scarce labels + transfer set, "
                               "omitted classes, noisy teacher")

    @model_validator(mode="after")
    def _check_dataset(self) -> "DataSpec":
        cls = self.dataset_info()  # unknown dataset / bad data.path -> a field-naming error
        available = cls.modality_names()
        knobs = cls.noise_knobs()
        for key, value in self.noise.items():
            if key not in knobs:
                raise ValueError(f"data.noise: unknown knob {key!r} for {self.dataset}; allowed: {', '.join(knobs)}")
            lo, hi, _ = knobs[key]
            if not lo <= float(value) <= hi:
                raise ValueError(f"data.noise.{key}={value} is outside the allowed range [{lo}, {hi}]")
        if self.modalities is not None:
            if not self.modalities:
                raise ValueError("data.modalities must name at least one modality")
            bad = [m for m in self.modalities if m not in available]
            if bad:
                raise ValueError(
                    f"data.modalities: {bad} not in dataset {self.dataset!r}; allowed: {', '.join(available)}"
                )
        if self.train_fraction + self.val_fraction >= 1.0:
            raise ValueError("train_fraction + val_fraction must be < 1 (the rest is the test split)")
        aux_tasks = C.names("aux_tasks")
        bad = [t for t in self.aux_tasks if t not in aux_tasks]
        if bad:
            raise ValueError(f"data.aux_tasks: unknown {bad}; allowed: {', '.join(aux_tasks)}")
        n_classes = cls.class_count(self.noise)
        if n_classes is not None:
            r = self.regime
            bad = [c for c in r.omit_classes if not 0 <= c < n_classes]
            if bad:
                raise ValueError(f"data.regime.omit_classes: unknown class {bad[0]}; allowed: 0–{n_classes - 1}")
            if len(r.omit_classes) >= n_classes:
                raise ValueError("data.regime.omit_classes: at least one class must stay labelled")
            bad = [f"{s}→{d}" for s, d in r.teacher_noise_pairs.items()
                   if not (0 <= s < n_classes and 0 <= d < n_classes)]
            if bad:
                raise ValueError(f"data.regime.teacher_noise_pairs: {bad[0]} names a class outside 0–{n_classes - 1}")
        return self

    def all_modalities(self) -> list[str]:
        return list(self.modalities or self.dataset_info().modality_names())

    def dataset_info(self) -> C.DatasetInfo:
        """The dataset's modalities, kinds, noise knobs and class count (for ``custom``: the modalities
        found at ``data.path``, headers only), from the catalog — no data is loaded."""
        return C.dataset_info(self.dataset, self.path)


class EncoderSpec(Strict):
    arch: str | None = Field(None, description="encoder architecture (default by modality kind)")
    width: int = Field(16, ge=1, le=512, description="channels / hidden units of the first layer")
    depth: int = Field(2, ge=1, le=8, description="number of conv / hidden layers")

    @field_validator("arch")
    @classmethod
    def _arch_known(cls, v: str | None) -> str | None:
        if v is not None and v not in ENCODER_ARCHS:
            raise ValueError(f"unknown architecture {v!r}; allowed: {', '.join(ENCODER_ARCHS)}")
        return v


class ModelSpec(Strict):
    modalities: list[str] | None = Field(None, description="modalities this network sees (default: all)")
    encoders: dict[str, EncoderSpec] = Field(default_factory=dict, description="per-modality encoder")
    encoder: EncoderSpec = Field(default_factory=EncoderSpec, description="default for modalities not listed")
    feature_dim: int = Field(64, ge=2, le=2048)
    fusion: str = Field("attention", description="how modality features are fused (a registered fusion)")
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    modality_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="train-time prob. of dropping a modality")
    checkpoint: str | None = Field(None, description="safetensors file to load instead of training (teacher)")

    @field_validator("fusion")
    @classmethod
    def _fusion_known(cls, v: str) -> str:
        if v not in FUSIONS:
            raise ValueError(f"unknown fusion {v!r}; allowed: {', '.join(FUSIONS)}")
        return v

    def encoder_for(self, modality: str) -> EncoderSpec:
        return self.encoders.get(modality, self.encoder)


class StudentSpec(ModelSpec, StudentMixin):
    """The student: a network (the fields above) or, with ``kind: tree``, a LightGBM ensemble
    (``tree``; kdcore.core.tree_spec)."""


class LossTerm(Strict):
    weight: float = Field(1.0, ge=0.0, le=1e6)
    params: dict[str, Any] = Field(default_factory=dict)


def _default_losses() -> dict[str, LossTerm]:
    return {"ce": LossTerm(weight=0.1), "kd": LossTerm(weight=0.9)}


class EnsembleSpec(Strict):
    """Multi-teacher distillation: extra teachers (same architecture as ``teacher``, each seeing the
    listed modalities, trained with CE before the students) whose soft targets are combined."""

    members: list[list[str]] = Field(default_factory=list,
                                     description="extra teachers, each given as the modalities it sees")
    combine: Literal["mean", "confidence"] = Field("mean", description="average soft targets, or weight "
                                                   "each teacher per sample by its max softmax probability")
    include_main: bool = Field(True, description="include the main (fused) teacher in the ensemble")


class DistillSpec(Strict):
    losses: dict[str, LossTerm] = Field(default_factory=_default_losses)
    temperature: float = Field(4.0, gt=0.0, le=100.0)
    weighting: str = Field("fixed", description="loss-weight strategy")
    weighting_params: dict[str, Any] = Field(default_factory=dict)
    temperature_schedule: str = Field("constant", description="temperature schedule")
    temperature_params: dict[str, Any] = Field(default_factory=dict)
    extra_phases: list[str] = Field(default_factory=list, description="extra student phases (e.g. ard, prune)")
    phase_params: dict[str, dict[str, Any]] = Field(default_factory=dict,
                                                    description="parameters of extra phases, by phase name")
    ensemble: EnsembleSpec | None = Field(None, description="multi-teacher ensemble (None: one teacher)")

    @field_validator("losses")
    @classmethod
    def _losses_known(cls, v: dict[str, LossTerm]) -> dict[str, LossTerm]:
        losses = C.catalog()["losses"]
        if not v:
            raise ValueError("distill.losses needs at least one term")
        for name, term in v.items():
            if name not in losses:
                raise ValueError(f"unknown loss {name!r}; allowed: {', '.join(sorted(losses))}")
            C.check_params(f"distill.losses.{name}.params", term.params, losses[name]["params"],
                           losses[name].get("ordered", ()))
        return v

    @field_validator("losses", mode="before")
    @classmethod
    def _default_weights(cls, v: Any) -> Any:
        """A loss listed without a weight gets its method's default weight (e.g. FitNets 100)."""
        losses = C.catalog()["losses"]
        if isinstance(v, dict):
            v = {name: ({**term, "weight": losses[name]["default_weight"]}
                        if isinstance(term, dict) and "weight" not in term and name in losses else term)
                 for name, term in v.items()}
        return v

    @model_validator(mode="after")
    def _strategies_known(self) -> "DistillSpec":
        WEIGHTINGS, TEMPERATURE_SCHEDULES = C.names("weightings"), C.names("schedules")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"unknown weighting {self.weighting!r}; allowed: {', '.join(WEIGHTINGS)}")
        if self.temperature_schedule not in TEMPERATURE_SCHEDULES:
            raise ValueError(
                f"unknown temperature_schedule {self.temperature_schedule!r}; "
                f"allowed: {', '.join(TEMPERATURE_SCHEDULES)}"
            )
        for where, given, entry in (
                ("distill.weighting_params", self.weighting_params, C.catalog()["weightings"][self.weighting]),
                ("distill.temperature_params", self.temperature_params,
                 C.catalog()["schedules"][self.temperature_schedule])):
            C.check_params(where, given, entry["params"], entry.get("ordered", ()))
        check_phase_params(self.extra_phases, self.phase_params)
        return self


def check_phase_params(extra_phases: list[str], phase_params: dict[str, dict[str, Any]]) -> None:
    """Known phase names, known parameters, values in range, ``ordered`` rules such as pruning's
    start < end (messages name the field); the phases and their parameters come from each recipe's
    ``Params`` model (kdcore.pipeline.recipes) via the catalog."""
    phases = C.catalog()["phases"]
    for name in extra_phases:
        if name not in phases:
            raise ValueError(f"extra_phases: unknown phase {name!r}; allowed: {', '.join(sorted(phases))}")
    if len(set(extra_phases)) != len(extra_phases):
        raise ValueError("extra_phases: a phase is listed twice")
    with_params = [n for n, p in phases.items() if p["params"]]
    for name, params in phase_params.items():
        if name not in with_params:
            raise ValueError(f"phase_params: unknown phase {name!r}; allowed: {', '.join(with_params)}")
        if not isinstance(params, dict):
            raise ValueError(f"phase_params.{name} must be a mapping of parameters")
        schema = phases[name]["params"]
        for key in params:
            if key not in schema:
                raise ValueError(f"phase_params.{name}: unknown parameter {key!r}; allowed: {', '.join(schema)}")
        C.check_params(f"phase_params.{name}", params, schema, phases[name].get("ordered", ()))


class TrainSpec(Strict):
    teacher_epochs: int = Field(10, ge=0, le=1000)
    student_epochs: int = Field(10, ge=1, le=1000)
    batch_size: int = Field(64, ge=1, le=65536)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(3e-3, gt=0.0, le=10.0)
    teacher_lr: float | None = Field(None, gt=0.0, le=10.0)
    weight_decay: float = Field(0.0, ge=0.0, le=1.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(None, ge=1, le=256, description="torch CPU threads")
    teacher_cache: bool = Field(True, description="cache teacher outputs when inputs are fixed")
    precision: Literal["fp32", "bf16"] = Field("fp32", description="bf16 = autocast of the training step")
    compile: bool = Field(False, description="torch.compile the training step's forward (CUDA graphs on GPU)")
    probe_samples: int = Field(64, ge=0, le=4096, description="samples used for attention/attribution probes")


class ExperimentSpec(Strict):
    name: str = Field("experiment", min_length=1, max_length=80)
    description: str = ""
    data: DataSpec = Field(default_factory=DataSpec)
    teacher: ModelSpec = Field(default_factory=lambda: ModelSpec(feature_dim=64))
    student: StudentSpec = Field(default_factory=lambda: StudentSpec(feature_dim=16,
                                                                     encoder=EncoderSpec(width=4, depth=1)))
    distill: DistillSpec = Field(default_factory=DistillSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)

    @model_validator(mode="after")
    def _check_models(self) -> "ExperimentSpec":
        data_mods = self.data.all_modalities()
        kinds = self.data.dataset_info().modality_kinds()
        for role in ("teacher", "student"):
            model: ModelSpec = getattr(self, role)
            mods = model.modalities if model.modalities is not None else data_mods
            if not mods:
                raise ValueError(f"{role}.modalities must name at least one modality")
            bad = [m for m in mods if m not in data_mods]
            if bad:
                raise ValueError(
                    f"{role}.modalities: {bad} not among the data modalities; allowed: {', '.join(data_mods)}"
                )
            for m in list(model.encoders):
                if m not in data_mods:
                    raise ValueError(f"{role}.encoders.{m}: unknown modality; allowed: {', '.join(data_mods)}")
            for m in mods:
                arch = model.encoder_for(m).arch or DEFAULT_ARCH[kinds[m]]
                if arch not in ARCHS_BY_KIND[kinds[m]]:
                    raise ValueError(
                        f"{role}.encoders.{m}.arch={arch!r} does not fit a {kinds[m]} modality; "
                        f"allowed: {', '.join(ARCHS_BY_KIND[kinds[m]])}"
                    )

        regime = self.data.regime
        if regime.has_unlabelled_transfer():
            why = "the unlabelled transfer set has no labels for it (set data.regime.transfer=labelled)"
            if "dkd" in self.distill.losses:
                raise ValueError(f"distill.losses.dkd needs ground-truth labels; {why}")
            if self.distill.weighting == "c2kd" or (self.distill.weighting == "confidence"
                                                     and self.distill.weighting_params.get("mode") == "true"):
                raise ValueError(f"distill.weighting={self.distill.weighting} reads the labels; {why}")
            if "ard" in self.distill.extra_phases:
                raise ValueError(f"distill.extra_phases: ard attacks with the labels; {why}")

        ens = self.distill.ensemble
        if ens is not None:
            t_mods = self.teacher.modalities or data_mods
            if not ens.members and not ens.include_main:
                raise ValueError("distill.ensemble: no teachers (empty members and include_main=false)")
            for i, member in enumerate(ens.members):
                bad = [m for m in member if m not in t_mods]
                if not member or bad:
                    raise ValueError(f"distill.ensemble.members[{i}]={member}: each member must name ≥ 1 of the "
                                     f"teacher's modalities; allowed: {', '.join(t_mods)}")
        problem = tree_problems(self)  # student.kind=tree: vector modalities, ce/kd only
        if problem:
            raise ValueError(problem)
        return self

    def teacher_modalities(self) -> list[str]:
        return list(self.teacher.modalities or self.data.all_modalities())

    def student_modalities(self) -> list[str]:
        return list(self.student.modalities or self.data.all_modalities())

    # ---- YAML round trip -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        """The spec as YAML, readable (Unicode as is) unless that would not read back the same: PyYAML
        writes some line-break characters (NEL ``\\x85``) raw, which then load as spaces; then every
        non-ASCII character is escaped instead."""
        data = self.to_dict()
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
        if yaml.safe_load(text) != data:
            text = yaml.safe_dump(data, sort_keys=False, allow_unicode=False)
        return text

    @classmethod
    def from_yaml(cls, text: str) -> "ExperimentSpec":
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise SpecError(f"invalid YAML: {exc}".splitlines()[0]) from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise SpecError("invalid YAML: the top level must be a mapping of spec sections")
        return validate_spec(data)

    @classmethod
    def load(cls, path: str | Path) -> "ExperimentSpec":
        p = Path(path)
        if not p.is_file():
            raise SpecError(f"config file not found: {p}")
        return cls.from_yaml(p.read_text(encoding="utf-8"))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_yaml(), encoding="utf-8")

    def with_overrides(self, assignments: list[str]) -> "ExperimentSpec":
        data = self.to_dict()
        for item in assignments:
            apply_assignment(data, item)
        return validate_spec(data)


class SpecError(ValueError):
    """A spec could not be built; the message names the field and the allowed values."""


def format_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "__root__")
        msg = err.get("msg", "invalid")
        msg = msg.removeprefix("Value error, ")
        if err.get("type") == "extra_forbidden":
            msg = "unknown field"
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def validate_spec(data: dict[str, Any]) -> ExperimentSpec:
    try:
        return ExperimentSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(format_validation_error(exc)) from None


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


# Mappings whose keys are free (modality or loss names): --set may create new entries there.
_OPEN_MAPPINGS = {"encoders", "losses", "noise", "params", "weighting_params", "temperature_params",
                  "phase_params", "ensemble"}


def apply_assignment(data: dict[str, Any], item: str) -> None:
    """Apply ``a.b.c=value`` to a nested dict; unknown keys raise :class:`SpecError`."""
    if "=" not in item:
        raise SpecError(f"--set expects key=value, got {item!r}")
    key, raw = item.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise SpecError(f"--set expects key=value, got {item!r}")
    node: Any = data
    for i, part in enumerate(path[:-1]):
        free = any(p in _OPEN_MAPPINGS for p in path[:i])
        if not isinstance(node, dict):
            raise SpecError(f"unknown setting {key!r}: {'.'.join(path[:i])} is not a section")
        if part not in node or node[part] is None:
            if free or part in _OPEN_MAPPINGS:
                node[part] = {}
            else:
                raise SpecError(f"unknown setting {key!r}: no field {part!r} in {'.'.join(path[:i]) or 'spec'}")
        node = node[part]
    last = path[-1]
    if not isinstance(node, dict):
        raise SpecError(f"unknown setting {key!r}")
    # Inside free-keyed mappings (losses, encoders, ...) pydantic validates the final dict.
    if last not in node and not any(p in _OPEN_MAPPINGS for p in path[:-1]):
        raise SpecError(f"unknown setting {key!r}: no field {last!r} in {'.'.join(path[:-1]) or 'spec'}")
    node[last] = _parse_value(raw)
