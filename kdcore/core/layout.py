"""The layout of a user's dataset source — an image folder (one subfolder per class) or a CSV
manifest — read from its headers alone: which modalities it has and of which kind.

Torch-free (csv, pathlib): the spec validates ``data.path`` with it without loading the training
stack; :mod:`kdcore.data.custom` imports the data itself.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path


IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


AUDIO_EXTS = (".wav",)


KINDS = ("image", "audio", "text", "vector")


MAX_ROWS = 200_000


MAX_CSV_BYTES = 100 * 2**20


MAX_FILE_BYTES = 20 * 2**20


MAX_IMAGE_PIXELS = 4096 * 4096


MAX_AUDIO_SECONDS = 30.0


MAX_TEXT_LEN = 64


IMAGE_SIZE = 32


_NAME = re.compile(r"[^A-Za-z0-9_-]+")


class DataImportError(ValueError):
    """The source cannot be used at all (not found, no label column, nothing usable...)."""


@dataclass
class Column:
    name: str  # CSV header
    modality: str  # modality it feeds
    kind: str  # image | audio | text | vector
    index: int = 0  # position inside a grouped vector view


class RowError(ValueError):
    pass


def _modality_name(header: str) -> str:
    name = _NAME.sub("_", header.strip()).strip("_").lower()
    return name or "col"


def _is_number(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    size = path.stat().st_size
    if size > MAX_CSV_BYTES:
        raise DataImportError(f"{path.name} is {size / 2**20:.0f} MiB, over the {MAX_CSV_BYTES // 2**20} MiB limit")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DataImportError(f"{path.name} is not UTF-8 text") from None
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise DataImportError(f"{path.name}: not a valid CSV ({exc})") from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise DataImportError(f"{path.name} is empty")
    if len(rows) - 1 > MAX_ROWS:
        raise DataImportError(f"{path.name} has {len(rows) - 1} rows, over the {MAX_ROWS:,} row limit")
    return [h.strip() for h in rows[0]], rows[1:]


LABEL_COLUMNS = ("label", "class", "target", "y")


_TOO_MANY = "\x00too-many-fields"  # key of a row's field-count error (never a real column name)


def _label_column(header: list[str], label_column: str | None, path: Path) -> str:
    if label_column is not None:
        if label_column not in header:
            raise DataImportError(f"{path.name}: no label column {label_column!r}; columns: {', '.join(header)}")
        return label_column
    for h in header:
        if h.strip().lower() in LABEL_COLUMNS:
            return h
    raise DataImportError(f"{path.name}: no label column 'label' (also accepted: {', '.join(LABEL_COLUMNS[1:])}); "
                          f"columns: {', '.join(header)}")


def _columns(header: list[str], rows: list[list[str]], label_column: str, path: Path) -> list[Column]:
    cols: list[Column] = []
    seen: dict[str, str] = {}
    grouped: dict[str, int] = {}
    for j, h in enumerate(header):
        if h == label_column:
            continue
        if not h:
            raise DataImportError(f"{path.name}: column {j + 1} has no name")
        kind, name = None, h
        if ":" in h and h.split(":", 1)[0].strip().lower() in KINDS:
            kind, name = h.split(":", 1)[0].strip().lower(), h.split(":", 1)[1]
        sample = [r[j].strip() for r in rows[:200] if j < len(r) and r[j].strip()]
        if kind is None:  # by majority, so that a few bad cells are reported as bad rows
            low = [s.lower() for s in sample]
            share = lambda ok: sum(map(ok, low)) / max(1, len(low))  # noqa: E731
            if sample and share(lambda s: s.endswith(IMAGE_EXTS)) > 0.5:
                kind = "image"
            elif sample and share(lambda s: s.endswith(AUDIO_EXTS)) > 0.5:
                kind = "audio"
            elif sample and share(_is_number) >= 0.9:
                kind = "number"
            else:
                kind = "text"
        if kind == "number":
            view = _modality_name(name.rsplit(".", 1)[0]) if "." in name else "numeric"
            idx = grouped.get(view, 0)
            grouped[view] = idx + 1
            cols.append(Column(h, view, "number", idx))
            if seen.setdefault(view, "vector") != "vector":
                raise DataImportError(f"{path.name}: modality name {view!r} used by two kinds of column")
            continue
        mod = _modality_name(name)
        if mod in seen:
            raise DataImportError(f"{path.name}: two columns map to the modality name {mod!r}; rename one")
        seen[mod] = kind
        cols.append(Column(h, mod, kind))
    if not cols:
        raise DataImportError(f"{path.name}: no modality columns besides the label {label_column!r}")
    return cols


KIND_TO_MODALITY = {"image": "image", "audio": "spectrogram", "text": "tokens", "vector": "vector",
                    "number": "vector"}


def _source(path: str | Path) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise DataImportError(f"data.path {str(path)!r} does not exist")
    if p.is_file() and p.suffix.lower() != ".csv":
        raise DataImportError(f"data.path {str(path)!r}: expected a folder of class subfolders or a .csv manifest")
    return p


@lru_cache(maxsize=32)
def _layout_cached(key: str, label_column: str | None, mtime: float) -> tuple[str, tuple[tuple[str, str], ...]]:
    p = Path(key)
    if p.is_dir():
        return "folder", (("image", "image"),)
    header, rows = _read_csv(p)
    cols = _columns(header, rows, _label_column(header, label_column, p), p)
    mods: dict[str, str] = {}
    for c in cols:
        mods.setdefault(c.modality, KIND_TO_MODALITY[c.kind])
    return "csv", tuple(mods.items())


def layout(path: str | Path, label_column: str | None = None) -> tuple[str, dict[str, str]]:
    """Cheap look at a source: its layout and modality kinds (headers only, no file is read)."""
    p = _source(path).resolve()
    kind, mods = _layout_cached(str(p), label_column, p.stat().st_mtime)
    return kind, dict(mods)
