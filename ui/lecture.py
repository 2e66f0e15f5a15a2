"""Lecture mode: one sidebar switch that folds details away on every page that honours it.

In lecture mode the Setup page shows only what a lesson is about (dataset and its knobs,
modalities, data regime, loss terms and weights, temperature, epochs); other fields keep their
values, just hidden. The home page folds its preset-card details.

The switch lives in ``st.session_state[KEY]`` (not in the widget's own key), so it survives pages
that do not draw it: Streamlit forgets a widget's state when a run does not render the widget.
"""

from __future__ import annotations

import streamlit as st

KEY = "lecture_mode"  # the persisted value (bool)
_WIDGET = "lecture_mode-toggle"  # the sidebar toggle's own key


def lecture_mode() -> bool:
    """Whether lecture mode is on for this browser tab."""
    return bool(st.session_state.get(KEY, False))


def _copy() -> None:
    st.session_state[KEY] = bool(st.session_state.get(_WIDGET, False))


def lecture_toggle() -> bool:
    """Draw the sidebar toggle (call it once per page run) and return :func:`lecture_mode`."""
    st.session_state[_WIDGET] = lecture_mode()  # re-seed the widget from the persisted value
    st.sidebar.toggle("Lecture mode", key=_WIDGET, on_change=_copy,
                      help="Fold advanced settings and details away: only what the lesson is about stays on "
                           "screen. Hidden settings keep their values.")
    return lecture_mode()


__all__ = ["KEY", "lecture_mode", "lecture_toggle"]
