"""One parameter style for every method: a nested pydantic ``Params`` model.

Losses, weightings, temperature schedules and phase recipes each declare their hyper-parameters as
a :class:`MethodParams` subclass — one field per parameter, with its default, its allowed range as
``Field(ge=..., le=...)`` (``gt``/``lt`` for open bounds) and a ``description``; choices are
``Literal[...]``; a rule between two fields (``start < end``) is listed in ``ordered``::

    class Params(MethodParams):
        alpha: float = Field(1.0, ge=0.0, le=1e4, description="weight of the target-class term")

:func:`validate_params` builds the model from a mapping and turns pydantic's errors into one
``ValueError`` that names the method, the field and what is allowed. :func:`params_schema` is what
the catalog generator writes into ``catalog.json`` for each method (default, min/max, choices,
description; the ``ordered`` pairs beside them); :func:`check_params` in :mod:`kdcore.core.catalog` checks a spec's
values against that record without importing the method (so without torch).

Pure: imports pydantic only.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Mapping, get_args, get_origin

import annotated_types as at
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator


class MethodParams(BaseModel):
    """Base of every method's ``Params``: unknown keys are refused, instances are frozen.

    ``ordered`` lists ``(a, b)`` pairs of parameter names whose values must satisfy ``a < b``
    (checked here and, through the catalog, when a spec loads)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ordered: ClassVar[tuple[tuple[str, str], ...]] = ()

    @model_validator(mode="after")
    def _check_ordered(self) -> "MethodParams":
        for a, b in self.ordered:
            if not _value(self, a) < _value(self, b):
                raise ValueError(f"{a} must be < {b}")
        return self


def _field_name(model: type[BaseModel], key: str) -> str:
    """The attribute behind a parameter name (its alias, e.g. ``lambda``, or the field name)."""
    for name, info in model.model_fields.items():
        if key in (name, info.alias):
            return name
    raise KeyError(key)


def _value(params: BaseModel, key: str) -> Any:
    return getattr(params, _field_name(type(params), key))


def param_names(model: type[BaseModel]) -> list[str]:
    """The parameter names a user writes (aliases where a field has one), in declaration order."""
    return [info.alias or name for name, info in model.model_fields.items()]


def defaults(model: type[BaseModel]) -> dict[str, Any]:
    """Parameter name -> default value (a copy, keyed by the names a user writes)."""
    return model().model_dump(by_alias=True)


def attach_params(cls: type) -> None:
    """For a method class (from its ``__init_subclass__``): its ``Params`` must be a
    :class:`MethodParams` subclass, a hand-written ``defaults`` dict is refused, and ``cls.defaults``
    becomes the name -> default mapping derived from the model."""
    if "defaults" in cls.__dict__:
        raise TypeError(f"{cls.__name__}: declare hyper-parameters as a nested Params model, not `defaults`")
    model = getattr(cls, "Params", None)
    if not (isinstance(model, type) and issubclass(model, MethodParams)):
        raise TypeError(f"{cls.__name__}.Params must subclass kdcore.core.params.MethodParams")
    cls.defaults = defaults(model)


def bounds(model: type[BaseModel], key: str) -> dict[str, float]:
    """``{"min": .., "max": ..}`` (inclusive) / ``{"gt": .., "lt": ..}`` (exclusive) of one parameter."""
    out: dict[str, float] = {}
    for c in model.model_fields[_field_name(model, key)].metadata:
        if isinstance(c, at.Ge):
            out["min"] = c.ge
        elif isinstance(c, at.Gt):
            out["gt"] = c.gt
        elif isinstance(c, at.Le):
            out["max"] = c.le
        elif isinstance(c, at.Lt):
            out["lt"] = c.lt
    return out


def range_text(rule: Mapping[str, Any]) -> str | None:
    """``"[0.0, 10.0]"`` / ``"(0, 100.0]"`` from a bounds record; None when unbounded."""
    lo, lo_open = (rule["gt"], True) if "gt" in rule else (rule.get("min"), False)
    hi, hi_open = (rule["lt"], True) if "lt" in rule else (rule.get("max"), False)
    if lo is None and hi is None:
        return None
    return (("(" if lo_open or lo is None else "[") + ("-∞" if lo is None else str(lo)) + ", "
            + ("∞" if hi is None else str(hi)) + (")" if hi_open or hi is None else "]"))


def in_range(value: float, rule: Mapping[str, Any]) -> bool:
    return (("min" not in rule or value >= rule["min"]) and ("max" not in rule or value <= rule["max"])
            and ("gt" not in rule or value > rule["gt"]) and ("lt" not in rule or value < rule["lt"]))


