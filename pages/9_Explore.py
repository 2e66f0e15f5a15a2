"""Explore: sweep one or two knobs of a setup (or a preset) over seeds in the background and watch
the paired KD gain (KD − baseline) against the knob fill in with ± std error bars; accuracy and
agreement with the teacher as further panels, the 2-std verdict per grid point, CSV export, and the
whole sweep in the URL. Logic in ``ui/explore.py``, figures in ``kdcore/viz/sweep.py``."""

from __future__ import annotations

import streamlit as st

from ui import explore

st.set_page_config(page_title="KD Lab · Explore", page_icon="🧪", layout="wide")
explore.render()
