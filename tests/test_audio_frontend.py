"""The audio front end (kdcore/data/audio.py): trimming, fixed duration, resampling, level
normalisation, STFT hop and mel range; and its use by custom CSV data with mixed rates and lengths."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from kdcore.data.audio import (DEFAULT, FrontEnd, denoise, fix_length, log_mel, mel_filterbank, normalise_level, resample,
                               trim_silence)


def tone(freq: float, rate: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(rate * seconds))) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_freq(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[spec.argmax()])


def test_trimming_removes_leading_and_trailing_silence():
    rate = 8000
    word = tone(440, rate, 0.3)
    x = np.concatenate([np.zeros(4000, np.float32), word, np.zeros(6000, np.float32)])
    y = trim_silence(x, rate, top_db=40, margin_s=0.02)
    assert abs(len(y) - len(word)) <= 2 * 160 + 80  # the word plus ≤ 20 ms margin each side (+ frame rounding)
    assert len(y) >= len(word)
    assert np.abs(y).max() == pytest.approx(0.5, abs=1e-3)


def test_trimming_ignores_a_steady_noise_floor():
    rate, rng = 8000, np.random.default_rng(0)
    word = tone(300, rate, 0.25)
    x = np.concatenate([np.zeros(8000, np.float32), word, np.zeros(8000, np.float32)])
    x = x + 0.01 * rng.standard_normal(len(x)).astype(np.float32)  # ~ -40 dB re the tone, above a 40 dB cut alone
    y = trim_silence(x, rate)
    assert len(y) < len(word) + 0.1 * rate


def test_trimming_keeps_silent_and_loud_clips():
    assert len(trim_silence(np.zeros(8000, np.float32), 8000)) == 8000
    x = tone(500, 8000, 1.0)
    assert len(trim_silence(x, 8000)) == 8000


def test_fixed_duration_centre_crops_and_pads():
    x = np.arange(10, dtype=np.float32) + 1
    assert fix_length(x, 4).tolist() == [4, 5, 6, 7]
    y = fix_length(x, 14)
    assert len(y) == 14 and y[:2].tolist() == [0, 0] and y[-2:].tolist() == [0, 0] and y[2:12].tolist() == x.tolist()


def test_every_clip_has_the_front_ends_duration_never_the_longest():
    fe = FrontEnd(duration=1.0, trim_db=None)
    clips = [tone(400, 8000, 0.2), tone(400, 8000, 2.5)]
    w = fe.prepare(clips, 8000)
    assert w.shape == (2, 8000)
    # the short clip is not drowned in padding sized by the long one: it fills 0.2 s of the 1 s window
    nz = torch.nonzero(w[0].abs() > 1e-6).flatten()
    assert (nz[-1] - nz[0]).item() == pytest.approx(1600, abs=12) and nz[0].item() == pytest.approx(3200, abs=12)


@pytest.mark.parametrize("src,dst", [(16000, 8000), (22050, 8000), (8000, 16000), (44100, 22050)])
def test_resampling_keeps_a_tones_frequency(src, dst):
    x = tone(700, src, 0.5)
    y = resample(x, src, dst)
    assert len(y) == pytest.approx(len(x) * dst / src, abs=2)
    assert peak_freq(y, dst) == pytest.approx(700, abs=dst / len(y) * 1.5)


def test_hop_at_most_half_the_window():
    assert DEFAULT.hop <= DEFAULT.n_fft // 2
    with pytest.raises(ValueError, match="hop"):
        FrontEnd(n_fft=256, hop=200)
    with pytest.raises(ValueError, match="hop"):
        log_mel(torch.zeros(1, 8000), 8000, n_fft=256, hop=129)


def test_every_sample_enters_a_window():
    """An impulse anywhere in the clip shows up in the spectrogram (no sample falls between windows)."""
    fe = DEFAULT
    for pos in range(0, fe.n_samples, 97):
        w = torch.zeros(1, fe.n_samples)
        w[0, pos] = 1.0
        s = fe.spectrogram(w)
        assert (s.amax() - s.amin()).item() > 1.0, pos


def test_default_shape_is_what_the_models_expect():
    assert DEFAULT.shape == (1, 32, 32)
    out = DEFAULT([tone(300, 8000, 0.6), tone(900, 16000, 1.4)], [8000, 16000])
    assert out.shape == (2, 1, 32, 32) and torch.isfinite(out).all()


def test_filterbank_stays_below_nyquist():
    fb = mel_filterbank(32, 512, 8000)
    freqs = torch.linspace(0, 4000, 257)
    assert freqs[fb.sum(0) > 0].max() <= 4000
    fb = mel_filterbank(32, 512, 16000, f_max=4000)  # an 8 kHz clip resampled to 16 kHz: nothing above 4 kHz
    freqs = torch.linspace(0, 8000, 257)
    assert freqs[fb.sum(0) > 0].max() <= 4000
    assert mel_filterbank(32, 512, 8000, f_max=1e6).shape == (32, 257)  # capped at the Nyquist frequency
    assert (mel_filterbank(32, 512, 8000).sum(1) > 0).all()  # no empty band


def test_mel_top_is_the_lowest_clip_rates_nyquist():
    fe = FrontEnd(sample_rate=16000)
    assert fe.f_max_for([8000, 16000, 22050]) == 4000
    assert fe.f_max_for([22050]) == 8000
    assert FrontEnd(sample_rate=16000, f_max=3000).f_max_for([22050]) == 3000


@pytest.mark.parametrize("mode", ["rms", "peak"])
def test_level_normalisation(mode):
    quiet, loud = tone(300, 8000, 0.5, amp=0.01), tone(300, 8000, 0.5, amp=0.9)
    a, b = normalise_level(quiet, mode, 0.1), normalise_level(loud, mode, 0.1)
    ref = (lambda x: np.sqrt(np.mean(x ** 2))) if mode == "rms" else (lambda x: np.abs(x).max())
    assert ref(a) == pytest.approx(0.1, rel=1e-4) and ref(b) == pytest.approx(0.1, rel=1e-4)
    assert normalise_level(np.zeros(10, np.float32), mode).tolist() == [0.0] * 10
    fe = FrontEnd(normalise=mode)
    sa, sb = fe([quiet], 8000), fe([loud], 8000)
    assert torch.allclose(sa, sb, atol=1e-3)  # the spectrogram does not depend on the recording level


def test_front_end_is_invariant_to_leading_silence():
    fe = DEFAULT
    word = tone(500, 8000, 0.3) * np.hanning(2400).astype(np.float32)
    padded = np.concatenate([np.zeros(5000, np.float32), word, np.zeros(1000, np.float32)])
    a, b = fe([word], 8000), fe([padded], 8000)
    assert (a - b).abs().mean().item() < 0.2 * (a.std().item())


def write_wav(path: Path, x: np.ndarray, rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())


def test_custom_manifest_with_mixed_rates_and_lengths(tmp_path):
    from kdcore.data.custom import import_source

    rng = np.random.default_rng(0)
    lines = ["label,audio"]
    rates = [8000, 16000, 22050]
    for k, (c, f) in enumerate([("low", 300), ("high", 1200)]):
        for i in range(6):
            rate, secs = rates[i % 3], [0.3, 0.9, 2.0][i // 2]
            x = np.concatenate([np.zeros(int(rate * rng.uniform(0, 0.5)), np.float32), tone(f, rate, secs)])
            write_wav(tmp_path / f"{c}{i}.wav", x, rate)
            lines.append(f"{c},{c}{i}.wav")
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    imp = import_source(tmp_path / "d.csv")
    assert imp.report.kept == 12 and not imp.report.dropped
    x = imp.inputs["audio"]
    assert x.shape == (12, 1, 32, 32) and imp.infos["audio"].shape == (1, 32, 32)
    assert imp.meta["audio_sample_rate"] == 8000 and imp.meta["audio_source_rates"] == {8000: 4, 16000: 4, 22050: 4}
    # the two tones are told apart whatever the rate, length or leading silence: band energy ranks them
    low, high = x[:6, 0].mean(dim=(0, 2)), x[6:, 0].mean(dim=(0, 2))
    assert low[:12].mean() > high[:12].mean() and high[16:].mean() > low[16:].mean()


def test_denoise_lowers_a_stationary_noise_floor_and_spares_clean_clips():
    rate, rng = 8000, np.random.default_rng(1)
    word = tone(400, rate, 0.4)
    clean = np.concatenate([np.zeros(4000, np.float32), word, np.zeros(4000, np.float32)])
    noisy = clean + 0.02 * rng.standard_normal(len(clean)).astype(np.float32)
    out = denoise(noisy)
    quiet = slice(0, 3000)
    assert np.sqrt(np.mean(out[quiet] ** 2)) < 0.5 * np.sqrt(np.mean(noisy[quiet] ** 2))
    assert np.sqrt(np.mean(out[4000:7200] ** 2)) == pytest.approx(np.sqrt(np.mean(word ** 2)), rel=0.1)
    assert np.array_equal(denoise(clean), clean)  # digital silence: nothing to subtract
    loud = tone(400, rate, 1.0)
    assert np.array_equal(denoise(loud), loud)  # no quiet part to learn the noise from


def chirp_word(rate: int, seconds: float = 0.35, amp: float = 0.5) -> np.ndarray:
    """A Hann-windowed 300 → 1200 Hz chirp: a 'word' whose features change along it (position matters)."""
    t = np.arange(int(round(rate * seconds))) / rate
    f = 300 + 900 * t / seconds
    return (amp * np.sin(2 * np.pi * np.cumsum(f) / rate) * np.hanning(len(t))).astype(np.float32)


def with_silence(word: np.ndarray, rate: int, lead: float, tail: float) -> np.ndarray:
    return np.concatenate([np.zeros(int(round(lead * rate)), np.float32), word,
                           np.zeros(int(round(tail * rate)), np.float32)])


def test_precise_trimming_follows_the_word_by_the_sample_and_pads_a_tight_end():
    """``precise=True``: the kept part follows the word sample by sample (not a 10 ms grid from the clip's
    start); ``pad=True``: a word that starts right at the clip's start still gets its margin in front."""
    rate, word = 8000, chirp_word(8000)
    ref = trim_silence(with_silence(word, rate, 0.2, 0.2), rate, precise=True, pad=True)
    for lead in (0.2 + 1 / rate, 0.2 + 37 / rate, 0.2 + 79 / rate, 0.55, 0.02):
        got = trim_silence(with_silence(word, rate, lead, 0.3), rate, precise=True, pad=True)
        assert np.array_equal(got, ref), lead
    # on the default 10 ms grid the kept part depends on where the grid falls (by up to a frame)
    onsets = {int(np.flatnonzero(trim_silence(with_silence(word, rate, 0.2 + k / rate, 0.3), rate))[0])
              for k in (0, 37, 79)}
    assert len(onsets) > 1
    assert len({int(np.flatnonzero(trim_silence(with_silence(word, rate, 0.2 + k / rate, 0.3), rate,
                                                precise=True))[0]) for k in (0, 37, 79)}) == 1
    tight = np.concatenate([word[len(word) // 2:], np.zeros(2000, np.float32)])  # loud from sample 0
    assert trim_silence(tight, rate, precise=True)[0] != 0  # pad=False: nothing in front of sample 0
    padded = trim_silence(tight, rate, precise=True, pad=True)
    margin = int(0.02 * rate)
    assert np.all(padded[:margin] == 0) and np.array_equal(padded[margin:margin + 100], tight[:100])


@pytest.mark.parametrize("rate", [8000, 16000, 22050])
@pytest.mark.parametrize("precise", [False, True])
def test_front_end_features_do_not_depend_on_silence_rate_or_level(rate, precise):
    """The same word with different leading / trailing silence (so different clip lengths, cut tight at
    one end or not), stored at 8, 16 or 22.05 kHz, at different levels: the same log-mel features —
    exactly with ``trim_precise`` (up to resampling), within a few % of their spread on the default grid
    (the word moves by up to a 10 ms frame, and by half the margin when it touches an end)."""
    fe = FrontEnd(trim_precise=precise)
    ref = fe([with_silence(chirp_word(8000), 8000, 0.25, 0.25)], 8000)
    for lead, tail, gain in [(0.0, 0.3, 1.0), (0.2, 0.9, 0.05), (0.013, 0.51, 0.3), (1.3, 0.0, 1.0), (0.7371, 0.1, 0.01)]:
        x = with_silence(chirp_word(rate), rate, lead, tail) * np.float32(gain)
        diff = (fe([x], rate) - ref).abs()
        if not precise:
            assert diff.mean().item() < 0.1 * ref.std().item(), (lead, tail, gain)
        elif rate == 8000:
            assert diff.max().item() < 1e-3, (lead, tail, gain, diff.max().item())
        else:  # resampling changes the samples a little, not the features
            assert diff.mean().item() < 0.01 * ref.std().item() and diff.max().item() < 0.1, (lead, tail, gain)


def test_precise_trimming_is_off_by_default():
    """The default front end keeps the 10 ms grid (the bundled models and measured results use it)."""
    assert DEFAULT.trim_precise is False and FrontEnd(trim_precise=True).shape == DEFAULT.shape
