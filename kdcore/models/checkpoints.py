"""Checkpoints as safetensors, written atomically (temp file + rename). Never pickle."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn


class CheckpointError(ValueError):
    """A checkpoint could not be read or does not fit the model."""


def save_state(state: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_state(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    with open(path, "rb") as fh:
        head = fh.read(9)
    # safetensors: an 8-byte little-endian header length N, then the JSON header ("{"), N + 8 ≤ file size.
    # Only a file that is not that and starts like a pickle (0x80 + protocol) or a zip (torch.save) is
    # refused as such (a bare first-byte test also hit real safetensors whose N mod 256 = 128).
    n = int.from_bytes(head[:8], "little") if len(head) == 9 else -1
    is_safetensors = head[8:9] == b"{" and 0 < n and n + 8 <= path.stat().st_size
    if not is_safetensors and ((head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"))
                               or head[:4] == b"PK\x03\x04"):
        raise CheckpointError(f"{path.name} is a pickle/zip file, not safetensors; KD Lab never unpickles "
                              "checkpoints (convert it with safetensors.torch.save_file)")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path.name} is not a readable safetensors checkpoint: {exc}") from None


def load_into(model: nn.Module, path: str | Path) -> None:
    """Load a safetensors checkpoint into ``model``; a clear error when the shapes do not match."""
    state = load_state(path)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
             for k, v in own.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong:
            parts.append(f"{len(wrong)} with other shapes (e.g. {wrong[0]})")
        raise CheckpointError(f"checkpoint {Path(path).name} does not match the architecture: " + "; ".join(parts))
    model.load_state_dict(state)
