"""eGeMAPS (v02) extraction with opensmile, cached per audio file; no intervention lives here.

What it reads: audio files (any format soundfile reads; loaded through ``probes.audio.load_audio``,
so broken, empty or silent files raise one ``AudioError`` naming the file), resampled to 16 kHz
before opensmile sees them, so the same recording gives the same numbers at any file rate.

What it writes: one cache entry per file, keyed by the sha256 of the file's bytes
(``probes.audio.content_hash``) and ``FEATURE_VERSION`` (feature set, opensmile version, sample
rate), so an edited file or a new opensmile is extracted afresh and nothing stale is reused:

- functionals (88 numbers):  ``<cache>/<FEATURE_VERSION>/functionals/<hh>/<hash>.json``
- low-level descriptors:     ``<cache>/<FEATURE_VERSION>/lld/<hh>/<hash>.csv`` (25 columns, 10 ms hop)

``<cache>`` is ``$DISSONANCE_CACHE/egemaps`` when that variable is set, else
``.cache/dissonance/egemaps`` under the current folder. Files missing from the cache are
extracted in a process pool over the machine's cores with a tqdm bar (in-process when only a
few are missing: starting workers costs more than a handful of ~60 ms files).
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

SAMPLE_RATE = 16_000
FEATURE_SET = "eGeMAPSv02"
LEVELS = ("functionals", "lld")
# Below this many missing files a pool does not pay for its start-up (opensmile import per worker).
POOL_MIN_FILES = 16


def _opensmile_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("opensmile")
    except metadata.PackageNotFoundError:
        return "missing"


FEATURE_VERSION = f"{FEATURE_SET}-opensmile{_opensmile_version()}-sr{SAMPLE_RATE}"


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The folder under which feature versions live (see the module docstring)."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("DISSONANCE_CACHE")
    return Path(env) / "egemaps" if env else Path(".cache") / "dissonance" / "egemaps"


def _entry(root: Path, level: str, digest: str) -> Path:
    suffix = ".json" if level == "functionals" else ".csv"
    return root / FEATURE_VERSION / level / digest[:2] / (digest + suffix)


_SMILE: dict[str, object] = {}


def _smile(level: str):
    """One opensmile.Smile per process and level (building it parses the config: ~30 ms)."""
    if level not in _SMILE:
        import opensmile

        fl = opensmile.FeatureLevel.Functionals if level == "functionals" else opensmile.FeatureLevel.LowLevelDescriptors
        _SMILE[level] = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02, feature_level=fl)
    return _SMILE[level]


def features_of_signal(wav: np.ndarray, sr: int = SAMPLE_RATE, level: str = "functionals") -> "pd.DataFrame":
    """eGeMAPS of an in-memory waveform (no cache). # wav: [time] -> [1, 88] or [frames, 25]"""
    from probes.audio import check_samples

    wav = np.asarray(wav, dtype=np.float32)
    check_samples(wav)
    if sr != SAMPLE_RATE:
        import librosa

        wav = librosa.resample(wav, orig_sr=sr, target_sr=SAMPLE_RATE).astype(np.float32)
    df = _smile(level).process_signal(wav, SAMPLE_RATE)
    return df.reset_index(drop=True)


def _extract_one(job: tuple[str, str, str, str]) -> str | None:
    """Worker: load, extract, write the cache entry atomically. Returns None, or the AudioError text."""
    from probes.audio import AudioError, load_audio

    path, digest, level, root = job
    try:
        wav = load_audio(path, SAMPLE_RATE)
    except AudioError as e:  # returned, not raised: one bad file must not sink a pool of good ones
        return str(e)
    df = _smile(level).process_signal(wav, SAMPLE_RATE).reset_index(drop=True)
    out = _entry(Path(root), level, digest)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + f".{os.getpid()}.tmp")
    if level == "functionals":
        tmp.write_text(json.dumps({k: float(v) for k, v in df.iloc[0].items()}), encoding="utf-8")
    else:
        df.to_csv(tmp, index=False)
    os.replace(tmp, out)  # atomic: a killed run never leaves a half-written entry
    return None


