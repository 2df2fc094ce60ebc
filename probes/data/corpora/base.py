"""The shared machinery of every corpus importer: options, label mapping, file walking, records.

An importer is a ``Corpus`` subclass registered in ``CORPORA`` (probes.registry) under its CLI
name. It declares

- ``mapping``: raw label code -> canonical label (probes/labels.py). A raw code that the corpus
  has but the workbench should not use is listed in ``dropped`` instead: its utterances are left
  out, on purpose and documented. A code in neither is an error naming the file, never a guess.
- ``language``: the ISO code written into every row (an importer may override it per row).
- ``layout``: one sentence describing the official layout, used in every "does not look like"
  error so the user sees at once what the importer expected; ``display`` is the corpus' own
  spelling (EmoDB, CREMA-D) for those messages.
- ``options``: the importer's own ``--set NAME=VALUE`` options (name -> Option). Every importer
  also takes ``label_map`` (a dict {raw: canonical} extending or overriding ``mapping``; a value
  of "" or null drops that raw label), ``check_audio`` (default true: every row's wav must
  exist; false builds a manifest from names or metadata alone) and ``extra_labels``;
- ``extra_labels``: raw code -> an *extra label* (EmoDB {"L": "bored"}): a word the corpus has and
  the vocabulary does not. Rows with that code keep their canonical ``acoustic_label`` (boredom ->
  other) and get an ``extra_label`` column; a run on the manifest offers the model the extra label
  and scores the answer as the canonical one (probes.labels.manifest_extra_labels). The option
  ``--set extra_labels='{"L": "bored"}'`` overrides the corpus' own, ``{}`` turns them off;
- ``neutral_text_by_design``: true for corpora whose sentences are all neutral on purpose (EmoDB):
  every row gets ``text_design=neutral`` and the scores say that its conflict items are all of the
  neutral-text type (a neutral-words control set, not a test of words against voice).

and implements ``records(root, opts, labels)`` yielding one dict per utterance (see
``Corpus.record``). ``Corpus.load`` does the rest: it resolves the options (unknown names are an
error listing the valid ones), builds the label lookup, and hands the records to
``Manifest.from_records``, which derives ``congruent`` and validates the table.

Audio paths in records are relative to the manifest root (the corpus folder, or the folder of a
metadata file when the importer reads one), so ``Manifest.write`` can re-anchor them anywhere.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterable, Iterator, Mapping

from probes.data.manifest import Manifest, ManifestError
from probes.labels import CANONICAL, LabelError


class CorpusError(ManifestError):
    """A corpus folder or option the importer cannot use; the message names the path and the fix."""


@dataclass(frozen=True)
class Option:
    """One ``--set NAME=VALUE`` option of an importer."""

    default: Any
    help: str
    kind: type = str  # bool, int, str or Path; CLI values arrive JSON-decoded or as strings
    choices: tuple = ()  # allowed values after conversion; empty = any


_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


def _convert(name: str, value: Any, opt: Option, corpus: str) -> Any:
    if value is None:
        return None
    try:
        if opt.kind is bool:
            if isinstance(value, bool):
                out: Any = value
            elif str(value).strip().lower() in _TRUE:
                out = True
            elif str(value).strip().lower() in _FALSE:
                out = False
            else:
                raise ValueError
        elif opt.kind is int:
            if isinstance(value, bool):
                raise ValueError
            out = int(value)
        elif opt.kind is Path:
            out = Path(str(value)).expanduser()
        else:
            out = str(value)
    except (TypeError, ValueError):
        raise CorpusError(
            f"{corpus}: option {name}={value!r} is not a {opt.kind.__name__}; {name}: {opt.help}"
        ) from None
    if opt.choices and out not in opt.choices:
        raise CorpusError(
            f"{corpus}: option {name}={value!r} must be one of {', '.join(map(str, opt.choices))}"
        )
    return out


class Labels:
    """Raw label -> canonical label, or None for a label that is dropped on purpose.

    Lookup tries the raw code as written, then lower-cased (corpora disagree on case: MELD
    writes "joy", ESD folders "Happy").
    """

    def __init__(self, mapping: Mapping[str, str], dropped: Iterable[str], corpus: str):
        self.corpus = corpus
        self.table: dict[str, str | None] = {str(k): v for k, v in mapping.items()}
        for d in dropped:
            self.table.setdefault(str(d), None)
        self._lower = {k.lower(): v for k, v in self.table.items()}

    def __call__(self, raw: object, where: str) -> str | None:
        key = str(raw).strip()
        if key in self.table:
            return self.table[key]
        if key.lower() in self._lower:
            return self._lower[key.lower()]
        known = ", ".join(sorted(self.table))
        raise LabelError(
            f"{where}: label {key!r} is not in the {self.corpus} mapping ({known}); fix the file, or map "
            f"it with --label-map FILE.json ({{\"{key}\": \"<canonical label>\"}}, or \"\" to drop it)."
        )


class Corpus:
    """Base class of the corpus importers (not registered itself)."""

    mapping: ClassVar[dict[str, str]] = {}
    dropped: ClassVar[frozenset[str]] = frozenset()
    language: ClassVar[str] = "en"
    layout: ClassVar[str] = ""
    display: ClassVar[str] = ""  # the corpus' own spelling (EmoDB, CREMA-D) for messages
    options: ClassVar[dict[str, Option]] = {}
    extra_labels: ClassVar[dict[str, str]] = {}   # raw code -> extra label a run offers (EmoDB: L -> bored)
    neutral_text_by_design: ClassVar[bool] = False

    COMMON: ClassVar[dict[str, Option]] = {
        "label_map": Option(None, "dict {raw: canonical} extending the mapping (\"\" drops a label)", dict),
        "check_audio": Option(True, "require every row's audio file to exist", bool),
        "extra_labels": Option(None, "dict {raw code: extra label} offered to the model and scored as the code's "
                                     "canonical label (default: the corpus' own; {} for none)", dict),
    }

    # ---------------------------------------------------------------------------------- API
    @classmethod
    def load(cls, root: Path, **options: Any) -> Manifest:
        """Read the corpus at ``root`` and return its Manifest."""
        root = Path(root).expanduser()
        if not root.exists():
            raise CorpusError(f"{root}: no such file or folder; give the path of your {cls.pretty()} copy ({cls.layout}).")
        opts = cls.resolve_options(options)
        labels = Labels(cls.resolve_mapping(opts), cls.resolve_dropped(opts), cls.pretty())
        records = cls._mark(list(cls.records(root, opts, labels)), opts)
        if not records:
            raise CorpusError(f"{root}: no {cls.pretty()} utterances found (all were dropped or none matched); {cls.layout}.")
        base = root if root.is_dir() else root.parent
        return Manifest.from_records(records, root=base, check_audio=opts["check_audio"], source=str(root))

    @classmethod
    def _mark(cls, records: list[dict], opts: dict[str, Any]) -> list[dict]:
        """Add ``extra_label`` (rows whose ``raw_label`` has an extra label) and ``text_design``."""
        extras = cls.extra_labels if opts.get("extra_labels") is None else opts["extra_labels"]
        if extras:
            for r in records:
                r["extra_label"] = extras.get(str(r.get("raw_label", "")), "")
        if cls.neutral_text_by_design and opts.get("neutral_text", True):
            for r in records:
                r["text_design"] = "neutral"
        return records

    @classmethod
    def records(cls, root: Path, opts: dict[str, Any], labels: Labels) -> Iterator[dict]:
        raise NotImplementedError(f"{cls.__name__} does not implement records()")

    # ---------------------------------------------------------------------------------- options
    @classmethod
    def title(cls) -> str:
        """The registered (CLI) name; it is also the manifest's corpus column."""
        return getattr(cls, "registered_name", cls.__name__)

    @classmethod
    def pretty(cls) -> str:
        return cls.display or cls.title()

    @classmethod
    def all_options(cls) -> dict[str, Option]:
        return {**cls.options, **cls.COMMON}

    @classmethod
    def resolve_options(cls, given: Mapping[str, Any]) -> dict[str, Any]:
        valid = cls.all_options()
        unknown = sorted(k for k in given if k.replace("-", "_") not in valid)
        if unknown:
            listing = "; ".join(f"{n} (default {o.default!r}): {o.help}" for n, o in sorted(valid.items()))
            raise CorpusError(f"{cls.title()}: unknown option(s) {', '.join(unknown)}. Valid options: {listing}")
        out = {n: o.default for n, o in valid.items()}
        for k, v in given.items():
            name = k.replace("-", "_")
            if name == "label_map":
                out[name] = cls._check_label_map(v)
            elif name == "extra_labels":
                out[name] = cls._check_extra_labels(v)
            else:
                out[name] = _convert(name, v, valid[name], cls.title())
        return out

    @classmethod
    def _check_label_map(cls, value: Any) -> dict[str, str | None]:
        if value is None:
            return {}
        if isinstance(value, (str, Path)) and str(value).strip().endswith(".json"):
            value = json.loads(Path(value).read_text())
        if not isinstance(value, Mapping):
            raise CorpusError(f"{cls.title()}: label_map must be a dict {{raw: canonical}}, got {type(value).__name__}")
        out: dict[str, str | None] = {}
        for raw, lab in value.items():
            lab = None if lab in (None, "") else str(lab).strip().lower()
            if lab is not None and lab not in CANONICAL:
                raise CorpusError(
                    f"{cls.title()}: label_map sends {raw!r} to {lab!r}, which is not canonical ({', '.join(CANONICAL)}); "
                    "use one of those, or \"\" to drop the label."
                )
            out[str(raw)] = lab
        return out

    @classmethod
    def _check_extra_labels(cls, value: Any) -> dict[str, str] | None:
        if value is None:
            return None
        if isinstance(value, str) and value.strip().lower() in _FALSE | {"{}", "none", ""}:
            return {}
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                value = None
        if not isinstance(value, Mapping):
            raise CorpusError(f"{cls.title()}: extra_labels must be a dict {{raw code: extra label}}, e.g. "
                              f"{json.dumps(cls.extra_labels or {'L': 'bored'})}, or {{}} for none")
        out = {}
        for raw, name in value.items():
            name = str(name or "").strip().lower()
            if name in CANONICAL:
                raise CorpusError(f"{cls.title()}: extra label {name!r} (for {raw!r}) is already canonical; "
                                  "extra labels are the corpus' own words (bored)")
            if name:
                out[str(raw)] = name
        return out

    @classmethod
    def resolve_mapping(cls, opts: dict[str, Any]) -> dict[str, str | None]:
        """The mapping in force: the class mapping, then label_map on top. Subclasses adjust it
        for their options (IEMOCAP's classes) and call this last."""
        return {**cls.mapping, **(opts.get("label_map") or {})}

    @classmethod
    def resolve_dropped(cls, opts: dict[str, Any]) -> Iterable[str]:
        overridden = set(opts.get("label_map") or {})
        return [d for d in cls.dropped if d not in overridden]

    # ---------------------------------------------------------------------------------- helpers
    @classmethod
    def record(
        cls,
        root: Path,
        utt_id: str,
        audio: Path | str,
        acoustic: str,
        *,
        semantic: str = "",
        text: str = "",
        sentence_id: str = "",
        speaker: str = "",
        split: str = "",
        language: str | None = None,
        **extras: Any,
    ) -> dict:
        """One manifest row. ``audio`` is a path built from ``root`` (or absolute): it is stored
        relative to ``root`` when it lies under it, else absolute, so a relative ROOT given on the
        command line still resolves once the manifest is read from its own folder."""
        audio = Path(audio)
        try:
            audio_s = str(audio.relative_to(root))
        except ValueError:
            try:
                audio_s = str(audio.resolve().relative_to(Path(root).resolve()))
            except ValueError:
                audio_s = str(audio.resolve())
        return {
            "utt_id": utt_id, "audio_path": audio_s, "text": text, "sentence_id": sentence_id,
            "acoustic_label": acoustic, "semantic_label": semantic, "speaker": speaker,
            "language": language or cls.language, "corpus": cls.title(), "split": split,
            **{k: "" if v is None else v for k, v in extras.items()},
        }

    @classmethod
    def not_like(cls, path: Path, detail: str = "") -> CorpusError:
        """The error for a folder that does not have the expected layout."""
        extra = f" ({detail})" if detail else ""
        name = cls.pretty()
        article = "an" if name[:1].lower() in "aeiou" else "a"
        return CorpusError(f"{path} does not look like {article} {name} copy{extra}: expected {cls.layout}.")

    @classmethod
    def wavs(cls, folder: Path, *, recursive: bool = False) -> list[Path]:
        """Audio files of a folder, sorted (so manifests are stable across file systems)."""
        it = folder.rglob("*") if recursive else folder.glob("*")
        return sorted(p for p in it if p.is_file() and p.suffix.lower() == ".wav" and not p.name.startswith("."))

    @classmethod
    def match(cls, pattern: re.Pattern, path: Path, rule: str) -> re.Match:
        m = pattern.fullmatch(path.name)
        if m is None:
            raise cls.not_like(path, f"the name does not follow the naming rule {rule}; rename it, or move "
                                     "files that are not part of the corpus out of the folder")
        return m


