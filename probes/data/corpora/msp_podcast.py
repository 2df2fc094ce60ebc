"""MSP-Podcast: natural speech from podcasts, crowd-annotated (categorical + dimensional), official splits.

Reads ``ROOT/Labels/labels_consensus.json`` (or ``labels_consensus.csv``; older releases spell it
``labels_concensus``): per file ``EmoClass`` (or ``EmoClass_Major``), ``EmoAct``, ``EmoVal``,
``EmoDom``, ``SpkrID``, ``Gender``, ``Split_Set``; the value of a file may be the dict itself or a
one-element list of it. The audio is ``ROOT/Audios/{file}`` (or ``Audio/``); transcripts, when
present, ``ROOT/Transcripts/{stem}.txt``.

Mapping: N neutral, H happy, S sad, A angry, F fear, D disgust, U surprise, C (contempt) and O
(other) other; X (no agreement) is dropped. ``split``: Train train, Development dev, Test1 /
Test2 / Test3 test. Extras: ``gender``, ``arousal``, ``valence``, ``dominance``, ``split_set``
(the release's own name). MSP-Podcast has no text emotion label: ``semantic_label`` stays empty.

Soft labels: when ``Labels/labels_detailed.json`` is there (per file, per worker, their
``EmoClass_Major``: a word such as ``Angry`` or ``Other-bored``, or a code letter), each worker's
primary class is one vote, mapped as above, into ``soft_<label>`` counts
(``probes/data/corpora/_soft.py``); ``--set soft_labels=false`` skips it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from probes.data.corpora._soft import soft_columns, soft_targets
from probes.data.corpora.base import Corpus, CorpusError, Labels, Option, read_table, read_text_file
from probes.registry import CORPORA

SPLIT = {"train": "train", "development": "dev", "dev": "dev", "validation": "dev", "test1": "test", "test2": "test",
         "test3": "test", "test": "test"}
WORDS = {"neutral": "N", "happy": "H", "happiness": "H", "sad": "S", "sadness": "S", "angry": "A", "anger": "A",
         "fear": "F", "disgust": "D", "surprise": "U", "contempt": "C", "other": "O", "no agreement": "X"}


@CORPORA.register("msp-podcast")
class MSPPodcast(Corpus):
    """MSP-Podcast: natural podcast speech, crowd labels (consensus and per-worker), official splits."""

    mapping = {"N": "neutral", "H": "happy", "S": "sad", "A": "angry", "F": "fear", "D": "disgust", "U": "surprise",
               "C": "other", "O": "other"}
    dropped = frozenset({"X"})
    display = "MSP-Podcast"
    layout = "Labels/labels_consensus.json (or .csv) and Audios/<file>.wav"
    options = {
        "soft_labels": Option(True, "read Labels/labels_detailed.json into soft_<label> columns", bool),
    }

    @classmethod
    def records(cls, root: Path, opts: dict[str, Any], labels: Labels) -> Iterator[dict]:
        lab_dir = root / "Labels"
        cons = next((lab_dir / f"labels_{n}.{e}" for e in ("json", "csv") for n in ("consensus", "concensus")
                     if (lab_dir / f"labels_{n}.{e}").exists()), None)
        if cons is None:
            raise cls.not_like(root, "no Labels/labels_consensus.json or .csv")
        audio_dir = next((root / d for d in ("Audios", "Audio", "audios") if (root / d).is_dir()), root / "Audios")
        detailed = _detailed(lab_dir / "labels_detailed.json") if opts["soft_labels"] else None
        targets = soft_targets(labels)
        for name, info in _consensus(cons):
            where = f"{cons} ({name})"
            code = info.get("EmoClass", info.get("EmoClass_Major"))
            if code is None:
                raise cls.not_like(cons, f"{name}: no EmoClass / EmoClass_Major field")
            label = labels(_code(str(code)), where)
            if label is None:
                continue
            fname = name if name.lower().endswith(".wav") else f"{name}.wav"
            stem = fname[:-4]
            split_set = str(info.get("Split_Set", "")).strip()
            spk = str(info.get("SpkrID", "")).strip()
            soft = {}
            if detailed is not None:
                raw = {}
                for c in detailed.get(stem, []):
                    k = _code(c)
                    raw[k] = raw.get(k, 0.0) + 1.0
                soft = soft_columns(raw, labels, targets, f"{lab_dir / 'labels_detailed.json'} ({stem})")
            tr = root / "Transcripts" / f"{stem}.txt"
            yield cls.record(
                root, stem, audio_dir / fname, label, text=read_text_file(tr).strip() if tr.exists() else "",
                speaker="" if spk.lower() in ("", "unknown") else f"msp{spk}", split=SPLIT.get(split_set.lower(), ""),
                raw_label=str(code), gender={"female": "f", "male": "m"}.get(str(info.get("Gender", "")).strip().lower(), ""),
                arousal=info.get("EmoAct", ""), valence=info.get("EmoVal", ""), dominance=info.get("EmoDom", ""),
                split_set=split_set, **soft,
            )


def _code(value: str) -> str:
    """A class as the label files write it (``N``, ``Neutral``, ``Other-bored``) -> its code letter."""
    v = value.strip()
    if len(v) == 1:
        return v.upper()
    low = v.lower()
    if low.startswith("other"):
        return "O"
    return WORDS.get(low, v)  # an unknown word goes to the Labels lookup, which names it


def _consensus(path: Path) -> list[tuple[str, dict]]:
    if path.suffix == ".csv":
        rows = read_table(path)
        key = next((k for k in ("FileName", "Filename", "File") if rows and k in rows[0]), None)
        if key is None:
            raise CorpusError(f"{path}: no FileName column; expected the release's labels_consensus.csv")
        return [(r[key], r) for r in rows]
    try:
        obj = json.loads(read_text_file(path))
    except ValueError as e:
        raise CorpusError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise CorpusError(f"{path}: expected an object {{file: {{EmoClass, ...}}}}")
    out = []
    for name, v in obj.items():
        if isinstance(v, list):
            v = v[0] if v else {}
        if not isinstance(v, dict):
            raise CorpusError(f"{path}: the entry of {name} is not an object")
        out.append((name, v))
    return out


def _detailed(path: Path) -> dict[str, list[str]] | None:
    """stem -> every worker's primary class; None when the file is not there."""
    if not path.exists():
        return None
    try:
        obj = json.loads(read_text_file(path))
    except ValueError as e:
        raise CorpusError(f"{path}: not valid JSON ({e}); fix it or --set soft_labels=false") from None
    out: dict[str, list[str]] = {}
    for name, workers in (obj or {}).items():
        stem = name[:-4] if name.lower().endswith(".wav") else name
        if isinstance(workers, dict) and not any(isinstance(v, dict) for v in workers.values()):
            workers = [workers]  # a single annotation
        items = workers.values() if isinstance(workers, dict) else workers
        classes = []
        for a in items:
            if isinstance(a, dict):
                c = a.get("EmoClass_Major", a.get("EmoClass"))
                if c not in (None, ""):
                    classes.append(str(c))
        out[stem] = classes
    return out
