"""The Compare page's selection: other pages open Compare with some runs selected, and the
selection lives in the URL (``?runs=id1,id2``), so a link reopens the same rows.

* :func:`open_runs` — switch to Compare with these runs selected and a caption saying where they
  come from (the Explore page: the runs of one sweep grid point, one per seed).
* :func:`apply_preselection` — before the table is drawn: the runs another page asked for (session
  state ``cmp-preselect``), else the URL's ``runs=``, become the table's selected rows; the same
  runs stay selected when new runs shift the rows.
* :func:`keep_selection` — after the table: the selected runs go into the URL.
* :func:`origin_caption` — what the selected runs are, when they are the runs of one sweep point.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

from ui.runs import RunInfo

PAGE = "pages/5_Compare.py"
TABLE_KEY = "cmp-table"  # the runs table (a multi-row selection)
PRESELECT_KEY = "cmp-preselect"  # {"runs": [ids], "caption": str}, set by another page
APPLIED_KEY = "cmp-applied"  # the run ids the table's selection holds (as last set or read)
ORDER_KEY = "cmp-order"  # the run ids of the table's rows, in order, when it was last drawn
CAPTION_KEY = "cmp-caption"  # (run ids, caption) of the latest preselection
QUERY_KEY = "runs"
_SWEEP_NAME = re.compile(r"^(?P<point>.+) · seed (?P<seed>\d+)$")  # kdcore.pipeline.grid.point_run_name


def parse_run_ids(text: str | None) -> list[str]:
    """``"id1, id2,id1"`` → ``["id1", "id2"]``: the run ids of a ``runs=`` query, blanks and repeats dropped."""
    return list(dict.fromkeys(p.strip() for p in (text or "").split(",") if p.strip()))


def rows_of(runs: Sequence[RunInfo], ids: Sequence[str]) -> tuple[list[int], list[str]]:
    """The table rows (positions in ``runs``) of the given run ids, and the ids that are not there."""
    pos = {r.id: i for i, r in enumerate(runs)}
    return [pos[i] for i in ids if i in pos], [i for i in ids if i not in pos]


def sweep_point_of(run: RunInfo) -> tuple[str, int] | None:
    """``("multiview-kd · temperature=2", 1)`` for the stored run of a sweep's grid point and seed
    (its name, ``kdcore.pipeline.grid.point_run_name``); None for any other run."""
    m = _SWEEP_NAME.match(str(run.spec.get("name") or ""))
    return (m["point"], int(m["seed"])) if m else None


def derived_caption(runs: Sequence[RunInfo]) -> str:
    """"The runs of the sweep point … (seeds 0, 1, 2)" when ``runs`` are all of one grid point, else ""."""
    points = [sweep_point_of(r) for r in runs]
    if not runs or any(p is None for p in points) or len({p[0] for p in points}) != 1:
        return ""
    seeds = ", ".join(str(s) for s in sorted(p[1] for p in points))
    return f"The runs of the sweep grid point **{points[0][0]}**, one per seed (seeds {seeds})."


@dataclass(frozen=True)
class Preselection:
    ids: tuple[str, ...]
    rows: tuple[int, ...]
    missing: tuple[str, ...]


def open_runs(run_ids: Sequence[str], caption: str = "") -> None:
    """Switch to the Compare page with ``run_ids`` selected (in the URL too); ``caption`` says there
    where they come from. Stops this script run (``st.switch_page``)."""
    import streamlit as st

    ids = list(dict.fromkeys(run_ids))
    if not ids:
        raise ValueError("open_runs: no run ids to open")
    st.session_state[PRESELECT_KEY] = {"runs": ids, "caption": caption}
    st.switch_page(PAGE, query_params={QUERY_KEY: ",".join(ids)})


def apply_preselection(runs: Sequence[RunInfo]) -> Preselection | None:
    """Call before the table is drawn. The runs asked for by another page, else by the URL, become
    the table's selection (when new, or when the table has no selection state yet: a new visit);
    otherwise, when the rows moved (new runs), the selected runs are selected again at their new
    rows. Returns what was asked (None: nothing)."""
    import streamlit as st

    ss = st.session_state
    order = tuple(r.id for r in runs)
    asked = ss.pop(PRESELECT_KEY, None)
    if asked:
        ids = tuple(parse_run_ids(",".join(asked.get("runs") or [])))
        ss[CAPTION_KEY] = (ids, str(asked.get("caption") or ""))
    else:
        ids = tuple(parse_run_ids(_query_value(st.query_params.get(QUERY_KEY))))
    pre = None
    if ids and (asked or TABLE_KEY not in ss or ids != ss.get(APPLIED_KEY)):
        rows, missing = rows_of(runs, ids)
        _select(rows)
        ss[APPLIED_KEY] = tuple(runs[i].id for i in rows)
        pre = Preselection(ids, tuple(rows), tuple(missing))
    elif ss.get(ORDER_KEY) not in (None, order) and ss.get(APPLIED_KEY):
        rows, _ = rows_of(runs, ss[APPLIED_KEY])  # new runs moved the rows: keep the same runs selected
        _select(rows)
    ss[ORDER_KEY] = order
    return pre


def keep_selection(runs: Sequence[RunInfo], selected: Sequence[int]) -> None:
    """Call after the table: the selected runs into the URL (``runs=``; removed when none)."""
    import streamlit as st

    ids = tuple(runs[i].id for i in selected if 0 <= i < len(runs))
    st.session_state[APPLIED_KEY] = ids
    have = _query_value(st.query_params.get(QUERY_KEY))
    if ids and have != ",".join(ids):
        st.query_params[QUERY_KEY] = ",".join(ids)
    elif not ids and QUERY_KEY in st.query_params:
        del st.query_params[QUERY_KEY]


def origin_caption(runs: Sequence[RunInfo], selected: Sequence[int]) -> str:
    """Where the selected runs come from: the caption of the page that opened them (while they are
    still the selection), else :func:`derived_caption`; "" when neither applies."""
    import streamlit as st

    chosen = [runs[i] for i in selected if 0 <= i < len(runs)]
    ids = tuple(r.id for r in chosen)
    opened = st.session_state.get(CAPTION_KEY)
    if opened and opened[1] and tuple(opened[0]) == ids:
        return opened[1]
    return derived_caption(chosen)


def shared_note(runs: Sequence[RunInfo], selected: Sequence[int]) -> str:
    """A note when selected runs adopted phases from another run (a sweep's shared teacher and
    baseline): their curves are in the run that trained them."""
    shared: dict[str, set[str]] = {}
    for i in selected:
        for phase, source in ((runs[i].result or {}).get("adopted") or {}).items():
            if source and source != runs[i].id:
                shared.setdefault(phase, set()).add(source)
    if not shared:
        return ""
    parts = "; ".join(f"{p} by {', '.join(sorted(s))}" for p, s in sorted(shared.items()))
    return (f"Shared phases: some selected runs took phases trained once for their sweep seed ({parts}); "
            "their numbers and weights are in each run, their training curves only in the run that trained them.")


def _select(rows: Sequence[int]) -> None:
    import streamlit as st

    st.session_state[TABLE_KEY] = {"selection": {"rows": list(rows), "columns": []}}


def _query_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value or "")


__all__ = ["apply_preselection", "derived_caption", "keep_selection", "open_runs", "origin_caption",
           "parse_run_ids", "rows_of", "shared_note", "sweep_point_of"]
