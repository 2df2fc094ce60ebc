"""CREMA-D (Crowd-sourced Emotional Multimodal Actors Dataset): 91 actors, 12 sentences, 6 emotions.

Reads ``ROOT/AudioWAV/*.wav`` (or the wavs directly in ROOT) named
``{actor}_{sentence}_{emotion}_{level}.wav``, e.g. ``1001_DFA_ANG_XX.wav``: actor 1001-1091,
a three-letter sentence code, emotion ANG / DIS / FEA / HAP / NEU / SAD, level LO / MD / HI /
XX (unspecified). When ``VideoDemographics.csv`` (ActorID, Age, Sex, Race, Ethnicity) lies in
ROOT, each row gets the actor's ``gender`` and ``age``.

Mapping: ANG angry, DIS disgust, FEA fear, HAP happy, NEU neutral, SAD sad. ``acoustic_label``
is the emotion the actor was asked to portray. The twelve
sentences are emotionally neutral, so ``semantic_label`` is ``neutral``
(``--set neutral_text=false`` leaves it empty). No official split.

Soft labels: when ``processedResults/tabulatedVotes.csv`` (the crowd ratings as the release
tabulates them) lies in ROOT, each clip gets the raters' votes as ``soft_<label>`` counts
(``probes/data/corpora/_soft.py``). The table's first column keys a row as
``100000 * mode + clip``; mode 1 is the voice-only rating (the raters heard the audio alone),
2 face only, 3 both: ``--set soft_mode=voice`` (default), ``face`` or ``audiovisual`` picks
which; the columns A D F H N S are the vote counts (``fileName`` names the clip). Clips without a
row get empty cells; ``--set soft_labels=false`` skips the table.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

from probes.data.corpora._soft import soft_columns, soft_targets
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
        "soft_labels": Option(True, "read processedResults/tabulatedVotes.csv into soft_<label> columns", bool),
        "soft_mode": Option("voice", "which crowd rating gives the soft labels: voice (audio only), face or audiovisual", str,
                            ("voice", "face", "audiovisual")),
    }

    @classmethod
    def records(cls, root: Path, opts: dict[str, Any], labels: Labels) -> Iterator[dict]:
        folder = root / "AudioWAV" if (root / "AudioWAV").is_dir() else root
        files = cls.wavs(folder)
        if not files:
            raise cls.not_like(root, "no .wav files in AudioWAV/ or in the folder itself")
        demo = _demographics(root)
        votes = _votes(root, opts["soft_mode"]) if opts["soft_labels"] else None
        targets = soft_targets(labels)
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
            soft = soft_columns(votes.get(f.stem, {}), labels, targets, str(f)) if votes is not None else {}
            yield cls.record(
                root, f.stem, f, label, semantic="neutral" if opts["neutral_text"] else "",
                text=SENTENCES[sent], sentence_id=sent, speaker=actor,
                raw_label=emo, level=LEVELS[level], gender=gender, age=age, **soft,
            )


VOTE_CODES = {"A": "ANG", "D": "DIS", "F": "FEA", "H": "HAP", "N": "NEU", "S": "SAD"}
MODES = {"voice": 1, "face": 2, "audiovisual": 3}


def _votes(root: Path, mode: str) -> dict[str, dict[str, float]] | None:
    """clip name -> {raw code: votes} from tabulatedVotes.csv; None when the file is not there."""
    import csv

    path = root / "processedResults" / "tabulatedVotes.csv"
    if not path.exists():
        return None
    from probes.data.corpora.base import CorpusError, read_text_file

    rows = list(csv.reader(read_text_file(path).splitlines()))
    if not rows:
        return {}
    head = [h.strip() for h in rows[0]]
    need = ["fileName", *VOTE_CODES]
    missing = [c for c in need if c not in head]
    if missing:
        raise CorpusError(f"{path}: no column(s) {', '.join(missing)}; expected the release's tabulatedVotes.csv "
                          "(key, clipNum, fileName, A, D, F, H, N, S, ...), or --set soft_labels=false")
    at = {c: head.index(c) for c in need}
    out: dict[str, dict[str, float]] = {}
    for n, r in enumerate(rows[1:], start=2):
        if not r or not "".join(r).strip():
            continue
        try:
            key = int(float(r[0]))
            counts = {VOTE_CODES[c]: float(r[at[c]] or 0) for c in VOTE_CODES}
        except (ValueError, IndexError):
            raise CorpusError(f"{path}:{n}: the key {r[0]!r} or a vote count is not a number; "
                              "expected the release's tabulatedVotes.csv, or --set soft_labels=false") from None
        if key // 100000 != MODES[mode]:
            continue
        name = r[at["fileName"]].strip()
        name = name[:-4] if name.lower().endswith(".wav") else name
        acc = out.setdefault(name, {})
        for k, v in counts.items():
            acc[k] = acc.get(k, 0.0) + v
    return out


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
