"""Bring your own data: an image folder or a CSV manifest, validated row by row.

Two layouts (``data.dataset: custom`` with ``data.path`` pointing at either):

* **Image folder** — ``PATH/<class name>/<image files>``; one modality ``image``.
* **CSV manifest** — ``PATH`` is a ``.csv`` with a label column (``label``, ``class``, ``target``
  or ``y``) and one
  column per modality. Column kinds come from an explicit prefix in the header
  (``image:photo``, ``audio:clip``, ``text:caption``, ``vector:fou``) or are inferred from the
  values: an image file name (.png .jpg .jpeg .bmp .gif .tif .webp) → image, ``.wav`` → audio,
  numbers → numeric, anything else → text. Numeric columns named ``<view>.<k>`` form one vector
  view ``<view>``; other numeric columns form the view ``numeric``; a ``vector:`` column holds
  space/semicolon separated numbers. File paths are relative to the CSV's folder and must stay
  inside it. An optional ``classes.txt`` next to the manifest (one class per line) fixes the
  allowed labels; rows with any other label are dropped as "unknown label".

Every bad row is dropped with a reason (missing file, unreadable image, unsupported or corrupt
WAV, empty text, non-numeric value, unknown or missing label, file
over the size limit, path outside the folder); the :class:`ImportReport` lists rows kept and
dropped. Size limits: :data:`MAX_ROWS` rows, :data:`MAX_FILE_BYTES` per media file,
:data:`MAX_IMAGE_PIXELS` per image, :data:`MAX_AUDIO_SECONDS` per clip, :data:`MAX_CSV_BYTES`.

Tensors: images → grey (or RGB when any image has colour) ``IMAGE_SIZE``² in [0, 1]; audio →
the same front end as the bundled speech (:mod:`kdcore.data.audio`: every clip resampled to one rate,
silence trimmed, level normalised, centre-cropped or zero-padded to a fixed duration on its own, then a
[1, 32, 32] log-mel with mel bands below the lowest clip rate's Nyquist frequency); text → character ids over the
dataset's own character vocabulary; vector views standardised with training-split statistics.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import wave
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdcore.data.audio import DEFAULT as AUDIO_FRONT_END, FrontEnd
from kdcore.core.layout import (  # noqa: F401  (the source layout, read from headers only)
    AUDIO_EXTS, IMAGE_EXTS, KIND_TO_MODALITY, KINDS, LABEL_COLUMNS, MAX_AUDIO_SECONDS, MAX_CSV_BYTES,
    MAX_FILE_BYTES, MAX_IMAGE_PIXELS, MAX_ROWS, MAX_TEXT_LEN, IMAGE_SIZE, _TOO_MANY, Column, DataImportError,
    RowError, _columns, _is_number, _label_column, _modality_name, _read_csv, _source, layout,
)
from kdcore.data.base import ModalityInfo, MultimodalDataset, TensorData, limit_train, stratified_split

MIN_PER_CLASS = 3  # one sample each for train / val / test at least
@dataclass
class ImportReport:
    source: str
    layout: str  # folder | csv
    modalities: dict[str, str] = field(default_factory=dict)  # name -> kind (image|spectrogram|tokens|vector)
    classes: list[str] = field(default_factory=list)
    rows_total: int = 0
    kept: int = 0
    per_class: dict[str, int] = field(default_factory=dict)
    dropped: list[tuple[int, str]] = field(default_factory=list)  # (row number, reason)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "layout": self.layout, "modalities": self.modalities,
                "classes": self.classes, "rows_total": self.rows_total, "kept": self.kept,
                "dropped_count": len(self.dropped), "per_class": self.per_class,
                "dropped": [{"row": r, "reason": why} for r, why in self.dropped], "warnings": self.warnings}

    def summary(self, max_errors: int = 20) -> str:
        lines = [f"{self.source} ({self.layout}): {self.rows_total} rows, {self.kept} kept, "
                 f"{len(self.dropped)} dropped",
                 "modalities: " + ", ".join(f"{m} ({k})" for m, k in self.modalities.items()),
                 f"classes ({len(self.classes)}): " + ", ".join(f"{c} ×{self.per_class.get(c, 0)}"
                                                               for c in self.classes)]
        lines += [f"warning: {w}" for w in self.warnings]
        for row, why in self.dropped[:max_errors]:
            lines.append(f"  row {row}: {why}")
        if len(self.dropped) > max_errors:
            lines.append(f"  … and {len(self.dropped) - max_errors} more dropped rows")
        if self.kept:
            lines.append(f"use it: python -m kdcore import-data {self.source} --spec my.yaml && "
                         "python -m kdcore run --config my.yaml   (or set data.dataset=custom, data.path in a spec)")
        return "\n".join(lines)


# ---- readers (one sample) --------------------------------------------------------------------
def _check_size(path: Path) -> None:
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise RowError(f"{path.name} is {size / 2**20:.1f} MiB, over the {MAX_FILE_BYTES // 2**20} MiB limit")
    if size == 0:
        raise RowError(f"{path.name} is empty")


def read_image(path: Path) -> tuple[np.ndarray, bool]:
    """An image as float32 RGB [H, W, 3] in [0, 1] after resizing, and whether it has colour."""
    from PIL import Image, UnidentifiedImageError

    _check_size(path)
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > MAX_IMAGE_PIXELS:
                raise RowError(f"{path.name} is {w}×{h} pixels, over the {MAX_IMAGE_PIXELS:,} pixel limit")
            im.load()
            colour = im.mode not in ("1", "L", "LA", "I", "I;16", "F", "P") or (
                im.mode == "P" and any(len(set(c)) > 1 for c in _palette_rgb(im)))
            rgb = im.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR)
    except RowError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise RowError(f"unreadable image {path.name}: {str(exc).splitlines()[0][:120]}") from None
    arr = np.asarray(rgb, dtype=np.float32) / 255.0
    if colour and np.allclose(arr[..., 0], arr[..., 1]) and np.allclose(arr[..., 1], arr[..., 2]):
        colour = False
    return arr, colour


def _palette_rgb(im) -> list[tuple[int, int, int]]:
    pal = im.getpalette() or []
    return [tuple(pal[i:i + 3]) for i in range(0, min(len(pal), 768), 3)]


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Mono float32 waveform in [-1, 1] and its sample rate (PCM 8/16/24/32-bit WAV)."""
    _check_size(path)
    try:
        with wave.open(str(path), "rb") as w:
            ch, width, rate, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            if rate <= 0 or ch <= 0:
                raise RowError(f"corrupt WAV {path.name}: sample rate {rate}, {ch} channels")
            if n / rate > MAX_AUDIO_SECONDS:
                raise RowError(f"{path.name} lasts {n / rate:.1f} s, over the {MAX_AUDIO_SECONDS:.0f} s limit")
            raw = w.readframes(n)
    except RowError:
        raise
    except wave.Error as exc:
        raise RowError(f"unsupported or corrupt WAV {path.name}: {exc} (PCM WAV only)") from None
    except Exception as exc:  # noqa: BLE001 - the wave module raises EOFError, RuntimeError, struct.error...
        raise RowError(f"corrupt WAV {path.name}: {type(exc).__name__} {exc}".rstrip()) from None
    frames = len(raw) // (width * ch)
    if frames == 0:
        raise RowError(f"corrupt WAV {path.name}: no audio frames")
    raw = raw[: frames * width * ch]
    if width == 1:
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        x = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        x = np.where(v >= 1 << 23, v - (1 << 24), v).astype(np.float32) / float(1 << 23)
    elif width == 4:
        x = np.frombuffer(raw, dtype="<i4").astype(np.float32) / float(1 << 31)
    else:
        raise RowError(f"unsupported WAV {path.name}: {8 * width}-bit samples")
    x = x.reshape(frames, ch).mean(axis=1)
    if not np.isfinite(x).all():
        raise RowError(f"corrupt WAV {path.name}: non-finite samples")
    return x, rate


