"""Resumable runs: per-epoch checkpoints of everything a phase needs to continue, and ``resume``.

At the end of every epoch the run store's callback (:class:`kdcore.store.recorder.RunRecorder`)
calls :func:`save_epoch`, which writes ``checkpoints/resume.safetensors`` atomically (temp file +
rename; safetensors, never pickle):

* tensors: the model's state, the optimiser's state (``optim.state.<i>.<key>``), the state of
  every loss term, the weighting and the temperature schedule (their learnable parameters),
  the best-so-far weights (``best.*``), the RNG states of the data-order generator and of torch
  (CPU, and CUDA when used), and every callback's own ``state_dict()`` (e.g. the generator of
  ARD's PGD random starts), under ``callback.<class name>.``;
* metadata (JSON, inside the same file, so the two can never disagree): format version, phase,
  epochs done, global step, best accuracy and epoch, per-epoch history, seconds spent, the
  optimiser's param groups and non-tensor state, the LR scheduler's state.

A JSON copy of that metadata is written next to it (``resume.json``) for people to read.

A finished phase keeps its best weights in ``checkpoints/<phase>.safetensors`` with its result
and the torch RNG state at its end in the metadata, so :func:`resume` loads finished phases
instead of retraining them and continues the unfinished phase from its last epoch; with the same
spec, data order, dropout masks and optimiser state, the resumed run reaches the same final
metrics as an uninterrupted one (bit-for-bit on CPU with the same thread count).
"""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from kdcore.models.checkpoints import CheckpointError, load_state, save_state

FORMAT = 1
RESUME_FILE = "resume.safetensors"
RESUME_JSON = "resume.json"


class ResumeError(CheckpointError):
    """A run cannot be resumed (unknown run, wrong status, unreadable or mismatched checkpoint)."""


# ---- flattening state dicts into tensors + JSON ------------------------------------------
def _split_state(prefix: str, sd: dict[str, Any], tensors: dict[str, Tensor], extra: dict[str, Any]) -> None:
    for k, v in sd.items():
        if isinstance(v, Tensor):
            tensors[prefix + k] = v.detach().cpu().clone()
        else:
            extra[prefix + k] = v  # e.g. get_extra_state(); must be JSON-serialisable


def _take(prefix: str, tensors: dict[str, Tensor], extra: dict[str, Any]) -> dict[str, Any]:
    out = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    out.update({k[len(prefix):]: v for k, v in extra.items() if k.startswith(prefix)})
    return out


def _optim_state(opt: torch.optim.Optimizer, tensors: dict[str, Tensor]) -> dict[str, Any]:
    sd = opt.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, Tensor):
                tensors[f"optim.state.{idx}.{k}"] = v.detach().cpu().clone()
            else:
                scalars.setdefault(str(idx), {})[k] = v
    return {"param_groups": sd["param_groups"], "scalars": scalars, "indices": [str(i) for i in sd["state"]]}


def _optim_load(opt: torch.optim.Optimizer, meta: dict[str, Any], tensors: dict[str, Tensor]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for idx in meta["indices"]:
        st = dict(meta["scalars"].get(idx, {}))
        st.update(_take(f"optim.state.{idx}.", tensors, {}))
        state[int(idx)] = st
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def rng_to_text(state: Tensor) -> str:
    return base64.b64encode(state.numpy().tobytes()).decode("ascii")


def rng_from_text(text: str) -> Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8).clone()


def _aux_modules(cfg) -> dict[str, nn.Module]:
    mods = {f"loss.{n}.": m for n, m in cfg.losses.items()}
    mods["weighting."] = cfg.weighting
    mods["schedule."] = cfg.schedule
    return mods


def _callback_prefixes(run) -> list[tuple[Any, str]]:
    """``(callback, "callback.<class>[#n].")`` for the phase's callbacks: the n-th (from 0) of one
    class gets ``#n`` after the first, so two of a class keep their own state."""
    seen: dict[str, int] = {}
    out = []
    for cb in run.callbacks:
        name = type(cb).__name__
        n = seen[name] = seen.get(name, -1) + 1
        out.append((cb, f"callback.{name}{f'#{n}' if n else ''}."))
    return out


