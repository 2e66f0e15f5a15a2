"""The video modality (issue 15 part 2): the moving-digits dataset (shapes, determinism, motion knobs),
the video encoders (shapes, what each one looks at), attributions per frame, spec errors, the figures,
and a quick CLI run of the video-kd preset."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from kdcore.core.spec import DataSpec, SpecError, validate_spec
from kdcore.data import DATASETS
from kdcore.data.base import ModalityInfo
from kdcore.data.moving_digits import (CANVAS, ROOM, SPRITE, MovingDigits, centre_of_mass, reflect, render,
                                       trajectories)
from kdcore.models.encoders import DEFAULT_FOR, ENCODER_KINDS, ENCODERS
from kdcore.presets import load_preset

ROOT = Path(__file__).resolve().parents[1]
VIDEO_ARCHS = ("conv3d", "cnn_gru", "frame_cnn", "pooled_cnn")


def load(**noise) -> "object":
    """A small moving-digits load, straight from the class (no memo), video only unless audio is asked."""
    mods = noise.pop("modalities", ["video"])
    seed = noise.pop("seed", 0)
    spec = DataSpec(dataset="moving-digits", noise={"clips": 200, **noise}, modalities=mods, seed=seed)
    return MovingDigits().load(spec)


# ---- the dataset ---------------------------------------------------------------------------------
def test_registered_with_video_and_speech():
    assert DATASETS["moving-digits"] is MovingDigits
    assert MovingDigits.modality_kinds() == {"video": "video", "audio": "spectrogram"}
    assert DEFAULT_FOR["video"] == "conv3d"
    for arch in VIDEO_ARCHS:
        assert ENCODER_KINDS[arch] == ("video",)


def test_shapes_labels_and_split():
    d = load(video_frames=6, modalities=["video", "audio"])
    assert d.inputs["video"].shape == (200, 1, 6, CANVAS, CANVAS) and d.inputs["video"].dtype == torch.float32
    assert d.inputs["audio"].shape == (200, 1, 32, 32)
    assert d.modalities["video"].kind == "video" and d.modalities["video"].shape == (1, 6, 32, 32)
    assert torch.bincount(d.labels).tolist() == [20] * 10  # clips / 10 per digit
    parts = [set(d.split(p).indices.tolist()) for p in ("train", "val", "test")]
    assert sum(map(len, parts)) == 200 and not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    # clean clips: one whole sprite in every frame, values in [0, 1]
    v = d.inputs["video"]
    assert float(v.min()) >= 0.0 and float(v.max()) <= 1.0
    mass = v.sum((1, 3, 4))  # [n, T]
    assert torch.allclose(mass, mass[:, :1].expand_as(mass), atol=1e-3), "the digit never leaves the canvas"


def test_deterministic_from_the_seed():
    a = load(video_sigma=0.5, seed=3, modalities=["video", "audio"])
    b = load(video_sigma=0.5, seed=3, modalities=["video", "audio"])
    c = load(video_sigma=0.5, seed=4, modalities=["video", "audio"])
    for m in ("video", "audio"):
        assert torch.equal(a.inputs[m], b.inputs[m])
    assert torch.equal(a.meta["video_path"], b.meta["video_path"])
    assert not torch.equal(a.inputs["video"], c.inputs["video"])
    assert not torch.equal(a.split("test").indices, c.split("test").indices)


def test_speed_zero_gives_still_frames():
    v = load(video_speed=0.0, video_frames=8).inputs["video"]
    assert torch.equal(v, v[:, :, :1].expand_as(v))
    moving = load(video_speed=2.0, video_frames=8).inputs["video"]
    assert not torch.equal(moving[:, :, 0], moving[:, :, 1])


@pytest.mark.parametrize("direction, axis, sign", [(0, 0, +1), (90, 1, -1), (180, 0, -1), (270, 1, +1)])
def test_direction_moves_the_centre_of_mass_that_way(direction, axis, sign):
    """0° = right (x grows), 90° = up (y shrinks: rows count down), 180° left, 270° down; speed 1 px
    per frame over 8 frames fits the canvas, so every step is exactly one pixel."""
    d = load(video_speed=1.0, video_direction=direction, video_spread=0.0, video_frames=8)
    com = centre_of_mass(d.inputs["video"])  # [n, T, 2]
    step = com[:, 1:] - com[:, :-1]
    assert torch.allclose(step[..., axis], torch.full_like(step[..., axis], float(sign)), atol=1e-4)
    assert torch.allclose(step[..., 1 - axis], torch.zeros_like(step[..., 1 - axis]), atol=1e-4)


def test_speed_scales_the_path_and_spread_varies_directions():
    slow = load(video_speed=1.0, video_spread=0.0).meta["video_path"].float()
    fast = load(video_speed=2.0, video_spread=0.0).meta["video_path"].float()
    assert float((slow[:, -1, 0] - slow[:, 0, 0]).mean()) == pytest.approx(7.0)  # 1 px × (8 − 1) frames
    assert float((fast[:, -1, 0] - fast[:, 0, 0]).mean()) == pytest.approx(14.0)
    spread = load(video_speed=2.0, video_spread=180.0).meta["video_path"].float()
    dx = spread[:, 1, 0] - spread[:, 0, 0]
    assert (dx > 0).any() and (dx < 0).any(), "spread 180: clips move both ways"


def test_fast_clips_bounce_inside_the_canvas():
    x, y = trajectories(50, 16, 8.0, 30.0, 0.0, seed=1)
    assert x.min() >= 0 and y.min() >= 0 and x.max() <= ROOM and y.max() <= ROOM
    assert np.allclose(reflect(np.array([-1.0, 0.0, 5.0, 16.0, 17.0, 33.0])), [1, 0, 5, 16, 15, 1])
    clip = render(torch.ones(50, SPRITE, SPRITE), x, y)
    assert torch.allclose(clip.sum((1, 3, 4)), torch.full((50, 16), float(SPRITE * SPRITE)))


def test_frame_noise_is_independent_per_frame():
    clean = load(video_speed=0.0).inputs["video"]
    noisy = load(video_speed=0.0, video_sigma=0.5).inputs["video"]
    e = noisy - clean
    assert float(e.std()) == pytest.approx(0.5, rel=0.02)
    corr = np.corrcoef(e[:, 0, 0].flatten().numpy(), e[:, 0, 1].flatten().numpy())[0, 1]
    assert abs(corr) < 0.02, "a fresh noise draw on every frame"


# ---- bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize("override, message", [
    ("data.noise.video_frames=40", "data.noise.video_frames=40.0 is outside the allowed range [4.0, 16.0]"),
    ("data.noise.video_frames=2", "data.noise.video_frames=2.0 is outside the allowed range [4.0, 16.0]"),
    ("data.noise.video_speed=-1", "data.noise.video_speed=-1.0 is outside the allowed range [0.0, 8.0]"),
    ("student.encoders.video.arch=cnn", "student.encoders.video.arch='cnn' does not fit a video modality; "
                                        "allowed: conv3d, cnn_gru, frame_cnn, pooled_cnn"),
    ("teacher.modalities=[video, audio];teacher.encoders.audio.arch=conv3d",
     "teacher.encoders.audio.arch='conv3d' does not fit a spectrogram modality; allowed:"),
])
def test_bad_video_input_is_one_line_naming_the_field(override, message):
    with pytest.raises(SpecError) as exc:
        load_preset("video-kd").with_overrides(override.split(";"))
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_video_encoder_on_an_image_modality_is_refused():
    with pytest.raises(SpecError) as exc:
        validate_spec({"data": {"dataset": "mnist-5k"}, "student": {"encoders": {"image": {"arch": "frame_cnn"}}}})
    assert "student.encoders.image.arch='frame_cnn' does not fit a image modality" in str(exc.value)
    assert "\n" not in str(exc.value)


def test_fractional_integer_knobs_name_the_field():
    with pytest.raises(ValueError, match=r"data.noise.video_frames=7.5 must be a whole number"):
        load(video_frames=7.5)
    with pytest.raises(ValueError, match=r"data.noise.clips=250.5 must be a whole number"):
        load(clips=250.5)
    assert len(load(clips=209).labels) == 200  # the same count per digit: rounded down to a multiple of 10


# ---- encoders ------------------------------------------------------------------------------------
def _encoder(arch: str, frames: int = 6, width: int = 4, depth: int = 2, dim: int = 12):
    torch.manual_seed(0)
    return ENCODERS[arch](ModalityInfo("video", "video", (1, frames, 32, 32)), width, depth, dim).eval()


@pytest.mark.parametrize("arch", VIDEO_ARCHS)
def test_encoder_output_shapes(arch):
    enc = _encoder(arch)
    h, maps = enc(torch.randn(3, 1, 6, 32, 32))
    assert h.shape == (3, 12) and enc.out_dim == 12
    assert [tuple(m.shape) for m in maps] == [(3, 4, 16, 16), (3, 8, 8, 8)]  # time-mean maps, width doubles
    blocks_out = torch.randn(3, 1, 6, 32, 32)
    for b in enc.blocks:
        blocks_out = b(blocks_out)
    assert blocks_out.dim() == 5  # every block maps a clip to a clip-shaped map (Grad-CAM hooks the last)


def test_single_frame_encoder_sees_only_the_middle_frame_and_pooled_ignores_order():
    x = torch.randn(2, 1, 6, 32, 32, requires_grad=True)
    enc = _encoder("frame_cnn")
    enc(x)[0].sum().backward()
    per_frame = x.grad.abs().sum((0, 1, 3, 4))
    assert enc.frame == 3 and per_frame[3] > 0 and float(per_frame.sum() - per_frame[3]) == 0.0
    perm = torch.tensor([5, 2, 0, 4, 1, 3])
    pooled = _encoder("pooled_cnn")
    assert torch.allclose(pooled(x)[0], pooled(x[:, :, perm])[0], atol=1e-5)
    gru, conv = _encoder("cnn_gru"), _encoder("conv3d")
    for enc in (gru, conv):
        assert not torch.allclose(enc(x)[0], enc(x[:, :, perm])[0], atol=1e-4), "order matters"


def test_video_model_trains_end_to_end_and_feature_maps_pair_with_an_image_student():
    from kdcore.core.spec import ModelSpec
    from kdcore.methods.losses.functional import at_loss
    from kdcore.models import build_model

    d = load(modalities=["video", "audio"])
    t = build_model(ModelSpec(feature_dim=8, encoder={"width": 4, "depth": 2},
                              encoders={"video": {"arch": "cnn_gru", "width": 4, "depth": 2}}), ["video", "audio"], d)
    s = build_model(ModelSpec(feature_dim=8, encoder={"width": 4, "depth": 2},
                              encoders={"video": {"arch": "frame_cnn", "width": 4, "depth": 2}}), ["video"], d)
    b = d.split("train").all()
    ot, os_ = t(b.inputs), s({"video": b.inputs["video"]})
    assert ot.logits.shape == os_.logits.shape == (len(b), 10)
    loss = at_loss(os_.feature_maps["video"][-1], ot.feature_maps["video"][-1].detach())
    loss.backward()
    assert torch.isfinite(loss)


# ---- attributions per frame ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_models():
    from kdcore.core.spec import ModelSpec
    from kdcore.models import build_model

    d = load(modalities=["video", "audio"], video_frames=4)
    out = {}
    for arch in ("conv3d", "frame_cnn"):
        torch.manual_seed(0)
        out[arch] = build_model(ModelSpec(feature_dim=8, encoder={"width": 4, "depth": 2},
                                          encoders={"video": {"arch": arch, "width": 4, "depth": 2}}),
                                ["video", "audio"], d).eval()
    return d, out


@pytest.mark.parametrize("method", ["ig", "saliency", "occlusion", "gradcam"])
def test_attributions_have_one_map_per_frame(tiny_models, method):
    from kdcore.explain.attribution import attribute

    d, models = tiny_models
    b = d.split("test").batch(torch.arange(3))
    for arch, model in models.items():
        a = attribute(model, b.inputs, method, b.labels, {"steps": 4} if method == "ig" else None)
        assert a.kinds["video"] == "video"
        assert a.maps["video"].shape == (3, 1, 4, 32, 32)
        per_frame = a.maps["video"].abs().sum((0, 1, 3, 4))
        if arch == "frame_cnn":  # the single-frame student can only be moved by its frame (T // 2 = 2)
            assert per_frame[2] > 0 and float(per_frame.sum() - per_frame[2]) == pytest.approx(0.0, abs=1e-6)
        else:
            assert (per_frame > 0).all(), (method, per_frame)
        if method != "gradcam":
            assert torch.allclose(a.shares.sum(1), torch.ones(3), atol=1e-5)


# ---- figures -------------------------------------------------------------------------------------
def test_video_figures():
    from kdcore.viz.video import clip_strip_figure, frame_shares, frame_shares_figure, strip, video_maps_figure

    clip = np.arange(3 * 2 * 2, dtype=float).reshape(1, 3, 2, 2)
    s = strip(clip)
    assert s.shape == (2, 8) and np.isnan(s[:, 2]).all() and np.isnan(s[:, 5]).all()
    assert s[0, 3] == 4.0  # frame 1 starts after one gap column
    fig = clip_strip_figure(clip, "clip")
    assert list(fig.layout.xaxis.ticktext) == ["t=0", "t=1", "t=2"]
    maps = {"teacher": np.ones((1, 3, 2, 2)), "kd": np.stack([np.zeros((2, 2)), np.ones((2, 2)), np.zeros((2, 2))])}
    assert np.allclose(frame_shares(maps["teacher"]), 1 / 3) and np.allclose(frame_shares(maps["kd"]), [0, 1, 0])
    assert np.allclose(frame_shares(np.zeros((3, 2, 2))), 0)
    g = video_maps_figure(clip, maps, "ig")
    assert len(g.data) == 3 and g.layout.title.text == "video (video) — ig, per frame"
    assert len(frame_shares_figure(maps, "ig").data) == 2


# ---- the preset, from the CLI --------------------------------------------------------------------
def test_preset_is_video_teacher_to_single_frame_student():
    spec = load_preset("video-kd")
    assert spec.data.dataset == "moving-digits"
    assert spec.data.all_modalities() == ["video", "audio"]  # speech loaded for the "+ speech" variant
    assert spec.teacher_modalities() == ["video"] and spec.student_modalities() == ["video"]
    assert spec.with_overrides(["teacher.modalities=[video, audio]"]).teacher_modalities() == ["video", "audio"]
    assert spec.teacher.encoder_for("video").arch in ("conv3d", "cnn_gru")
    assert spec.student.encoder_for("video").arch == "frame_cnn"


def test_cli_quick_run_of_the_preset(tmp_path):
    p = subprocess.run(
        [sys.executable, "-m", "kdcore", "run", "--preset", "video-kd", "--json", "--quiet", "--no-save",
         "--set", "data.noise.clips=200", "--set", "train.teacher_epochs=1", "--set", "train.student_epochs=1",
         "--set", "train.threads=1"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout)
    assert out["status"] == "finished" and set(out["phases"]) >= {"teacher", "baseline", "kd"}
    assert all(0 <= r["test_acc"] <= 1 for r in out["phases"].values())


def test_clip_animation_plays_every_frame_on_one_scale():
    from kdcore.viz.video import clip_animation_figure

    clip = np.random.default_rng(0).random((1, 6, 8, 8))
    fig = clip_animation_figure(clip, "a clip")
    assert [fr.name for fr in fig.frames] == [f"t={i}" for i in range(6)]
    for i, fr in enumerate(fig.frames):
        np.testing.assert_allclose(np.asarray(fr.data[0].z), clip[0, i])
        assert (fr.data[0].zmin, fr.data[0].zmax) == (fig.data[0].zmin, fig.data[0].zmax)
    labels = [b.label for b in fig.layout.updatemenus[0].buttons]
    assert labels == ["▶ Play", "❚❚ Pause"] and len(fig.layout.sliders[0].steps) == 6
    assert fig.layout.title.text == "a clip" and not fig.layout.showlegend