# ---- sources -------------------------------------------------------------------------------
def _resolve_inside(base: Path, rel: str) -> Path:
    rel = rel.strip()
    if not rel:
        raise RowError("empty file path")
    p = Path(rel)
    if p.is_absolute():
        raise RowError(f"absolute path {rel!r} not allowed; paths are relative to the manifest's folder")
    full = (base / p).resolve()
    if base.resolve() not in full.parents:
        raise RowError(f"path {rel!r} points outside the dataset folder")
    if not full.is_file():
        raise RowError(f"missing file {rel}")
    return full


def _classes_file(base: Path) -> list[str] | None:
    f = base / "classes.txt"
    if not f.is_file():
        return None
    names = [ln.strip() for ln in f.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return names or None


# ---- full validation + tensors ---------------------------------------------------------------
@dataclass
class Imported:
    report: ImportReport
    labels: np.ndarray  # int64 [N]
    inputs: dict[str, torch.Tensor]
    infos: dict[str, ModalityInfo]
    meta: dict[str, Any]


def _folder_rows(root: Path) -> tuple[list[dict[str, str]], list[str]]:
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataImportError(f"{root}: no class subfolders (expected {root}/<class>/<images>)")
    rows = []
    for c in classes:
        for f in sorted((root / c).iterdir()):
            if f.name.startswith(".") or f.is_dir():
                continue
            rows.append({"label": c, "image": f"{c}/{f.name}"})
            if len(rows) > MAX_ROWS:
                raise DataImportError(f"{root}: more than {MAX_ROWS:,} files, over the row limit")
    return rows, classes


def import_source(path: str | Path, label_column: str | None = None, audio: "FrontEnd | None" = None) -> Imported:
    """Validate every row of an image folder or CSV manifest and build the tensors of the good ones
    (audio columns through the front end ``audio``, default :data:`kdcore.data.audio.DEFAULT`)."""
    src = _source(path)
    report = ImportReport(str(path), "folder" if src.is_dir() else "csv")
    if src.is_dir():
        base = src
        dict_rows, _ = _folder_rows(src)
        cols = [Column("image", "image", "image")]
        label_column = "label"
        first_row = 1
    else:
        base = src.parent
        header, rows = _read_csv(src)
        label_column = _label_column(header, label_column, src)
        cols = _columns(header, rows, label_column, src)
        dict_rows = [{h: (r[j] if j < len(r) else "") for j, h in enumerate(header)} for r in rows]
        for d, r in zip(dict_rows, rows):
            if len(r) > len(header):  # reported before any field is read: the fields are shifted
                d[_TOO_MANY] = (f"{len(r)} fields but the header has {len(header)} columns (a comma inside a "
                                f"field? put that field in double quotes)")
        first_row = 2  # header is line 1
    allowed = _classes_file(base)
    report.rows_total = len(dict_rows)
    view_dims: dict[str, int] = {}
    for c in cols:
        if c.kind == "number":
            view_dims[c.modality] = view_dims.get(c.modality, 0) + 1
    good: list[dict[str, Any]] = []
    for i, row in enumerate(dict_rows):
        rownum = i + first_row
        try:
            if _TOO_MANY in row:
                raise RowError(row[_TOO_MANY])
            label = row.get(label_column, "").strip()
            if not label:
                raise RowError(f"missing label (column {label_column!r} is empty)")
            if allowed is not None and label not in allowed:
                raise RowError(f"unknown label {label!r} (classes.txt allows: {', '.join(allowed[:10])}"
                               f"{'…' if len(allowed) > 10 else ''})")
            sample: dict[str, Any] = {"label": label}
            for c in cols:
                raw = (row.get(c.name) or "").strip()
                if c.kind == "image":
                    sample[c.modality] = read_image(_resolve_inside(base, raw))
                elif c.kind == "audio":
                    wav, rate = read_wav(_resolve_inside(base, raw))
                    sample[c.modality] = (wav, rate)
                elif c.kind == "text":
                    if not raw:
                        raise RowError(f"empty text in column {c.name!r}")
                    sample[c.modality] = raw[:MAX_TEXT_LEN]
                elif c.kind == "number":
                    try:
                        v = float(raw)
                    except ValueError:
                        raise RowError(f"column {c.name!r}: {raw!r} is not a number") from None
                    if not math.isfinite(v):
                        raise RowError(f"column {c.name!r}: {raw!r} is not a finite number")
                    sample.setdefault(c.modality, [0.0] * view_dims[c.modality])[c.index] = v
                elif c.kind == "vector":
                    parts = [x for x in re.split(r"[\s;]+", raw) if x]
                    try:
                        vec = [float(x) for x in parts]
                    except ValueError:
                        raise RowError(f"column {c.name!r}: expected numbers separated by spaces or ';'") from None
                    if not vec or not all(math.isfinite(x) for x in vec):
                        raise RowError(f"column {c.name!r}: empty or non-finite vector")
                    dim = view_dims.setdefault(c.modality, len(vec))
                    if len(vec) != dim:
                        raise RowError(f"column {c.name!r}: {len(vec)} values, other rows have {dim}")
                    sample[c.modality] = vec
            good.append({"row": rownum, **sample})
        except RowError as exc:
            report.dropped.append((rownum, str(exc)))
    # classes need a few samples each for the stratified train / val / test split
    counts: dict[str, int] = {}
    for s in good:
        counts[s["label"]] = counts.get(s["label"], 0) + 1
    small = {c for c, n in counts.items() if n < MIN_PER_CLASS}
    if small:
        for s in good:
            if s["label"] in small:
                report.dropped.append((s["row"], f"class {s['label']!r} has only {counts[s['label']]} usable rows "
                                                 f"(need ≥ {MIN_PER_CLASS} for train / val / test)"))
        good = [s for s in good if s["label"] not in small]
    report.dropped.sort()
    classes = (list(allowed) if allowed is not None else sorted({s["label"] for s in good}))
    classes = [c for c in classes if any(s["label"] == c for s in good)]
    report.classes = classes
    report.kept = len(good)
    report.per_class = {c: sum(1 for s in good if s["label"] == c) for c in classes}
    report.modalities = {}
    for c in cols:
        report.modalities.setdefault(c.modality, KIND_TO_MODALITY[c.kind])
    if len(classes) == 1:
        report.warnings.append("only one class has usable rows: a classifier needs at least two")
    index = {c: k for k, c in enumerate(classes)}
    labels = np.array([index[s["label"]] for s in good], dtype=np.int64)
    inputs, infos, meta = _tensors(good, cols, audio, report)
    meta["rows"] = [s["row"] for s in good]
    return Imported(report, labels, inputs, infos, meta)


def _tensors(good, cols, audio, report) -> tuple[dict[str, torch.Tensor], dict[str, ModalityInfo], dict[str, Any]]:

    inputs: dict[str, torch.Tensor] = {}
    infos: dict[str, ModalityInfo] = {}
    meta: dict[str, Any] = {}
    if not good:
        return inputs, infos, meta
    done = set()
    for c in cols:
        m = c.modality
        if m in done:
            continue
        done.add(m)
        if c.kind == "image":
            colour = any(s[m][1] for s in good)
            arr = np.stack([s[m][0] for s in good])  # [N, H, W, 3]
            x = torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()
            if not colour:
                x = x.mean(dim=1, keepdim=True)
            inputs[m] = x
            infos[m] = ModalityInfo(m, "image", tuple(x.shape[1:]), f"{'RGB' if colour else 'grey'} image "
                                                                    f"resized to {IMAGE_SIZE}×{IMAGE_SIZE}")
        elif c.kind == "audio":
            fe = audio or AUDIO_FRONT_END  # each clip on its own: resample, trim, level, crop/pad; never pad to the longest
            clips, rates = [s[m][0] for s in good], [int(s[m][1]) for s in good]
            inputs[m] = fe(clips, rates)
            meta[f"{m}_sample_rate"] = fe.sample_rate
            meta[f"{m}_source_rates"] = {r: rates.count(r) for r in sorted(set(rates))}
            secs = [len(x) / r for x, r in zip(clips, rates)]
            meta[f"{m}_seconds"] = (min(secs), float(np.median(secs)), max(secs))
            rate_txt = "/".join(f"{r / 1000:g}" for r in sorted(set(rates)))
            infos[m] = ModalityInfo(m, "spectrogram", tuple(inputs[m].shape[1:]),
                                    f"log-mel spectrogram ({fe.describe()}) of clips of {min(secs):.2f}–"
                                    f"{max(secs):.2f} s at {rate_txt} kHz")
        elif c.kind == "text":
            texts = [s[m] for s in good]
            vocab = sorted({ch for t in texts for ch in t})
            table = {ch: i + 2 for i, ch in enumerate(vocab)}
            length = max(len(t) for t in texts)
            ids = torch.zeros((len(texts), length), dtype=torch.long)
            for i, t in enumerate(texts):
                ids[i, : len(t)] = torch.tensor([table[ch] for ch in t], dtype=torch.long)
            inputs[m] = ids
            meta[f"{m}_texts"] = texts
            meta[f"{m}_vocab"] = vocab
            infos[m] = ModalityInfo(m, "tokens", (length,), "characters of the text column", vocab_size=len(vocab) + 2)
        else:  # number / vector
            x = torch.tensor([s[m] for s in good], dtype=torch.float32)
            inputs[m] = x
            infos[m] = ModalityInfo(m, "vector", (x.shape[1],), f"{x.shape[1]} numeric features")
    return inputs, infos, meta


def starter_spec(path: str | Path, report: ImportReport, student_modalities: list[str] | None = None):
    """A spec that trains on this data: all modalities for the teacher, the last one for the student."""
    from kdcore.core.spec import validate_spec
    from kdcore.core.paths import safe_name

    mods = list(report.modalities)
    return validate_spec({
        "name": safe_name(Path(path).stem), "description": f"your data: {path}",
        "data": {"dataset": "custom", "path": str(Path(path).resolve())},
        "student": {"modalities": student_modalities or mods[-1:], "feature_dim": 16,
                    "encoder": {"width": 4, "depth": 1}},
    })


def inspect_source(path: str | Path, label_column: str | None = None) -> ImportReport:
    """Validate a source and return the report (what ``python -m kdcore import-data`` prints)."""
    return import_source(path, label_column).report


# ---- the dataset the spec names -----------------------------------------------------------
class CustomDataset(MultimodalDataset):
    """``data.dataset: custom`` with ``data.path``; modalities come from the source (see module doc)."""

    name = "custom"
    description = "your own data: an image folder (one subfolder per class) or a CSV manifest (data.path)"
    source = "user supplied"
    pairing_note = "User data: modalities of a CSV row belong to the same sample."
    MODALITIES: dict[str, str] = {}
    PATH: str | None = None

    def load(self, spec) -> TensorData:
        if not spec.path:
            raise DataImportError("data.path is required when data.dataset=custom")
        imp = import_source(spec.path)
        rep = imp.report
        if rep.kept == 0 or len(rep.classes) < 2:
            raise DataImportError(f"data.path {spec.path!r}: {rep.kept} usable rows in {len(rep.classes)} classes; "
                                  "need at least two classes (run `python -m kdcore import-data PATH` for the report)")
        labels = imp.labels
        split = stratified_split(labels, spec.train_fraction, spec.val_fraction, spec.seed)
        split = limit_train(split, labels, spec.train_limit, spec.seed)
        mods = spec.modalities or list(imp.inputs)
        inputs = {}
        tr = split["train"]
        for m in mods:
            x = imp.inputs[m]
            if imp.infos[m].kind == "vector":  # standardise with training statistics only
                mu, sd = x[tr].mean(0), x[tr].std(0).nan_to_num(1.0).clamp_min(1e-6)
                x = (x - mu) / sd
            elif imp.infos[m].kind == "spectrogram":
                mu, sd = x[tr].mean(), x[tr].std().clamp_min(1e-6)
                x = (x - mu) / sd
            inputs[m] = x
        return TensorData(
            name=f"custom:{Path(spec.path).name}", modalities={m: imp.infos[m] for m in mods}, inputs=inputs,
            labels=torch.from_numpy(labels), num_classes=len(rep.classes), class_names=list(rep.classes),
            split_index=split, meta={**imp.meta, "import_report": rep.to_dict()}, pairing_note=self.pairing_note,
        )


# uploads (the Data page) live in kdcore.data.uploads; re-exported for callers of this module
from kdcore.data.uploads import (  # noqa: E402,F401
    MAX_UNZIPPED_BYTES, MAX_UPLOAD_BYTES, MAX_ZIP_MEMBERS, data_root, dataset_path, extract_upload, safe_member,
)