def _callback_states(run, tensors: dict[str, Tensor], extra: dict[str, Any]) -> None:
    for cb, prefix in _callback_prefixes(run):
        _split_state(prefix, cb.state_dict(), tensors, extra)


# ---- the per-epoch checkpoint and its restore ----------------------------------------------
def save_epoch(run, run_dir: Path) -> None:
    """Write the resume checkpoint of ``run`` (a :class:`~kdcore.train.trainer.PhaseRun` at the end
    of an epoch) into ``run_dir/checkpoints``."""
    ck = Path(run_dir) / "checkpoints"
    cfg = run.cfg
    tensors: dict[str, Tensor] = {}
    extra: dict[str, Any] = {}
    _split_state("model.", run.model.state_dict(), tensors, extra)
    for prefix, mod in _aux_modules(cfg).items():
        _split_state(prefix, mod.state_dict(), tensors, extra)
    if run.best_state is not None:
        _split_state("best.", run.best_state, tensors, extra)
    tensors["rng.order"] = run.order_gen.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    _callback_states(run, tensors, extra)
    device = next(iter(run.model.parameters()), torch.empty(0)).device
    if device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(device)
    meta = {
        "format": FORMAT, "phase": cfg.name, "epoch": run.epoch + 1, "epochs": cfg.epochs, "step": run.step,
        "best_acc": run.best_acc, "best_epoch": run.best_epoch, "history": run.history,
        "seconds": run.elapsed(), "saved": time.time(), "optimizer": _optim_state(run.optimizer, tensors),
        "scheduler": run.scheduler.state_dict(), "extra": extra,
    }
    text = json.dumps(meta, default=float)
    save_state(tensors, ck / RESUME_FILE, {"kdlab_resume": text})
    tmp = ck / (RESUME_JSON + ".tmp")
    tmp.write_text(json.dumps({k: v for k, v in meta.items() if k not in ("optimizer", "extra")},
                              indent=1, default=float), encoding="utf-8")
    os.replace(tmp, ck / RESUME_JSON)


