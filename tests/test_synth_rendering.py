"""Check the rendering, do not assume it: each prosody knob and each emotion profile is measured.

Measurements are eGeMAPSv02 functionals (opensmile), the same features the separability
benchmark uses: F0 mean in semitones, normalised F0 spread, loudness, voiced segments per second,
shimmer, HNR, alpha ratio (high vs low band energy). A handful of short files per check.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from probes.data.synth.design import load_bank
from probes.data.synth.voices import SPEAKER_BY_ID, Prosody, draw, render

NEUTRAL = Prosody(pitch=1.0, range=1.0, rate=1.0, volume=1.0, breath=0.0, tremolo=0.0, rough=0.0, tilt=0.0,
                  wordgap=0, ending=".")
SPEAKERS = (SPEAKER_BY_ID["spk02"], SPEAKER_BY_ID["spk07"])  # a low and a high voice
F0 = "F0semitoneFrom27.5Hz_sma3nz_amean"
F0SD = "F0semitoneFrom27.5Hz_sma3nz_stddevNorm"
LOUD = "loudness_sma3_amean"
RATE = "VoicedSegmentsPerSec"


@pytest.fixture(scope="module")
def smile():
    opensmile = pytest.importorskip("opensmile")
    return opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02, feature_level=opensmile.FeatureLevel.Functionals)


def measure(smile, wav: np.ndarray) -> dict[str, float]:
    row = smile.process_signal(wav, 16000).iloc[0]
    out = {k: float(v) for k, v in row.items()}
    out["duration"] = len(wav) / 16000
    return out


def sentences(k: int) -> list[str]:
    bank = [s for s in load_bank() if s.emotion == "neutral"]
    return [s.text for s in bank[:k]]


def mean_of(smile, prosody: Prosody, texts: list[str]) -> dict[str, float]:
    rows = [measure(smile, render(t, spk, prosody, np.random.default_rng(0))) for t in texts for spk in SPEAKERS]
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


# (knob change low, knob change high, feature, expected sign of high - low)
KNOBS = [
    ({"pitch": 0.8}, {"pitch": 1.3}, F0, +1),
    ({"range": 0.4}, {"range": 2.2}, F0SD, +1),
    ({"rate": 0.75}, {"rate": 1.3}, "duration", -1),
    ({"rate": 0.75}, {"rate": 1.3}, RATE, +1),
    ({"volume": 0.6}, {"volume": 1.6}, LOUD, +1),
    ({"tilt": -0.6}, {"tilt": 0.8}, "alphaRatioV_sma3nz_amean", +1),
    ({"breath": 0.0}, {"breath": 0.9}, "HNRdBACF_sma3nz_amean", -1),
    ({"rough": 0.0}, {"rough": 0.8}, "shimmerLocaldB_sma3nz_amean", +1),
    ({"tremolo": 0.0}, {"tremolo": 0.8}, "loudness_sma3_stddevNorm", +1),
    ({"wordgap": 0}, {"wordgap": 4}, "duration", +1),
]


@pytest.mark.parametrize("low,high,feature,sign", KNOBS, ids=[f"{next(iter(k))}->{f}" for k, _, f, _ in KNOBS])
def test_each_knob_moves_its_feature(smile, low, high, feature, sign):
    texts = sentences(1)
    a = mean_of(smile, replace(NEUTRAL, **low), texts)[feature]
    b = mean_of(smile, replace(NEUTRAL, **high), texts)[feature]
    assert np.sign(b - a) == sign, f"{feature}: {low} -> {a:.3f}, {high} -> {b:.3f}"


def _end_rise(wav: np.ndarray) -> float:
    """F0 of the last voiced frames relative to the utterance's median, in semitones."""
    import librosa

    f0 = librosa.yin(wav, fmin=60, fmax=500, sr=16000, frame_length=1024, hop_length=256)
    rms = librosa.feature.rms(y=wav, frame_length=1024, hop_length=256)[0][: len(f0)]
    voiced = f0[rms > 0.25 * rms.max()]
    return float(12 * np.log2(np.median(voiced[-6:]) / np.median(voiced)))


def test_question_ending_rises():
    """The spoken '?' (surprise's usual ending) ends higher than the '.' statement tune."""
    diffs = [
        _end_rise(render(t, spk, replace(NEUTRAL, ending="?"), np.random.default_rng(0)))
        - _end_rise(render(t, spk, replace(NEUTRAL, ending="."), np.random.default_rng(0)))
        for t in sentences(2) for spk in SPEAKERS
    ]
    assert np.median(diffs) > 1.0, np.round(diffs, 2)


@pytest.fixture(scope="module")
def by_emotion(smile) -> dict[str, dict[str, float]]:
    """Each emotion's profile without the level jitter (the quality knobs, the pause count and the
    ending are still drawn): 2 sentences x 2 speakers, averaged. The jittered corpus overlaps by
    design; its separability is measured by benchmarks/synth_separability.py."""
    texts = sentences(2)
    out = {}
    for emo in ("neutral", "happy", "sad", "angry", "fear", "surprise", "disgust"):
        rows = []
        for k, t in enumerate(texts):
            for spk in SPEAKERS:
                rng = np.random.default_rng([k, len(emo)])
                rows.append(measure(smile, render(t, spk, draw(emo, rng, jitter=0.0), rng)))
        out[emo] = {f: float(np.mean([r[f] for r in rows])) for f in rows[0]}
    return out


def test_profiles_move_voices_the_intended_way(by_emotion):
    e = by_emotion
    # angry: louder and higher than sad and than neutral
    assert e["angry"][LOUD] > e["neutral"][LOUD] > e["sad"][LOUD]
    assert e["angry"][F0] > e["neutral"][F0] > e["sad"][F0]
    # sad: slower (longer, fewer voiced segments per second) than neutral and angry
    assert e["sad"]["duration"] > e["neutral"]["duration"] > e["angry"]["duration"]
    assert e["sad"][RATE] < e["angry"][RATE]
    # sad: flatter pitch; happy and surprise: livelier pitch than neutral (20-80 percentile range,
    # in semitones: stddevNorm divides by the mean and so shrinks for the high emotions)
    spread = "F0semitoneFrom27.5Hz_sma3nz_pctlrange0-2"
    assert e["sad"][spread] < e["neutral"][spread] < e["happy"][spread] < e["surprise"][spread]
    # fear: high and fast
    assert e["fear"][F0] > e["neutral"][F0] and e["fear"]["duration"] < e["neutral"]["duration"]
    # disgust: slow and low
    assert e["disgust"]["duration"] > e["neutral"]["duration"] and e["disgust"][F0] < e["neutral"][F0]
    # voice quality: angry brighter than neutral (spectral tilt), sad breathier than neutral (HNR).
    # Not angry vs sad: sad's breath noise is high-frequency energy and outweighs its lax tilt.
    assert e["angry"]["alphaRatioV_sma3nz_amean"] > e["neutral"]["alphaRatioV_sma3nz_amean"]
    assert e["sad"]["HNRdBACF_sma3nz_amean"] < e["neutral"]["HNRdBACF_sma3nz_amean"]


def test_speakers_have_clearly_different_pitch(smile):
    text = sentences(1)[0]
    f0 = [measure(smile, render(text, s, NEUTRAL, np.random.default_rng(0)))[F0] for s in SPEAKER_BY_ID.values()]
    # ordered from low to high, at least 1.5 semitones apart, spanning over an octave
    assert all(b - a > 1.5 for a, b in zip(f0, f0[1:])), np.round(f0, 1)
    assert f0[-1] - f0[0] > 12
