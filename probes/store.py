"""Run folders: ``runs/<probe>/<model>/<dataset>/<stamp>/``.

A run folder holds
- ``manifest.json``: the resolved config, seed, git SHA, package versions, the data manifest's
  path and content hash, the weights that ran (``weights``: real / random / oracle);
- ``rows.jsonl``: the rows, appended and flushed one *unit* at a time while the probe runs;
- ``errors.jsonl``: one row per utterance that could not be processed (bad audio ...);
- ``metrics.json`` and ``figures/``, written after the run from the rows.

A unit is one piece of work (one utterance under one condition, say) and may produce several
rows (one per layer ...). Every row carries ``unit`` and ``unit_rows`` (how many rows the unit
has); on resume a unit counts as done only when all its rows are present, a torn last line is
dropped, and the incomplete unit is redone. So a run killed at any moment and started again
with the same command loses nothing and duplicates nothing. Rows are keyed by unit, so rows of
the same run computed on several machines (``--shard i/n``) merge by concatenation
(``merge_runs``).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Iterable, Iterator

ROWS = "rows.jsonl"
ERRORS = "errors.jsonl"
MANIFEST = "manifest.json"
VERSIONED_PACKAGES = (
    "torch", "transformers", "tokenizers", "nnsight", "captum", "opensmile", "numpy", "pandas",
    "scikit-learn", "scipy", "umap-learn", "matplotlib", "seaborn", "soundfile", "librosa",
    "safetensors", "faster-whisper", "ctranslate2", "espeakng-loader",
)


class RunError(RuntimeError):
    pass


def stamp() -> str:
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def git_sha(cwd: str | Path | None = None) -> str:
    here = Path(cwd) if cwd else Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        sha = out.stdout.strip() if out.returncode == 0 else "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True, timeout=10)
        return sha + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    try:
        out["dissonance"] = metadata.version("dissonance")
    except metadata.PackageNotFoundError:
        pass
    return out


def default_run_dir(probe: str, model: str, dataset: str, root: str | Path = "runs") -> Path:
    return Path(root) / probe / model / dataset / stamp()


class RunStore:
    """Append-only writer for one run folder, resumable."""

    def __init__(self, run_dir: str | Path):
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.rows_path = self.dir / ROWS
        self.errors_path = self.dir / ERRORS
        self._done = self._recover()
        self._rows_f = open(self.rows_path, "a", encoding="utf-8")
        self._err_f = open(self.errors_path, "a", encoding="utf-8")

    # manifest ------------------------------------------------------------------------------
    def write_manifest(self, info: dict, *, resume_check: Iterable[str] = ("probe", "model", "config", "data_sha256", "seed")) -> dict:
        """Write manifest.json; on resume the identifying fields must match the earlier run."""
        path = self.dir / MANIFEST
        full = {
            "created": _dt.datetime.now().isoformat(timespec="seconds"),
            "git_sha": git_sha(),
            "versions": versions(),
            "argv": sys.argv,
            **info,
        }
        if path.exists():
            old = json.loads(path.read_text())
            diff = [k for k in resume_check if k in old and k in full and old[k] != full[k]]
            if diff:
                raise RunError(
                    f"{self.dir} already holds a run with a different {', '.join(diff)}; "
                    "resume with the same command, or pass a new --out folder."
                )
            full["created"] = old.get("created", full["created"])
            full["resumed"] = old.get("resumed", []) + [_dt.datetime.now().isoformat(timespec="seconds")]
        _atomic_write(path, json.dumps(full, indent=2, default=str))
        return full

    # rows ----------------------------------------------------------------------------------
    def _recover(self) -> set[str]:
        """Read what an earlier (maybe killed) run left; drop torn lines and incomplete units."""
        if not self.rows_path.exists():
            return set()
        good: list[str] = []
        counts: dict[str, int] = {}
        expected: dict[str, int] = {}
        with open(self.rows_path, encoding="utf-8") as f:
            for line in f:
                if not line.endswith("\n"):
                    break  # torn last line
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    break
                good.append(line)
                u = row.get("unit")
                counts[u] = counts.get(u, 0) + 1
                expected[u] = int(row.get("unit_rows", 1))
        done = {u for u, n in counts.items() if n >= expected[u]}
        kept = [ln for ln in good if json.loads(ln).get("unit") in done]
        if len(kept) != sum(1 for _ in open(self.rows_path, encoding="utf-8")):
            tmp = self.rows_path.with_suffix(".tmp")
            tmp.write_text("".join(kept), encoding="utf-8")
            os.replace(tmp, self.rows_path)
        # a unit that failed earlier is retried on resume: errors are not "done"
        return done

    def done(self, unit: str) -> bool:
        return unit in self._done

    @property
    def n_done(self) -> int:
        return len(self._done)

    def append(self, unit: str, rows: list[dict]) -> None:
        """Write all rows of one unit in one write, then flush and fsync."""
        if not rows:
            rows = [{}]
        n = len(rows)
        text = "".join(json.dumps({"unit": unit, "unit_rows": n, **r}, default=_json_default) + "\n" for r in rows)
        self._rows_f.write(text)
        self._rows_f.flush()
        os.fsync(self._rows_f.fileno())
        self._done.add(unit)

    def error(self, unit: str, utt_id: str, message: str, **extra) -> None:
        self._err_f.write(json.dumps({"unit": unit, "utt_id": utt_id, "error": message, **extra}, default=_json_default) + "\n")
        self._err_f.flush()

    def close(self) -> None:
        self._rows_f.close()
        self._err_f.close()

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# reading -------------------------------------------------------------------------------------
def read_manifest(run_dir: str | Path) -> dict:
    p = Path(run_dir) / MANIFEST
    if not p.exists():
        raise RunError(f"{run_dir}: not a run folder (no {MANIFEST}); give the folder that `probe run` printed.")
    return json.loads(p.read_text())


def iter_rows(run_dir: str | Path, name: str = ROWS) -> Iterator[dict]:
    p = Path(run_dir) / name
    if not p.exists():
        return
    with open(p, encoding="utf-8") as f:
        for line in f:
            if line.endswith("\n") and line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    return


def read_rows(run_dir: str | Path, name: str = ROWS):
    """The run's rows as a pandas DataFrame (bookkeeping columns dropped)."""
    import pandas as pd

    rows = list(iter_rows(run_dir, name))
    df = pd.DataFrame.from_records(rows)
    return df.drop(columns=[c for c in ("unit_rows",) if c in df.columns])


