"""Run folders: ``runs/<probe>/<model>/<dataset>/<stamp>/``.

A run folder holds
- ``manifest.json``: the resolved config, seed, git SHA, package versions, the data manifest's
  path and content hash, the weights that ran (``weights``: real / random / oracle);
- ``rows.jsonl``: the rows, appended and flushed one *unit* at a time while the probe runs;
- ``errors.jsonl``: one line per unit that could not be processed (bad audio ...), the latest
  failure only: a unit retried on resume replaces its line, or drops it when it succeeds;
- ``.lock``: the OS lock of the process writing the folder (its PID and host): a second run on
  the same folder is refused while the first lives, and the OS frees the lock when it dies;
- ``metrics.json`` and ``figures/``, written after the run from the rows.

A unit is one piece of work (one utterance under one condition, say) and may produce several
rows (one per layer ...). Every row carries ``unit`` and ``unit_rows`` (how many rows the unit
has); on resume a unit counts as done only when all its rows are present, a torn last line is
dropped, and the incomplete unit is redone. So a run killed at any moment and started again
with the same command loses nothing and duplicates nothing. Rows are keyed by unit, so rows of
the same run computed on several machines (``--shard i/n``) merge by concatenation
(``merge_runs``, which first checks that the shards are one run: same settings hash, same N, every
shard exactly once). The settings that change results (``SETTINGS``) are recorded once when the
run starts; resuming with any of them different is refused, naming the setting.
"""

from __future__ import annotations

import datetime as _dt
import errno
import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Iterable, Iterator

ROWS = "rows.jsonl"
ERRORS = "errors.jsonl"
MANIFEST = "manifest.json"
LOCK = ".lock"
# the settings that change a run's results: a resumed run must keep them all (``write_manifest``)
SETTINGS = ("probe", "model", "config", "data_sha256", "seed", "batch_size", "too_long", "shard", "model_options")
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


def explain_os_error(e: OSError, path: str | Path) -> "RunError":
    """One line naming the path and the fix for the write errors a user can meet."""
    where = e.filename or path
    if e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return RunError(f"{where}: the disk is full; free some space (or pass --out on another disk), "
                        "then run the same command again: the run resumes where it stopped.")
    if e.errno == errno.EROFS:
        return RunError(f"{where}: the folder is on a read-only file system; pass --out a writable folder.")
    if e.errno in (errno.EACCES, errno.EPERM):
        return RunError(f"{where}: no permission to write here; pass --out a folder you can write to.")
    if e.errno in (errno.ENOTDIR, errno.EEXIST) and Path(path).exists() and not Path(path).is_dir():
        return RunError(f"{path}: --out points at a file, not a folder; give a folder (a new one, or an earlier run's folder to resume).")
    return RunError(f"{where}: {e.strerror or e}; check the path and that it can be written.")


