"""Is the audio front end robust to silence, length, rate and noise? Spoken digits from espeak-ng, twice.

    .venv/bin/python scripts/audio_robustness.py            # ~5 min on 2 CPU cores
    .venv/bin/python scripts/audio_robustness.py --seeds 1 --reps 2   # quicker, noisier

Synthesises "zero" … "nine" with several espeak-ng voices (English accents × voice variants, each
utterance with its own pitch), and writes two CSV-manifest datasets of the *same* utterances in a
temporary folder:

* **uniform** — 160 wpm, 8 kHz, trimmed tight and cut / padded to exactly 1.0 s, no noise;
* **varied** — speed 110–220 wpm, 0–1 s of random leading and 0–1 s of trailing silence (so clips last
  ≈ 0.3–2.6 s), stored at 8, 16 or 22.05 kHz, a random gain (−26…0 dB) and white noise at 20–40 dB SNR.

Then trains an audio-only teacher (and, as the engine always does, audio-only students) on each with
the engine's CLI (``python -m kdcore run --config … --set data.seed=…``: ``data.dataset=custom``,
``data.path=<csv>``, teacher and student modalities ``[audio]``, 10 teacher epochs) for each seed,
and prints the teacher's test accuracy on both, per seed and averaged. The target (issue 10): the
varied clips' accuracy at most 2 points below the uniform clips'.

Needs espeak-ng (installed with apt-get when missing and running as root).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kdcore.data.audio import fix_length, resample, trim_silence  # noqa: E402

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
BASES = ["en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029"]
VARIANTS = ["m1", "m2", "m3", "m4", "m5", "f1", "f2", "f3", "f4", "klatt", "croak", "whisper"]
ESPEAK_RATE = 22050
RATES = [8000, 16000, 22050]


def ensure_espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe:
        return exe
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("espeak-ng missing: installing it with apt-get …", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "espeak-ng"], check=True, env=env, stdout=subprocess.DEVNULL)
        exe = shutil.which("espeak-ng")
    if not exe:
        sys.exit("this script needs espeak-ng: apt-get install -y espeak-ng (as root)")
    return exe


def speak(exe: str, word: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    """espeak-ng's 22.05 kHz output as float32 in [-1, 1]."""
    raw = subprocess.run([exe, "--stdout", "-v", voice, "-s", str(speed), "-p", str(pitch), word],
                         check=True, capture_output=True).stdout
    with wave.open(__import__("io").BytesIO(raw)) as w:
        assert w.getframerate() == ESPEAK_RATE and w.getsampwidth() == 2
        frames = w.readframes(w.getnframes())
    return np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0


def write_wav(path: Path, x: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(x, -1.0, 1.0) * 32767).astype("<i2").tobytes())