def read_resume(path: str | Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Metadata and tensors of a resume checkpoint; :class:`ResumeError` when unusable."""
    from safetensors import safe_open

    path = Path(path)
    try:
        tensors = load_state(path)  # refuses pickle, explains truncation / corruption
    except ResumeError:
        raise
    except CheckpointError as exc:
        raise ResumeError(f"cannot resume from {path.parent.parent.name}: {exc}") from None
    try:
        with safe_open(str(path), framework="pt") as fh:
            raw = (fh.metadata() or {}).get("kdlab_resume")
        meta = json.loads(raw) if raw else None
    except Exception as exc:  # noqa: BLE001 - any parse failure is a corrupt file
        raise ResumeError(f"{path.name}: unreadable resume metadata ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ResumeError(f"{path.name} is not a KD Lab resume checkpoint (format {FORMAT})")
    return meta, tensors


def restore_epoch(run, meta: dict[str, Any], tensors: dict[str, Tensor]) -> None:
    """Put a resume checkpoint back into the freshly built phase of ``run`` (in ``on_phase_start``):
    model, loss/strategy state, optimiser, scheduler, RNGs, callback states and progress."""
    cfg = run.cfg
    try:
        run.model.load_state_dict(_take("model.", tensors, meta["extra"]))
        for prefix, mod in _aux_modules(cfg).items():
            mod.load_state_dict(_take(prefix, tensors, meta["extra"]))
        _optim_load(run.optimizer, meta["optimizer"], tensors)
        run.scheduler.load_state_dict(meta["scheduler"])
        for cb, prefix in _callback_prefixes(run):
            state = _take(prefix, tensors, meta["extra"])
            if state:
                cb.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError) as exc:
        raise ResumeError(f"the resume checkpoint of phase {cfg.name} does not fit the rebuilt model "
                          f"(was the spec changed?): {str(exc).splitlines()[0]}") from None
    run.order_gen.set_state(tensors["rng.order"])
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        dev = next(iter(run.model.parameters())).device
        if dev.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng.cuda"], dev)
    run.start_epoch, run.step = int(meta["epoch"]), int(meta["step"])
    run.best_acc, run.best_epoch = float(meta["best_acc"]), int(meta["best_epoch"])
    run.best_state = _take("best.", tensors, {}) or None
    run.history, run.seconds_before = list(meta["history"]), float(meta["seconds"])


# ---- finished phases ----------------------------------------------------------------------
def result_record(res) -> dict[str, Any]:
    """A finished phase's result as stored beside its weights (JSON-ready)."""
    return {"best_epoch": res.best_epoch, "val_acc": res.val_acc, "test_acc": res.test_acc,
            "seconds": res.seconds, "history": res.history}


def result_from_record(name: str, r: dict[str, Any], state: dict[str, Tensor]):
    """The :class:`~kdcore.train.trainer.PhaseResult` of :func:`result_record`'s record ``r``."""
    from kdcore.train.trainer import PhaseResult

    return PhaseResult(name, int(r["best_epoch"]), float(r["val_acc"]), float(r["test_acc"]), float(r["seconds"]),
                       state, list(r["history"]))


def phase_metadata(res) -> dict[str, str]:
    """Metadata stored with a finished phase's best weights (result + RNG state at its end)."""
    return {"phase": res.name, "best_epoch": str(res.best_epoch),
            "result": json.dumps(result_record(res), default=float), "rng_torch": rng_to_text(torch.get_rng_state())}


def load_finished(run_dir: Path, name: str):
    """A finished phase's :class:`PhaseResult` from its checkpoint, or None if it did not finish."""
    from safetensors import safe_open

    path = Path(run_dir) / "checkpoints" / f"{name}.safetensors"
    if not path.is_file():
        return None, None
    state = load_state(path)
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
    if "result" not in meta:
        return None, None
    res = result_from_record(name, json.loads(meta["result"]), state)
    return res, (rng_from_text(meta["rng_torch"]) if meta.get("rng_torch") else None)


class Resumer:
    """What an :class:`~kdcore.pipeline.experiment.Experiment` needs to continue a run folder."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.loaded: list[str] = []
        self.continued: tuple[str, int] | None = None
        self._rng: dict[str, Tensor | None] = {}

    def finished(self, run):
        """The phase's result when it had finished (its weights are loaded into ``run.model``)."""
        res, rng = load_finished(self.run_dir, run.name)
        if res is None:
            return None
        if not any(k.endswith("_orig") for k in res.best_state) and any(
                k.endswith("_orig") for k in run.model.state_dict()):
            # a finished pruned phase saved its masks made permanent; the rebuilt phase model carries the
            # pruning re-parametrisation (weight_orig / weight_mask): make it permanent too, so they match
            from kdcore.methods.pruning import make_permanent, prunable

            make_permanent(prunable(run.model))
        try:
            run.model.load_state_dict(res.best_state)
        except RuntimeError as exc:
            raise ResumeError(f"checkpoint of finished phase {run.name} does not fit the rebuilt model "
                              f"(was the spec changed?): {str(exc).splitlines()[0]}") from None
        self._rng[run.name] = rng
        self.loaded.append(run.name)
        return res

    def restore_rng(self, name: str) -> None:
        """Set torch's RNG to its state when phase ``name`` ended in the original run (called once
        the phase's post-processing is done, where the original run saved it)."""
        rng = self._rng.pop(name, None)
        if rng is not None:
            torch.set_rng_state(rng)

    def restore(self, run) -> bool:
        """Continue ``run`` from the resume checkpoint when it belongs to this phase; True if it did."""
        path = self.run_dir / "checkpoints" / RESUME_FILE
        if not path.is_file():
            return False
        meta, tensors = read_resume(path)
        if meta["phase"] != run.name:
            return False  # the checkpoint belongs to a phase that finished; this one starts afresh
        restore_epoch(run, meta, tensors)
        self.continued = (run.name, int(meta["epoch"]))
        return True
