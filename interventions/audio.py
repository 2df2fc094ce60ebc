"""Audio-side interventions: the waveform the model hears, changed; the prompt is left alone.

Every one reads ``Example.audio`` (loaded by the runner, [time] float32 at ``Example.sr``) and
returns a new array of the same length and sample rate; the input array is never written to.

- ``audio-silence``: all zeros. What is left is what the model says without any voice.
- ``audio-noise``: the waveform plus white or pink (1/f power) noise scaled so that
  10*log10(P_signal / P_noise) equals ``snr_db`` exactly over the utterance (``replace=True``:
  the noise alone, at the utterance's power). Noise comes from the seeded generator.
- ``audio-lowpass``: a zero-phase Butterworth low-pass (``order`` per pass, run forward and
  backward) at ``cutoff_hz`` (default 400 Hz): the classic content filter that keeps pitch and
  loudness contours and removes most of the intelligible words.
- ``audio-reverse``: the waveform backwards in time: spectra and pitch range kept, words and
  prosodic direction destroyed. Applying it twice gives back the input.
- ``audio-flatten-f0``: WORLD analysis / resynthesis (pyworld: DIO + StoneMask F0, CheapTrick
  envelope, D4C aperiodicity) with every voiced frame's F0 set to the utterance's mean voiced F0:
  the intonation goes, the spectral envelope (words, timbre) and the timing stay.

What it records (``Example.meta``): ``audio_change`` (the name) plus the settings that matter:
``noise``, ``snr_db``, ``lowpass_hz``, ``f0_flat_hz`` (the mean F0 used; None if nothing voiced).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from interventions.base import Intervention
from probes.registry import INTERVENTIONS

if TYPE_CHECKING:
    from probes.adapter import Example


def _audio(ex: "Example", name: str) -> np.ndarray:
    if ex.audio is None:
        raise ValueError(f"{name}: utterance {ex.utt_id!r} reached the intervention without audio; "
                         "the runner loads audio when an intervention has needs_audio=True (probes/probe.py).")
    return np.asarray(ex.audio, dtype=np.float32)  # [time]


def _out(ex: "Example", wav: np.ndarray, **meta) -> "Example":
    return ex.with_(audio=np.ascontiguousarray(wav, dtype=np.float32), meta={**ex.meta, **meta})


@dataclass(frozen=True)
class _AudioIntervention(Intervention):
    side = "audio"
    needs_audio = True


@INTERVENTIONS.register("audio-silence")
@dataclass(frozen=True)
class AudioSilence(_AudioIntervention):
    """The waveform replaced by silence of the same length."""

    def apply(self, ex: "Example", *, rng: np.random.Generator) -> "Example":
        x = _audio(ex, "audio-silence")
        return _out(ex, np.zeros_like(x), audio_change="audio-silence")


def noise(n: int, kind: str, rng: np.random.Generator, sr: int = 16_000) -> np.ndarray:
    """Unit-power noise [n]: ``white`` (flat spectrum) or ``pink`` (power ~ 1/f above 20 Hz)."""
    if kind == "white":
        w = rng.standard_normal(n)
    elif kind == "pink":
        spec = rng.standard_normal(n // 2 + 1) + 1j * rng.standard_normal(n // 2 + 1)
        f = np.fft.rfftfreq(n, 1.0 / sr)
        spec *= 1.0 / np.sqrt(np.maximum(f, 20.0))  # amplitude ~ f^-1/2: power ~ 1/f; flat below 20 Hz
        spec[0] = 0.0
        w = np.fft.irfft(spec, n)
    else:
        raise ValueError(f"audio-noise: kind={kind!r}; use 'white' or 'pink'")
    return w / np.sqrt(np.mean(w**2))


@INTERVENTIONS.register("audio-noise")
@dataclass(frozen=True)
class AudioNoise(_AudioIntervention):
    """White or pink noise added at a given SNR (seeded)."""

    snr_db: float = field(default=0.0, metadata={"help": "signal-to-noise ratio in dB"})
    kind: str = field(default="white", metadata={"help": "white | pink"})
    replace: bool = field(default=False, metadata={"help": "noise only, at the utterance's power"})

    def __post_init__(self) -> None:
        if self.kind not in ("white", "pink"):
            raise ValueError(f"audio-noise: kind={self.kind!r}; use 'white' or 'pink'")

    def apply(self, ex: "Example", *, rng: np.random.Generator) -> "Example":
        x = _audio(ex, "audio-noise").astype(np.float64)
        p_sig = float(np.mean(x**2))
        if p_sig <= 0.0:
            raise ValueError(f"audio-noise: utterance {ex.utt_id!r} is silent; an SNR needs signal power.")
        n = noise(len(x), self.kind, rng, ex.sr)
        if self.replace:
            return _out(ex, n * np.sqrt(p_sig), audio_change="audio-noise", noise=self.kind, snr_db=None)
        n *= np.sqrt(p_sig / 10.0 ** (self.snr_db / 10.0))
        return _out(ex, x + n, audio_change="audio-noise", noise=self.kind, snr_db=float(self.snr_db))


@INTERVENTIONS.register("audio-lowpass")
@dataclass(frozen=True)
class AudioLowpass(_AudioIntervention):
    """Low-pass content filtering (zero-phase Butterworth, default 400 Hz): prosody kept, words blurred."""

    cutoff_hz: float = field(default=400.0, metadata={"help": "cut-off frequency in Hz"})
    order: int = field(default=8, metadata={"help": "Butterworth order per pass (applied forward and backward)"})

    def apply(self, ex: "Example", *, rng: np.random.Generator) -> "Example":
        from scipy.signal import butter, sosfiltfilt

        x = _audio(ex, "audio-lowpass").astype(np.float64)
        if not 0 < self.cutoff_hz < ex.sr / 2:
            raise ValueError(f"audio-lowpass: cutoff_hz={self.cutoff_hz} must lie between 0 and the Nyquist frequency {ex.sr / 2:g} Hz")
        sos = butter(self.order, self.cutoff_hz, btype="low", fs=ex.sr, output="sos")
        # sosfiltfilt pads by reflection; very short inputs need a shorter pad than its default
        pad = min(3 * (2 * len(sos) + 1), max(len(x) - 1, 0))
        y = sosfiltfilt(sos, x, padlen=pad)
        return _out(ex, y, audio_change="audio-lowpass", lowpass_hz=float(self.cutoff_hz))


@INTERVENTIONS.register("audio-reverse")
@dataclass(frozen=True)
class AudioReverse(_AudioIntervention):
    """The waveform played backwards (an involution)."""

    def apply(self, ex: "Example", *, rng: np.random.Generator) -> "Example":
        x = _audio(ex, "audio-reverse")
        return _out(ex, x[::-1].copy(), audio_change="audio-reverse")


def flatten_f0(x: np.ndarray, sr: int, frame_period_ms: float = 5.0) -> tuple[np.ndarray, float | None]:
    """WORLD resynthesis with voiced F0 set to its mean. # [time] -> ([time], mean F0 Hz or None)"""
    import pyworld as pw

    xd = np.ascontiguousarray(x, dtype=np.float64)
    f0, t = pw.dio(xd, sr, frame_period=frame_period_ms)
    f0 = pw.stonemask(xd, f0, t, sr)                      # [frames]
    voiced = f0 > 0
    if not voiced.any():
        return x.astype(np.float32).copy(), None
    mean_f0 = float(f0[voiced].mean())
    sp = pw.cheaptrick(xd, f0, t, sr)                     # [frames, fft/2+1]
    ap = pw.d4c(xd, f0, t, sr)                            # [frames, fft/2+1]
    flat = np.where(voiced, mean_f0, 0.0)
    y = pw.synthesize(flat, sp, ap, sr, frame_period_ms)
    # WORLD's output length is a whole number of frames: trim or pad back to the input length
    y = y[: len(xd)] if len(y) >= len(xd) else np.pad(y, (0, len(xd) - len(y)))
    return y.astype(np.float32), mean_f0


@INTERVENTIONS.register("audio-flatten-f0")
@dataclass(frozen=True)
class AudioFlattenF0(_AudioIntervention):
    """Intonation removed: F0 set to the utterance's mean voiced F0 (WORLD vocoder, pyworld)."""

    frame_period_ms: float = field(default=5.0, metadata={"help": "WORLD analysis hop in ms"})

    def apply(self, ex: "Example", *, rng: np.random.Generator) -> "Example":
        x = _audio(ex, "audio-flatten-f0")
        y, mean_f0 = flatten_f0(x, ex.sr, self.frame_period_ms)
        return _out(ex, y, audio_change="audio-flatten-f0", f0_flat_hz=mean_f0)
