"""Look inside: modality-attention statistics, Captum attributions and teacher–student agreement.

Pure computations (no streamlit): the pages, the CLI (``python -m kdcore explain``) and the
agreement script all call these.
"""

from kdcore.explain.agreement import Agreement, agreement, spearman_rows, topk_overlap_rows
from kdcore.explain.attention import (AlphaStats, alpha_on_split, attention_history, class_modality_mean,
                                      noise_sweep, removal_sweep)
from kdcore.explain.attribution import (METHODS, Attribution, AttributionError, AttributionParams, attribute,
                                        attribute_batches, inspect_copy)
from kdcore.explain import methods as _methods  # noqa: F401,E402  (every method module registers itself)
from kdcore.explain.callback import AgreementCallback, agreement_history
from kdcore.explain.probe import Comparison, compare, probe_rows

__all__ = [
    "METHODS", "AgreementCallback", "Agreement", "AlphaStats", "Attribution", "AttributionError",
    "AttributionParams", "Comparison", "agreement", "agreement_history", "alpha_on_split", "attention_history",
    "attribute", "attribute_batches", "class_modality_mean", "compare", "inspect_copy", "noise_sweep",
    "probe_rows", "removal_sweep", "spearman_rows", "topk_overlap_rows",
]
