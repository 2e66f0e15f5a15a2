"""Names that become paths: run folders, uploads, exports."""

from __future__ import annotations

import re

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(name: str, max_len: int = 60) -> str:
    """A name usable as one path component: no separators, no '..', no leading dot."""
    cleaned = _SAFE.sub("-", name).strip(".-_")[:max_len]
    return cleaned or "run"
