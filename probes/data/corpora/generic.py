"""Any corpus described by a table: EmoBox-style CSV / TSV / JSON / JSONL with ``key, wav, emo``.

ROOT is the table. Columns (names as EmoBox writes them):

- ``key`` (utt_id), ``wav`` (audio path: absolute, or relative to ``--set audio_root=DIR``,
  by default the table's folder), ``emo`` (the voice label): required;
- ``text``, ``speaker``, ``semantic`` (the text label), ``split``, ``sentence_id``,
  ``language``: optional; every other column is kept as an extra.

Labels in ``emo`` and ``semantic`` go through the workbench's synonym table (probes/labels.py:
neu, hap, joy, exc, calm, anger, ... -> canonical), extended by ``--label-map``; a label in
neither is an error naming the row. Splits: train; dev, valid, validation, val, evaluation ->
dev; test; empty. ``corpus`` is ``--set corpus_name=NAME`` (default: the table's file name),
``language`` is ``--set language=CODE`` (default en) unless a language column says otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from probes.data.corpora.base import TABLE_SUFFIXES, Corpus, CorpusError, Labels, Option, read_table, row_where
from probes.data.manifest import COLUMNS
from probes.labels import SYNONYMS
from probes.registry import CORPORA

SPLITS = {"train": "train", "dev": "dev", "valid": "dev", "validation": "dev", "val": "dev",
          "evaluation": "dev", "test": "test", "": ""}
KNOWN = {"key", "wav", "emo", "text", "speaker", "semantic", "split", "sentence_id", "language"}


@CORPORA.register("generic")
class Generic(Corpus):
    """Any corpus listed in an EmoBox-style table (CSV/TSV/JSON/JSONL with key, wav, emo)."""

    mapping = dict(SYNONYMS)
    display = "generic"
    layout = "a CSV, TSV, JSON or JSONL table with the columns key, wav, emo (optional text, speaker, semantic, split)"
    options = {
        "audio_root": Option(None, "folder that relative wav paths start from (default: the table's folder)", Path),
        "corpus_name": Option("", "value of the corpus column (default: the table's file name)", str),
        "language": Option("en", "language code of every row without a language column", str),
    }

    @classmethod
    def records(cls, root: Path, opts: dict[str, Any], labels: Labels) -> Iterator[dict]:
        if not root.is_file():
            raise cls.not_like(root, "give the table file, not a folder")
        if root.suffix.lower() not in TABLE_SUFFIXES:
            raise cls.not_like(root, f"not a table file ({', '.join(TABLE_SUFFIXES)})")
        rows = read_table(root)
        if not rows:
            raise cls.not_like(root, "the table is empty")
        missing = [c for c in ("key", "wav", "emo") if c not in rows[0]]
        if missing:
            raise cls.not_like(root, f"no column {', '.join(missing)}; it has {', '.join(rows[0])}")
        base = root.parent
        audio_root = opts["audio_root"] or base
        corpus = opts["corpus_name"] or root.stem
        for i, r in enumerate(rows):
            where = row_where(root, i)
            acoustic = labels(r["emo"], where)
            if acoustic is None:
                continue
            semantic = labels(r["semantic"], where) if r.get("semantic", "").strip() else ""
            split = r.get("split", "").strip().lower()
            if split not in SPLITS:
                raise CorpusError(f"{where}: split {r['split']!r} is not one of {', '.join(s for s in SPLITS if s)}; fix it or leave it empty.")
            wav = Path(r["wav"].strip())
            rec = cls.record(
                base, r["key"].strip(), wav if wav.is_absolute() else audio_root / wav, acoustic,
                semantic=semantic or "", text=r.get("text", ""), sentence_id=r.get("sentence_id", ""),
                speaker=r.get("speaker", ""), split=SPLITS[split],
                language=r.get("language", "").strip() or opts["language"],
                raw_label=r["emo"].strip(), **{k: v for k, v in r.items() if k not in KNOWN and k not in COLUMNS},
            )
            rec["corpus"] = corpus
            yield rec
