"""moving-digits: short clips of real MNIST digits moving on a 32×32 canvas + the spoken digit.

The video modality of the lab. Nothing is downloaded and no file of its own is bundled: the clips
are **rendered at load time** from the bundled ``assets/mnist5k.npz`` digits, deterministically
from ``data.seed`` and the motion knobs, so every knob is a real spec field with a range (a
pre-rendered file could not honour the speed or direction a spec asks for). The speech comes
from ``assets/digits_av.npz`` and is paired with the clips **by label, never by instance**,
exactly as in digits-av (test clips are spoken by voices never heard in training).

Rendering (``n`` clips of ``T`` frames; knobs in ``data.noise``):

* sample *i* is MNIST digit *i* of the first ``clips / 10`` of each class (the file is sorted by
  class); its central 20×20 box (MNIST digits are normalised into it) is area-resized to a
  16×16 sprite with values in [0, 1];
* direction θ_i = ``video_direction`` + U(−``video_spread``, +``video_spread``) degrees
  (0 = rightwards, 90 = upwards, counter-clockwise); velocity v_i = ``video_speed`` ·
  (cos θ_i, −sin θ_i) pixels per frame in (x, y-down) image coordinates;
* the sprite's top-left corner moves p_t = p_0 + v_i t inside [0, 16]² (canvas 32 − sprite 16).
  Per axis, when the whole path fits (|v| (T − 1) ≤ 16) p_0 is drawn uniformly among the starts
  that never touch a wall, so the digit moves in a straight line; otherwise p_0 ~ U[0, 16] and
  the path bounces off the walls (reflection, as in Moving MNIST). Positions are rounded to
  whole pixels;
* each frame gets independent Gaussian noise of std ``video_sigma`` (values not clipped), so a
  model that integrates over frames can average the noise away and a single frame cannot.

Tensors: ``video`` [n, 1, T, 32, 32] float32 (channels, frames, height, width — the Conv3d
layout); ``audio`` [n, 1, 32, 32] log-mel spectrogram (the digits-av front end). Randomness: one
``numpy.random.default_rng([seed, k])`` stream per part (k = 0 directions, 1 start positions,
2 frame noise), so everything is a function of the seed and the knobs.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from kdcore.data.audio import DEFAULT as AUDIO_FRONT_END, add_noise_snr
from kdcore.data.base import ASSETS, ModalityInfo, MultimodalDataset, TensorData, limit_train, stratified_split
from kdcore.data.digits_av import DigitsAV
from kdcore.data.tasks import AUX_TASKS, aux_labels

CANVAS = 32
SPRITE = 16
ROOM = CANVAS - SPRITE  # the sprite's top-left corner lives in [0, ROOM]²

# knob -> (low, high, meaning with "(default X)"); the spec checks the ranges (kdcore.core.spec)
KNOBS: dict[str, tuple[float, float, str]] = {
    "video_frames": (4.0, 16.0, "clip length in frames (default 8)"),
    "video_speed": (0.0, 8.0, "digit speed in pixels per frame; 0 = a still digit (default 2)"),
    "video_direction": (0.0, 360.0, "direction of motion in degrees: 0 right, 90 up, 180 left, 270 down (default 0)"),
    "video_spread": (0.0, 180.0, "each clip's direction = direction ± U(0, spread) degrees; 180 = any (default 180)"),
    "video_sigma": (0.0, 5.0, "std of Gaussian noise, drawn independently for every frame (default 0)"),
    "audio_snr_db": (-30.0, 60.0, "SNR of white noise added to the waveform (dB)"),
    "clips": (200.0, 5000.0, "number of clips, rounded down to the same count per digit (default 2000)"),
}
DEFAULTS = {"video_frames": 8, "video_speed": 2.0, "video_direction": 0.0, "video_spread": 180.0,
            "video_sigma": 0.0, "clips": 2000}


def whole(knob: str, value: float) -> int:
    """An integer knob's value; a fractional one raises ``ValueError`` naming the field."""
    v = float(value)
    if not v.is_integer():
        raise ValueError(f"data.noise.{knob}={value} must be a whole number")
    return int(v)


