"""MELD (Multimodal EmotionLines Dataset): utterances of the TV series Friends, 7 emotions, official splits.

Reads the label tables ``ROOT/{train,dev,test}_sent_emo.csv`` (or ``{split}.csv``) with the
columns Utterance, Speaker, Emotion, Sentiment, Dialogue_ID, Utterance_ID (Season, Episode,
StartTime, EndTime are kept when present) and the audio ``dia{D}_utt{U}.wav`` extracted from
the release's mp4 clips, found at any depth in the split's folder: the first of
``{split}/``, the release's own folder (``train_splits``, ``dev_splits_complete``,
``output_repeated_splits_test``), ``{split}_audio/``, ``audio/{split}/``, ``wav/{split}/`` that
exists. The release ships video only: extract the audio first (e.g. ffmpeg -ac 1 -ar 16000).

Mapping: neutral neutral, joy happy, sadness sad, anger angry, fear fear, disgust disgust,
surprise surprise. ``Sentiment`` (positive / negative / neutral) is kept as an extra.
MELD's label was annotated from the video, the voice and the words together, so
``acoustic_label`` here is the multimodal label, not a voice-only one; there is no separate
text label and ``semantic_label`` stays empty. ``utt_id`` is ``{split}_dia{D}_utt{U}`` because
dialogue numbers restart in every split. Copies of MELD often lack a clip or two (or fail to
decode one when extracting audio): ``--set missing_audio=drop`` leaves such rows out instead of failing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from probes.data.corpora.base import Corpus, CorpusError, Labels, Option, find_column, read_table
from probes.registry import CORPORA

SPLITS = ("train", "dev", "test")
AUDIO_DIRS = {
    "train": ("train", "train_splits", "train_audio", "audio/train", "wav/train"),
    "dev": ("dev", "dev_splits_complete", "dev_audio", "audio/dev", "wav/dev"),
    "test": ("test", "output_repeated_splits_test", "test_audio", "audio/test", "wav/test"),
}
COLUMNS = ("Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID")
# Windows-1252 punctuation that survives as C1 control characters in the release's CSVs
_CP1252 = str.maketrans({"\x91": "'", "\x92": "'", "\x93": '"', "\x94": '"', "\x96": "-", "\x97": "-", "\x85": "..."})


@CORPORA.register("meld")
class MELD(Corpus):
    """MELD: English TV dialogue (Friends), 7 multimodal emotion labels, official train/dev/test."""

    mapping = {"neutral": "neutral", "joy": "happy", "sadness": "sad", "anger": "angry", "fear": "fear",
               "disgust": "disgust", "surprise": "surprise"}
    display = "MELD"
    layout = ("train_sent_emo.csv / dev_sent_emo.csv / test_sent_emo.csv with the columns "
              f"{', '.join(COLUMNS)}, and audio dia{{D}}_utt{{U}}.wav in the split folders")
    options = {
        "missing_audio": Option("error", "a table row without its wav: error or drop", str, ("error", "drop")),
    }

    @classmethod
    def records(cls, root: Path, opts: dict[str, Any], labels: Labels) -> Iterator[dict]:
        if not root.is_dir():
            raise cls.not_like(root, "not a folder")
        tables = {s: t for s in SPLITS for t in (root / f"{s}_sent_emo.csv", root / f"{s}.csv") if t.exists()}
        if not tables:
            raise cls.not_like(root, "no train_sent_emo.csv, dev_sent_emo.csv or test_sent_emo.csv")
        for split, table in tables.items():
            rows = read_table(table)
            if not rows:
                continue
            cols = {c: find_column(rows[0], [c]) for c in COLUMNS}
            missing = [c for c, v in cols.items() if v is None and c not in ("Sentiment", "Speaker")]
            if missing:
                raise CorpusError(f"{table}: missing column(s) {', '.join(missing)}; MELD tables have {', '.join(COLUMNS)}.")
            audio_dir = next((root / d for d in AUDIO_DIRS[split] if (root / d).is_dir()), None)
            if audio_dir is None and opts["check_audio"] and opts["missing_audio"] == "error":
                raise cls.not_like(root, f"no audio folder for {split} (looked for {', '.join(AUDIO_DIRS[split])})")
            index = {p.name: p for p in cls.wavs(audio_dir, recursive=True)} if audio_dir else {}
            for i, r in enumerate(rows, start=2):
                d, u = r[cols["Dialogue_ID"]].strip(), r[cols["Utterance_ID"]].strip()
                if not (d.isdigit() and u.isdigit()):
                    raise CorpusError(f"{table}: row {i}: Dialogue_ID {d!r} / Utterance_ID {u!r} are not numbers.")
                name = f"dia{d}_utt{u}.wav"
                audio = index.get(name)
                if audio is None:
                    if opts["missing_audio"] == "drop":
                        continue
                    audio = (audio_dir or root / AUDIO_DIRS[split][0]) / name  # Manifest reports it if check_audio
                label = labels(r[cols["Emotion"]], f"{table}: row {i}")
                if label is None:
                    continue
                extras = {k.lower(): r[c] for k in ("Season", "Episode", "StartTime", "EndTime")
                          if (c := find_column(rows[0], [k]))}
                yield cls.record(
                    root, f"{split}_dia{d}_utt{u}", audio, label,
                    text=r[cols["Utterance"]].translate(_CP1252).strip(),
                    speaker=r[cols["Speaker"]].strip() if cols["Speaker"] else "", split=split,
                    raw_label=r[cols["Emotion"]].strip(), dialogue=d,
                    sentiment=r[cols["Sentiment"]].strip() if cols["Sentiment"] else "", **extras,
                )
