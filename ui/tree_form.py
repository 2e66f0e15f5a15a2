"""The Setup page's widgets for the student's kind: a neural network, or a gradient-boosted-tree ensemble
(``student.kind: tree``, LightGBM) with its ``student.tree`` knobs. The allowed ranges shown come from
the spec's pydantic model (:class:`kdcore.core.tree_spec.TreeSpec`), and an out-of-range value is passed
on so the spec's own message (naming the field) appears inline, as for every other number box."""

from __future__ import annotations

import streamlit as st

from kdcore.core.tree_spec import STUDENT_KINDS, TREE_MODALITY_KINDS, TreeSpec

KIND_LABELS = {"neural": "neural network", "tree": "gradient-boosted trees (LightGBM)"}
# (field, label, step, help) of the tree knobs drawn as number boxes
TREE_FIELDS = [
    ("rounds", "boosting rounds", 50, None),
    ("learning_rate", "learning rate", 0.05, None),
    ("num_leaves", "leaves per tree", 1, None),
    ("min_data_in_leaf", "min samples per leaf", 1, None),
    ("early_stopping", "early stopping (rounds)", 5, None),
    ("feature_fraction", "feature fraction", 0.1, None),
    ("lambda_l2", "L2 on leaf values", 0.1, None),
    ("max_depth", "max depth", 1, None),
]


def allowed(name: str) -> str:
    """``low to high`` of a TreeSpec field, from its pydantic constraints."""
    info = TreeSpec.model_fields[name]
    lo = hi = None
    for c in info.metadata:
        lo = getattr(c, "ge", None) if getattr(c, "ge", None) is not None else (
            f"> {c.gt}" if getattr(c, "gt", None) is not None else lo)
        hi = getattr(c, "le", None) if getattr(c, "le", None) is not None else hi
    return f"{lo} to {hi}"


def student_kind(f, kinds: dict[str, str], chosen: list[str]) -> bool:
    """The student-kind radio and, for a tree, its knobs; returns whether the student is a tree (the
    network widgets are then skipped — their values stay in the spec)."""
    m = f.d["student"]
    m.setdefault("kind", "neural")
    m.setdefault("tree", TreeSpec().model_dump())
    f.mark("student", "kind", "tree")
    kind = st.radio("student kind", list(STUDENT_KINDS), index=list(STUDENT_KINDS).index(m["kind"]),
                    format_func=KIND_LABELS.get, horizontal=True, key=f.key("student.kind"),
                    help="A tree student (LightGBM) fits the hard labels (baseline) or the teacher's soft targets "
                         "at temperature T (KD); it takes vector modalities only.")
    m["kind"] = kind
    if kind != "tree":
        return False
    not_vector = [x for x in chosen if kinds.get(x) not in TREE_MODALITY_KINDS]
    if not_vector:
        st.warning(f"A tree student takes vector modalities only; {', '.join(not_vector)} "
                   f"({', '.join(kinds[x] for x in not_vector)}) cannot be split by a tree.")
    t = m["tree"]
    cols = st.columns(4)
    for i, (name, label, step, help_) in enumerate(TREE_FIELDS):
        cur = t.get(name, TreeSpec.model_fields[name].default)
        value = f.number(cols[i % 4], label, f"student.tree.{name}", type(step)(cur) if isinstance(step, float)
                         else int(cur), step, allowed=allowed(name),
                         help=help_ or TreeSpec.model_fields[name].description)
        t[name] = float(value) if isinstance(step, float) else int(value)
    st.caption("Boosting rounds are the x axis of the Train page's charts for the tree phases; each phase keeps its "
               "best validation round. Distillation: the losses' ce / kd weights and the temperature below.")
    return True
