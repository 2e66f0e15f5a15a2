"""Methods (teaching): every registered distillation loss and strategy, read from the library's own
registries and docstrings — formula, paper, intuition, defaults — with a button to try it."""

from __future__ import annotations

import inspect
import re

import streamlit as st

from kdcore.core.params import params_schema, range_text
from kdcore.methods.losses import LOSSES
from kdcore.presets import PRESETS
from kdcore.methods.strategies import TEMPERATURE_SCHEDULES, WEIGHTINGS
from ui import state
from ui.setup_form import extra_phase_names

st.set_page_config(page_title="KD Lab · Methods", page_icon="🧪", layout="wide")
state.init()
st.title("Methods")
st.markdown("Every method the engine knows, straight from its code: the docstring gives the formula and "
            "the paper; *defaults* are what a spec gets when it names the method without parameters.")

_CODE = re.compile(r"(``.+?``|`[^`]+`)")
# Internal references in the code's docstrings (design-document sections, repository files, module
# paths) mean nothing to a reader of this page: they are cut, the sentence around them kept.
# (The design document's section numbers were removed from the docstrings themselves; the last
# pattern is a safety net for a "§" that a new docstring brings in.)
_INTERNAL = [
    (re.compile(r"\s*\(see :mod:`[^`]+`\)"), ""),
    (re.compile(r"\s*\(``(?:scripts|docs|tests)/[^`]+``\)"), ""),
    (re.compile(r"\s*\(§[\d.]+(?:\s*/\s*§[\d.]+)*\)"), ""),
    (re.compile(r"\s*§[\d.]+"), ""),
]


def plain(text: str | None) -> str:
    """``text`` without internal references (design-document sections, repository paths)."""
    out = text or ""
    for pat, rep in _INTERNAL:
        out = pat.sub(rep, out)
    return out


def doc_markdown(obj) -> str:
    """A docstring as safe markdown, without internal references: code spans kept, markdown emphasis
    characters escaped elsewhere."""
    doc = plain(inspect.getdoc(obj))
    out = []
    for part in _CODE.split(doc):
        if part.startswith("`"):
            out.append("`" + part.strip("`") + "`")
        else:
            out.append(re.sub(r"([\\*_#<>\[\]|])", r"\\\1", part))
    return "".join(out).replace("\n", "  \n")


def params_markdown(model) -> str:
    """A method's parameters from its pydantic ``Params`` model: default, allowed range or choices,
    description (one line each); empty when it has none."""
    lines = []
    for key, rule in params_schema(model).items():
        rng = range_text(rule)
        allowed = (f" · allowed {rng}" if rng else
                   " · one of " + ", ".join(f"`{c}`" for c in rule["choices"]) if rule.get("choices") else "")
        desc = f" — {plain(rule['description'])}" if rule.get("description") else ""
        lines.append(f"- `{key}` (default `{rule['default']}`{allowed}){desc}")
    for a, b in getattr(model, "ordered", ()):
        lines.append(f"- `{a}` must be < `{b}`")
    return ("**Parameters:**\n" + "\n".join(lines)) if lines else ""


def show_params(model) -> None:
    text = params_markdown(model)
    if text:
        st.markdown(text)


@st.cache_data(show_spinner=False)
def preset_usage() -> dict[str, list[str]]:
    """method / strategy name → presets that use it."""
    use: dict[str, list[str]] = {}
    for p in PRESETS:
        spec = state.preset_spec(p)
        names = [*spec.distill.losses, spec.distill.weighting, spec.distill.temperature_schedule,
                 *spec.distill.extra_phases]
        for n in set(names):
            use.setdefault(n, []).append(p)
    return use


usage = preset_usage()


def try_buttons(name: str, kind: str) -> None:
    presets = usage.get(name, [])
    cols = st.columns(max(1, len(presets)) + 1)
    for col, p in zip(cols, presets):
        if col.button(f"Load preset {p}", key=f"m-{kind}-{name}-{p}"):
            state.load_preset_into_session(p)
            st.switch_page("pages/1_Setup.py")
    if cols[-1].button("Use in my current setup", key=f"m-{kind}-{name}-use"):
        spec = state.get_spec()
        d = spec.to_dict()
        if kind == "loss":
            d["distill"]["losses"].setdefault(name, {"weight": LOSSES[name].default_weight, "params": {}})
        elif kind == "weighting":
            d["distill"]["weighting"], d["distill"]["weighting_params"] = name, {}
        elif kind == "schedule":
            d["distill"]["temperature_schedule"], d["distill"]["temperature_params"] = name, {}
        elif kind == "phase" and name not in d["distill"]["extra_phases"]:
            d["distill"]["extra_phases"].append(name)
        from kdcore.core.spec import SpecError, validate_spec

        try:
            state.set_spec(validate_spec(d))
            st.switch_page("pages/1_Setup.py")
        except SpecError as exc:
            st.error(f"Cannot add {name} to the current setup: {exc}")


families = sorted({cls.family for cls in LOSSES.values()})
st.header("Distillation losses")
for family in families:
    st.subheader(f"{family}")
    for name, cls in sorted((n, c) for n, c in LOSSES.items() if c.family == family):
        with st.expander(f"**{name}** — {plain(cls.summary)}"):
            if plain(cls.paper):
                st.markdown(f"**Paper:** {plain(cls.paper)}")
            st.markdown(doc_markdown(cls))
            st.markdown(f"**Defaults:** weight `{cls.default_weight:g}`"
                        + (", " + ", ".join(f"`{k}={v}`" for k, v in cls.defaults.items()) if cls.defaults else "")
                        + (" · uses the teacher" if cls.needs_teacher else " · label-only (no teacher)"))
            show_params(cls.Params)
            try_buttons(name, "loss")

st.header("Loss weighting")
for name, cls in WEIGHTINGS.items():
    with st.expander(f"**{name}** — {plain(cls.summary)}"):
        st.markdown(doc_markdown(cls))
        st.markdown("**Defaults:** " + (", ".join(f"`{k}={v}`" for k, v in cls.defaults.items()) or "none"))
        show_params(cls.Params)
        try_buttons(name, "weighting")

st.header("Temperature schedules")
for name, cls in TEMPERATURE_SCHEDULES.items():
    with st.expander(f"**{name}** — {plain(cls.summary)}"):
        st.markdown(doc_markdown(cls))
        st.markdown("**Defaults:** " + (", ".join(f"`{k}={v}`" for k, v in cls.defaults.items()) or "none"))
        show_params(cls.Params)
        try_buttons(name, "schedule")

phases = extra_phase_names()
if phases:
    st.header("Extra student phases")
    try:
        from kdcore.pipeline.recipes import extra as phase_mod
        from kdcore.pipeline.recipes.registry import RECIPES

        summaries = {n: r.summary for n, r in RECIPES.items()}
        params = {n: r.defaults for n, r in RECIPES.items()}
        models = {n: r.Params for n, r in RECIPES.items()}
        module_doc = doc_markdown(phase_mod)
    except ImportError:
        summaries, params, models, module_doc = {}, {}, {}, ""
    if module_doc:
        with st.expander("How the extra phases work"):
            st.markdown(module_doc)
    for name in phases:
        with st.expander(f"**{name}** — {plain(summaries.get(name, ''))}"):
            if params.get(name):
                st.markdown("**Defaults:** " + ", ".join(f"`{k}={v}`" for k, v in params[name].items()))
            if name in models:
                show_params(models[name])
            try_buttons(name, "phase")
