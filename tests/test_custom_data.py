"""Bring your own data: image folders and CSV manifests, validated row by row; uploads; own teacher."""

from __future__ import annotations

import io
import subprocess
import sys
import wave
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from kdcore.data import load_data
from kdcore.data.custom import (
    DataImportError,
    extract_upload,
    import_source,
    inspect_source,
    safe_member,
)
from kdcore.core.spec import SpecError, validate_spec

ROOT = Path(__file__).resolve().parents[1]


def write_png(path: Path, label: int, rng: np.random.Generator, size: int = 12) -> None:
    arr = (rng.random((size, size)) * 60).astype(np.uint8)
    arr[:, label * 3 % size: label * 3 % size + 3] = 255  # a class-dependent bright stripe
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode="L").save(path)


def write_wav(path: Path, freq: float, rate: int = 8000, seconds: float = 0.25, width: int = 2) -> None:
    t = np.arange(int(rate * seconds)) / rate
    x = (0.5 * np.sin(2 * np.pi * freq * t) * 32767).astype("<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(x.tobytes())


def make_manifest(tmp: Path, n_per_class: int = 6) -> tuple[Path, dict[int, str]]:
    """A CSV with image, audio, text and a 3-column numeric view; returns bad row numbers → expected reason."""
    rng = np.random.default_rng(0)
    lines = ["label,image,audio,caption,feat.0,feat.1,feat.2"]
    names = {"cat": 0, "dog": 1, "owl": 2}
    for c, k in names.items():
        for i in range(n_per_class):
            write_png(tmp / "img" / f"{c}{i}.png", k, rng)
            write_wav(tmp / "wav" / f"{c}{i}.wav", 300 + 200 * k)
            lines.append(f"{c},img/{c}{i}.png,wav/{c}{i}.wav,a {c} number {i},{k + rng.normal():.3f},"
                         f"{rng.normal():.3f},{-k:.1f}")
    bad = {}
    (tmp / "img" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    (tmp / "wav" / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    (tmp / "wav" / "notes.wav").write_text("this is text, not audio")
    rows = [
        ("cat,img/missing.png,wav/cat0.wav,text,1,2,3", "missing file"),
        ("cat,img/broken.png,wav/cat0.wav,text,1,2,3", "unreadable image"),
        ("dog,img/dog0.png,wav/broken.wav,text,1,2,3", "WAV"),
        ("dog,img/dog0.png,wav/notes.wav,text,1,2,3", "WAV"),
        ("owl,img/owl0.png,wav/owl0.wav,,1,2,3", "empty text"),
        ("fox,img/cat0.png,wav/cat0.wav,text,1,2,3", "unknown label"),
        (",img/cat0.png,wav/cat0.wav,text,1,2,3", "missing label"),
        ("cat,../outside.png,wav/cat0.wav,text,1,2,3", "outside"),
        ("cat,img/cat0.png,wav/cat0.wav,text,one,2,3", "not a number"),
    ]
    for line, why in rows:
        lines.append(line)
        bad[len(lines)] = why  # CSV line number (header = line 1)
    (tmp / "classes.txt").write_text("cat\ndog\nowl\n")
    (tmp / "data.csv").write_text("\n".join(lines) + "\n")
    return tmp / "data.csv", bad


def test_manifest_keeps_good_rows_and_reports_each_bad_row(tmp_path):
    csv_path, bad = make_manifest(tmp_path)
    rep = inspect_source(csv_path)
    assert rep.rows_total == 18 + len(bad)
    assert rep.kept == 18
    assert rep.classes == ["cat", "dog", "owl"] and rep.per_class == {"cat": 6, "dog": 6, "owl": 6}
    assert rep.modalities == {"image": "image", "audio": "spectrogram", "caption": "tokens", "feat": "vector"}
    reasons = dict(rep.dropped)
    assert set(reasons) == set(bad)
    for row, expected in bad.items():
        assert expected in reasons[row], (row, reasons[row])
    text = rep.summary()
    assert "18 kept" in text and f"{len(bad)} dropped" in text and "data.dataset=custom" in text


def test_manifest_trains_as_a_custom_dataset(tmp_path):
    csv_path, _ = make_manifest(tmp_path)
    spec = validate_spec({
        "name": "byod", "data": {"dataset": "custom", "path": str(csv_path), "train_fraction": 0.5,
                                 "val_fraction": 0.25},
        "teacher": {"feature_dim": 8, "encoder": {"width": 4, "depth": 1}},
        "student": {"modalities": ["feat"], "feature_dim": 4, "encoder": {"width": 4, "depth": 1}},
        "train": {"teacher_epochs": 1, "student_epochs": 1, "batch_size": 8, "threads": 1},
    })
    assert spec.data.all_modalities() == ["image", "audio", "caption", "feat"]
    data = load_data(spec.data)
    assert data.num_classes == 3 and data.class_names == ["cat", "dog", "owl"]
    assert data.inputs["image"].shape == (18, 1, 32, 32)
    assert data.inputs["audio"].shape == (18, 1, 32, 32)
    assert data.inputs["feat"].shape == (18, 3)
    assert data.inputs["caption"].dtype == torch.long
    assert data.meta["import_report"]["kept"] == 18
    from kdcore.pipeline.experiment import Experiment

    res = Experiment(spec).run()
    assert res.status == "finished", res.message
    assert set(res.phases) >= {"teacher", "baseline", "kd"}


def test_image_folder_layout(tmp_path):
    rng = np.random.default_rng(1)
    for k, c in enumerate(["a", "b"]):
        for i in range(4):
            write_png(tmp_path / "imgs" / c / f"{i}.png", k, rng)
    (tmp_path / "imgs" / "b" / "readme.txt").write_text("not an image")
    rep = inspect_source(tmp_path / "imgs")
    assert rep.layout == "folder" and rep.kept == 8 and rep.classes == ["a", "b"]
    assert len(rep.dropped) == 1 and "unreadable image" in rep.dropped[0][1]
    spec = validate_spec({"data": {"dataset": "custom", "path": str(tmp_path / "imgs")}})
    assert spec.data.all_modalities() == ["image"]


def test_spec_errors_name_the_field(tmp_path):
    with pytest.raises(SpecError, match="data.path is required"):
        validate_spec({"data": {"dataset": "custom"}})
    with pytest.raises(SpecError, match="does not exist"):
        validate_spec({"data": {"dataset": "custom", "path": str(tmp_path / "nope")}})
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(SpecError, match="no label column 'label'"):
        validate_spec({"data": {"dataset": "custom", "path": str(tmp_path / "x.csv")}})
    assert validate_spec({"data": {"dataset": "mfeat", "path": str(tmp_path)}}).data.all_modalities()[0] == "fou"


def test_size_limits(tmp_path, monkeypatch):
    import kdcore.data.custom as custom

    rng = np.random.default_rng(2)
    for c in ("a", "b"):
        for i in range(3):
            write_png(tmp_path / "d" / c / f"{i}.png", 0, rng, size=40)
    monkeypatch.setattr(custom, "MAX_IMAGE_PIXELS", 30 * 30)
    rep = inspect_source(tmp_path / "d")
    assert rep.kept == 0 and all("pixel limit" in why for _, why in rep.dropped)
    monkeypatch.setattr(custom, "MAX_IMAGE_PIXELS", 4096 * 4096)
    monkeypatch.setattr(custom, "MAX_FILE_BYTES", 10)
    rep = inspect_source(tmp_path / "d")
    assert rep.kept == 0 and all("MiB limit" in why for _, why in rep.dropped)
    import kdcore.data.uploads as uploads

    monkeypatch.setattr(uploads, "MAX_UPLOAD_BYTES", 100)
    with pytest.raises(DataImportError, match="over the"):
        extract_upload(b"x" * 101, "big.zip", tmp_path / "up")


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_upload_zip_of_image_folder_and_traversal_is_refused(tmp_path):
    rng = np.random.default_rng(3)
    members = {}
    for k, c in enumerate(["zero", "one"]):
        for i in range(3):
            b = io.BytesIO()
            arr = (rng.random((8, 8)) * 255).astype(np.uint8)
            Image.fromarray(arr).save(b, format="PNG")
            members[f"digits/{c}/{i}.png"] = b.getvalue()
    path = extract_upload(_zip(members), "../../etc/My Digits!.zip", tmp_path / "up")
    # the upload's folder name is sanitised; the zip's wrapping folder "digits" is the dataset root
    assert path.parent.parent == tmp_path / "up" and path.parent.name.startswith("My-Digits-")
    assert path.name == "digits"
    assert inspect_source(path).kept == 6
    # path traversal inside the zip: refused, nothing written outside, no half-unpacked folder left
    evil = _zip({"ok/a.png": members["digits/zero/0.png"], "../../evil.txt": b"pwned"})
    with pytest.raises(DataImportError, match="leave the upload folder"):
        extract_upload(evil, "evil.zip", tmp_path / "up")
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path.parent / "evil.txt").exists()
    assert sorted(p.name for p in (tmp_path / "up").iterdir()) == [path.parent.name]
    with pytest.raises(DataImportError):
        extract_upload(_zip({"/abs/x.png": b"x"}), "abs.zip", tmp_path / "up")
    assert safe_member("a b/c$.png") == "a-b/c.png"


def test_upload_rejects_symlinks_and_non_zip(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(DataImportError, match="symbolic link"):
        extract_upload(buf.getvalue(), "l.zip", tmp_path)
    with pytest.raises(DataImportError, match="not a valid zip"):
        extract_upload(b"PK\x03\x04garbage", "x.zip", tmp_path)
    with pytest.raises(DataImportError, match="expected a .zip"):
        extract_upload(b"data", "x.exe", tmp_path)


def test_import_data_cli_prints_the_report(tmp_path):
    csv_path, bad = make_manifest(tmp_path)
    out = subprocess.run([sys.executable, "-m", "kdcore", "import-data", str(csv_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "18 kept" in out.stdout and "missing file img/missing.png" in out.stdout
    spec_file = tmp_path / "my.yaml"
    out = subprocess.run([sys.executable, "-m", "kdcore", "import-data", str(csv_path), "--spec", str(spec_file)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    from kdcore.core.spec import ExperimentSpec

    spec = ExperimentSpec.load(spec_file)
    assert spec.data.dataset == "custom" and spec.student_modalities() == ["feat"]
    assert spec.teacher_modalities() == ["image", "audio", "caption", "feat"]
    out = subprocess.run([sys.executable, "-m", "kdcore", "import-data", str(tmp_path / "nope")], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "does not exist" in out.stderr and "Traceback" not in out.stderr


def test_own_teacher_checkpoint_matched_or_clear_error(tmp_path):
    """Bring your own teacher: a KD Lab safetensors teacher loads; a mismatched one fails clearly."""
    from kdcore.data import load_data
    from kdcore.pipeline.experiment import Experiment
    from kdcore.models import build_model
    from kdcore.models.checkpoints import save_state

    base = {"name": "own-teacher", "data": {"dataset": "mfeat", "modalities": ["fou", "zer"], "train_limit": 100},
            "teacher": {"feature_dim": 8, "encoder": {"width": 8, "depth": 1}},
            "student": {"modalities": ["zer"], "feature_dim": 4, "encoder": {"width": 4, "depth": 1}},
            "train": {"teacher_epochs": 1, "student_epochs": 1, "batch_size": 32, "threads": 1}}
    spec = validate_spec(base)
    data = load_data(spec.data)
    torch.manual_seed(5)
    teacher = build_model(spec.teacher, spec.teacher_modalities(), data)
    save_state(teacher.state_dict(), tmp_path / "teacher.safetensors")
    ok = validate_spec({**base, "teacher": {**base["teacher"], "checkpoint": str(tmp_path / "teacher.safetensors")}})
    exp = Experiment(ok)
    res = exp.run()
    assert res.status == "finished" and res.phases["teacher"]["best_epoch"] == 0  # loaded, not trained
    for k, v in teacher.state_dict().items():
        assert torch.equal(exp.models["teacher"].state_dict()[k].cpu(), v)
    wrong = validate_spec({**base, "teacher": {**base["teacher"], "feature_dim": 16,
                                               "checkpoint": str(tmp_path / "teacher.safetensors")}})
    res = Experiment(wrong).run()
    assert res.status == "failed"
    assert "does not match the architecture" in res.message and "with other shapes" in res.message


def test_data_page_checks_a_local_manifest_and_uses_it(tmp_path):
    from streamlit.testing.v1 import AppTest

    csv_path, bad = make_manifest(tmp_path)
    at = AppTest.from_file(str(ROOT / "pages" / "8_Data.py"), default_timeout=120)
    at.run()
    assert not at.exception
    at.text_input(key="data-local-path").set_value(str(csv_path))
    at.run()
    at.button(key="data-check-local").click()
    at.run()
    assert not at.exception
    assert [m.value for m in at.metric] == ["27", "18", "9", "3"]
    at.button(key="data-use").click()
    at.run()
    assert not at.exception
    spec = at.session_state["spec"]
    assert spec["data"]["dataset"] == "custom" and spec["data"]["path"] == str(csv_path)
    assert spec["student"]["modalities"] == ["feat"]


def test_csv_row_with_too_many_fields_gets_its_own_reason(tmp_path):
    from kdcore.data.custom import inspect_source

    rows = ["label,text,x"] + [f"{i % 2},word{i},{i}.5" for i in range(12)] + ["1,hello, too many,3"]
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    rep = inspect_source(tmp_path / "m.csv")
    assert rep.kept == 12 and len(rep.dropped) == 1
    row, why = rep.dropped[0]
    assert row == 14 and "4 fields but the header has 3 columns" in why and "double quotes" in why
    assert "not a number" not in why


def test_data_page_second_source_gets_a_student_modality_and_usable_button(tmp_path):
    from streamlit.testing.v1 import AppTest

    csv_path, _ = make_manifest(tmp_path / "first")
    second = tmp_path / "second.csv"
    second.write_text("label,words,v\n" + "".join(f"{i % 3},w{i},{i}.0\n" for i in range(30)))
    at = AppTest.from_file(str(ROOT / "pages" / "8_Data.py"), default_timeout=120)
    at.run()
    for src in (csv_path, second):
        at.text_input(key="data-local-path").set_value(str(src))
        at.run()
        at.button(key="data-check-local").click()
        at.run()
        assert not at.exception
        box = next(m for m in at.multiselect if m.label.startswith("student modalities"))
        assert box.value, f"the student-modality box is empty after checking {src.name}"
        assert not at.button(key="data-use").disabled
    box.set_value([]).run()
    assert at.button(key="data-use").disabled
    assert any("Pick at least one student modality" in i.value for i in at.info)