def choices(annotation: Any) -> list[Any]:
    """The allowed values of a ``Literal[...]`` annotation (also inside ``Optional``/unions)."""
    if get_origin(annotation) is Literal:
        return list(get_args(annotation))
    out: list[Any] = []
    for arg in get_args(annotation):
        out += choices(arg)
    return out


def params_schema(model: type[MethodParams]) -> dict[str, Any]:
    """What the catalog records of a method's parameters: name -> {default, min?, max?, gt?, lt?,
    choices?, description?} (the model's ``ordered`` pairs are recorded beside it, as ``ordered``)."""
    out: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        key = info.alias or name
        rule: dict[str, Any] = {"default": info.get_default(call_default_factory=True)}
        rule.update(bounds(model, key))
        opts = choices(info.annotation)
        if opts:
            rule["choices"] = opts
        if info.description:
            rule["description"] = info.description
        out[key] = rule
    return out


_WORDS = {int: "a whole number", float: "a number", str: "a string", bool: "true or false", type(None): "None"}


def _type_words(annotation: Any) -> str:
    """``int | str`` -> "a whole number or a string" (for a value that fits none of a union's types)."""
    if get_origin(annotation) is Literal:
        return "one of " + ", ".join(str(c) for c in get_args(annotation))
    args = get_args(annotation)
    if get_origin(annotation) is list:
        return "a list of " + _type_words(args[0]).removeprefix("a ") + "s" if args else "a list"
    if args:  # a union
        return " or ".join(dict.fromkeys(_type_words(a) for a in args))
    return _WORDS.get(annotation, getattr(annotation, "__name__", str(annotation)))


def problem(model: type[BaseModel], exc: ValidationError, prefix: str = "params.",
            given: Mapping[str, Any] | None = None) -> str:
    """A pydantic error in words: the field (``prefix`` + name), the value and what is allowed."""
    msgs: list[str] = []
    errors = exc.errors(include_url=False)
    unknown = sorted(str(err["loc"][0]) for err in errors if err["type"] == "extra_forbidden")
    if unknown:
        msgs.append(f"unknown parameter(s) {unknown}; allowed: {', '.join(param_names(model)) or 'none'}")
    by_key: dict[str, list[dict[str, Any]]] = {}
    for err in errors:
        if err["type"] == "extra_forbidden":
            continue
        if not err["loc"]:  # a model validator (an ``ordered`` rule)
            msgs.append(str(err["msg"]).removeprefix("Value error, "))
            continue
        by_key.setdefault(str(err["loc"][0]), []).append(err)
    for key, errs in by_key.items():
        err = errs[0]
        value = (given or {}).get(key, err.get("input"))
        try:
            info = model.model_fields[_field_name(model, key)]
            rng = range_text(bounds(model, key))
        except KeyError:
            info, rng = None, None
        if err["type"] in ("greater_than", "greater_than_equal", "less_than", "less_than_equal") and rng:
            msgs.append(f"{prefix}{key}={value!r} is outside the allowed range {rng}")
        elif err["type"] == "literal_error" and info is not None:
            msgs.append(f"{prefix}{key}={value!r}; allowed: {', '.join(str(c) for c in choices(info.annotation))}")
        elif err["type"] == "int_from_float" and len(errs) == 1:
            msgs.append(f"{prefix}{key}={value!r} is not a whole number" + (f" in {rng}" if rng else ""))
        elif err["type"] in ("float_parsing", "float_type", "int_parsing", "int_type") and len(errs) == 1:
            msgs.append(f"{prefix}{key}={value!r} is not a number" + (f" in {rng}" if rng else ""))
        elif info is not None:
            msgs.append(f"{prefix}{key}={value!r} is not {_type_words(info.annotation)}"
                        + (f" in {rng}" if rng else ""))
        else:
            msgs.append(f"{prefix}{key}={value!r}: {err['msg']}")
    return "; ".join(dict.fromkeys(msgs))


def validate_params(model: type[MethodParams], given: Mapping[str, Any] | MethodParams | None, where: str,
                    prefix: str = "params.") -> MethodParams:
    """``model`` built from ``given``; a bad value raises ``ValueError`` "``where``: ``prefix``field=… is
    outside the allowed range [lo, hi]" (or names the unknown parameters and the allowed ones)."""
    if isinstance(given, model):
        return given
    given = dict(given or {})
    try:
        return model.model_validate(given)
    except ValidationError as exc:
        raise ValueError(f"{where}: {problem(model, exc, prefix, given)}") from None
