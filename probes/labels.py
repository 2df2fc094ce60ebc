"""The canonical emotion vocabulary and the per-corpus mappings onto it.

Every label in a Manifest, a prediction or a metric is one of ``CANONICAL``. Each corpus
importer declares its own mapping (raw code -> canonical label) as a plain dict, and the
mapping tables are written out in docs/corpora.md. Raw labels that a corpus has but the
vocabulary does not (EmoDB's boredom, IEMOCAP's frustration) map to ``other`` or are dropped,
as the importer documents; they are never guessed.
"""

from __future__ import annotations

import re
from typing import Iterable, Mapping

CANONICAL: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "fear", "disgust", "surprise", "other")
EMOTIONS: tuple[str, ...] = CANONICAL[:-1]  # without "other"

# Spellings seen in real prediction tables and model answers -> canonical label.
SYNONYMS: dict[str, str] = {
    "neutral": "neutral", "neu": "neutral", "calm": "neutral", "neutrality": "neutral",
    "happy": "happy", "hap": "happy", "happiness": "happy", "joy": "happy", "joyful": "happy",
    "excited": "happy", "exc": "happy", "glad": "happy",
    "sad": "sad", "sadness": "sad", "unhappy": "sad",
    "angry": "angry", "ang": "angry", "anger": "angry", "mad": "angry", "furious": "angry",
    "fear": "fear", "fearful": "fear", "fea": "fear", "afraid": "fear", "scared": "fear",
    "disgust": "disgust", "disgusted": "disgust", "dis": "disgust",
    "surprise": "surprise", "surprised": "surprise", "sur": "surprise",
    "other": "other",
}


class LabelError(ValueError):
    """A label outside the vocabulary or outside a corpus mapping."""


def canonical(raw: object, mapping: Mapping[str, str] | None = None, *, where: str = "") -> str:
    """Map one raw label to the canonical vocabulary, or raise LabelError naming ``where``."""
    key = str(raw).strip()
    if mapping is not None:
        if key in mapping:
            return mapping[key]
        low = key.lower()
        if low in mapping:
            return mapping[low]
        raise LabelError(
            f"{where}label {key!r} is not in this corpus' mapping ({', '.join(sorted(mapping))}); "
            "fix the label or extend the mapping with --label-map."
        )
    low = key.lower()
    if low in SYNONYMS:
        return SYNONYMS[low]
    raise LabelError(
        f"{where}label {key!r} is not a canonical emotion ({', '.join(CANONICAL)}); "
        "map it first (see docs/corpora.md)."
    )


_WORD = re.compile(r"[a-z]+")


def parse_answer(text: object, labels: Iterable[str] = EMOTIONS) -> str | None:
    """Map a free-text model answer to a label, or None when it names none or several.

    Rules, in order: the whole answer is a known spelling; otherwise the set of labels named by
    any word of the answer (through SYNONYMS) must have exactly one member. "I think it is
    angry, not sad" names two labels and counts as invalid rather than being guessed.
    """
    if text is None:
        return None
    s = str(text).strip().lower()
    allowed = set(labels)
    if s in SYNONYMS and SYNONYMS[s] in allowed:
        return SYNONYMS[s]
    found = {SYNONYMS[w] for w in _WORD.findall(s) if w in SYNONYMS and SYNONYMS[w] in allowed}
    return found.pop() if len(found) == 1 else None