def read_text_file(path: Path, encodings: tuple[str, ...] = ("utf-8-sig", "utf-16", "gb18030", "latin-1")) -> str:
    """Text of a small metadata file whose encoding varies between copies of a corpus."""
    data = path.read_bytes()
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return data.decode("utf-16")
    for enc in encodings:
        try:
            return data.decode(enc)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1", errors="replace")


def read_table(path: Path, *, where: str = "") -> "list[dict[str, str]]":
    """Rows of a CSV, TSV, JSON or JSONL table as string dicts; one CorpusError if unreadable."""
    import pandas as pd

    suffix = path.suffix.lower()
    try:
        if suffix in (".jsonl", ".ndjson"):
            df = pd.read_json(path, lines=True, dtype=False)
        elif suffix == ".json":
            obj = json.loads(read_text_file(path))
            if isinstance(obj, dict) and all(isinstance(v, dict) for v in obj.values()):
                # {key: {...}} (several releases): the key becomes a column
                obj = [{"key": k, **v} for k, v in obj.items()]
            if not isinstance(obj, list):
                raise ValueError("expected a list of objects or {key: object}")
            df = pd.DataFrame.from_records(obj)
        else:
            import io

            sep = "\t" if suffix == ".tsv" else None  # None: let pandas sniff , ; or tab
            df = pd.read_csv(io.StringIO(read_text_file(path)), sep=sep, engine="python", dtype=str, keep_default_na=False)
    except Exception as e:  # pandas raises many types for broken tables
        raise CorpusError(f"{path}: cannot be read as a table ({e}){where}; save it as UTF-8 CSV with a header row.") from None
    df = df.fillna("").astype(str)
    df.columns = [str(c).strip() for c in df.columns]
    return df.to_dict("records")


def row_where(path: Path, index: int) -> str:
    """Where the index-th data row (0-based) of a table sits, as a person opening the file counts:
    CSV/TSV rows count the header as row 1 (as Manifest errors do), JSONL lines and JSON items from 1."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return f"{path}: line {index + 1}"
    if suffix == ".json":
        return f"{path}: item {index + 1}"
    return f"{path}: row {index + 2}"


TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".json")


def find_column(columns: Iterable[str], candidates: Iterable[str]) -> str | None:
    """The first column whose normalised name (lower case, no spaces/dots/underscores) matches."""
    norm = {re.sub(r"[\s._\-]+", "", c.lower()): c for c in columns}
    for cand in candidates:
        key = re.sub(r"[\s._\-]+", "", cand.lower())
        if key in norm:
            return norm[key]
    return None