def build(out: Path, exe: str, n_speakers: int, reps: int, seed: int = 0) -> tuple[Path, Path, dict]:
    """Both manifests of the same utterances; returns their paths and a few statistics."""
    rng = np.random.default_rng(seed)
    speakers = [f"{b}+{v}" for v in VARIANTS for b in BASES][:n_speakers]
    jobs = []
    for s, voice in enumerate(speakers):
        for r in range(reps):
            for d, word in enumerate(WORDS):
                jobs.append(dict(voice=voice, speaker=s, rep=r, digit=d, word=word, pitch=int(rng.integers(25, 76)),
                                 speed=int(rng.integers(110, 221)), lead=float(rng.uniform(0, 1.0)),
                                 tail=float(rng.uniform(0, 1.0)), rate=int(rng.choice(RATES)),
                                 gain_db=float(rng.uniform(-26, 0)), snr_db=float(rng.uniform(20, 40)),
                                 noise_seed=int(rng.integers(1 << 31))))
    for name in ("uniform", "varied"):
        (out / name).mkdir(parents=True, exist_ok=True)

    def make(j):
        fname = f"s{j['speaker']:02d}_r{j['rep']}_{j['digit']}.wav"
        # uniform: fixed speed, 8 kHz, tight trim, exactly 1.0 s, no noise
        x = speak(exe, j["word"], j["voice"], 160, j["pitch"])
        x = resample(x, ESPEAK_RATE, 8000)
        x = trim_silence(x, 8000, top_db=40, noise_db=100, margin_s=0.01)
        x = 0.9 * x / max(1e-6, float(np.abs(x).max()))
        u = np.zeros(8000, np.float32)
        u[:min(8000, len(x))] = x[:8000]
        write_wav(out / "uniform" / fname, u, 8000)
        # varied: random speed, silence, rate, gain and noise
        y = speak(exe, j["word"], j["voice"], j["speed"], j["pitch"])
        y = trim_silence(y, ESPEAK_RATE, top_db=40, noise_db=100, margin_s=0.01)
        rate = j["rate"]
        y = resample(y, ESPEAK_RATE, rate)
        y = 0.9 * y / max(1e-6, float(np.abs(y).max())) * 10 ** (j["gain_db"] / 20)
        p_speech = float(np.mean(y ** 2))
        y = np.concatenate([np.zeros(int(j["lead"] * rate), np.float32), y, np.zeros(int(j["tail"] * rate), np.float32)])
        nrng = np.random.default_rng(j["noise_seed"])
        y = y + nrng.standard_normal(len(y)).astype(np.float32) * np.sqrt(p_speech / 10 ** (j["snr_db"] / 10))
        write_wav(out / "varied" / fname, y, rate)
        return fname, len(y) / rate

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        made = list(pool.map(make, jobs))
    for name in ("uniform", "varied"):
        lines = ["label,audio"] + [f"{WORDS[j['digit']]},{fname}" for j, (fname, _) in zip(jobs, made)]
        (out / name / "data.csv").write_text("\n".join(lines) + "\n")
    secs = np.array([s for _, s in made])
    stats = {"clips": len(jobs), "speakers": len(speakers), "varied_seconds": (float(secs.min()), float(secs.max()))}
    return out / "uniform" / "data.csv", out / "varied" / "data.csv", stats


def train(csv: Path, seed: int, epochs: int, runs: Path) -> float:
    cfg = runs / "spec.yaml"
    cfg.write_text(
        "name: audio-robustness\n"
        f"data: {{dataset: custom, path: {json.dumps(str(csv))}, seed: {seed}}}\n"
        "teacher: {modalities: [audio]}\n"
        "student: {modalities: [audio]}\n"
        f"train: {{teacher_epochs: {epochs}, student_epochs: 1}}\n")
    cmd = [sys.executable, "-m", "kdcore", "run", "--config", str(cfg), "--json", "--quiet", "--no-save"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"training failed on {csv}:\n{proc.stderr[-3000:]}\n{proc.stdout[-2000:]}")
    result = json.loads(proc.stdout[proc.stdout.index("{"):])
    return 100.0 * float(result["phases"]["teacher"]["test_acc"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--speakers", type=int, default=42, help="espeak voice+variant combinations")
    ap.add_argument("--reps", type=int, default=4, help="utterances of each digit per speaker (own pitch each)")
    ap.add_argument("--seeds", type=int, default=3, help="data split / training seeds")
    ap.add_argument("--epochs", type=int, default=10, help="teacher epochs")
    ap.add_argument("--keep", default=None, help="write the datasets here instead of a temporary folder")
    args = ap.parse_args(argv)
    exe = ensure_espeak()
    with tempfile.TemporaryDirectory(prefix="kdlab-audio-") as tmp:
        out = Path(args.keep) if args.keep else Path(tmp)
        uni, var, stats = build(out, exe, args.speakers, args.reps)
        print(f"{stats['clips']} clips per dataset ({stats['speakers']} voices × {args.reps} × 10 digits); "
              f"varied clips last {stats['varied_seconds'][0]:.2f}–{stats['varied_seconds'][1]:.2f} s", flush=True)
        accs = {"uniform": [], "varied": []}
        for seed in range(args.seeds):
            for name, csv in (("uniform", uni), ("varied", var)):
                accs[name].append(train(csv, seed, args.epochs, Path(tmp)))
            print(f"seed {seed}: uniform {accs['uniform'][-1]:.1f} %, varied {accs['varied'][-1]:.1f} %", flush=True)
    mu, mv = float(np.mean(accs["uniform"])), float(np.mean(accs["varied"]))
    print(f"audio-only teacher, test accuracy (mean of {args.seeds} seeds, {args.epochs} epochs): "
          f"uniform {mu:.1f} %, varied {mv:.1f} %, difference {mv - mu:+.1f} points "
          f"({'within' if mv >= mu - 2 else 'NOT within'} the 2-point target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