def extract(
    paths: Sequence[str | Path],
    *,
    level: str = "functionals",
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    progress: bool = True,
    errors: str = "raise",
) -> list:
    """eGeMAPS for each file, in the given order, through the cache.

    ``level="functionals"`` returns a DataFrame [n_files, 88] (index = position in ``paths``);
    ``level="lld"`` returns a list of DataFrames [frames, 25], one per file.
    ``errors="raise"``: ``probes.audio.AudioError`` naming the first bad file (in ``paths`` order).
    ``errors="skip"``: a bad file gets a row of NaN (an LLD entry of None) and nothing is cached
    for it; ``failures(functionals)`` gives {position: message}.
    """
    import pandas as pd

    from probes.audio import AudioError, content_hash

    if level not in LEVELS:
        raise ValueError(f"eGeMAPS level {level!r}: use one of {', '.join(LEVELS)}")
    if errors not in ("raise", "skip"):
        raise ValueError(f"errors={errors!r}: use 'raise' or 'skip'")
    root = cache_root(cache_dir)
    bad: dict[int, str] = {}
    digests: list[str | None] = []
    for i, p in enumerate(paths):
        if Path(p).is_file():
            digests.append(content_hash(p))
        else:
            digests.append(None)
            bad[i] = f"{p}: file not found; check the path (manifest paths are read from the manifest's folder)."
    todo: dict[str, str] = {}  # digest -> one path with that content (duplicates extract once)
    for p, d in zip(paths, digests):
        if d is not None and d not in todo and not _entry(root, level, d).exists():
            todo[d] = str(p)
    if todo:
        failed = _run_jobs([(p, d, level, str(root)) for d, p in todo.items()], workers=workers, progress=progress)
        bad.update({i: failed[d] for i, d in enumerate(digests) if d in failed})
    if bad and errors == "raise":
        raise AudioError(bad[min(bad)])
    if level == "functionals":
        names = None
        rows = []
        for i, d in enumerate(digests):
            rows.append(None if i in bad else json.loads(_entry(root, level, d).read_text(encoding="utf-8")))
            names = names or (list(rows[-1]) if rows[-1] else None)
        names = names or feature_names(level)
        out = pd.DataFrame([r if r is not None else {k: np.nan for k in names} for r in rows], columns=names)
        out.attrs["failures"] = dict(bad)
        return out
    return [None if i in bad else pd.read_csv(_entry(root, level, d)) for i, d in enumerate(digests)]


def failures(functionals: "pd.DataFrame") -> dict[int, str]:
    """Files that ``extract(..., errors="skip")`` could not read: {position in paths: message}."""
    return dict(functionals.attrs.get("failures", {}))


def _run_jobs(jobs: list[tuple[str, str, str, str]], *, workers: int | None, progress: bool) -> dict[str, str]:
    """Extract every job; returns {digest: error message} for the files that could not be read."""
    from tqdm.auto import tqdm

    if workers is None:  # automatic: a pool over all cores, unless too few files to pay for it
        workers = 1 if len(jobs) < POOL_MIN_FILES else (os.cpu_count() or 1)
    workers = max(1, min(int(workers), len(jobs)))
    failed: dict[str, str] = {}
    desc = f"eGeMAPS ({jobs[0][2]})"
    # disable=None: the bar shows on a terminal and stays out of pipes and log files
    with tqdm(total=len(jobs), desc=desc, unit="file", disable=None if progress else True, dynamic_ncols=True) as bar:
        if workers == 1:
            results = map(_extract_one, jobs)
            for job, err in zip(jobs, results):
                if err:
                    failed[job[1]] = err
                bar.update(1)
            return failed
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for job, err in zip(jobs, pool.map(_extract_one, jobs, chunksize=4)):  # small chunks: a smooth bar
                if err:
                    failed[job[1]] = err
                bar.update(1)
    return failed


def feature_names(level: str = "functionals") -> list[str]:
    """The column names opensmile gives for eGeMAPSv02 at ``level``."""
    return list(_smile(level).feature_names)


def cached_count(paths: Iterable[str | Path], level: str = "functionals", cache_dir: str | Path | None = None) -> int:
    """How many of ``paths`` already have a cache entry (for progress messages and tests)."""
    from probes.audio import content_hash

    root = cache_root(cache_dir)
    return sum(_entry(root, level, content_hash(p)).exists() for p in paths)
