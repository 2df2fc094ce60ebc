"""The canonical emotion vocabulary and the per-corpus mappings onto it.

Every label in a Manifest, a prediction or a metric is one of ``CANONICAL``. Each corpus
importer declares its own mapping (raw code -> canonical label) as a plain dict, and the
mapping tables are written out in docs/corpora.md. Raw labels that a corpus has but the
vocabulary does not (EmoDB's boredom, IEMOCAP's frustration) map to ``other`` or are dropped,
as the importer documents; they are never guessed.

**Extra labels.** A corpus may also carry such a label into a run as an *extra label*: a name
the model is offered and may answer (``bored``) together with the canonical label it is scored
as (``other``). ``extra_label_map`` reads and checks such a mapping ({extra: canonical}); the
manifest keeps canonical labels only, and the mapping is written in the run's manifest.json
(``extra_labels``) where scoring reads it.
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

# Spellings of the extra labels corpora may carry into a run (see the module docstring).
EXTRA_SPELLINGS: dict[str, str] = {
    "bored": "bored", "boredom": "bored", "boring": "bored",
    "frustrated": "frustrated", "frustration": "frustrated",
    "contempt": "contempt", "contemptuous": "contempt",
    "calm": "calm",
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
    # a label of the run is always its own spelling; extra labels (bored) add theirs
    spell = {**{l: l for l in allowed}, **SYNONYMS,
             **{k: v for k, v in EXTRA_SPELLINGS.items() if v in allowed}}
    if s in spell and spell[s] in allowed:
        return spell[s]
    found = {spell[w] for w in _WORD.findall(s) if w in spell and spell[w] in allowed}
    return found.pop() if len(found) == 1 else None


def extra_label_map(value: object, *, where: str = "extra_labels") -> dict[str, str]:
    """Check an extra-label mapping {extra label: canonical label}: the extra names are new
    words (not canonical labels), the targets are canonical. A target of "" removes the extra."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise LabelError(f"{where}: give a mapping {{extra label: canonical label}}, e.g. {{\"bored\": \"other\"}}")
    out: dict[str, str] = {}
    for k, v in value.items():
        name, target = str(k).strip().lower(), str(v or "").strip().lower()
        if not target:
            continue
        if name in CANONICAL:
            raise LabelError(f"{where}: {name!r} is already a canonical label; extra labels are other words")
        if target not in CANONICAL:
            raise LabelError(f"{where}: {name!r} maps to {target!r}, not a canonical label ({', '.join(CANONICAL)})")
        out[name] = target
    return out


def run_labels(extra: Mapping[str, str] | None = None, base: Iterable[str] = EMOTIONS) -> tuple[str, ...]:
    """The label set a run offers the model: ``base`` plus the extra labels' names."""
    base = tuple(base)
    return base + tuple(k for k in (extra or {}) if k not in base)


def manifest_extra_labels(manifest) -> dict[str, str]:
    """{extra label: canonical label} of a manifest's ``extra_label`` column (the canonical label
    is the rows' ``acoustic_label``); {} when it has none. One extra label with two canonical
    labels is a LabelError naming both."""
    df = getattr(manifest, "df", manifest)
    if df is None or "extra_label" not in getattr(df, "columns", ()):
        return {}
    out: dict[str, str] = {}
    for name, canon in zip(df["extra_label"].astype(str), df["acoustic_label"].astype(str)):
        name = name.strip().lower()
        if not name or name == "nan":
            continue
        if out.setdefault(name, canon) != canon:
            raise LabelError(f"extra label {name!r} stands for both {out[name]!r} and {canon!r} in this manifest; "
                             "give each extra label one canonical label")
    return extra_label_map(out, where="manifest extra_label")
