"""EMIS (Emotionally Incongruent Synthetic speech): 104 English sentences x 4 voice emotions x 3 TTS.

Reads every ``.wav`` under ROOT (any depth: the Zenodo archive's folder layout is not fixed
here, the file names carry the whole design):

    {sentence}_{textEmotion}_{explicit|implicit}_{voiceEmotion}_{ESDspeaker}_{TTS}.wav
    {sentence}_neutral_{voiceEmotion}_{ESDspeaker}_{TTS}.wav          (neutral text)

e.g. ``05_sad_implicit_neutral_0012_STYLE.wav``: sentence 05 of the sad-implicit list, spoken
with a neutral voice cloned from ESD speaker 0012 by StyleTTS. ``acoustic_label`` is the voice
emotion, ``semantic_label`` the text emotion; extras ``explicitness`` (explicit / implicit /
neutral, as the study's ``txt_cond`` column) and ``tts`` (STYLE, COSY, F5TTS).
``sentence_id`` is ``{textEmotion}-{explicitness}-{NN}`` (``neutral-NN`` for neutral text):
sentence numbers restart in each list, so the number alone is not an id.

Texts come from the study's ``emotion_sentences_dataset.csv`` (one column per list, e.g.
``sad_implicit``; row NN is sentence NN) when ``--set sentences=PATH`` names it or it lies in
ROOT; otherwise ``text`` stays empty. The project never ships those sentences.

Without audio: ``parse_name`` reads one file name and ``from_filenames`` builds a manifest from
names alone (``check_audio`` off). ROOT may also be a table with a ``filename`` column (the
study's ``aggregated_results_*.csv``): then the manifest is built from its unique file names.

Mapping: the four labels are already canonical (happy, sad, angry, neutral).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable, Iterator

from probes.data.corpora.base import Corpus, CorpusError, Labels, Option, read_table
from probes.data.manifest import Manifest
from probes.registry import CORPORA

NAME = re.compile(
    r"(?P<sentence>\d+)_(?P<text>[a-z]+)_(?:(?P<explicitness>explicit|implicit)_)?"
    r"(?P<voice>[a-z]+)_(?P<speaker>\d{4})_(?P<tts>[A-Za-z0-9]+)\.wav"
)
RULE = "{sentence}_{textEmotion}_{explicit|implicit}_{voiceEmotion}_{ESDspeaker}_{TTS}.wav"
SENTENCE_FILE = "emotion_sentences_dataset.csv"


def parse_name(name: str) -> dict[str, str]:
    """The design fields of one EMIS file name (raw codes, not yet mapped).

    >>> parse_name("05_sad_implicit_neutral_0012_STYLE.wav")["voice"]
    'neutral'
    """
    m = NAME.fullmatch(Path(name).name)
    if m is None:
        raise CorpusError(f"{name} does not look like an EMIS file name: expected {RULE} (neutral text drops the explicit/implicit part).")
    d = m.groupdict()
    if d["text"] == "neutral":
        if d["explicitness"]:
            raise CorpusError(f"{name}: neutral text has no explicit/implicit part in EMIS names ({RULE}).")
        d["explicitness"] = "neutral"
    elif not d["explicitness"]:
        raise CorpusError(f"{name}: a {d['text']} text needs its explicit/implicit part ({RULE}).")
    d["sentence_id"] = (
        f"neutral-{d['sentence']}" if d["text"] == "neutral" else f"{d['text']}-{d['explicitness']}-{d['sentence']}"
    )
    return d


def read_sentences(path: Path) -> dict[str, str]:
    """sentence_id -> text from the study's emotion_sentences_dataset.csv."""
    rows = read_table(path)
    if not rows:
        raise CorpusError(f"{path}: empty; expected the EMIS sentence table (columns like happy_explicit, neutral).")
    cols = list(rows[0])
    if not any(c == "neutral" or c.endswith(("_explicit", "_implicit")) for c in cols):
        raise CorpusError(f"{path}: columns {cols} are not the EMIS sentence lists (happy_explicit, ..., neutral).")
    out = {}
    for col in cols:
        key = col.replace("_", "-")
        for i, r in enumerate(rows, start=1):
            t = r[col].strip()
            if t:
                out[f"{key}-{i:02d}"] = t
    return out


@CORPORA.register("emis")
class EMIS(Corpus):
    """EMIS: synthetic English speech whose voice emotion and text emotion are crossed (1,248 files)."""

    mapping = {"neutral": "neutral", "happy": "happy", "sad": "sad", "angry": "angry"}
    language = "en"
    display = "EMIS"
    layout = f"wav files (any depth) named {RULE}, or a results table with a filename column"
    options = {
        "sentences": Option(None, f"path of {SENTENCE_FILE} (texts; looked for in ROOT when not given)", Path),
    }

    @classmethod
    def records(cls, root: Path, opts: dict[str, Any], labels: Labels) -> Iterator[dict]:
        if root.is_file():
            rows = read_table(root)
            if not rows or "filename" not in rows[0]:
                raise cls.not_like(root, "a table without a filename column")
            names = sorted({r["filename"] for r in rows if r["filename"].strip()})
            opts["check_audio"] = False  # a results table has no audio beside it; load() reads this after us
            base = root.parent
            paths: Iterable[Path] = (base / Path(n) for n in names)
        else:
            base = root
            paths = cls.wavs(root, recursive=True)
            if not paths:
                raise cls.not_like(root, "no .wav files under it")
        texts = cls._texts(opts.get("sentences"), base)
        for p in paths:
            rec = cls._record(base, p, labels, texts)
            if rec:
                yield rec

    @classmethod
    def _texts(cls, path: Path | None, base: Path) -> dict[str, str]:
        if path is None:
            path = base / SENTENCE_FILE
            if not path.exists():
                return {}
        elif not path.exists():
            raise CorpusError(f"{path}: no such file; --set sentences=PATH must name {SENTENCE_FILE}.")
        return read_sentences(path)

    @classmethod
    def _record(cls, base: Path, path: Path, labels: Labels, texts: dict[str, str]) -> dict:
        d = parse_name(str(path))
        where = str(path)
        voice, text = labels(d["voice"], where), labels(d["text"], where)
        if voice is None:  # dropped through label_map
            return {}
        return cls.record(
            base, path.stem, path, voice, semantic=text or "", text=texts.get(d["sentence_id"], ""),
            sentence_id=d["sentence_id"], speaker=d["speaker"],
            explicitness=d["explicitness"], tts=d["tts"], raw_label=d["voice"], raw_semantic=d["text"],
        )

    @classmethod
    def from_filenames(cls, names: Iterable[str], root: Path | str = ".", *, sentences: Path | None = None,
                       **options: Any) -> Manifest:
        """A manifest from EMIS file names alone (no audio needed; ``check_audio`` is off)."""
        opts = cls.resolve_options({**options, "check_audio": False})
        labels = Labels(cls.resolve_mapping(opts), cls.resolve_dropped(opts), cls.pretty())
        root = Path(root)
        texts = read_sentences(Path(sentences)) if sentences else {}
        recs = [cls._record(root, root / Path(n), labels, texts) for n in sorted(set(names))]
        return Manifest.from_records([r for r in recs if r], root=root, check_audio=False, source="emis filenames")
