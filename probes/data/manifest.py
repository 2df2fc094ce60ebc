"""The Manifest: one table, one row per utterance, the input of every probe.

Columns (DESIGN.md): ``utt_id, audio_path, text, sentence_id, acoustic_label, semantic_label,
congruent, speaker, language, corpus, split`` plus any corpus extras (``explicitness``,
``tts``, soft-label columns ``soft_<label>``...). ``acoustic_label`` is what the voice carries
(the ground truth of a conflict corpus); ``semantic_label`` what the words carry, empty where a
corpus does not say. ``congruent`` is derived from the two when both are known.

On disk a Manifest is a CSV (``manifest.csv``, what the importers write) or JSON Lines (one
object per line, ``.jsonl``, what a user's own tool often writes); ``audio_path`` is absolute or
relative to the file's folder. A given ``congruent`` value must agree with the two labels, and
two ids that differ only by surrounding spaces or case are refused (they name the same thing to a
person and to a case-insensitive file system). Loading validates everything and raises one ManifestError naming the file, the
row and the fix: never a pandas traceback.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterator

import pandas as pd

from probes.labels import CANONICAL

COLUMNS: tuple[str, ...] = (
    "utt_id", "audio_path", "text", "sentence_id", "acoustic_label", "semantic_label",
    "congruent", "speaker", "language", "corpus", "split",
)
REQUIRED: tuple[str, ...] = ("utt_id", "audio_path", "acoustic_label")
SPLITS = ("train", "dev", "test", "")


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the file, the row and the fix."""


class Manifest:
    """A validated utterance table. ``df`` keeps the columns in COLUMNS order, extras after."""

    def __init__(self, df: pd.DataFrame, root: str | Path = ".", *, source: str = "<memory>", check_audio: bool = True,
                 label_map: dict[str, str] | None = None):
        self.root = Path(root)
        self.source = source
        self.df = _normalise(df, source, label_map=label_map)
        _validate(self.df, self.root, source, check_audio=check_audio)

    # construction -------------------------------------------------------------------------
    @classmethod
    def read(cls, path: str | Path, *, check_audio: bool = True, label_map: dict[str, str] | None = None) -> "Manifest":
        """Read a CSV or JSON Lines manifest (by suffix; a folder: its manifest.csv or manifest.jsonl)."""
        path = Path(path)
        if path.is_dir():
            path = next((path / n for n in ("manifest.csv", "manifest.jsonl") if (path / n).exists()), path / "manifest.csv")
        if not path.exists():
            raise ManifestError(f"{path}: no such manifest; build one with `probe data import` or `probe data synth`.")
        if path.suffix.lower() in (".jsonl", ".ndjson") or (path.suffix.lower() == ".json" and _looks_like_jsonl(path)):
            df = _read_jsonl(path)
        else:
            if _looks_like_jsonl(path):
                raise ManifestError(f"{path}: holds JSON lines, not CSV; name it .jsonl and it is read as JSON Lines.")
            try:
                df = pd.read_csv(path, dtype=str, keep_default_na=False)
            except Exception as e:
                raise ManifestError(f"{path}: not a readable CSV ({e}); manifests are comma-separated with a header row, "
                                    "or JSON Lines (.jsonl).") from None
        return cls(df, path.parent, source=str(path), check_audio=check_audio, label_map=label_map)

    @classmethod
    def from_records(cls, records: list[dict], root: str | Path = ".", *, check_audio: bool = True, source: str = "<memory>") -> "Manifest":
        return cls(pd.DataFrame.from_records(records), root, source=source, check_audio=check_audio)

    def write(self, path: str | Path) -> Path:
        """Write as CSV; audio paths are made relative to the new folder when they can be."""
        path = Path(path)
        if path.suffix != ".csv":
            path = path / "manifest.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        df = self.df.copy()
        df["audio_path"] = [_relative(self.audio_path(i), path.parent) for i in range(len(df))]
        df.to_csv(path, index=False)
        return path

    # access ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.df)

    def __repr__(self) -> str:
        return f"Manifest({self.source!r}, {len(self)} utterances)"

    def audio_path(self, i: int | str) -> Path:
        row = self.row(i)
        p = Path(row["audio_path"])
        return p if p.is_absolute() else (self.root / p)

    def row(self, i: int | str) -> dict:
        if isinstance(i, str):
            idx = self._index().get(i)
            if idx is None:
                raise KeyError(f"no utterance {i!r} in {self.source}")
            i = idx
        d = self.df.iloc[i].to_dict()
        return d

    def rows(self) -> Iterator[dict]:
        for i in range(len(self.df)):
            yield self.row(i)

    def _index(self) -> dict[str, int]:
        if not hasattr(self, "_idx"):
            self._idx = {u: k for k, u in enumerate(self.df["utt_id"])}
        return self._idx

    def subset(self, mask) -> "Manifest":
        m = Manifest.__new__(Manifest)
        m.root, m.source = self.root, self.source
        m.df = self.df[mask].reset_index(drop=True)
        return m

    def split(self, name: str) -> "Manifest":
        return self.subset(self.df["split"] == name)

    def conflicts(self) -> "Manifest":
        return self.subset(self.df["congruent"] == "false")

    def sha256(self) -> str:
        """Hash of the table's content (not of the audio), recorded in every run folder."""
        return hashlib.sha256(self.df.to_csv(index=False).encode()).hexdigest()

    def counts(self) -> dict[str, dict[str, int]]:
        out = {}
        for col in ("acoustic_label", "semantic_label", "congruent", "speaker", "split", "corpus"):
            vc = self.df[col].replace("", "(none)").value_counts()
            out[col] = {str(k): int(v) for k, v in vc.sort_index().items()}
        return out