class RunLock:
    """An OS lock (``flock``) on ``RUNDIR/.lock``: one writer per run folder.

    The lock belongs to the open file, so the OS releases it when the process ends, however it
    ends (``kill -9`` included): a stale lock file never blocks a later run. The file records the
    holder's PID and host, for the message a second run gets.
    """

    def __init__(self, run_dir: Path):
        import fcntl

        self.path = Path(run_dir) / LOCK
        self._f = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(self._f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._f.seek(0)
            holder = self._f.read().strip() or "another process"
            self._f.close()
            raise RunError(
                f"{run_dir} is in use by another run ({holder}); wait for it to finish, or pass a new --out folder."
            ) from None
        self._f.seek(0)
        self._f.truncate()
        self._f.write(f"pid {os.getpid()} on host {socket.gethostname()}\n")
        self._f.flush()

    def release(self) -> None:
        import fcntl

        if not self._f.closed:
            try:
                fcntl.flock(self._f.fileno(), fcntl.LOCK_UN)
            finally:
                self._f.close()


class RunStore:
    """Append-only writer for one run folder, resumable; holds the folder's lock while open."""

    def __init__(self, run_dir: str | Path):
        self.dir = Path(run_dir)
        try:
            if self.dir.exists() and not self.dir.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(self.dir))
            self.dir.mkdir(parents=True, exist_ok=True)
            self._lock = RunLock(self.dir)
        except OSError as e:
            raise explain_os_error(e, self.dir) from None
        self.rows_path = self.dir / ROWS
        self.errors_path = self.dir / ERRORS
        try:
            self._done = self._recover()
            self._compact_errors()
            self._rows_f = open(self.rows_path, "a", encoding="utf-8")
            self._err_f = open(self.errors_path, "a", encoding="utf-8")
        except OSError as e:
            self._lock.release()
            raise explain_os_error(e, self.dir) from None
        except BaseException:
            self._lock.release()
            raise

    # manifest ------------------------------------------------------------------------------
    def write_manifest(self, info: dict, *, resume_check: Iterable[str] = SETTINGS) -> dict:
        """Write manifest.json; on resume every setting that changes results must match the earlier run.

        The resolved settings are recorded once, when the run starts (``settings``, with their hash
        ``settings_sha256``); a rerun with any of them different is refused, naming the setting.
        """
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
            diff = [k for k in resume_check if k in old and k in full and _norm(old[k]) != _norm(full[k])]
            if diff:
                self.close()
                what = "; ".join(f"{k} was {_short(old[k])}, now {_short(full[k])}" for k in diff)
                raise RunError(
                    f"{self.dir} already holds a run with a different {', '.join(diff)} ({what}); "
                    "resume with the same settings, or pass a new --out folder."
                )
            full["created"] = old.get("created", full["created"])
            full["resumed"] = old.get("resumed", []) + [_dt.datetime.now().isoformat(timespec="seconds")]
            for k in ("settings", "settings_sha256"):
                if k in old:
                    full[k] = old[k]
        if "settings" not in full:
            full["settings"] = {k: full[k] for k in resume_check if k in full}
            full["settings_sha256"] = settings_hash(full)
        try:
            _atomic_write(path, json.dumps(full, indent=2, default=str))
        except OSError as e:
            raise explain_os_error(e, path) from None
        return full

    # rows ----------------------------------------------------------------------------------
    def _recover(self) -> set[str]:
        """Read what an earlier (maybe killed) run left; drop torn lines, incomplete units and
        duplicated units (two writers at once, before the folder was locked)."""
        if not self.rows_path.exists():
            return set()
        good: list[tuple[str, str]] = []
        counts: dict[str, int] = {}
        expected: dict[str, int] = {}
        n_lines = 0
        with open(self.rows_path, encoding="utf-8") as f:
            for line in f:
                n_lines += 1
                if not line.endswith("\n"):
                    break  # torn last line
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    break
                u = row.get("unit")
                good.append((u, line))
                counts[u] = counts.get(u, 0) + 1
                expected.setdefault(u, int(row.get("unit_rows", 1)))
        done = {u for u, n in counts.items() if n >= expected[u]}
        kept, seen = [], {}
        for u, ln in good:
            if u in done and seen.get(u, 0) < expected[u]:
                seen[u] = seen.get(u, 0) + 1
                kept.append(ln)
        dups = sum(max(0, counts[u] - expected[u]) for u in done)
        if dups:
            warnings.warn(f"{self.rows_path}: dropped {dups} duplicated row(s) (a unit written twice, by two runs at once)", stacklevel=3)
        if len(kept) != n_lines:
            tmp = self.rows_path.with_suffix(".tmp")
            tmp.write_text("".join(kept), encoding="utf-8")
            os.replace(tmp, self.rows_path)
        # a unit that failed earlier is retried on resume: errors are not "done"
        return done

    def _compact_errors(self) -> None:
        """One line per failed unit: the latest failure, none for a unit done since."""
        if not self.errors_path.exists():
            return
        lines = self.errors_path.read_text(encoding="utf-8").splitlines(keepends=True)
        latest: dict[str, str] = {}
        for ln in lines:
            if not ln.endswith("\n"):
                continue
            try:
                u = json.loads(ln).get("unit")
            except json.JSONDecodeError:
                continue
            latest.pop(u, None)
            latest[u] = ln
        kept = [ln for u, ln in latest.items() if u not in self._done]
        if kept != lines:
            _atomic_write(self.errors_path, "".join(kept))

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
        try:
            self._rows_f.write(text)
            self._rows_f.flush()
            os.fsync(self._rows_f.fileno())
        except OSError as e:
            raise explain_os_error(e, self.rows_path) from None
        self._done.add(unit)

    def error(self, unit: str, utt_id: str, message: str, **extra) -> None:
        try:
            self._err_f.write(json.dumps({"unit": unit, "utt_id": utt_id, "error": message, **extra}, default=_json_default) + "\n")
            self._err_f.flush()
        except OSError as e:
            raise explain_os_error(e, self.errors_path) from None

    def close(self) -> None:
        if getattr(self, "_closed", False):
            return
        self._closed = True
        try:
            for f in (self._rows_f, self._err_f):
                try:
                    f.close()
                except OSError:
                    pass
            try:
                self._compact_errors()
            except OSError:
                pass  # compacted again on the next resume
        finally:
            self._lock.release()

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def settings_hash(manifest: dict) -> str:
    """The hash of a run's result-changing settings (the same for every shard of one run)."""
    settings = manifest.get("settings") or {k: manifest.get(k) for k in SETTINGS if k in manifest}
    settings = {k: v for k, v in settings.items() if k != "shard"}
    return hashlib.sha256(json.dumps(_norm(settings), sort_keys=True, default=str).encode()).hexdigest()


