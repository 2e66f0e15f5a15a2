"""TensorBoard event files for a run, written as it trains (a subscriber) or afterwards from
``metrics.jsonl`` (:func:`write_from_metrics`).

Every run folder is one TensorBoard run (``tensorboard --logdir runs`` lists them all). Scalar tags
follow the Train page's charts (:mod:`kdcore.viz.training`), prefixed with the phase:

================================  ===========================  ===============================
tag                               Train page chart / trace     x axis
================================  ===========================  ===============================
``<phase>/loss/<term>``           Loss terms per step: term    optimiser step within the phase
``<phase>/loss/total``            Loss terms per step: total   step
``<phase>/weight/<term>``         Loss weights: "weight term"  step
``<phase>/temperature``           Loss weights: temperature T  step (distillation phases)
``<phase>/lr``                    Learning rate: phase         step
``<phase>/accuracy/train``        Accuracy per epoch (train)   epoch (1-based), in %
``<phase>/accuracy/val``          Accuracy per epoch (val)     epoch, in %
``<phase>/epoch_loss/train|val``  (mean loss of the epoch)     epoch
``<phase>/attention/<modality>``  Inspect: mean attention α    epoch
``result/<phase>/test_acc``       result table, in %           best epoch
``result/kd_gain``                KD gain, points              0
================================  ===========================  ===============================

The spec is a text summary (``spec``), the final result the hparams session (flattened spec fields
as hyper-parameters, ``result/...`` as metrics).

The file format is TensorBoard's (TFRecord of ``Event`` protos, masked CRC-32C), written with
TensorBoard's own protos; the writer is synchronous and buffered: a step costs appending one tuple,
the records are serialised at the end of each epoch (and every ``FLUSH_STEPS`` steps).
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from kdcore.core.events import (
    AttentionSnapshot,
    EpochMetrics,
    Event,
    RunDiverged,
    RunFailed,
    RunFinished,
    RunStarted,
    RunStopped,
    event_from_dict,
)

EVENT_PREFIX = "events.out.tfevents"
FLUSH_STEPS = 512  # serialise buffered steps at least this often (bounds memory on very long epochs)
_COUNTER = itertools.count()


# ---- masked CRC-32C (Castagnoli), as TFRecord wants it ----------------------------------------
def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    crc, table = 0xFFFFFFFF, _TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


# ---- one event file ------------------------------------------------------------------------
class EventFile:
    """An append-only ``events.out.tfevents.*`` file in ``logdir``."""

    def __init__(self, logdir: str | Path):
        from tensorboard.compat.proto.event_pb2 import Event

        self._Event = Event
        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        name = f"{EVENT_PREFIX}.{int(time.time())}.{socket.gethostname()}.{os.getpid()}.{next(_COUNTER)}"
        self.path = self.logdir / name
        self._fh = open(self.path, "ab")
        self.write(Event(wall_time=time.time(), file_version="brain.Event:2"))
        self._fh.flush()

    def write(self, event) -> None:
        data = event.SerializeToString()
        header = struct.pack("<Q", len(data))
        self._fh.write(header + struct.pack("<I", masked_crc32c(header)) + data
                       + struct.pack("<I", masked_crc32c(data)))

    def scalars(self, wall_time: float, step: int, values: Iterable[tuple[str, float]]) -> None:
        from tensorboard.compat.proto.summary_pb2 import Summary

        vals = [Summary.Value(tag=t, simple_value=float(v)) for t, v in values if v is not None]
        if vals:
            self.write(self._Event(wall_time=wall_time, step=int(step), summary=Summary(value=vals)))

    def summary(self, summary, wall_time: float | None = None, step: int = 0) -> None:
        self.write(self._Event(wall_time=wall_time or time.time(), step=step, summary=summary))

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.flush()
            self._fh.close()


# ---- summaries: text and hparams -------------------------------------------------------------
def text_summary(tag: str, text: str):
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.compat.proto.tensor_pb2 import TensorProto
    from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
    from tensorboard.compat.proto.types_pb2 import DT_STRING

    meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="text"))
    tensor = TensorProto(dtype=DT_STRING, string_val=[text.encode("utf-8")],
                         tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=1)]))
    return Summary(value=[Summary.Value(tag=tag, metadata=meta, tensor=tensor)])


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys → scalar values (lists and None as text) of a nested mapping."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        elif isinstance(v, (bool, int, float, str)):
            out[key] = v
        else:
            out[key] = json.dumps(v, default=str)
    return out


def hparams_summaries(hparams: Mapping[str, Any], metric_tags: Iterable[str], success: bool = True):
    """The three summaries of TensorBoard's hparams plugin (experiment, session start, session end)."""
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams.api_pb2 import DataType, Experiment, HParamInfo, MetricInfo, MetricName, Status
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData, SessionEndInfo, SessionStartInfo

    ssi, infos = SessionStartInfo(), []
    for k, v in hparams.items():
        if isinstance(v, bool):
            ssi.hparams[k].bool_value = v
            kind = "DATA_TYPE_BOOL"
        elif isinstance(v, (int, float)):
            ssi.hparams[k].number_value = float(v)
            kind = "DATA_TYPE_FLOAT64"
        else:
            ssi.hparams[k].string_value = str(v)
            kind = "DATA_TYPE_STRING"
        infos.append(HParamInfo(name=k, type=DataType.Value(kind)))

    def wrap(tag: str, content) -> Summary:
        meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(
            plugin_name="hparams", content=content.SerializeToString()))
        return Summary(value=[Summary.Value(tag=tag, metadata=meta)])

    exp = Experiment(hparam_infos=infos, metric_infos=[MetricInfo(name=MetricName(tag=t)) for t in metric_tags])
    status = Status.Value("STATUS_SUCCESS" if success else "STATUS_FAILURE")
    return [wrap("_hparams_/experiment", HParamsPluginData(experiment=exp, version=0)),
            wrap("_hparams_/session_start_info", HParamsPluginData(session_start_info=ssi, version=0)),
            wrap("_hparams_/session_end_info", HParamsPluginData(
                session_end_info=SessionEndInfo(status=status), version=0))]


