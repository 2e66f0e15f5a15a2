"""mfh-gauss: the synthetic two-modality Gaussian experiment of the Modality Focusing Hypothesis.

After Xue et al., ICLR 2023, "The Modality Focusing Hypothesis: towards understanding crossmodal
knowledge distillation" (their ``gauss`` experiment). Generated from the seed in milliseconds; no
asset file. Every sample has both views of the same latent vector (instance-paired).

Generation (``C`` classes, ``n`` samples, knob ``gamma`` = γ ∈ [0, 1])::

    s   = round(20 γ / (1 + γ))                 shared decisive latents (γ=0 → 0, 1/3 → 5, 1 → 10)
    γ'  = s / (20 − s)                          the realised γ (stored in meta with s)
    u   ~ N(0, I_{20−s})                        decisive latents: u = [u_sh (s) | u_t (10−s) | u_s (10−s)]
    W   ~ N(0, 1)^{C × (20−s)}                  fixed per seed
    y   = argmax_c (W u)_c                      (C = 2: a random hyperplane through the origin)
    z_t = [u_sh, u_t] ∈ R^10,   z_s = [u_sh, u_s] ∈ R^10       each modality's 10 decisive dims
    e_t ~ N(0, I_15),           e_s ~ N(0, I_40)               label-irrelevant dims
    view_t = [z_t, e_t] Q_t ∈ R^25,   view_s = [z_s, e_s] Q_s ∈ R^50

``Q_t``, ``Q_s`` are random orthogonal matrices (Haar, fixed per seed) when knob ``mix`` ≥ 0.5
(default); with ``mix`` < 0.5 they are the identity, so the decisive dims are the first 10 columns.
All raw coordinates are iid N(0, 1) and stay so after the rotation; each feature is then
standardised with the *training-split* mean / std (as in ``mfeat``). The label depends on all
20 − s latents, so with γ = 0 each modality sees only half of what decides the label (and none of
what the other sees); with γ = 1 both see all of it.

Randomness: one ``numpy.random.default_rng([seed, k])`` stream per part (k = 0 the task: W, Q;
1 latents; 2 irrelevant dims), so everything is a function of ``data.seed`` and the knobs.
``meta`` holds ``shared``, ``gamma`` (realised), ``gamma_requested``, ``latent`` (u, float32
[n, 20−s]), ``latent_layout`` and ``W``.
"""

from __future__ import annotations

import numpy as np
import torch

from kdcore.data.base import ModalityInfo, MultimodalDataset, TensorData, limit_train, stratified_split
from kdcore.data.tasks import AUX_TASKS, aux_labels

D_DEC = 10  # decisive dims per modality
D_T, D_S = 25, 50  # teacher / student view width
T_VIEW, S_VIEW = "view_t", "view_s"


def shared_count(gamma: float) -> int:
    """Shared decisive latents for a requested γ = s / (20 − s): s = round(20 γ / (1 + γ))."""
    return int(min(D_DEC, max(0, round(2 * D_DEC * gamma / (1.0 + gamma)))))


def _orthogonal(rng: np.random.Generator, d: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))  # Haar-distributed


class MFHGauss(MultimodalDataset):
    name = "mfh-gauss"
    description = ("Synthetic MFH Gaussian task: a 25-d teacher view and a 50-d student view, 10 label-decisive "
                   "dims each, of which s = round(20γ/(1+γ)) are shared (knob gamma)")
    source = ("synthetic, generated from the seed; after Xue et al. ICLR 2023 gauss experiment; "
              "no licence needed")
    pairing_note = ("Instance-paired: both views of a sample are generated from the same latent vector u "
                    "(shared latents identical in both).")
    MODALITIES = {T_VIEW: "vector", S_VIEW: "vector"}
    CLASS_KNOB = ("classes", 2)  # the number of classes is the ``classes`` knob (default 2)

    @classmethod
    def noise_knobs(cls):
        return {
            "gamma": (0.0, 1.0, "γ = shared/(20 − shared) decisive latents; shared = round(20γ/(1+γ)) (default 1/3: 5)"),
            "samples": (200.0, 20000.0, "number of samples in total (default 1500)"),
            "classes": (2.0, 10.0, "number of classes, y = argmax(W u) (default 2)"),
            "mix": (0.0, 1.0, "≥ 0.5: rotate each view by a random orthogonal matrix (default 1); < 0.5: no mixing"),
        }


    def load(self, spec) -> TensorData:
        knobs = spec.noise
        gamma_req = float(knobs.get("gamma", 1.0 / 3.0))
        n = int(round(float(knobs.get("samples", 1500))))
        n_classes = self.class_count(knobs)
        mix = float(knobs.get("mix", 1.0)) >= 0.5
        s = shared_count(gamma_req)
        n_lat = 2 * D_DEC - s
        seed = int(spec.seed)

        task = np.random.default_rng([seed, 0])
        w = task.standard_normal((n_classes, n_lat))
        q_t = _orthogonal(task, D_T) if mix else np.eye(D_T)
        q_s = _orthogonal(task, D_S) if mix else np.eye(D_S)

        u = np.random.default_rng([seed, 1]).standard_normal((n, n_lat))
        labels = np.argmax(u @ w.T, axis=1).astype(np.int64)
        noise = np.random.default_rng([seed, 2])
        e_t = noise.standard_normal((n, D_T - D_DEC))
        e_s = noise.standard_normal((n, D_S - D_DEC))
        z_t = u[:, :D_DEC]  # [shared | teacher-specific]
        z_s = np.concatenate([u[:, :s], u[:, D_DEC:]], axis=1)  # [shared | student-specific]
        raw = {T_VIEW: np.concatenate([z_t, e_t], 1) @ q_t, S_VIEW: np.concatenate([z_s, e_s], 1) @ q_s}

        split = stratified_split(labels, spec.train_fraction, spec.val_fraction, seed)
        split = limit_train(split, labels, spec.train_limit, seed)
        tr = split["train"]
        info_text = {
            T_VIEW: f"teacher view: {D_DEC} decisive dims ({s} shared + {D_DEC - s} own) + {D_T - D_DEC} irrelevant",
            S_VIEW: f"student view: {D_DEC} decisive dims ({s} shared + {D_DEC - s} own) + {D_S - D_DEC} irrelevant",
        }
        inputs, infos = {}, {}
        for v in spec.modalities or self.modality_names():
            x = torch.from_numpy(raw[v].astype(np.float32))
            mu, sd = x[tr].mean(0), x[tr].std(0).clamp_min(1e-6)  # train statistics only
            inputs[v] = (x - mu) / sd
            infos[v] = ModalityInfo(v, "vector", (x.shape[1],), info_text[v])
        y = torch.from_numpy(labels)
        meta = {
            "shared": s, "gamma": s / (2 * D_DEC - s), "gamma_requested": gamma_req, "mixed": mix,
            "latent": torch.from_numpy(u.astype(np.float32)), "W": torch.from_numpy(w.astype(np.float32)),
            "latent_layout": {"shared": (0, s), "teacher_only": (s, D_DEC), "student_only": (D_DEC, n_lat)},
        }
        return TensorData(
            name=self.name, modalities=infos, inputs=inputs, labels=y, num_classes=n_classes,
            class_names=[str(i) for i in range(n_classes)], split_index=split,
            aux={t: aux_labels(t, y) for t in spec.aux_tasks},
            aux_classes={t: AUX_TASKS[t][0] for t in spec.aux_tasks}, meta=meta, pairing_note=self.pairing_note,
        )