def _norm(v):
    """JSON round trip: tuples and lists compare equal, as they do once written."""
    return json.loads(json.dumps(v, default=str))


def _short(v, n: int = 60) -> str:
    s = json.dumps(_norm(v), sort_keys=True)
    return s if len(s) <= n else s[: n - 3] + "..."


# reading -------------------------------------------------------------------------------------
def read_manifest(run_dir: str | Path) -> dict:
    p = Path(run_dir) / MANIFEST
    if not p.exists():
        raise RunError(f"{run_dir}: not a run folder (no {MANIFEST}); give the folder that `probe run` printed.")
    return json.loads(p.read_text())


def iter_rows(run_dir: str | Path, name: str = ROWS) -> Iterator[dict]:
    """The rows as written; in rows.jsonl a unit's rows beyond its ``unit_rows`` (a unit written
    twice by two runs at once, before folders were locked) are dropped with a warning."""
    p = Path(run_dir) / name
    if not p.exists():
        return
    seen: dict[str, int] = {}
    dups = 0
    with open(p, encoding="utf-8") as f:
        for line in f:
            if line.endswith("\n") and line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    break
                if name == ROWS and "unit" in row:
                    u = row["unit"]
                    seen[u] = seen.get(u, 0) + 1
                    if seen[u] > int(row.get("unit_rows", 1)):
                        dups += 1
                        continue
                yield row
    if dups:
        warnings.warn(f"{p}: dropped {dups} duplicated row(s) (a unit written twice, by two runs at once)", stacklevel=2)


def read_rows(run_dir: str | Path, name: str = ROWS):
    """The run's rows as a pandas DataFrame (bookkeeping columns dropped), ordered by unit: the
    order the rows were written in (resumes, shards) does not change anything computed from them."""
    import pandas as pd

    rows = list(iter_rows(run_dir, name))
    if name == ROWS:
        rows = [r for _, r in sorted(enumerate(rows), key=lambda kr: (str(kr[1].get("unit", "")), kr[0]))]
    df = pd.DataFrame.from_records(rows)
    return df.drop(columns=[c for c in ("unit_rows",) if c in df.columns])


def read_errors(run_dir: str | Path):
    return read_rows(run_dir, ERRORS)


def count_errors(run_dir: str | Path) -> int:
    """Units that failed and were not done by a later resume (a failed unit is retried, so an
    errors.jsonl of an older version can name it more than once)."""
    done = {r.get("unit") for r in iter_rows(run_dir)}
    return len({e.get("unit") for e in iter_rows(run_dir, ERRORS)} - done)


def error_counts(run_dir: str | Path) -> dict[str, int]:
    """Failed units and the distinct utterances they belong to (one utterance may fail under
    several conditions)."""
    done = {r.get("unit") for r in iter_rows(run_dir)}
    failed = {e.get("unit"): e.get("utt_id") for e in iter_rows(run_dir, ERRORS) if e.get("unit") not in done}
    return {"units": len(failed), "utterances": len(set(failed.values()))}


class MergeError(RunError):
    pass