def _spec_dict(spec_path: Path | None) -> tuple[str, dict]:
    if spec_path is None or not Path(spec_path).is_file():
        return "", {}
    import yaml

    text = Path(spec_path).read_text(encoding="utf-8")
    try:
        d = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        d = {}
    return text, d if isinstance(d, dict) else {}


def hparams_of(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The spec fields shown as hyper-parameters (everything but the free-text description)."""
    return {k: v for k, v in flatten({k: v for k, v in spec.items() if k != "description"}).items()}


# ---- the subscriber --------------------------------------------------------------------------
class TensorBoardWriter:
    """Subscriber writing the run's events as TensorBoard scalars into ``logdir``.

    Takes engine events (dataclasses) or their dicts (a ``metrics.jsonl`` replay). ``spec_path``
    (the run's ``spec.yaml``) gives the spec text and the hparams."""

    def __init__(self, logdir: str | Path, spec_path: str | Path | None = None):
        self.logdir = Path(logdir)
        self.spec_path = Path(spec_path) if spec_path is not None else None
        self._file = EventFile(self.logdir)
        self._steps: list[tuple] = []
        self._lock = threading.Lock()
        self._spec_written = False
        self.tags: set[str] = set()

    # hot path: one tuple per optimiser step
    def __call__(self, ev) -> None:
        kind = ev.get("kind") if isinstance(ev, dict) else ev.kind
        if kind == "StepLosses":
            g = ev.get if isinstance(ev, dict) else ev.__getattribute__
            self._steps.append((g("t"), g("phase"), g("step"), g("total"), g("terms"), g("weights"),
                                g("temperature"), g("lr")))
            if len(self._steps) >= FLUSH_STEPS:
                with self._lock:
                    self._write_steps()
            return
        with self._lock:
            self._handle(event_from_dict(ev) if isinstance(ev, dict) else ev)

    def _write_steps(self) -> None:
        steps, self._steps = self._steps, []
        f, tags = self._file, self.tags
        for t, phase, step, total, terms, weights, temperature, lr in steps:
            vals = [(f"{phase}/loss/{k}", v) for k, v in terms.items()]
            vals.append((f"{phase}/loss/total", total))
            vals += [(f"{phase}/weight/{k}", w) for k, w in weights.items()]
            if temperature is not None:
                vals.append((f"{phase}/temperature", temperature))
            vals.append((f"{phase}/lr", lr))
            f.scalars(t, step, vals)
            tags.update(k for k, _ in vals)

    def _scalars(self, t: float, step: int, vals: list[tuple[str, float]]) -> None:
        vals = [(k, v) for k, v in vals if isinstance(v, (int, float))]
        self._file.scalars(t, step, vals)
        self.tags.update(k for k, _ in vals)

    def _handle(self, ev: Event) -> None:
        t = ev.t or time.time()
        self._write_steps()
        match ev:
            case RunStarted():
                self._write_spec(t)
            case EpochMetrics(phase=p, epoch=e):
                vals = [(f"{p}/accuracy/train", 100 * ev.train_acc), (f"{p}/accuracy/val", 100 * ev.val_acc),
                        (f"{p}/epoch_loss/train", ev.train_loss), (f"{p}/epoch_loss/val", ev.val_loss)]
                vals += [(f"{p}/extra/{k}", v) for k, v in (ev.extra or {}).items()]
                self._scalars(t, e, vals)
            case AttentionSnapshot(phase=p):
                self._scalars(t, ev.epoch, [(f"{p}/attention/{m}", a) for m, a in
                                            zip(ev.modalities or [], ev.mean or [])])
            case RunFinished():
                self._write_result(t, ev.result or {}, True)
            case RunStopped() | RunFailed() | RunDiverged():
                self._write_spec(t)
                self._file.summary(text_summary("status", f"{ev.kind}: {ev.message}"), t)
        self._file.flush()

    def _write_spec(self, t: float) -> None:
        if self._spec_written:
            return
        text, _ = _spec_dict(self.spec_path)
        if text:
            body = "\n".join("    " + line for line in text.splitlines())  # markdown code block
            self._file.summary(text_summary("spec", body), t)
            self._spec_written = True

    def _write_result(self, t: float, result: Mapping[str, Any], success: bool) -> None:
        self._write_spec(t)
        metrics: list[tuple[str, float]] = []
        for phase, r in (result.get("phases") or {}).items():
            if isinstance(r.get("test_acc"), (int, float)):
                self._scalars(t, int(r.get("best_epoch") or 0), [(f"result/{phase}/test_acc", 100 * r["test_acc"])])
                metrics.append((f"result/{phase}/test_acc", r["test_acc"]))
        if isinstance(result.get("kd_gain"), (int, float)):
            self._scalars(t, 0, [("result/kd_gain", 100 * result["kd_gain"])])
            metrics.append(("result/kd_gain", result["kd_gain"]))
        _, spec = _spec_dict(self.spec_path)
        for s in hparams_summaries(hparams_of(spec), [k for k, _ in metrics], success):
            self._file.summary(s, t)

    def close(self) -> None:
        with self._lock:
            self._write_steps()
            self._file.close()


def event_files(logdir: str | Path) -> list[Path]:
    return sorted(Path(logdir).glob(f"{EVENT_PREFIX}.*"))
