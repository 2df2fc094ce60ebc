"""EMOVO: Italian acted emotional speech, 6 actors (f1-f3, m1-m3), 14 sentences, 7 emotions.

Reads ``ROOT/{actor}/{emotion}-{actor}-{sentence}.wav`` (the release's actor folders f1, f2,
f3, m1, m2, m3, possibly inside an ``EMOVO/`` folder), e.g. ``dis-f1-b1.wav``. Sentence codes:
b1-b3 short, l1-l4 long, n1-n5 nonsense, d1-d2 questions (extra ``sentence_type``); ``text`` is
the Italian sentence of the code, as the corpus documentation lists it.

Mapping (Italian names): dis (disgusto) disgust, gio (gioia) happy, neu (neutrale) neutral,
pau (paura) fear, rab (rabbia) angry, sor (sorpresa) surprise, tri (tristezza) sad.
The sentences were written to carry no emotion (or no meaning), so ``semantic_label`` is
``neutral`` (``--set neutral_text=false`` leaves it empty). No official split.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

from probes.data.corpora.base import Corpus, Labels, Option
from probes.registry import CORPORA

ACTORS = ("f1", "f2", "f3", "m1", "m2", "m3")
NAME = re.compile(r"([a-z]{3})-([fm]\d)-([a-z]\d)\.wav")
RULE = "{emotion}-{actor}-{sentence}.wav (e.g. dis-f1-b1.wav)"
# The 14 EMOVO sentences (Costantini et al. 2014), keyed by their code in the file names.
SENTENCES: dict[str, str] = {
    "b1": "Gli operai si alzano presto.",
    "b2": "I vigili sono muniti di pistola.",
    "b3": "La cascata fa molto rumore.",
    "l1": "L'autunno prossimo Tony partirà per la Spagna nella prima metà di ottobre.",
    "l2": "Ora prendo la felpa di là ed esco per fare una passeggiata.",
    "l3": "Un attimo dopo s'è incamminato... ed è inciampato.",
    "l4": "Vorrei il numero telefonico del Signor Piatti.",
    "n1": "La casa forte vuole col pane.",
    "n2": "La forza trova il passo e l'aglio rosso.",
    "n3": "Il gatto sta scorrendo nella pera.",
    "n4": "Insalata pastasciutta coscia d'agnello limoncello.",
    "n5": "Uno quarantatré dieci mille cinquantasette venti.",
    "d1": "Sabato sera cosa farà?",
    "d2": "Porti con te quella cosa?",
}
SENTENCE_TYPES = {"b": "short", "l": "long", "n": "nonsense", "d": "question"}


@CORPORA.register("emovo")
class EMOVO(Corpus):
    """EMOVO: acted Italian speech, 6 actors, 14 neutral or nonsense sentences, 7 emotions."""

    mapping = {"dis": "disgust", "gio": "happy", "neu": "neutral", "pau": "fear", "rab": "angry",
               "sor": "surprise", "tri": "sad"}
    language = "it"
    display = "EMOVO"
    layout = f"actor folders f1 f2 f3 m1 m2 m3 with files named {RULE}"
    options = {
        "neutral_text": Option(True, "set semantic_label=neutral (the sentences carry no emotion)", bool),
    }

    @classmethod
    def records(cls, root: Path, opts: dict[str, Any], labels: Labels) -> Iterator[dict]:
        base = root / "EMOVO" if not any((root / a).is_dir() for a in ACTORS) and (root / "EMOVO").is_dir() else root
        actors = [base / a for a in ACTORS if (base / a).is_dir()]
        if not actors:
            raise cls.not_like(root, "no actor folder f1 ... m3")
        for folder in actors:
            for f in cls.wavs(folder):
                emo, actor, sent = cls.match(NAME, f, RULE).groups()
                if actor != folder.name:
                    raise cls.not_like(f, f"actor {actor} in the name but the folder is {folder.name}")
                if sent not in SENTENCES:
                    raise cls.not_like(f, f"unknown sentence code {sent!r}; EMOVO has {', '.join(SENTENCES)}")
                label = labels(emo, str(f))
                if label is None:
                    continue
                yield cls.record(
                    root, f.stem, f, label, semantic="neutral" if opts["neutral_text"] else "",
                    text=SENTENCES[sent], sentence_id=sent, speaker=actor, raw_label=emo, gender=actor[0],
                    sentence_type=SENTENCE_TYPES[sent[0]],
                )
