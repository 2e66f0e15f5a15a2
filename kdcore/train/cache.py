"""Teacher-output cache: the frozen teacher's outputs on the training split, computed once.

Why it is valid: the teacher is frozen and in eval mode (deterministic: dropout off, batch-norm
running statistics, no modality dropout — that is train-time only) and the inputs are fixed
tensors (noise is drawn once when the data loads, no per-epoch augmentation). So the teacher's
output for training row ``i`` is the same in every epoch and every student phase.

When it would be wrong, it switches itself off (and says why, in ``describe()``, which the
trainer puts in ``PhaseStarted`` and the experiment in the result):

* the teacher's weights or buffers changed after the cache was built (tracked through the
  tensors' in-place version counters), or the teacher is no longer in eval mode;
* the training inputs changed (a modality tensor was replaced or modified in place, e.g.
  per-epoch noise resampling).

Phases or losses that feed the teacher *changed* inputs (e.g. adversarial examples for the
teacher) must not read it: they build their :class:`~kdcore.train.trainer.PhaseConfig` with
``teacher_cache=None`` or call the teacher themselves. (ARD feeds the student perturbed inputs
but the teacher the clean ones, so it may use the cache.)

Bounded in memory: logits, per-modality features, the fused feature, attention and auxiliary
logits ("core", tiny) are cached when they fit in ``max_bytes``; intermediate feature maps are
kept only if they fit too, otherwise a loss that reads them gets them from a live teacher
forward on that batch. Above the bound the cache is off and the teacher runs per batch.

Cost per step: :meth:`get` returns a lazy :class:`CachedOutput` that gathers a field for the
batch only when a loss reads it (Hinton KD reads the logits only — one ``index_select``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from kdcore.data.base import Split
from kdcore.train.evaluate import predict
from kdcore.models.output import ModelOutput

FIELDS = ("logits", "features", "fused", "attention", "feature_maps", "aux_logits")
CORE = ("logits", "features", "fused", "attention", "aux_logits")


def _select(value, rows: Tensor):
    if value is None:
        return None
    if isinstance(value, Tensor):
        return value.index_select(0, rows)
    if isinstance(value, dict):
        return {k: _select(v, rows) for k, v in value.items()}
    return [_select(v, rows) for v in value]


class CachedOutput(ModelOutput):
    """A :class:`ModelOutput` for one batch whose fields are gathered from the cache on first read."""

    def __init__(self, cache: "TeacherCache", rows: Tensor, inputs: dict[str, Tensor] | None):
        self.__dict__.update(_cache=cache, _rows=rows, _inputs=inputs, _live=None,
                             modalities=cache.output.modalities)

    def __getattr__(self, name: str):
        if name not in FIELDS:
            raise AttributeError(name)
        cache = self.__dict__["_cache"]
        if name in cache.stored:
            value = _select(getattr(cache.output, name), self.__dict__["_rows"])
        else:  # not cached (memory bound): one live teacher forward for this batch
            if self.__dict__["_live"] is None:
                if self.__dict__["_inputs"] is None:
                    raise RuntimeError(f"teacher {name} are not cached and no batch inputs were given")
                with torch.no_grad():
                    self.__dict__["_live"] = cache.teacher(
                        {m: self.__dict__["_inputs"][m] for m in cache.modalities})
            value = getattr(self.__dict__["_live"], name)
        self.__dict__[name] = value
        return value

    def __repr__(self) -> str:
        return f"CachedOutput(rows={tuple(self.__dict__['_rows'].shape)})"


def _versions(tensors) -> tuple[int, ...]:
    return tuple(t._version for t in tensors)


class TeacherCache:
    def __init__(self, output: ModelOutput | None, reason: str, teacher: nn.Module | None = None,
                 modalities: list[str] | None = None, stored: tuple[str, ...] = (),
                 data_inputs: dict[str, Tensor] | None = None, note: str = ""):
        self.output = output
        self.reason = reason
        self.teacher = teacher
        self.modalities = list(modalities or [])
        self.stored = stored
        self.note = note
        self._data_inputs = data_inputs
        self._input_refs = {m: data_inputs[m] for m in self.modalities} if data_inputs is not None else {}
        # the teacher's tensors, listed once (walking the module tree every step would cost ~1 ms)
        self._tensors = [*teacher.parameters(), *teacher.buffers()] if teacher is not None else []
        self._fingerprint = self._current_fingerprint() if output is not None else None

    # ---- validity ---------------------------------------------------------------------------
    def _current_fingerprint(self) -> tuple:
        return (_versions(self._tensors), _versions(self._input_refs.values()))

    def stale_reason(self) -> str:
        """Why the cached outputs would be wrong now ("" when they are right)."""
        if self.teacher is None:
            return ""
        if self.teacher.training:
            return "the teacher is in training mode (cached outputs are eval-mode outputs)"
        if self._data_inputs is not None:
            for m, ref in self._input_refs.items():
                if self._data_inputs.get(m) is not ref:
                    return f"the training inputs of modality {m!r} were replaced"
        fp = self._current_fingerprint()
        if fp[0] != self._fingerprint[0]:
            return "the teacher's weights changed after the cache was built"
        if fp[1] != self._fingerprint[1]:
            return "the training inputs changed after the cache was built"
        return ""

    @property
    def enabled(self) -> bool:
        if self.output is None:
            return False
        why = self.stale_reason()
        if why:  # invalidated: from now on the teacher runs per batch
            self.output, self.reason = None, f"invalidated: {why}"
            return False
        return True

    def describe(self) -> str:
        if not self.enabled:
            return f"off: {self.reason}"
        return "on" + (f" ({self.note})" if self.note else "")

    # ---- use ----------------------------------------------------------------------------------
    def get(self, rows: Tensor, inputs: dict[str, Tensor] | None = None) -> ModelOutput:
        """The teacher's output for training rows ``rows`` (positions inside the train split)."""
        return CachedOutput(self, rows.to(self.output.logits.device), inputs)

    def nbytes(self) -> int:
        return 0 if self.output is None else self.output.nbytes()

    @classmethod
    def build(cls, teacher: nn.Module, split: Split, modalities: list[str], device, enabled: bool = True,
              max_bytes: int = 1 << 30, batch_size: int = 512) -> "TeacherCache":
        if not enabled:
            return cls(None, "disabled in the spec (train.teacher_cache)")
        if teacher.training:
            return cls(None, "the teacher is in training mode")
        probe = predict(teacher, split.__class__(split.data, split.indices[:2]), modalities, 2, device)
        n = len(split)
        core_bytes = int(sum(_nbytes_field(probe, f) for f in CORE) / 2 * n)
        map_bytes = int(_nbytes_field(probe, "feature_maps") / 2 * n)
        if core_bytes > max_bytes:
            return cls(None, f"teacher outputs need {core_bytes / 2**20:.0f} MiB > limit {max_bytes / 2**20:.0f} MiB")
        keep_maps = core_bytes + map_bytes <= max_bytes
        out = predict(teacher, split, modalities, batch_size, device)
        if not keep_maps:
            out.feature_maps = {}
        note = "" if keep_maps or not map_bytes else (
            f"feature maps not cached: {map_bytes / 2**20:.0f} MiB > limit; computed per batch")
        stored = CORE + (("feature_maps",) if keep_maps else ())
        return cls(out.map(lambda t: t.to(device)), "", teacher, modalities, stored, split.data.inputs, note)


def _nbytes_field(out: ModelOutput, name: str) -> int:
    value = getattr(out, name)
    if value is None:
        return 0
    if isinstance(value, Tensor):
        return value.numel() * value.element_size()
    items = value.values() if isinstance(value, dict) else value
    total = 0
    for v in items:
        total += sum(t.numel() * t.element_size() for t in (v if isinstance(v, list) else [v]))
    return total
