"""Typed events the engine emits; the CLI, the app's job buffer and the run store subscribe."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from kdcore.core.status import RunStatus


@dataclass
class Event:
    t: float = field(default_factory=time.time, kw_only=True)

    @property
    def kind(self) -> str:
        return type(self).__name__

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}


@dataclass
class RunStarted(Event):
    name: str
    phases: list[str]
    run_dir: str | None = None


@dataclass
class PhaseStarted(Event):
    phase: str
    epochs: int
    steps_per_epoch: int
    params: int  # parameters of the model trained in this phase
    teacher_cache: str = ""  # "on", "off: reason" (KD phases)
    stacked: str = ""  # trained together with other students (kdcore.train.stacked): how, or why not


@dataclass
class StepLosses(Event):
    phase: str
    epoch: int
    step: int  # global step within the phase
    total: float
    terms: dict[str, float]  # raw value of every named term
    weights: dict[str, float]  # effective weight of every term
    temperature: float | None
    lr: float


@dataclass
class EpochMetrics(Event):
    phase: str
    epoch: int  # 1-based
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    seconds: float
    extra: dict[str, float] = field(default_factory=dict)


@dataclass
class AttentionSnapshot(Event):
    phase: str
    epoch: int
    modalities: list[str]
    class_mean: list[list[float]]  # [C][M] mean α per true class on the probe split
    mean: list[float]  # [M]


@dataclass
class AttributionSnapshot(Event):
    """Teacher–student attribution agreement on a fixed probe set after one epoch of a student phase
    (emitted by ``kdcore.explain.callback.AgreementCallback``)."""

    phase: str
    epoch: int
    method: str
    modalities: list[str]  # modalities both networks see
    spearman: dict[str, float]  # modality -> mean Spearman ρ of |attribution| ranks (+ "all")
    topk: dict[str, float]  # modality -> mean top-k overlap (+ "all")
    student_shares: dict[str, float]  # per-modality share of total |attribution|
    teacher_shares: dict[str, float]
    samples: int
    k_frac: float


@dataclass
class PhaseFinished(Event):
    phase: str
    best_epoch: int
    val_acc: float
    test_acc: float
    params: int
    seconds: float
    extra: dict[str, float] = field(default_factory=dict)


@dataclass
class RunFinished(Event):
    result: dict[str, Any]


@dataclass
class RunStopped(Event):
    phase: str
    message: str = "stopped by the user"
    status = RunStatus.STOPPED


@dataclass
class RunFailed(Event):
    phase: str
    message: str
    status = RunStatus.FAILED


@dataclass
class RunDiverged(Event):
    phase: str
    step: int
    message: str
    status = RunStatus.DIVERGED


RunFinished.status = RunStatus.FINISHED  # how each terminal event ends a run
Subscriber = Callable[[Event], None]
TERMINAL = (RunFinished, RunStopped, RunFailed, RunDiverged)
RunEnded = RunStopped | RunFailed | RunDiverged  # a run that did not finish (has .phase, .message)
EVENT_TYPES: dict[str, type[Event]] = {cls.__name__: cls for cls in (
    RunStarted, PhaseStarted, StepLosses, EpochMetrics, AttentionSnapshot, AttributionSnapshot, PhaseFinished,
    RunFinished, RunStopped, RunFailed, RunDiverged)}


def event_from_dict(d: dict[str, Any]) -> Event:
    """The typed event of one ``events.jsonl`` line (``to_dict`` output); unknown fields are dropped."""
    import dataclasses

    cls = EVENT_TYPES[d["kind"]]
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in names})
