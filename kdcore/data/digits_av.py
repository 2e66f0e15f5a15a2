"""digits-av: real handwritten digit images + spoken digits (espeak-ng) + digit names as text.

The three modalities are paired **by label, never by instance** (as AV-MNIST pairs MNIST with
spoken digits): sample *i* is image *i* of sklearn's digits, a spoken clip of the same digit,
and the digit's name in a random language. Spoken clips are split by *voice* so that the test
split hears voices never heard in training.
"""

from __future__ import annotations

import numpy as np
import torch

from kdcore.data.audio import DEFAULT as AUDIO_FRONT_END, add_noise_snr
from kdcore.data.base import ASSETS, ModalityInfo, MultimodalDataset, TensorData, limit_train, stratified_split
from kdcore.data.image import add_image_noise
from kdcore.data.tasks import AUX_TASKS, aux_labels
import kdcore.data.text as textmod

TEXT_LEN = 12


class DigitsAV(MultimodalDataset):
    name = "digits-av"
    description = "1,797 real 8×8 handwritten digits + spoken digit (espeak-ng) + digit name text, paired by label"
    source = "sklearn digits (UCI optdigits, CC BY 4.0); audio synthesised with espeak-ng; names table (project)"
    pairing_note = ("Modalities are paired by label, not by instance: an image, a spoken clip and a text of "
                    "the same digit (as AV-MNIST). Test audio comes from voices unseen in training.")
    MODALITIES = {"image": "image", "audio": "spectrogram", "text": "tokens"}
    NUM_CLASSES = 10

    @classmethod
    def noise_knobs(cls):
        return {
            "image_sigma": (0.0, 5.0, "std of Gaussian noise on the [0, 1] image"),
            "image_occlusion": (0.0, 1.0, "side of a random black square, as a fraction of the image side"),
            "audio_snr_db": (-30.0, 60.0, "SNR of white noise added to the waveform (dB)"),
            "text_corruption": (0.0, 1.0, "probability that a character is replaced by a random one"),
        }

    def load(self, spec) -> TensorData:
        raw = np.load(ASSETS / "digits_av.npz", allow_pickle=False)
        labels = raw["image_label"].astype(np.int64)
        split = stratified_split(labels, spec.train_fraction, spec.val_fraction, spec.seed)
        split = limit_train(split, labels, spec.train_limit, spec.seed)
        n = len(labels)
        rng = np.random.default_rng(spec.seed)
        gen = torch.Generator().manual_seed(spec.seed)
        noise = spec.noise
        mods = spec.modalities or self.modality_names()
        inputs, meta, infos = {}, {}, {}
        which_split = np.empty(n, dtype=object)
        for name, idx in split.items():
            which_split[idx.numpy()] = name
        which_split[[i for i in range(n) if which_split[i] is None]] = "train"  # dropped by train_limit

        if "image" in mods:
            img = torch.from_numpy(raw["image"].astype(np.float32) / 16.0).unsqueeze(1)
            meta["image_clean"] = img
            inputs["image"] = add_image_noise(img, noise.get("image_sigma", 0.0),
                                              noise.get("image_occlusion", 0.0), gen)
            infos["image"] = ModalityInfo("image", "image", (1, 8, 8), "8×8 grey handwritten digit")
        if "audio" in mods:
            clips, clip_idx = self._pair_audio(raw, labels, which_split, spec.seed, rng)
            sr = int(raw["sample_rate"])
            fe = AUDIO_FRONT_END  # trim, level, 1 s crop/pad once per stored clip; then noise; then log-mel
            wave = fe.prepare(clips.astype(np.float32) / 32767.0, sr)[torch.from_numpy(clip_idx)]
            if "audio_snr_db" in noise:
                wave = add_noise_snr(wave, float(noise["audio_snr_db"]), gen)
            spec_ = fe.spectrogram(wave, fe.f_max_for([sr]))
            tr = split["train"]
            mu, sd = spec_[tr].mean(), spec_[tr].std().clamp_min(1e-6)
            inputs["audio"] = (spec_ - mu) / sd
            meta["audio_clip"] = torch.from_numpy(clip_idx)
            meta["audio_sample_rate"] = sr
            meta["audio_waves"] = clips  # int16 [clips, T] for playback (clean)
            infos["audio"] = ModalityInfo("audio", "spectrogram", tuple(spec_.shape[1:]),
                                          f"log-mel spectrogram of a spoken digit ({fe.describe()})")
        if "text" in mods:
            langs, names = textmod.digit_names()
            rate = float(noise.get("text_corruption", 0.0))
            texts = []
            for y in labels:
                word = names[int(y)][rng.integers(len(langs))]
                texts.append(textmod.corrupt(word, rate, rng))
            inputs["text"] = textmod.encode(texts, TEXT_LEN)
            meta["texts"] = texts
            infos["text"] = ModalityInfo("text", "tokens", (TEXT_LEN,), "digit name in one of several languages",
                                         vocab_size=textmod.vocab_size())
        y = torch.from_numpy(labels)
        aux = {t: aux_labels(t, y) for t in spec.aux_tasks}
        return TensorData(
            name=self.name, modalities=infos, inputs=inputs, labels=y, num_classes=10,
            class_names=[str(i) for i in range(10)], split_index=split, aux=aux,
            aux_classes={t: AUX_TASKS[t][0] for t in spec.aux_tasks}, meta=meta, pairing_note=self.pairing_note,
        )

    @staticmethod
    def _pair_audio(raw, labels, which_split, seed, rng):
        """Pick, for each sample, a clip of the same digit from its split's pool of voices."""
        clips = raw["audio"]
        clip_label = raw["audio_label"].astype(np.int64)
        voice = raw["audio_voice"].astype(np.int64)
        voices = np.unique(voice)
        vrng = np.random.default_rng(seed + 104729)
        order = vrng.permutation(voices)
        n_tr, n_va = int(round(0.6 * len(order))), int(round(0.2 * len(order)))
        pool_voices = {"train": order[:n_tr], "val": order[n_tr:n_tr + n_va], "test": order[n_tr + n_va:]}
        choice = np.empty(len(labels), dtype=np.int64)
        for part, vs in pool_voices.items():
            in_pool = np.isin(voice, vs)
            for c in np.unique(labels):
                candidates = np.flatnonzero(in_pool & (clip_label == c))
                if len(candidates) == 0:  # a voice pool without this digit: fall back to any clip
                    candidates = np.flatnonzero(clip_label == c)
                rows = np.flatnonzero((which_split == part) & (labels == c))
                choice[rows] = rng.choice(candidates, size=len(rows), replace=True)
        return clips, choice
