"""Uploads from the Data page: a zip (an image folder or a CSV manifest with its files) or a CSV,
unpacked under ``$KDLAB_DATA_DIR`` (default ``user_data/``) with every member name sanitised and
size, member-count and path checks (no absolute paths, no ``..``, no links)."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

from kdcore.core.layout import MAX_FILE_BYTES, MAX_ROWS, DataImportError
MAX_UPLOAD_BYTES = 200 * 2**20
MAX_UNZIPPED_BYTES = 1 << 30
MAX_ZIP_MEMBERS = MAX_ROWS + 100


def data_root() -> Path:
    """Where uploads are unpacked: ``$KDLAB_DATA_DIR`` or ``user_data``."""
    return Path(os.environ.get("KDLAB_DATA_DIR", "user_data"))


def safe_member(name: str) -> str:
    """A zip member name made safe: no absolute path, no '..', no drive, sanitised components."""
    from kdcore.core.paths import safe_name

    parts = [p for p in re.split(r"[\\/]+", name) if p not in ("", ".")]
    if any(p == ".." for p in parts) or re.match(r"^[A-Za-z]:", name) or name.startswith(("/", "\\")):
        raise DataImportError(f"zip member {name!r} tries to leave the upload folder; refused")
    clean = []
    for p in parts:
        stem, dot, ext = p.rpartition(".")
        clean.append(safe_name(stem) + "." + safe_name(ext, 10) if dot and stem else safe_name(p))
    if not clean:
        raise DataImportError(f"zip member {name!r} has no usable name")
    return "/".join(clean)


def extract_upload(data: bytes, filename: str, root: str | Path | None = None) -> Path:
    """Unpack an uploaded zip (or store an uploaded CSV) under ``root``/<safe name>; returns the
    dataset path to put in ``data.path`` (the folder, or the manifest when the zip holds one CSV).

    Refuses: uploads over :data:`MAX_UPLOAD_BYTES`, members that leave the folder (``..``,
    absolute paths, links), more than :data:`MAX_ZIP_MEMBERS` members, more than
    :data:`MAX_UNZIPPED_BYTES` unpacked (zip bombs)."""
    import hashlib
    import shutil
    import zipfile

    from kdcore.core.paths import safe_name

    if len(data) > MAX_UPLOAD_BYTES:
        raise DataImportError(f"upload is {len(data) / 2**20:.0f} MiB, over the {MAX_UPLOAD_BYTES // 2**20} MiB limit")
    root = Path(root) if root is not None else data_root()
    stem = Path(filename.replace("\\", "/")).name
    base = safe_name(stem.rsplit(".", 1)[0] if "." in stem else stem, 40)
    target = root / f"{base}-{hashlib.sha256(data).hexdigest()[:8]}"
    tmp = root / f".{target.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        if stem.lower().endswith(".csv"):
            (tmp / (safe_name(stem[:-4], 40) + ".csv")).write_bytes(data)
        elif stem.lower().endswith(".zip"):
            try:
                zf = zipfile.ZipFile(io.BytesIO(data))
            except zipfile.BadZipFile:
                raise DataImportError(f"{stem} is not a valid zip file") from None
            with zf:
                infos = zf.infolist()
                if len(infos) > MAX_ZIP_MEMBERS:
                    raise DataImportError(f"{stem} has {len(infos)} entries, over the {MAX_ZIP_MEMBERS:,} limit")
                total = sum(i.file_size for i in infos)
                if total > MAX_UNZIPPED_BYTES:
                    raise DataImportError(f"{stem} unpacks to {total / 2**20:.0f} MiB, over the "
                                          f"{MAX_UNZIPPED_BYTES // 2**20} MiB limit")
                for info in infos:
                    if info.is_dir():
                        continue
                    mode = (info.external_attr >> 16) & 0o170000
                    if mode == 0o120000:
                        raise DataImportError(f"zip member {info.filename!r} is a symbolic link; refused")
                    rel = safe_member(info.filename)
                    if rel.split("/")[0] in ("__MACOSX",) or rel.split("/")[-1].startswith("."):
                        continue
                    dest = (tmp / rel).resolve()
                    if tmp.resolve() not in dest.parents:
                        raise DataImportError(f"zip member {info.filename!r} tries to leave the upload folder")
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    written = 0
                    with zf.open(info) as src, open(dest, "wb") as out:
                        while chunk := src.read(1 << 20):
                            written += len(chunk)
                            if written > MAX_FILE_BYTES and not rel.lower().endswith(".csv"):
                                raise DataImportError(f"zip member {info.filename!r} is over the "
                                                      f"{MAX_FILE_BYTES // 2**20} MiB per-file limit")
                            out.write(chunk)
        else:
            raise DataImportError(f"upload {stem!r}: expected a .zip (image folder or CSV + files) or a .csv")
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dataset_path(target)


def dataset_path(folder: Path) -> Path:
    """The usable source inside an unpacked upload: a single CSV manifest, else the class-folder root
    (descending through a single wrapping folder, as zips made from a folder have)."""
    cur = folder
    for _ in range(3):
        csvs = sorted(p for p in cur.iterdir() if p.is_file() and p.suffix.lower() == ".csv")
        if len(csvs) == 1:
            return csvs[0]
        if len(csvs) > 1:
            raise DataImportError(f"the upload holds several CSV files ({', '.join(p.name for p in csvs)}); "
                                  "keep one manifest")
        subs = [p for p in cur.iterdir() if p.is_dir()]
        files = [p for p in cur.iterdir() if p.is_file() and p.name != "classes.txt"]
        wraps = len(subs) == 1 and any(q.is_dir() or q.suffix.lower() == ".csv" for q in subs[0].iterdir())
        if wraps and not files:
            cur = subs[0]
            continue
        return cur
    return cur