# ------------------------------------------------------------------------------------------
def _relative(p: Path, base: Path) -> str:
    try:
        return str(p.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(p.resolve())


def _looks_like_jsonl(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            head = f.read(4096).lstrip()
    except OSError:
        return False
    return head.startswith("{")


def _read_jsonl(path: Path) -> pd.DataFrame:
    import json

    records = []
    with open(path, encoding="utf-8") as f:
        for k, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ManifestError(f"{path}: line {k} is not valid JSON ({e.msg}); write one object per line.") from None
            if not isinstance(rec, dict):
                raise ManifestError(f"{path}: line {k} is not a JSON object; write one {{\"utt_id\": ...}} object per line.")
            records.append({key: _cell(v) for key, v in rec.items()})
    if not records:
        raise ManifestError(f"{path}: no rows; write one JSON object per utterance.")
    return pd.DataFrame.from_records(records).fillna("")


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dict, list)):
        import json

        return json.dumps(v)
    return str(v)


_TRUE, _FALSE = {"true", "1", "yes", "y", "t"}, {"false", "0", "no", "n", "f"}


def _normalise(df: pd.DataFrame, source: str, label_map: dict[str, str] | None = None) -> pd.DataFrame:
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ManifestError(
            f"{source}: missing column(s) {', '.join(missing)}; a manifest needs at least "
            f"{', '.join(REQUIRED)} (all columns: {', '.join(COLUMNS)})."
        )
    df = df.copy()
    for c in COLUMNS:
        if c not in df.columns:
            df[c] = ""
    df = df.fillna("").astype(str)
    for c in ("acoustic_label", "semantic_label"):
        df[c] = df[c].str.strip().str.lower()
        if label_map:
            lm = {str(k).strip().lower(): str(v).strip().lower() for k, v in label_map.items()}
            df[c] = [lm.get(v, v) for v in df[c]]
    # congruent is derived where both labels are known; a given value must agree with them
    derived = [
        ("true" if a == s else "false") if (a and s) else ""
        for a, s in zip(df["acoustic_label"], df["semantic_label"])
    ]
    for i, (given, d) in enumerate(zip(df["congruent"], derived)):
        g = given.strip().lower()
        if not g:
            continue
        if g not in _TRUE | _FALSE:
            raise ManifestError(f"{source}: row {i + 2} (utt_id {df['utt_id'][i]!r}) has congruent {given!r}; "
                                "write true, false, or leave it empty (it is derived from the two labels).")
        g = "true" if g in _TRUE else "false"
        if d and g != d:
            raise ManifestError(
                f"{source}: row {i + 2} (utt_id {df['utt_id'][i]!r}) says congruent={given!r} but its labels "
                f"(acoustic {df['acoustic_label'][i]!r}, semantic {df['semantic_label'][i]!r}) make it {d}; "
                "fix the labels or the congruent value (or leave congruent empty)."
            )
    df["congruent"] = derived
    extras = [c for c in df.columns if c not in COLUMNS]
    return df[list(COLUMNS) + extras].reset_index(drop=True)


def _validate(df: pd.DataFrame, root: Path, source: str, *, check_audio: bool) -> None:
    allowed = set(CANONICAL)
    for col in ("acoustic_label", "semantic_label"):
        for i, v in enumerate(df[col]):
            if col == "acoustic_label" and not v:
                raise ManifestError(f"{source}: row {i + 2} (utt_id {df['utt_id'][i]!r}) has no acoustic_label; every utterance needs one.")
            if v and v not in allowed:
                raise ManifestError(
                    f"{source}: row {i + 2} (utt_id {df['utt_id'][i]!r}) has {col} {v!r}, not in the canonical "
                    f"vocabulary ({', '.join(CANONICAL)}); map it with --label-map FILE.json "
                    f"(a JSON object {{\"{v}\": \"one of the labels above\"}}) on `probe run` or `probe data import`."
                )
    empty = df.index[df["utt_id"].str.strip() == ""]
    if len(empty):
        raise ManifestError(f"{source}: row {empty[0] + 2} has an empty utt_id; every row needs a unique id.")
    dup = df["utt_id"][df["utt_id"].duplicated()]
    if len(dup):
        i = int(dup.index[0])
        raise ManifestError(f"{source}: utt_id {dup.iloc[0]!r} appears more than once (again at row {i + 2}); ids must be unique.")
    seen: dict[str, int] = {}
    for i, u in enumerate(df["utt_id"]):
        k = u.strip().casefold()
        if k in seen:
            j = seen[k]
            raise ManifestError(
                f"{source}: row {i + 2} has utt_id {u!r}, which differs from row {j + 2}'s {df['utt_id'][j]!r} only by "
                "spaces or case; ids must be clearly distinct: fix one of them."
            )
        seen[k] = i
    bad_split = sorted(set(df["split"]) - set(SPLITS))
    if bad_split:
        raise ManifestError(f"{source}: unknown split value(s) {bad_split}; use train, dev, test or leave it empty.")
    if check_audio:
        for i, p in enumerate(df["audio_path"]):
            path = Path(p)
            path = path if path.is_absolute() else root / path
            if not p or not path.exists():
                raise ManifestError(
                    f"{source}: row {i + 2} (utt_id {df['utt_id'][i]!r}): audio file {str(path)!r} does not exist; "
                    "fix audio_path (relative paths are read from the manifest's folder) or drop the row."
                )
