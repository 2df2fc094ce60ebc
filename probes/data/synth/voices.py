"""Speakers and emotional prosody: how the synthetic corpus makes a voice sound angry or sad.

A *speaker* is an espeak-ng variant file of our own: the formant settings of one stock variant
(``m4``, ``f3``...) with a pitch base and span in Hz chosen so that the eight speakers sit at
clearly different pitches (roughly 85 to 250 Hz median F0; measured in docs/synthetic-corpus.md).

An *emotion profile* moves seven knobs relative to that speaker's neutral voice:

| knob | how it is rendered |
|---|---|
| ``pitch``  | factor on the variant's pitch base (Hz) |
| ``range``  | factor on the variant's pitch span (Hz) |
| ``rate``   | factor on the speaker's speaking rate (words per minute) |
| ``volume`` | factor on espeak's amplitude (``BASE_VOLUME`` at neutral) |
| ``breath`` | 0..1: breathy voice, espeak's ``breath`` noise (the whisper variant's levels at 1) |
| ``tremolo``| 0..1: depth of a 5-7 Hz amplitude modulation (a shaky voice) |
| ``rough``  | 0..1: fast random amplitude perturbation (shimmer, a harsh or creaky quality) |
| ``tilt``   | -1..1: spectral tilt; > 0 adds high-frequency energy (tense), < 0 removes it (lax) |
| ``wordgap``| mean extra pause between words, in 10 ms units |
| ``ending`` | the spoken final punctuation (``.``, ``!``, ``?``): espeak's statement / exclamation / question tune |

Every draw multiplies each factor by ``exp(JITTER * z)`` (z standard normal) and adds noise to
the quality knobs, so classes overlap like real speech instead of being perfectly separable.
``JITTER`` was tuned with ``benchmarks/synth_separability.py`` for a voice-emotion UAR near 0.8
from eGeMAPS (see docs/synthetic-corpus.md); change it there, not per call.

*Intensity*: a seeded share ``MILD_SHARE`` of the takes speaks its emotion mildly
(``MILD_INTENSITY`` of the profile's deviation from neutral, ``expressed``), the way acted corpora
record several intensity levels. Full-intensity takes alone made the voice a more reliable cue
than the words; with the mild takes a model trained on congruent items has reason to use both
(docs/synthetic-corpus.md, "Voice reliability").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from probes.data.synth.engine import ESPEAK_RATE, Request, SynthError, get_engine, stock_variant, to_16k

JITTER = 0.23  # log-sd of the multiplicative per-utterance jitter on pitch / range / rate / volume
# Share of takes spoken mildly, and how mildly (the log-deviation from the speaker's neutral voice
# that they keep): acted corpora record emotions at several intensities (CREMA-D: low / medium /
# high), and a mild take is hard to tell from neutral or from its neighbours. Chosen on the
# non-test items (benchmarks/synth_separability.py --fusion; docs/synthetic-corpus.md) so that the
# voice is no more reliable than the words: with full-intensity takes only, a voice-and-words
# model trained on congruent items followed the voice on most conflict items (FINDINGS lesson 9).
MILD_SHARE = 0.5
MILD_INTENSITY = 0.4


def intensity_for(seed: int, utt_id: str) -> float:
    """The intensity of one take: ``MILD_INTENSITY`` for a seeded ``MILD_SHARE`` of takes, else 1."""
    from probes.data.synth.design import unit

    return MILD_INTENSITY if unit(seed, "intensity", utt_id) < MILD_SHARE else 1.0
# espeak amplitude at volume factor 1; espeak speech is peaky, so neutral sits well below the
# default 100 to leave the loud emotions room before the peak limiter would flatten them
BASE_VOLUME = 55


@dataclass(frozen=True)
class Speaker:
    id: str
    stock: str      # stock espeak variant whose formants give the timbre
    gender: str     # "male" | "female" (espeak uses it for some consonants)
    f0: float       # pitch base in Hz (espeak's lower pitch bound at neutral)
    span: float     # pitch span in Hz above the base
    rate: int       # neutral speaking rate, words per minute


SPEAKERS: tuple[Speaker, ...] = (
    Speaker("spk01", "m4", "male", 60, 40, 165),
    Speaker("spk02", "m1", "male", 75, 45, 175),
    Speaker("spk03", "m3", "male", 92, 50, 185),
    Speaker("spk04", "m7", "male", 108, 55, 170),
    Speaker("spk05", "f4", "female", 128, 65, 168),
    Speaker("spk06", "f2", "female", 148, 75, 180),
    Speaker("spk07", "f3", "female", 168, 85, 172),
    Speaker("spk08", "f1", "female", 192, 95, 188),
)
SPEAKER_BY_ID = {s.id: s for s in SPEAKERS}


@dataclass(frozen=True)
class Profile:
    """The mean of each knob for one emotion (factors are relative to the speaker's neutral)."""

    pitch: float = 1.0
    range: float = 1.0
    rate: float = 1.0
    volume: float = 1.0
    breath: float = 0.0
    tremolo: float = 0.0
    rough: float = 0.0
    tilt: float = 0.0
    wordgap: float = 0.0
    endings: tuple[tuple[str, float], ...] = ((".", 1.0),)  # (punctuation, probability)


# Directions follow the vocal-emotion literature (high arousal: higher, wider, faster, louder,
# tenser; sadness: lower, flatter, slower, softer, breathier; fear: high, fast, shaky).
PROFILES: dict[str, Profile] = {
    "neutral": Profile(),
    "happy": Profile(pitch=1.18, range=1.5, rate=1.08, volume=1.25, tilt=0.25, endings=(("!", 0.5), (".", 0.5))),
    "sad": Profile(pitch=0.87, range=0.5, rate=0.78, volume=0.68, breath=0.35, tremolo=0.08, tilt=-0.4, wordgap=1.2),
    "angry": Profile(pitch=1.1, range=1.3, rate=1.12, volume=1.55, rough=0.3, tilt=0.6, endings=(("!", 0.7), (".", 0.3))),
    "fear": Profile(pitch=1.32, range=0.75, rate=1.2, volume=0.9, breath=0.35, tremolo=0.35, endings=((".", 0.7), ("?", 0.3))),
    "disgust": Profile(pitch=0.88, range=1.1, rate=0.82, volume=1.0, rough=0.5, tilt=-0.15, wordgap=2.0),
    "surprise": Profile(pitch=1.3, range=2.1, rate=0.92, volume=1.2, tilt=0.1, endings=(("?", 0.85), ("!", 0.15))),
}


@dataclass(frozen=True)
class Prosody:
    """One utterance's drawn knobs; written into the manifest as ``p_<name>`` columns."""

    pitch: float
    range: float
    rate: float
    volume: float
    breath: float
    tremolo: float
    rough: float
    tilt: float
    wordgap: int
    ending: str
    intensity: float = 1.0

    def columns(self) -> dict[str, str]:
        return {f"p_{k}": (f"{v:.4f}" if isinstance(v, float) else str(v)) for k, v in asdict(self).items()}


def expressed(p: Profile, intensity: float) -> Profile:
    """The profile spoken at ``intensity`` (1 = full, 0 = the speaker's neutral voice).

    Factors move toward 1 on a log scale, the quality knobs, tilt and pauses toward 0, and the
    ending keeps the profile's tune with probability ``intensity`` (else a statement).
    """
    if not 0.0 <= intensity <= 1.0:
        raise SynthError(f"intensity={intensity}: give a value between 0 (neutral) and 1 (full profile).")
    if intensity == 1.0:
        return p
    k = intensity
    endings = tuple((e, w * k) for e, w in p.endings if e != ".") + ((".", 1.0 - k + k * dict(p.endings).get(".", 0.0)),)
    return Profile(pitch=p.pitch ** k, range=p.range ** k, rate=p.rate ** k, volume=p.volume ** k, breath=p.breath * k,
                   tremolo=p.tremolo * k, rough=p.rough * k, tilt=p.tilt * k, wordgap=p.wordgap * k, endings=endings)


def draw(emotion: str, rng: np.random.Generator, jitter: float | None = None, intensity: float = 1.0) -> Prosody:
    """Draw one utterance's prosody for ``emotion`` (same rng state -> same draw); jitter defaults to JITTER.

    ``intensity`` < 1 speaks the emotion mildly (``expressed``); the random draws are the same
    whatever the intensity, so a full-intensity take does not change when mild takes are added.
    """
    jitter = JITTER if jitter is None else jitter
    if emotion not in PROFILES:
        raise SynthError(f"no prosody profile for emotion {emotion!r}; profiles exist for {', '.join(PROFILES)}.")
    p = expressed(PROFILES[emotion], intensity)
    z = rng.standard_normal(8)
    q = rng.random(3)

    def quality(mean: float, zi: float) -> float:
        # every voice has a little of each quality, so a single knob never names the class
        return float(np.clip(mean * np.exp(jitter * zi) + 0.06 * abs(zi), 0.0, 1.0))

    endings, probs = zip(*p.endings)
    return Prosody(
        pitch=float(p.pitch * np.exp(jitter * z[0])),
        range=float(p.range * np.exp(jitter * 1.5 * z[1])),  # range varies more than level in real speech
        rate=float(p.rate * np.exp(jitter * 0.8 * z[2])),
        volume=float(p.volume * np.exp(jitter * z[3])),
        breath=quality(p.breath, z[4]),
        tremolo=quality(p.tremolo, z[5]),
        rough=quality(p.rough, z[6]),
        tilt=float(np.clip(p.tilt + 0.3 * z[7], -1.0, 1.0)),
        wordgap=int(rng.poisson(p.wordgap)) if p.wordgap > 0 else 0,
        ending=str(endings[int(np.searchsorted(np.cumsum(probs), q[0] * sum(probs), side="right").clip(0, len(endings) - 1))]),
        intensity=float(intensity),
    )


_KEEP = ("formant", "stressadd", "stressamp", "stresslength", "consonants", "voicing", "tone")
_BREATH_MAX = np.array([75, 75, 50, 40, 15, 10])  # the stock "whisper" variant's breath levels


def variant_text(speaker: Speaker, prosody: Prosody) -> str:
    """The espeak variant file for one speaker speaking with one prosody."""
    timbre = [ln for ln in stock_variant(speaker.stock).splitlines() if ln.strip().lower().startswith(_KEEP)]
    base = speaker.f0 * prosody.pitch
    lines = [
        "language variant", f"name {speaker.id}", f"gender {speaker.gender}", *timbre,
        f"pitch {base:.0f} {base + speaker.span * prosody.range:.0f}",
        "flutter 0", "echo 0 0",  # determinism: see engine.py
    ]
    if prosody.breath > 0.01:
        levels = np.round(_BREATH_MAX * prosody.breath).astype(int)
        lines += ["breath " + " ".join(map(str, levels)), "breathw 150 150 200 200 400 400"]
    return "\n".join(lines) + "\n"


def spoken_text(text: str, ending: str) -> str:
    """The sentence with its final punctuation replaced by the drawn one (the intonation knob)."""
    t = text.strip().rstrip(".!?;:, ")
    if not any(ch.isalnum() for ch in t):
        raise SynthError(f"cannot speak {text!r}: the text has no letters or digits; give a non-empty sentence.")
    return t + ending


def render(text: str, speaker: Speaker, prosody: Prosody, rng: np.random.Generator) -> np.ndarray:
    """Speak ``text`` as ``speaker`` with ``prosody``: float32 at 16 kHz. # [time]

    ``rng`` drives the post-processing (tremolo phase, roughness noise) and must be the
    utterance's own generator so the audio does not depend on build order.
    """
    req = Request(
        text=spoken_text(text, prosody.ending),
        variant=variant_text(speaker, prosody),
        rate=int(np.clip(round(speaker.rate * prosody.rate), 80, 450)),
        volume=int(np.clip(round(BASE_VOLUME * prosody.volume), 5, 200)),
        wordgap=prosody.wordgap,
    )
    x = get_engine().speak(req).astype(np.float32) / 32768.0  # [time] at 22,050 Hz
    x = _voice_quality(x, prosody, rng, ESPEAK_RATE)
    y = to_16k((np.clip(x, -1.0, 1.0) * 32767).astype(np.int16))
    return y


def _voice_quality(x: np.ndarray, p: Prosody, rng: np.random.Generator, sr: int) -> np.ndarray:
    from scipy.signal import lfilter

    rms = float(np.sqrt(np.mean(x ** 2))) + 1e-9
    if abs(p.tilt) > 1e-3:
        if p.tilt > 0:   # first difference adds ~6 dB/octave: a tenser, brighter voice
            hi = lfilter([1.0, -0.95], [1.0], x)
            x = x + p.tilt * 1.5 * hi
        else:            # one-pole low-pass mix: a softer, duller voice
            lo = lfilter([0.25], [1.0, -0.75], x)
            x = (1 + p.tilt) * x - p.tilt * lo
        # tilt changes colour, not loudness: loudness is the volume knob's job
        x = x * (rms / (float(np.sqrt(np.mean(x ** 2))) + 1e-9))
    t = np.arange(len(x)) / sr
    if p.tremolo > 0.005:
        hz = 5.0 + 2.0 * rng.random()
        x = x * (1.0 + 0.6 * p.tremolo * np.sin(2 * np.pi * hz * t + 2 * np.pi * rng.random()))
    if p.rough > 0.005:
        # random gain per ~5 ms, smoothed: cycle-to-cycle amplitude irregularity (shimmer)
        step = int(0.005 * sr)
        g = rng.standard_normal(len(x) // step + 2)
        g = np.repeat(g, step)[: len(x)]
        g = lfilter([0.3], [1.0, -0.7], g)
        x = x * np.clip(1.0 + 0.9 * p.rough * g, 0.0, None)
    peak = float(np.max(np.abs(x)))
    if peak > 0.98:  # keep the loudest angry takes from clipping; rare with volume <= 200
        x = x * (0.98 / peak)
    return x.astype(np.float32)
