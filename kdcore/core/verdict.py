"""Honest verdicts on the KD gain: paired over seeds, aware of chance level and test-set size.

The rule (the project's standard): a claim that KD helps or hurts needs ≥ 3 seeds and a paired
difference (KD student − no-KD baseline of the same seed, same split, same initial weights, same
data order) whose mean is beyond 2 standard deviations of the per-seed differences:

    helps  ⇔  n ≥ 3  and  mean(d) > 2 · std(d)      hurts  ⇔  n ≥ 3  and  mean(d) < −2 · std(d)

with std the sample standard deviation (n − 1). Anything else is "within noise" — or, for one
run, "one seed is not evidence". A single run's difference smaller than one test sample
(100 / n_test points) is no difference at all; a student at chance (no better than always
predicting the most frequent test class, within two binomial standard errors) learnt nothing.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Mapping, Sequence


@dataclass(frozen=True)
class SeedVerdict:
    label: str  # "KD helps" | "KD hurts" | "within noise" | "too few seeds"
    mean: float  # points
    std: float  # points
    n: int

    def sentence(self) -> str:
        stats = f"{self.mean:+.1f} ± {self.std:.1f} points over {self.n} seed{'s' if self.n != 1 else ''}"
        if self.label == "KD helps":
            return f"KD helps: {stats} (the mean is more than 2 std above 0)"
        if self.label == "KD hurts":
            return f"KD hurts: {stats} (the mean is more than 2 std below 0)"
        if self.label == "too few seeds":
            return f"{stats}: fewer than 3 seeds are not evidence"
        return f"{stats}: within noise (not 2 std away from 0)"


def seed_verdict(gains_points: Sequence[float]) -> SeedVerdict:
    """Classify paired per-seed gains (points) by the 2-std rule above."""
    g = [float(x) for x in gains_points]
    n = len(g)
    mean = statistics.fmean(g) if g else 0.0
    std = statistics.stdev(g) if n > 1 else 0.0
    if n < 3:
        return SeedVerdict("too few seeds", mean, std, n)
    if mean > 2 * std and mean > 0:
        return SeedVerdict("KD helps", mean, std, n)
    if mean < -2 * std and mean < 0:
        return SeedVerdict("KD hurts", mean, std, n)
    return SeedVerdict("within noise", mean, std, n)


def at_chance(acc: float, chance: float, n_test: int) -> bool:
    """Accuracy no better than ``chance`` + 2 binomial standard errors √(c(1 − c)/n)."""
    if n_test <= 0:
        return False
    se = math.sqrt(max(chance * (1 - chance), 1e-12) / n_test)
    return acc <= chance + 2 * se


def run_verdict(result: Mapping[str, Any], stored: Mapping[str, Any] | None = None,
                repeat_hint: str = "repeat it over 3 seeds") -> str:
    """A plain-words verdict on one run's KD gain.

    ``result`` is an experiment result dict (``phases``; ``data`` with ``test_size`` and
    ``chance``). ``stored`` is the preset's measured multi-seed result (``kd_gain`` with mean, std
    and n in points, and ``verdict``), shown beside the single run when the run uses the preset's
    settings. ``repeat_hint`` names the way to get more seeds (the app's button, or the CLI)."""
    status = result.get("status", "finished")
    phases = result.get("phases") or {}
    if "kd" not in phases or "baseline" not in phases:
        if status != "finished":
            return f"The run ended early ({status}: {result.get('message') or status}); there is no KD result to judge."
        return "No KD result yet."
    data = result.get("data") or {}
    n_test = int(data.get("test_size") or 0)
    chance = data.get("chance")
    kd, base = phases["kd"]["test_acc"], phases["baseline"]["test_acc"]
    gain = 100 * (kd - base)
    parts = []
    one_sample = 100.0 / n_test if n_test else None
    if one_sample is not None and abs(gain) < one_sample - 1e-9:
        parts.append(f"This run: KD and baseline differ by less than one test sample ({n_test} test samples, "
                     f"1 sample = {one_sample:.2f} points) — no difference.")
    else:
        word = "above" if gain > 0 else "below"
        parts.append(f"This run: the KD student is {abs(gain):.1f} points {word} the same student trained without "
                     f"the teacher" + (f" ({n_test} test samples)." if n_test else "."))
    if chance is not None and n_test:
        low = [name for name, acc in (("the baseline", base), ("the KD student", kd)) if at_chance(acc, chance, n_test)]
        if low:
            parts.append(f"{' and '.join(low).capitalize()} {'is' if len(low) == 1 else 'are'} at chance level "
                         f"({100 * chance:.1f} %, always guessing the most frequent class): "
                         f"{'it' if len(low) == 1 else 'they'} learnt nothing, so the difference means nothing.")
    if stored and stored.get("kd_gain"):
        g = stored["kd_gain"]
        v = seed_verdict(g.get("per_seed") or []) if g.get("per_seed") else None
        label = v.sentence() if v is not None else f"{g['mean']:+.1f} ± {g['std']:.1f} over {g['n']} seeds"
        parts.append(f"With these settings, measured over seeds: {label}.")
    else:
        parts.append(f"One seed is not evidence: the seed alone often moves these numbers by a point or more — "
                     f"{repeat_hint}.")
    t_acc = phases.get("teacher", {}).get("test_acc")
    if t_acc is not None:
        parts.append(f"The teacher scored {100 * t_acc:.1f} %.")
    return " ".join(parts)
