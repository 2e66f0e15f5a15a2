"""Show one sample in each of its modalities: image, spectrogram (+ audio playback), video (a strip of
frames), text, vectors."""

from __future__ import annotations

import io
import wave

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from kdcore.data import TensorData
from kdcore.viz.fast import IMAGE_SCALE, SPECTROGRAM_SCALE
from kdcore.viz.video import clip_animation_figure, clip_strip_figure


def wav_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    """int16 mono samples → a WAV file in memory (for ``st.audio``)."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(np.asarray(samples, dtype=np.int16).tobytes())
    return buf.getvalue()


def input_figure(arr: np.ndarray, title: str, kind: str = "image", height: int = 220,
                 uirevision: str = "preview") -> go.Figure:
    """An image (grey, top row first) or a spectrogram (the app's spectrogram colour map, low
    frequencies at the bottom) as a heatmap — the one way every page draws these inputs."""
    spectrogram = kind == "spectrogram"
    fig = go.Figure(go.Heatmap(z=arr, colorscale=SPECTROGRAM_SCALE if spectrogram else IMAGE_SCALE,
                               showscale=False))
    fig.update_layout(title=title, height=height, margin=dict(l=10, r=10, t=35, b=10), uirevision=uirevision,
                      template="plotly_white")
    fig.update_yaxes(autorange=True if spectrogram else "reversed", showticklabels=False,
                     scaleanchor=None if spectrogram else "x")
    fig.update_xaxes(showticklabels=False)
    return fig


def show_sample(data: TensorData, index: int, modalities: list[str] | None = None, key: str = "preview") -> None:
    """One column per modality; ``index`` is an index into the whole dataset."""
    mods = [m for m in (modalities or list(data.inputs)) if m in data.inputs]
    cols = st.columns(max(1, len(mods)))
    for col, m in zip(cols, mods):
        info = data.modalities[m]
        x = data.inputs[m][index]
        with col:
            if info.kind == "image":
                st.plotly_chart(input_figure(x[0].numpy(), f"{m} (as the model sees it)"), key=f"{key}-{m}",
                                config={"displayModeBar": False})
            elif info.kind == "spectrogram":
                fig = input_figure(x[0].numpy(), f"{m}: log-mel spectrogram", kind="spectrogram")
                st.plotly_chart(fig, key=f"{key}-{m}", config={"displayModeBar": False})
                waves, clip = data.meta.get("audio_waves"), data.meta.get("audio_clip")
                if waves is not None and clip is not None:
                    st.audio(wav_bytes(waves[int(clip[index])], data.meta["audio_sample_rate"]), format="audio/wav")
                    st.caption("Playback is the clean clip; the spectrogram includes the noise knob.")
            elif info.kind == "video":
                st.plotly_chart(clip_strip_figure(x.numpy(), f"{m}: {x.shape[1]} frames (as the model sees them)",
                                                  uirevision=f"{key}-{m}"), key=f"{key}-{m}",
                                config={"displayModeBar": False})
                st.plotly_chart(clip_animation_figure(x.numpy(), f"{m}: the clip played in time",
                                                      uirevision=f"{key}-{m}-play"), key=f"{key}-{m}-play",
                                config={"displayModeBar": False})
                st.caption(info.description)
            elif info.kind == "tokens":
                texts = data.meta.get("texts")
                st.markdown(f"**{m}**")
                st.code(texts[index] if texts is not None else str(x.tolist()), language=None)
                st.caption(info.description)
            else:
                fig = go.Figure(go.Bar(y=x.flatten().numpy(), marker_color="#4C6EF5"))
                fig.update_layout(title=f"{m} ({x.numel()} features)", height=200, margin=dict(l=10, r=10, t=35, b=10),
                                  uirevision="preview", template="plotly_white")
                st.plotly_chart(fig, key=f"{key}-{m}", config={"displayModeBar": False})
