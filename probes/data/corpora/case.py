"""CASE (Conflict in Acoustic-Semantic Emotion): 378 synthetic utterances whose voice contradicts the words.

The CASE release's file layout is NOT known here (the FAS/CASE paper points to a repository
this project has not seen). The importer therefore reads a metadata table with the columns of
the paper's Table 7 (its illustrative samples), one row per utterance:

    ID | Utterance | GT Emo. | Semantic Emo. | Contextual Description

(``GT Emo.`` is the ground-truth acoustic emotion, what is heard; ``Semantic Emo.`` what the
words imply). Column names are matched loosely (case, spaces, dots and underscores ignored),
with these alternatives: id / utt_id / key; text; acoustic_emotion / gt_emotion / label;
semantic_emotion / semantic; context / description. An ``audio`` (or wav / file / filename /
path) column gives each wav relative to the table's folder; without one the wav is found as
``{ID}.wav`` anywhere under the folder. Optional ``speaker`` (or timbre / voice) and
``language`` columns are read; without ``language`` a row is ``zh`` when its text contains CJK
characters and ``en`` otherwise (the corpus is Mandarin and English).

ROOT is the table itself (CSV, TSV, JSON or JSONL) or a folder holding it (``--set
metadata=FILE`` picks it; otherwise metadata.* / case*.* or the only table in the folder).

Mapping (the spellings of Table 7 and their plain forms): angry, happy, excited -> happy, sad,
fear, surprised -> surprise, hate -> disgust (the paper's disgust class, described as loathing
and contempt), disgust, neutral, tension -> other (no canonical class; ``--label-map`` with
{"tension": "fear"} if you read it as fear). CASE is a test-only benchmark: ``split`` is test.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

from probes.data.corpora.base import TABLE_SUFFIXES, Corpus, CorpusError, Labels, Option, find_column, read_table, row_where
from probes.registry import CORPORA

COLS = {
    "id": ("ID", "utt_id", "sample_id", "key", "name"),
    "text": ("Utterance", "text", "transcript", "sentence"),
    "acoustic": ("GT Emo.", "GT Emotion", "gt_emo", "acoustic_emotion", "acoustic_emo", "acoustic", "ground_truth", "label"),
    "semantic": ("Semantic Emo.", "Semantic Emotion", "semantic_emo", "semantic_emotion", "semantic"),
    "context": ("Contextual Description", "context", "description", "scenario"),
    "audio": ("audio", "audio_path", "wav", "wav_path", "file", "filename", "path"),
    "speaker": ("speaker", "timbre", "voice"),
    "language": ("language", "lang"),
}
CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


@CORPORA.register("case")
class CASE(Corpus):
    """CASE: synthetic Mandarin/English conflict speech (voice vs words), read from a Table-7-style metadata table."""

    mapping = {
        "angry": "angry", "anger": "angry", "happy": "happy", "happiness": "happy", "excited": "happy",
        "sad": "sad", "sadness": "sad", "fear": "fear", "fearful": "fear", "surprised": "surprise",
        "surprise": "surprise", "hate": "disgust", "disgust": "disgust", "neutral": "neutral", "tension": "other",
    }
    display = "CASE"
    layout = ("a metadata table (CSV/TSV/JSON/JSONL) with the columns of the FAS/CASE paper's Table 7: "
              "ID, Utterance, GT Emo., Semantic Emo., Contextual Description, with the wavs beside it")
    options = {
        "metadata": Option(None, "the metadata table inside ROOT (default: metadata.*, case*.* or the only table)", Path),
        "language": Option("auto", "language of every row (auto: zh for CJK text, else en; a language column wins)", str),
    }

    @classmethod
    def records(cls, root: Path, opts: dict[str, Any], labels: Labels) -> Iterator[dict]:
        table = cls._table(root, opts["metadata"])
        base = table.parent
        rows = read_table(table)
        if not rows:
            raise cls.not_like(table, "the table is empty")
        cols = {k: find_column(rows[0], cands) for k, cands in COLS.items()}
        missing = [k for k in ("id", "acoustic", "semantic") if cols[k] is None]
        if missing:
            raise cls.not_like(table, f"no column for {', '.join(missing)}; it has {', '.join(rows[0])}")
        index: dict[str, Path] | None = None
        for i, r in enumerate(rows):
            uid = r[cols["id"]].strip()
            where = row_where(table, i)
            if cols["audio"] and r[cols["audio"]].strip():
                audio = base / r[cols["audio"]].strip()
            else:
                if index is None:  # built once, only when some row needs it
                    index = {p.stem: p for p in cls.wavs(base, recursive=True)}
                audio = index.get(uid)
                if audio is None:
                    if opts["check_audio"]:
                        raise CorpusError(f"{where}: no audio column and no {uid}.wav under {base}; add an audio column or the wav.")
                    audio = base / f"{uid}.wav"
            acoustic = labels(r[cols["acoustic"]], where)
            semantic = labels(r[cols["semantic"]], where)
            if acoustic is None:
                continue
            text = r[cols["text"]].strip() if cols["text"] else ""
            if cols["language"] and r[cols["language"]].strip():
                lang = r[cols["language"]].strip()
            elif opts["language"] != "auto":
                lang = opts["language"]
            else:
                lang = "zh" if CJK.search(text) else "en"
            yield cls.record(
                base, uid, audio, acoustic, semantic=semantic or "", text=text, sentence_id=uid,
                speaker=r[cols["speaker"]].strip() if cols["speaker"] else "", split="test", language=lang,
                context=r[cols["context"]].strip() if cols["context"] else "",
                raw_label=r[cols["acoustic"]].strip(), raw_semantic=r[cols["semantic"]].strip(),
            )

    @classmethod
    def _table(cls, root: Path, metadata: Path | None) -> Path:
        if root.is_file():
            return root
        if metadata is not None:
            path = metadata if metadata.is_absolute() else root / metadata
            if not path.exists():
                raise CorpusError(f"{path}: no such metadata table; --set metadata=FILE names it, relative to {root}.")
            return path
        tables = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in TABLE_SUFFIXES)
        preferred = [p for p in tables if p.stem.lower() == "metadata" or p.stem.lower().startswith("case")]
        if len(preferred) == 1:
            return preferred[0]
        if len(tables) == 1:
            return tables[0]
        if not tables:
            raise cls.not_like(root, "no metadata table in it")
        found = ", ".join(p.name for p in tables)
        raise cls.not_like(root, f"cannot tell which table is the metadata (found: {found}); pick it with --set metadata=FILE")
