"""Waveform -> log-mel spectrogram, with white noise at a chosen SNR (pure torch, no torchaudio)."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def hz_to_mel(f: Tensor | float) -> Tensor:
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(f, dtype=torch.float32) / 700.0)


def mel_to_hz(m: Tensor) -> Tensor:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int) -> Tensor:
    """Triangular mel filters (HTK mel scale), shape [n_mels, n_fft // 2 + 1]."""
    n_freqs = n_fft // 2 + 1
    freqs = torch.linspace(0, sample_rate / 2, n_freqs)
    mels = torch.linspace(float(hz_to_mel(0.0)), float(hz_to_mel(sample_rate / 2)), n_mels + 2)
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


def log_mel(wave: Tensor, sample_rate: int, n_mels: int = 32, n_fft: int = 256, frames: int = 32) -> Tensor:
    """[N, T] float waveforms -> [N, 1, n_mels, frames] log-mel spectrograms."""
    hop = max(1, math.ceil(wave.shape[1] / frames))
    spec = torch.stft(wave, n_fft=n_fft, hop_length=hop, window=torch.hann_window(n_fft),
                      return_complex=True, center=True)
    power = spec.abs().pow(2)  # [N, F, frames']
    mel = torch.einsum("mf,nft->nmt", mel_filterbank(n_mels, n_fft, sample_rate), power)
    out = torch.log(mel + 1e-6)[:, :, :frames]
    if out.shape[2] < frames:
        out = torch.nn.functional.pad(out, (0, frames - out.shape[2]), value=math.log(1e-6))
    return out.unsqueeze(1)