def read_errors(run_dir: str | Path):
    return read_rows(run_dir, ERRORS)


def count_errors(run_dir: str | Path) -> int:
    """Units that failed and were not done by a later resume (a failed unit is retried, so
    errors.jsonl can name it more than once)."""
    done = {r.get("unit") for r in iter_rows(run_dir)}
    return len({e.get("unit") for e in iter_rows(run_dir, ERRORS)} - done)


def merge_runs(sources: list[str | Path], out: str | Path) -> Path:
    """Merge shards of one run (same probe, model, config, data) into ``out``; units dedupe."""
    out = Path(out)
    manifests = [read_manifest(s) for s in sources]
    keys = ("probe", "model", "config", "data_sha256", "seed")
    for s, m in zip(sources[1:], manifests[1:]):
        bad = [k for k in keys if m.get(k) != manifests[0].get(k)]
        if bad:
            raise RunError(f"{s} differs from {sources[0]} in {', '.join(bad)}; only shards of one run merge.")
    store = RunStore(out)
    info = {k: v for k, v in manifests[0].items() if k not in ("created", "git_sha", "versions", "argv", "shard")}
    info["merged_from"] = [str(s) for s in sources]
    store.write_manifest(info)
    for s in sources:
        by_unit: dict[str, list[dict]] = {}
        for r in iter_rows(s):
            by_unit.setdefault(r["unit"], []).append(r)
        for u, rows in by_unit.items():
            if not store.done(u) and len(rows) >= int(rows[0].get("unit_rows", 1)):
                store.append(u, [{k: v for k, v in r.items() if k not in ("unit", "unit_rows")} for r in rows])
        for e in iter_rows(s, ERRORS):
            store.error(e.get("unit", ""), e.get("utt_id", ""), e.get("error", ""))
    store.close()
    return out


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _json_default(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot store {type(o).__name__} in a row; convert it to a number, string or list")
