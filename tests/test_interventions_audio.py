"""Audio interventions on generated voiced signals: each one's defining property, measured."""

from __future__ import annotations

import numpy as np
import pytest

from interventions.audio import AudioFlattenF0, AudioLowpass, AudioNoise, AudioReverse, AudioSilence, noise
from interventions.base import rng_for
from probes.adapter import Example
from probes.registry import INTERVENTIONS
from tests.fixtures.interventions import SR, voiced

AUDIO_NAMES = ["audio-silence", "audio-noise", "audio-lowpass", "audio-reverse", "audio-flatten-f0"]


@pytest.fixture(scope="module")
def ex() -> Example:
    t = np.arange(int(1.5 * SR)) / SR
    contour = 120.0 + 80.0 * t / t[-1]                      # a rising F0: 120 -> 200 Hz
    wav = voiced(contour, 0.3, seconds=1.5, swing=0.08, tremolo=0.15, tilt=0.9, seed=3)
    return Example(utt_id="u1", row={"acoustic_label": "happy"}, audio=wav, sr=SR)


def _band_power(x: np.ndarray, lo: float, hi: float, sr: int = SR) -> float:
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1.0 / sr)
    return float(spec[(f >= lo) & (f < hi)].sum())


@pytest.mark.parametrize("name", AUDIO_NAMES)
def test_length_rate_and_input_untouched(name, ex):
    cls = INTERVENTIONS[name]
    assert cls.side == "audio" and cls.needs_audio
    before = ex.audio.copy()
    out = cls().apply(ex, rng=rng_for(0, ex.utt_id, name))
    assert out.audio.shape == ex.audio.shape and out.audio.dtype == np.float32 and out.sr == ex.sr
    assert np.array_equal(ex.audio, before)                 # the input waveform is not written to
    assert out.meta["audio_change"] == name and "audio_change" not in ex.meta
    assert np.all(np.isfinite(out.audio))


def test_silence_is_zero(ex):
    assert not np.any(AudioSilence().apply(ex, rng=rng_for(0)).audio)


@pytest.mark.parametrize("kind", ["white", "pink"])
@pytest.mark.parametrize("snr", [-5.0, 0.0, 10.0, 20.0])
def test_noise_hits_requested_snr(ex, kind, snr):
    out = AudioNoise(snr_db=snr, kind=kind).apply(ex, rng=rng_for(0, "u1"))
    added = out.audio.astype(np.float64) - ex.audio.astype(np.float64)
    measured = 10 * np.log10(np.mean(ex.audio.astype(np.float64) ** 2) / np.mean(added**2))
    assert abs(measured - snr) < 0.05                        # float32 rounding only
    assert out.meta["snr_db"] == snr and out.meta["noise"] == kind
    again = AudioNoise(snr_db=snr, kind=kind).apply(ex, rng=rng_for(0, "u1"))
    other = AudioNoise(snr_db=snr, kind=kind).apply(ex, rng=rng_for(1, "u1"))
    assert np.array_equal(out.audio, again.audio) and not np.array_equal(out.audio, other.audio)


def test_noise_colours():
    """White: equal power per Hz, so an octave up holds twice the power. Pink: equal power per octave."""
    rng = np.random.default_rng(0)
    w, p = noise(SR * 4, "white", rng), noise(SR * 4, "pink", rng)
    assert _band_power(w, 2000, 4000) / _band_power(w, 1000, 2000) == pytest.approx(2.0, rel=0.1)
    assert _band_power(p, 2000, 4000) / _band_power(p, 1000, 2000) == pytest.approx(1.0, rel=0.1)
    with pytest.raises(ValueError, match="kind"):
        AudioNoise(kind="brown")


@pytest.mark.parametrize("cutoff", [400.0, 1000.0])
def test_lowpass_removes_energy_above_cutoff(ex, cutoff):
    out = AudioLowpass(cutoff_hz=cutoff).apply(ex, rng=rng_for(0)).audio
    x = ex.audio
    above_before, above_after = _band_power(x, 2 * cutoff, SR / 2), _band_power(out, 2 * cutoff, SR / 2)
    assert above_after < 1e-6 * above_before                 # > 60 dB down an octave above the cut-off
    below_before, below_after = _band_power(x, 0, cutoff / 2), _band_power(out, 0, cutoff / 2)
    assert below_after == pytest.approx(below_before, rel=0.05)  # the pass band is kept
    with pytest.raises(ValueError, match="Nyquist"):
        AudioLowpass(cutoff_hz=9000).apply(ex, rng=rng_for(0))


def test_reverse_is_an_involution(ex):
    once = AudioReverse().apply(ex, rng=rng_for(0))
    assert not np.array_equal(once.audio, ex.audio)
    assert np.array_equal(once.audio, ex.audio[::-1])
    assert np.array_equal(AudioReverse().apply(once, rng=rng_for(0)).audio, ex.audio)


def _f0_track(x: np.ndarray) -> np.ndarray:
    """Voiced F0 [frames] by pyworld's Harvest: another estimator than the DIO used to flatten."""
    import pyworld as pw

    f0, _ = pw.harvest(x.astype(np.float64), SR, frame_period=10.0)
    return f0[f0 > 0]


def test_flatten_f0_drops_f0_variance(ex):
    out = AudioFlattenF0().apply(ex, rng=rng_for(0))
    before, after = _f0_track(ex.audio), _f0_track(out.audio)
    assert before.std() > 15.0                               # the input glides 120 -> 200 Hz
    assert after.std() < 0.2 * before.std()
    assert out.meta["f0_flat_hz"] == pytest.approx(before.mean(), rel=0.05)
    assert np.median(after) == pytest.approx(out.meta["f0_flat_hz"], rel=0.05)
    # the level survives resynthesis (the model should hear a voice, not a whisper)
    rms = lambda v: float(np.sqrt(np.mean(v.astype(np.float64) ** 2)))  # noqa: E731
    assert 0.5 < rms(out.audio) / rms(ex.audio) < 2.0


def test_audio_intervention_without_audio_says_why():
    with pytest.raises(ValueError, match="needs_audio"):
        AudioReverse().apply(Example("u", {}), rng=rng_for(0))
