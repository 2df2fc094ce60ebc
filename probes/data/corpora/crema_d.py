"""CREMA-D (Crowd-sourced Emotional Multimodal Actors Dataset): 91 actors, 12 sentences, 6 emotions.

Reads ``ROOT/AudioWAV/*.wav`` (or the wavs directly in ROOT) named
``{actor}_{sentence}_{emotion}_{level}.wav``, e.g. ``1001_DFA_ANG_XX.wav``: actor 1001-1091,
a three-letter sentence code, emotion ANG / DIS / FEA / HAP / NEU / SAD, level LO / MD / HI /
XX (unspecified). When ``VideoDemographics.csv`` (ActorID, Age, Sex, Race, Ethnicity) lies in
ROOT, each row gets the actor's ``gender`` and ``age``.

Mapping: ANG angry, DIS disgust, FEA fear, HAP happy, NEU neutral, SAD sad. ``acoustic_label``
is the emotion the actor was asked to portray (the crowd ratings are not read). The twelve
sentences are emotionally neutral, so ``semantic_label`` is ``neutral``
(``--set neutral_text=false`` leaves it empty). No official split.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

from probes.data.corpora.base import Corpus, Labels, Option, find_column, read_table
from probes.registry import CORPORA

NAME = re.compile(r"(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})\.wav")
RULE = "{actor}_{sentence}_{emotion}_{level}.wav (e.g. 1001_DFA_ANG_XX.wav)"
SENTENCES = {
    "IEO": "It's eleven o'clock.",
    "TIE": "That is exactly what happened.",
    "IOM": "I'm on my way to the meeting.",
    "IWW": "I wonder what this is about.",
    "TAI": "The airplane is almost full.",
    "MTI": "Maybe tomorrow it will be cold.",
    "IWL": "I would like a new alarm clock.",
    "ITH": "I think I have a doctor's appointment.",
    "DFA": "Don't forget a jacket.",
    "ITS": "I think I've seen this before.",
    "TSI": "The surface is slick.",
    "WSI": "We'll stop in a couple of minutes.",
}
LEVELS = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}


@CORPORA.register("crema-d")
class CremaD(Corpus):
    """CREMA-D: acted English speech, 91 actors, 12 neutral sentences, 6 emotions."""

    mapping = {"ANG": "angry", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
    display = "CREMA-D"
    layout = f"AudioWAV/ with files named {RULE}"
    options = {
        "neutral_text": Option(True, "set semantic_label=neutral (the sentences are neutral)", bool),
    }

    @classmethod
    def records(cls, root: Path, opts: dict[str, Any], labels: Labels) -> Iterator[dict]:
        folder = root / "AudioWAV" if (root / "AudioWAV").is_dir() else root
        files = cls.wavs(folder)
        if not files:
            raise cls.not_like(root, "no .wav files in AudioWAV/ or in the folder itself")
        demo = _demographics(root)
        for f in files:
            actor, sent, emo, level = cls.match(NAME, f, RULE).groups()
            if sent not in SENTENCES:
                raise cls.not_like(f, f"unknown sentence code {sent!r}; CREMA-D has {', '.join(SENTENCES)}")
            if level not in LEVELS:
                raise cls.not_like(f, f"unknown level {level!r}; CREMA-D has {', '.join(LEVELS)}")
            label = labels(emo, str(f))
            if label is None:
                continue
            gender, age = demo.get(actor, ("", ""))
            yield cls.record(
                root, f.stem, f, label, semantic="neutral" if opts["neutral_text"] else "",
                text=SENTENCES[sent], sentence_id=sent, speaker=actor,
                raw_label=emo, level=LEVELS[level], gender=gender, age=age,
            )


def _demographics(root: Path) -> dict[str, tuple[str, str]]:
    path = root / "VideoDemographics.csv"
    if not path.exists():
        return {}
    rows = read_table(path)
    if not rows:
        return {}
    aid, sex, age = (find_column(rows[0], [c]) for c in ("ActorID", "Sex", "Age"))
    if aid is None:
        return {}
    g = {"male": "m", "female": "f"}
    return {r[aid].strip(): (g.get(r[sex].strip().lower(), "") if sex else "", r[age].strip() if age else "") for r in rows}