def check_shards(sources: list[str | Path], manifests: list[dict]) -> None:
    """Shards merge only when they are one run: same settings, same N, every shard exactly once."""
    if not sources:
        raise MergeError("nothing to merge: give the shard folders of one run")
    h0 = settings_hash(manifests[0])
    for s, m in zip(sources[1:], manifests[1:]):
        if settings_hash(m) != h0:
            s0 = manifests[0].get("settings") or manifests[0]
            s1 = m.get("settings") or m
            bad = [k for k in SETTINGS if k != "shard" and _norm(s0.get(k)) != _norm(s1.get(k))] or ["settings"]
            raise MergeError(f"{s} differs from {sources[0]} in {', '.join(bad)}; only shards of one run merge.")
    shards = [m.get("shard") for m in manifests]
    if any(sh is None for sh in shards):
        if len(sources) == 1:
            return
        k = shards.index(None)
        raise MergeError(f"{sources[k]} is not a shard (it ran without --shard); merge only the I/N shards of one run.")
    ns = {int(sh[1]) for sh in shards}
    if len(ns) > 1:
        raise MergeError("the shards were cut differently ("
                         + ", ".join(f"{s}: {sh[0]}/{sh[1]}" for s, sh in zip(sources, shards))
                         + "); merge shards of one --shard I/N split.")
    n = ns.pop()
    seen: dict[int, str] = {}
    for s, sh in zip(sources, shards):
        i = int(sh[0])
        if i in seen:
            raise MergeError(f"shard {i}/{n} is given twice ({seen[i]} and {s}); give each shard once.")
        seen[i] = str(s)
    missing = [f"{i}/{n}" for i in range(n) if i not in seen]
    if missing:
        raise MergeError(f"shard(s) {', '.join(missing)} missing; run them with `probe run ... --shard I/{n}` and merge all {n}.")
    for s in sources:
        extra = sorted(p.name for p in Path(s).iterdir() if not _mergeable(p))
        if extra:
            raise MergeError(f"{s} holds files beside its rows ({', '.join(extra[:3])}); merging those is not supported: "
                             "run this probe unsharded (or in one folder with --shard i/n runs one after another).")


def _mergeable(p: Path) -> bool:
    """What merge_runs rebuilds or can leave behind: the rows, errors, manifest, metrics, reports."""
    return (p.name in (ROWS, ERRORS, MANIFEST, "metrics.json", "figures") or p.name.startswith(".")
            or p.suffix in (".html", ".png", ".svg", ".pdf", ".tmp"))


def merge_runs(sources: list[str | Path], out: str | Path) -> Path:
    """Merge the shards of one run (same settings, every shard exactly once) into ``out``.

    Rows are written ordered by unit, so the merge does not depend on the order of ``sources``.
    """
    out = Path(out)
    manifests = [read_manifest(s) for s in sources]
    check_shards(sources, manifests)
    if any(Path(s).resolve() == out.resolve() for s in sources):
        raise MergeError(f"{out}: --out must be a new folder, not one of the shards")
    if (out / ROWS).exists() and (out / ROWS).stat().st_size:
        raise MergeError(f"{out}: already holds rows; merge into a new folder")
    store = RunStore(out)
    try:
        info = {k: v for k, v in manifests[0].items()
                if k not in ("created", "git_sha", "versions", "argv", "shard", "resumed", "settings", "settings_sha256")}
        info["shard"] = None
        info["merged_from"] = [str(s) for s in sources]
        store.write_manifest(info)
        by_unit: dict[str, list[dict]] = {}
        errors: dict[str, dict] = {}
        for s in sources:
            for r in iter_rows(s):
                by_unit.setdefault(r["unit"], []).append(r)
            for e in iter_rows(s, ERRORS):
                errors[e.get("unit", "")] = e
        for u in sorted(by_unit):
            rows = by_unit[u]
            if len(rows) >= int(rows[0].get("unit_rows", 1)):
                store.append(u, [{k: v for k, v in r.items() if k not in ("unit", "unit_rows")} for r in rows])
        for u in sorted(errors):
            if not store.done(u):
                e = errors[u]
                store.error(u, e.get("utt_id", ""), e.get("error", ""),
                            **{k: v for k, v in e.items() if k not in ("unit", "utt_id", "error")})
    finally:
        store.close()
    return out


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def json_default(o):
    """``json.dumps(default=...)`` for what the workbench writes (rows, manifests, checkpoints'
    config.json): numpy scalars and arrays, tuples and paths; anything else is refused."""
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (Path, tuple)):
        return str(o) if isinstance(o, Path) else list(o)
    raise TypeError(f"cannot store {type(o).__name__} as JSON; convert it to a number, string or list")


_json_default = json_default
