"""Pure plotly figure builders for the app (no streamlit here).

Every builder takes plain data (event dicts as written by ``Event.to_dict()``, numpy arrays,
result dicts) and returns a ``plotly.graph_objects.Figure`` with ``uirevision`` set, so a live
page can redraw it every second without losing the user's zoom.
"""

from kdcore.viz.training import (
    accuracy_figure,
    aggregate_results,
    ema,
    loss_terms_figure,
    lr_figure,
    overlay_figure,
    result_table,
    strategy_figure,
    uses_adaptive_strategy,
    verdict,
)
from kdcore.viz.teaching import (
    gradient_split_figure,
    hard_vs_soft_figure,
    kd_quantities,
    softmax_bars_figure,
    softmax_t,
    temperature_curves_figure,
)

__all__ = [
    "accuracy_figure", "aggregate_results", "ema", "gradient_split_figure", "hard_vs_soft_figure", "kd_quantities", "loss_terms_figure", "lr_figure",
    "overlay_figure", "result_table", "softmax_bars_figure", "softmax_t", "strategy_figure",
    "temperature_curves_figure", "uses_adaptive_strategy", "verdict",
]
