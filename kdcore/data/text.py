"""Character-level text: tokenisation, corruption (typos) and the digit-name table."""

from __future__ import annotations

import json
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from kdcore.data.base import ASSETS

PAD, UNK = 0, 1


@lru_cache(maxsize=1)
def digit_names() -> tuple[list[str], dict[int, list[str]]]:
    raw = json.loads((ASSETS / "digit_names.json").read_text(encoding="utf-8"))
    return list(raw["languages"]), {int(k): list(v) for k, v in raw["names"].items()}


@lru_cache(maxsize=1)
def vocabulary() -> tuple[str, ...]:
    """Characters of every digit name plus lowercase a–z (for typos), in a fixed order."""
    _, names = digit_names()
    chars = set("abcdefghijklmnopqrstuvwxyz")
    for words in names.values():
        for w in words:
            chars.update(w)
    return tuple(sorted(chars))


def char_to_id() -> dict[str, int]:
    return {c: i + 2 for i, c in enumerate(vocabulary())}


def vocab_size() -> int:
    return len(vocabulary()) + 2


def corrupt(text: str, rate: float, rng: np.random.Generator) -> str:
    """Replace each character with a random vocabulary character with probability ``rate``."""
    if rate <= 0:
        return text
    vocab = vocabulary()
    return "".join(vocab[rng.integers(len(vocab))] if rng.random() < rate else c for c in text)


def encode(texts: list[str], max_len: int) -> Tensor:
    table = char_to_id()
    out = torch.full((len(texts), max_len), PAD, dtype=torch.long)
    for i, t in enumerate(texts):
        ids = [table.get(c, UNK) for c in t[:max_len]]
        out[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


def decode(ids: Tensor) -> str:
    vocab = vocabulary()
    return "".join(vocab[i - 2] if i >= 2 else ("?" if i == UNK else "") for i in ids.tolist())
