"""EmoDB (Berlin Database of Emotional Speech): 10 actors, 10 German sentences, 7 emotions.

Reads ``ROOT/wav/SSTTTEV.wav`` (or the wavs directly in ROOT): speaker ``SS`` (03, 08-16),
text ``TTT`` (a01, a02, a04, a05, a07, b01-b03, b09, b10), emotion ``E`` (a German initial),
version ``V`` (a-f). The optional ``erkennung.txt`` beside ``wav/`` (Latin-1, tab-separated,
percent with a decimal comma) adds the listening test's ``recognised`` and ``natural`` scores.

Mapping: W (Wut) angry, L (Langeweile, boredom) other, E (Ekel) disgust, A (Angst) fear,
F (Freude) happy, T (Trauer) sad, N neutral.

Boredom has no canonical label: it is scored as ``other``, and it is carried into runs as the
extra label ``bored`` (column ``extra_label``): the model is offered "bored" and that answer is
scored as ``other`` (``--set extra_labels={}`` turns this off; docs/corpora.md).

The ten sentences were chosen to be emotionally neutral in their words, so ``semantic_label``
is ``neutral`` for every row (``--set neutral_text=false`` leaves it empty) and ``text_design``
is ``neutral``: EmoDB is *neutral by design*. Its items are congruent exactly when the voice is
neutral, and every other recording is a neutral-text item (neutral words, emotional voice), not a
conflict between emotional words and voice: the scores report them as such (``neutral_pull``), a
real-voice control set.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

from probes.data.corpora.base import Corpus, Labels, Option, read_text_file
from probes.registry import CORPORA

# The ten EmoDB sentences (Burkhardt et al. 2005), keyed by their text code.
SENTENCES: dict[str, str] = {
    "a01": "Der Lappen liegt auf dem Eisschrank.",
    "a02": "Das will sie am Mittwoch abgeben.",
    "a04": "Heute abend könnte ich es ihm sagen.",
    "a05": "Das schwarze Stück Papier befindet sich da oben neben dem Holzstück.",
    "a07": "In sieben Stunden wird es soweit sein.",
    "b01": "Was sind denn das für Tüten, die da unter dem Tisch stehen?",
    "b02": "Sie haben es gerade hochgetragen und jetzt gehen sie wieder runter.",
    "b03": "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe Agnes besucht.",
    "b09": "Ich will das eben wegbringen und dann mit Karl was trinken gehen.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
}

# Speaker code -> (gender, age at recording) from the corpus documentation.
SPEAKERS: dict[str, tuple[str, int]] = {
    "03": ("m", 31), "08": ("f", 34), "09": ("f", 21), "10": ("m", 32), "11": ("m", 26),
    "12": ("m", 30), "13": ("f", 32), "14": ("f", 35), "15": ("m", 25), "16": ("f", 31),
}

NAME = re.compile(r"(\d\d)([ab]\d\d)([A-Z])([a-z])\.wav")


@CORPORA.register("emodb")
class EmoDB(Corpus):
    """EmoDB: 535 acted German utterances, 10 speakers, 7 emotions, emotionally neutral sentences."""

    mapping = {"W": "angry", "L": "other", "E": "disgust", "A": "fear", "F": "happy", "T": "sad", "N": "neutral"}
    extra_labels = {"L": "bored"}
    neutral_text_by_design = True
    language = "de"
    display = "EmoDB"
    layout = "wav/ with files like 03a01Fa.wav (speaker, text code, emotion letter, version)"
    options = {
        "neutral_text": Option(True, "set semantic_label=neutral (the sentences are emotionally neutral)", bool),
    }

    @classmethod
    def records(cls, root: Path, opts: dict[str, Any], labels: Labels) -> Iterator[dict]:
        folder = root / "wav" if (root / "wav").is_dir() else root
        files = cls.wavs(folder)
        if not files:
            raise cls.not_like(root, "no .wav files in wav/ or in the folder itself")
        scores = _listening_scores(folder.parent if folder.name == "wav" else folder)
        for f in files:
            spk, text_code, emo, version = cls.match(NAME, f, "SSTTTEV.wav (e.g. 03a01Fa.wav)").groups()
            if text_code not in SENTENCES:
                raise cls.not_like(f, f"unknown text code {text_code!r}; EmoDB has {', '.join(SENTENCES)}")
            label = labels(emo, str(f))
            if label is None:
                continue
            gender, age = SPEAKERS.get(spk, ("", ""))
            rec, nat = scores.get(f.name, ("", ""))
            yield cls.record(
                root, f.stem, f, label,
                semantic="neutral" if opts["neutral_text"] else "",
                text=SENTENCES[text_code], sentence_id=text_code, speaker=spk,
                raw_label=emo, version=version, gender=gender, age=age, recognised=rec, natural=nat,
            )


def _listening_scores(folder: Path) -> dict[str, tuple[str, str]]:
    """file name -> (recognised %, natural %) from erkennung.txt, or {} when it is absent."""
    path = folder / "erkennung.txt"
    if not path.exists():
        return {}
    out = {}
    for line in read_text_file(path, ("latin-1",)).splitlines()[1:]:
        parts = [p.strip() for p in line.split("\t")]
        if len(parts) >= 4 and parts[1].endswith(".wav"):
            out[parts[1]] = (parts[2].replace(",", "."), parts[3].replace(",", "."))
    return out
