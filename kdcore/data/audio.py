"""The audio front end: clips of any length and sample rate → fixed-size log-mel spectrograms
(pure torch + scipy, no torchaudio), and white noise at a chosen SNR.

For every clip, in this order (:meth:`FrontEnd.prepare`):

1. **resample** to one target rate (``FrontEnd.sample_rate``, default 8 kHz) with
   ``scipy.signal.resample_poly`` when the clip's rate differs;
2. **denoise** (``denoise=True``): spectral subtraction of a stationary noise floor, whose spectrum is
   learnt from the clip's quietest STFT frames (skipped when the clip has no quiet part);
3. **trim silence**: the clip is cut into 10 ms frames; frames below a threshold are dropped from both
   ends (a short margin is kept). The threshold is ``trim_db`` below the loudest frame (relative to the
   clip's peak), raised to ``trim_noise_db`` above the clip's noise floor (5th percentile of frame energies)
   so that a steady background hiss does not count as speech. With ``trim_precise=True`` a frame starts
   at every sample (not on a grid from the clip's start) and, where the margin runs past an end of the
   clip, zeros make it up: the loud part, with its margin on both sides, is then centred in step 5
   exactly, wherever it sat in the recording;
4. **normalise the level** of each clip (``"rms"`` to ``level`` RMS, ``"peak"`` to ``level`` peak, or
   ``"none"``);
5. **fixed duration**: centre-crop or centre zero-pad to ``duration`` seconds (default 1.0 s) — each clip on
   its own, never padded to the longest clip.

Then :meth:`FrontEnd.spectrogram`: an STFT with a Hann window of ``n_fft`` samples and hop ``hop`` ≤ n_fft/2
(so every sample enters at least one window — at hop = n_fft/2 the Hann windows sum to a constant, every
sample has the same weight), ``n_mels`` triangular HTK-mel bands from ``f_min`` up to at most the
Nyquist frequency of the lowest *original* rate among the clips (an 8 kHz clip resampled to 16 kHz has
nothing above 4 kHz, so no band may reach there), log power floored ``top_db`` (default 50) dB below each clip's maximum, so that clean and
slightly noisy clips share one floor.

Defaults: 8 kHz, 1.0 s, n_fft 512 (64 ms), hop 256 (32 ms), 32 mel bands → ``1 + 8000 // 256 = 32`` frames,
i.e. the [1, 32, 32] spectrogram the models have always received. The frame count follows from
``duration`` and ``hop`` (:attr:`FrontEnd.frames`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import Tensor

NORMALISE = ("rms", "peak", "none")


def hz_to_mel(f: Tensor | float) -> Tensor:
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(f, dtype=torch.float32) / 700.0)


def mel_to_hz(m: Tensor) -> Tensor:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int, f_min: float = 0.0,
                   f_max: float | None = None) -> Tensor:
    """Triangular mel filters (HTK mel scale), shape [n_mels, n_fft // 2 + 1], spanning f_min..f_max
    (``f_max`` defaults to, and is capped at, the Nyquist frequency ``sample_rate / 2``)."""
    nyquist = sample_rate / 2
    f_max = nyquist if f_max is None else min(float(f_max), nyquist)
    if not 0 <= f_min < f_max:
        raise ValueError(f"mel filterbank: need 0 ≤ f_min < f_max, got f_min={f_min}, f_max={f_max}")
    n_freqs = n_fft // 2 + 1
    freqs = torch.linspace(0, nyquist, n_freqs)
    mels = torch.linspace(float(hz_to_mel(f_min)), float(hz_to_mel(f_max)), n_mels + 2)
    hz = mel_to_hz(mels)
    lower, center, upper = hz[:-2, None], hz[1:-1, None], hz[2:, None]
    up = (freqs[None] - lower) / (center - lower)
    down = (upper - freqs[None]) / (upper - center)
    return torch.clamp(torch.minimum(up, down), min=0.0)


def add_noise_snr(wave: Tensor, snr_db: float, generator: torch.Generator) -> Tensor:
    """Add white noise so that 10·log10(P_signal / P_noise) = ``snr_db`` per clip. wave: [N, T]."""
    power = wave.pow(2).mean(dim=1, keepdim=True).clamp_min(1e-12)
    noise_power = power / (10.0 ** (snr_db / 10.0))
    noise = torch.randn(wave.shape, generator=generator) * noise_power.sqrt()
    return wave + noise


# ---- per-clip steps (numpy, 1-D float waveforms) ----------------------------------------------------
def resample(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    """``x`` at ``rate`` Hz → ``target`` Hz (polyphase, anti-aliased)."""
    rate, target = int(rate), int(target)
    if rate == target:
        return np.asarray(x, dtype=np.float32)
    from scipy.signal import resample_poly

    g = math.gcd(rate, target)
    return resample_poly(np.asarray(x, dtype=np.float64), target // g, rate // g).astype(np.float32)


def denoise(x: np.ndarray, n_fft: int = 512, hop: int = 256, quantile: float = 0.1, over: float = 2.0,
            floor: float = 0.1, min_gap_db: float = 10.0) -> np.ndarray:
    """Spectral subtraction of a stationary noise floor: the noise power spectrum is the mean over the
    quietest ``quantile`` of STFT frames; each bin's power is reduced by ``over`` × that (amplitude kept
    ≥ ``floor`` × the original). Skipped when the quietest frames are not at least ``min_gap_db`` below
    the loud ones (90th percentile) (no silence to learn the noise from), and on digitally silent noise floors."""
    x = np.asarray(x, dtype=np.float32)
    if len(x) < 2 * n_fft:
        return x
    w = torch.from_numpy(x)
    window = torch.hann_window(n_fft)
    spec = torch.stft(w, n_fft=n_fft, hop_length=hop, window=window, return_complex=True, center=True,
                      pad_mode="constant")
    power = spec.abs().pow(2)  # [F, T]
    energy = power.sum(0)
    k = max(1, int(round(quantile * energy.numel())))
    quiet = torch.argsort(energy)[:k]
    noise_e, loud_e = float(energy[quiet].mean()), float(torch.quantile(energy, 0.9))
    if noise_e <= 1e-12 * max(loud_e, 1e-30) or 10 * math.log10(loud_e / max(noise_e, 1e-30)) < min_gap_db:
        return x
    noise = power[:, quiet].mean(1, keepdim=True)
    gain = torch.clamp(1.0 - over * noise / power.clamp_min(1e-20), min=floor ** 2).sqrt()
    out = torch.istft(spec * gain, n_fft=n_fft, hop_length=hop, window=window, center=True, length=len(x))
    return out.numpy().astype(np.float32)


def trim_silence(x: np.ndarray, rate: int, top_db: float = 40.0, noise_db: float = 6.0, frame_s: float = 0.01,
                 margin_s: float = 0.02, precise: bool = False, pad: bool = False) -> np.ndarray:
    """Drop leading and trailing frames (``frame_s`` long) whose energy is below
    ``max(peak − top_db, floor + noise_db)`` dB, keeping ``margin_s`` either side of the kept part.
    ``peak`` is the loudest frame, ``floor`` the 5th percentile of frame energies. A silent or
    very short clip is returned unchanged.

    ``precise=True``: a frame starts at every sample instead of on a fixed 10 ms grid from the clip's
    start, so the kept part follows the word sample by sample whatever silence precedes it (on the
    grid it moves by up to a frame). ``pad=True``: where the margin runs past an end of the clip (the
    word starts or stops right at the edge), zeros make it up, so the result is the loud part with
    ``margin_s`` on *both* sides — a word cut tight at one end then lands in the same place of a
    centred fixed window as the same word recorded with silence around it."""
    x = np.asarray(x, dtype=np.float32)
    n = max(1, int(round(rate * frame_s)))
    k = int(math.ceil(len(x) / n))
    if k < 3:
        return x
    if precise:  # the energy of the frame starting at every sample
        c = np.concatenate([[0.0], np.cumsum(np.square(x, dtype=np.float64))])
        energy = np.maximum(c[n:] - c[:-n], 0.0) / n
    else:
        padded = np.zeros(k * n, dtype=np.float64)
        padded[: len(x)] = x
        energy = (padded.reshape(k, n) ** 2).mean(axis=1)
        energy[-1] *= n / (len(x) - (k - 1) * n)  # the last frame may be partial
    db = 10.0 * np.log10(energy + 1e-20)
    peak = float(db.max())
    if peak < -150.0:  # digital silence
        return x
    floor = float(np.percentile(db, 5))
    threshold = peak - top_db
    if floor + noise_db < peak - 3.0:  # a noise floor clearly below the loudest part
        threshold = max(threshold, floor + noise_db)
    active = np.flatnonzero(db >= threshold)
    first, last = int(active[0]), int(active[-1])
    if precise:
        # the first loud frame's loud part is at its end (the frame before it is quiet), the last one's
        # at its start: the word spans [first + n − 1, last + 1) — from the clip's edge when the word is
        # loud there already, the whole of both frames for a click shorter than a frame
        lo = 0 if first == 0 else first + n - 1
        hi = len(x) if last == len(energy) - 1 else last + 1
        if hi <= lo:
            lo, hi = first, last + n
    else:
        lo, hi = first * n, min(len(x), (last + 1) * n)
    margin = int(round(rate * margin_s))
    start, end = lo - margin, hi + margin
    if not pad:
        return x[max(0, start):min(len(x), end)]
    out = np.zeros(end - start, dtype=np.float32)
    lo, hi = max(0, start), min(len(x), end)
    out[lo - start:hi - start] = x[lo:hi]
    return out


def normalise_level(x: np.ndarray, mode: str = "rms", level: float = 0.1) -> np.ndarray:
    """Scale a clip to RMS ``level`` (``mode="rms"``) or peak ``level`` (``"peak"``); ``"none"``: as is."""
    if mode == "none":
        return x
    ref = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if mode == "rms" else float(np.abs(x).max(initial=0))
    if ref <= 1e-8:
        return x
    return (x * (level / ref)).astype(np.float32)


def fix_length(x: np.ndarray, n: int) -> np.ndarray:
    """Centre-crop a longer clip, or zero-pad a shorter one on both sides (centred), to ``n`` samples."""
    if len(x) >= n:
        start = (len(x) - n) // 2
        return np.asarray(x[start:start + n], dtype=np.float32)
    out = np.zeros(n, dtype=np.float32)
    start = (n - len(x)) // 2
    out[start:start + len(x)] = x
    return out


def log_mel(wave: Tensor, sample_rate: int, n_mels: int = 32, n_fft: int = 512, hop: int = 256,
            f_min: float = 0.0, f_max: float | None = None, top_db: float = 80.0) -> Tensor:
    """[N, T] float waveforms → [N, 1, n_mels, 1 + T // hop] log-mel spectrograms (natural log of power),
    each clip floored at ``top_db`` dB below its own maximum. Requires hop ≤ n_fft / 2."""
    if hop < 1 or hop > n_fft // 2:
        raise ValueError(f"hop {hop} must be between 1 and n_fft/2 = {n_fft // 2}, so that every sample enters a window")
    spec = torch.stft(wave, n_fft=n_fft, hop_length=hop, window=torch.hann_window(n_fft),
                      return_complex=True, center=True, pad_mode="constant")
    power = spec.abs().pow(2)  # [N, F, frames]
    mel = torch.einsum("mf,nft->nmt", mel_filterbank(n_mels, n_fft, sample_rate, f_min, f_max), power)
    out = torch.log(mel.clamp_min(1e-10))
    floor = out.amax(dim=(1, 2), keepdim=True) - top_db * math.log(10.0) / 10.0
    return torch.maximum(out, floor).unsqueeze(1)


@dataclass(frozen=True)
class FrontEnd:
    """Parameters of the audio front end (see the module docstring for what each step does)."""

    sample_rate: int = 8000  # target rate (Hz); clips at other rates are resampled
    duration: float = 1.0  # seconds per clip after trimming: centre-crop or zero-pad
    denoise: bool = True  # spectral subtraction of a stationary noise floor (before trimming)
    trim_db: float | None = 40.0  # silence threshold below the clip's loudest 10 ms frame; None: no trimming
    trim_noise_db: float = 6.0  # ...raised to this far above the clip's noise floor
    trim_margin: float = 0.02  # seconds kept before the first / after the last loud frame
    # sample-precise trimming, the margin zero-padded where the word touches an end (trim_silence's
    # precise / pad): features exactly invariant to the silence around a word. Off by default: the
    # bundled models and measured results use the 10 ms grid, and on the espeak check it made no
    # difference beyond seed noise (README, audio front end)
    trim_precise: bool = False
    normalise: str = "rms"  # rms | peak | none (per clip)
    level: float = 0.1  # target RMS (or peak)
    n_fft: int = 512
    hop: int = 256  # ≤ n_fft / 2
    n_mels: int = 32
    f_min: float = 0.0
    f_max: float | None = None  # default: the Nyquist frequency of the lowest original rate
    top_db: float = 50.0  # log-power floor below each spectrogram's maximum

    def __post_init__(self):
        if self.sample_rate <= 0 or self.duration <= 0:
            raise ValueError("audio front end: sample_rate and duration must be positive")
        if not 1 <= self.hop <= self.n_fft // 2:
            raise ValueError(f"audio front end: hop {self.hop} must be between 1 and n_fft/2 = {self.n_fft // 2}")
        if self.normalise not in NORMALISE:
            raise ValueError(f"audio front end: normalise must be one of {', '.join(NORMALISE)}")
        if self.n_samples < self.n_fft // 2:
            raise ValueError("audio front end: duration is shorter than half an FFT window")

    @property
    def n_samples(self) -> int:
        return int(round(self.duration * self.sample_rate))

    @property
    def frames(self) -> int:
        return 1 + self.n_samples // self.hop

    @property
    def shape(self) -> tuple[int, int, int]:
        """The per-sample spectrogram shape [1, n_mels, frames]."""
        return (1, self.n_mels, self.frames)

    def f_max_for(self, rates: Iterable[int]) -> float:
        """Top of the mel bands for clips recorded at ``rates``: within every clip's Nyquist frequency."""
        top = min([self.sample_rate, *(int(r) for r in rates)]) / 2
        return top if self.f_max is None else min(float(self.f_max), top)

    def prepare_one(self, x: np.ndarray, rate: int) -> np.ndarray:
        """One clip: resample → denoise → trim silence → normalise level → fixed duration."""
        x = resample(x, rate, self.sample_rate)
        if self.denoise:
            x = denoise(x, self.n_fft, self.hop)
        if self.trim_db is not None:
            x = trim_silence(x, self.sample_rate, self.trim_db, self.trim_noise_db, margin_s=self.trim_margin,
                             precise=self.trim_precise, pad=self.trim_precise)
        x = normalise_level(x, self.normalise, self.level)
        return fix_length(x, self.n_samples)

    def prepare(self, clips: Sequence[np.ndarray], rates: Sequence[int] | int) -> Tensor:
        """Clips (each at its rate) → [N, n_samples] float32 waveforms at ``sample_rate``."""
        rates = [int(rates)] * len(clips) if isinstance(rates, (int, np.integer)) else list(rates)
        out = np.zeros((len(clips), self.n_samples), dtype=np.float32)
        for i, (x, r) in enumerate(zip(clips, rates)):
            out[i] = self.prepare_one(x, r)
        return torch.from_numpy(out)

    def spectrogram(self, wave: Tensor, f_max: float | None = None) -> Tensor:
        """[N, n_samples] prepared waveforms → [N, 1, n_mels, frames] log-mel."""
        return log_mel(wave, self.sample_rate, self.n_mels, self.n_fft, self.hop, self.f_min,
                       self.f_max_for([]) if f_max is None else f_max, self.top_db)

    def __call__(self, clips: Sequence[np.ndarray], rates: Sequence[int] | int) -> Tensor:
        """Clips → [N, 1, n_mels, frames]; the mel bands stop at the lowest clip rate's Nyquist frequency."""
        rs = [int(rates)] if isinstance(rates, (int, np.integer)) else list(rates)
        return self.spectrogram(self.prepare(clips, rates), self.f_max_for(rs))

    def describe(self) -> str:
        trim = f"silence trimmed at −{self.trim_db:g} dB re peak" if self.trim_db is not None else "no trimming"
        return (f"{self.sample_rate / 1000:g} kHz, {trim}, {self.normalise} level, {self.duration:g} s crop/pad, "
                f"n_fft {self.n_fft}, hop {self.hop}, {self.n_mels} mel bands × {self.frames} frames")


DEFAULT = FrontEnd()