def sprites(images: np.ndarray) -> torch.Tensor:
    """uint8 MNIST digits [n, 28, 28] → float sprites [n, 16, 16] in [0, 1] (central 20×20 box, area-resized)."""
    box = torch.from_numpy(images[:, 4:24, 4:24].astype(np.float32) / 255.0)
    return F.interpolate(box[:, None], size=(SPRITE, SPRITE), mode="area")[:, 0].clamp(0.0, 1.0)


def reflect(p: np.ndarray, room: float = ROOM) -> np.ndarray:
    """Fold positions into [0, room] by bouncing off both walls."""
    q = np.mod(p, 2 * room) if room > 0 else np.zeros_like(p)
    return room - np.abs(room - q)


def trajectories(n: int, frames: int, speed: float, direction: float, spread: float,
                 seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-left corners ``(x, y)`` of every clip's sprite, int [n, frames] each (see the module docstring)."""
    theta = np.deg2rad(direction + np.random.default_rng([seed, 0]).uniform(-spread, spread, n))
    vx, vy = speed * np.cos(theta), -speed * np.sin(theta)
    rng = np.random.default_rng([seed, 1])
    t = np.arange(frames)
    out = []
    for v in (vx, vy):
        d = v * (frames - 1)  # the whole path's displacement
        fits = np.abs(d) <= ROOM
        lo = np.where(fits, np.maximum(0.0, -d), 0.0)
        hi = np.where(fits, np.minimum(ROOM, ROOM - d), ROOM)
        p0 = lo + rng.uniform(0.0, 1.0, n) * (hi - lo)
        p = p0[:, None] + v[:, None] * t[None, :]
        p = np.where(fits[:, None], np.clip(p, 0, ROOM), reflect(p))
        out.append(np.rint(p).astype(np.int64))
    return out[0], out[1]


def render(sprite: torch.Tensor, x: np.ndarray, y: np.ndarray) -> torch.Tensor:
    """Paste each sprite [n, 16, 16] at its corners (x, y: [n, T]) on a black canvas → [n, 1, T, 32, 32]."""
    n, frames = x.shape
    out = torch.zeros(n, frames, CANVAS, CANVAS)
    ar = torch.arange(SPRITE)
    rows_n = torch.arange(n)[:, None, None]
    for t in range(frames):
        rows = torch.from_numpy(y[:, t])[:, None] + ar[None, :]  # [n, 16]
        cols = torch.from_numpy(x[:, t])[:, None] + ar[None, :]
        out[:, t][rows_n, rows[:, :, None], cols[:, None, :]] = sprite
    return out[:, None]


def centre_of_mass(video: torch.Tensor) -> torch.Tensor:
    """Intensity centre (x, y) of every frame of clips [n, 1, T, H, W] → [n, T, 2] (pixels)."""
    v = video[:, 0].clamp_min(0)
    h, w = v.shape[-2:]
    mass = v.sum((-1, -2)).clamp_min(1e-9)
    cx = (v.sum(-2) * torch.arange(w)).sum(-1) / mass
    cy = (v.sum(-1) * torch.arange(h)).sum(-1) / mass
    return torch.stack([cx, cy], -1)


class MovingDigits(MultimodalDataset):
    name = "moving-digits"
    description = ("Short clips (4–16 frames, 32×32) of real MNIST digits moving with a chosen speed, direction "
                   "and noise + the spoken digit (espeak-ng), paired by label")
    source = ("rendered at load time from the bundled MNIST 5k subset (CC BY-SA 3.0) and the digits-av speech "
              "(synthesised with espeak-ng for this project); no file of its own")
    pairing_note = ("Video and speech are paired by label, not by instance (as digits-av): a clip of a moving "
                    "digit and a spoken clip of the same digit. Test audio comes from voices unseen in training.")
    MODALITIES = {"video": "video", "audio": "spectrogram"}
    NUM_CLASSES = 10
    SHAPE_KNOBS = ("video_frames", "clips")  # change the input shape or the samples: not test-time noise

    @classmethod
    def noise_knobs(cls):
        return dict(KNOBS)

    @classmethod
    def noise_defaults(cls):
        return {**DEFAULTS, "audio_snr_db": 60.0}

    @staticmethod
    def knobs(noise: dict[str, float]) -> dict[str, float]:
        """The motion knobs a spec sets, over the defaults; integer knobs checked (field-naming errors)."""
        k = {**DEFAULTS, **{key: v for key, v in noise.items() if key in DEFAULTS}}
        k["video_frames"] = whole("video_frames", k["video_frames"])
        k["clips"] = whole("clips", k["clips"]) // 10 * 10
        return k

    def load(self, spec) -> TensorData:
        k = self.knobs(spec.noise)
        raw = np.load(ASSETS / "mnist5k.npz", allow_pickle=False)
        per_class = k["clips"] // 10
        pick = np.concatenate([np.flatnonzero(raw["label"] == c)[:per_class] for c in range(10)])
        labels = raw["label"][pick].astype(np.int64)
        split = stratified_split(labels, spec.train_fraction, spec.val_fraction, spec.seed)
        split = limit_train(split, labels, spec.train_limit, spec.seed)
        n = len(labels)
        mods = spec.modalities or self.modality_names()
        inputs, meta, infos = {}, {}, {}
        if "video" in mods:
            x, y = trajectories(n, k["video_frames"], float(k["video_speed"]), float(k["video_direction"]),
                                float(k["video_spread"]), spec.seed)
            clean = render(sprites(raw["image"][pick]), x, y)
            video = clean
            if k["video_sigma"] > 0:
                gen = torch.Generator().manual_seed(int(np.random.default_rng([spec.seed, 2]).integers(2**62)))
                video = clean + float(k["video_sigma"]) * torch.randn(clean.shape, generator=gen)
            inputs["video"] = video
            meta["video_path"] = torch.from_numpy(np.stack([x, y], -1))  # [n, T, 2] sprite corners
            infos["video"] = ModalityInfo("video", "video", tuple(video.shape[1:]),
                                          f"{k['video_frames']} frames of {CANVAS}×{CANVAS}: a moving MNIST digit")
        if "audio" in mods:
            av = np.load(ASSETS / "digits_av.npz", allow_pickle=False)
            which = np.full(n, "train", dtype=object)
            for part, idx in split.items():
                which[idx.numpy()] = part
            clips, clip_idx = DigitsAV._pair_audio(av, labels, which, spec.seed, np.random.default_rng([spec.seed, 3]))
            sr = int(av["sample_rate"])
            fe = AUDIO_FRONT_END
            wave = fe.prepare(clips.astype(np.float32) / 32767.0, sr)[torch.from_numpy(clip_idx)]
            if "audio_snr_db" in spec.noise:
                wave = add_noise_snr(wave, float(spec.noise["audio_snr_db"]),
                                     torch.Generator().manual_seed(spec.seed + 4))
            spec_ = fe.spectrogram(wave, fe.f_max_for([sr]))
            tr = split["train"]
            mu, sd = spec_[tr].mean(), spec_[tr].std().clamp_min(1e-6)
            inputs["audio"] = (spec_ - mu) / sd
            meta.update(audio_clip=torch.from_numpy(clip_idx), audio_sample_rate=sr, audio_waves=clips)
            infos["audio"] = ModalityInfo("audio", "spectrogram", tuple(spec_.shape[1:]),
                                          f"log-mel spectrogram of a spoken digit ({fe.describe()})")
        yt = torch.from_numpy(labels)
        return TensorData(
            name=self.name, modalities=infos, inputs=inputs, labels=yt, num_classes=10,
            class_names=[str(i) for i in range(10)], split_index=split,
            aux={t: aux_labels(t, yt) for t in spec.aux_tasks},
            aux_classes={t: AUX_TASKS[t][0] for t in spec.aux_tasks}, meta=meta, pairing_note=self.pairing_note,
        )
