"""Six acoustic concepts from eGeMAPS, their levels (low / mid / high) and their prompt text.

This module changes nothing a model sees; it is the library behind the cue-token interventions
(``interventions/cues.py``) and ``probe cues``. It reads eGeMAPSv02 functionals
(``interventions/egemaps.py``) and records, per utterance, one level word per concept.

Each concept is a weighted mean of z-scored eGeMAPS functionals (z over the reference set, or
within each speaker with ``per_speaker=True``); the sign says which way is "high". The z-scores
are robust (``scaling="robust"``, the default): centre = median, scale = 1.4826 x the median
absolute deviation (the standard deviation where that is zero), then clipped to +-3
(``Z_CLIP``), so one extreme functional cannot decide a concept. The slope functionals need it:
on EmoDB ``F0semitoneFrom27.5Hz_sma3nz_meanFallingSlope`` ranges from -224 to 1603, and with
plain mean/std z one such file dragged the dynamics level of the others toward ``mid``
(``scaling="standard"`` keeps that behaviour, unclipped, for reproducing older numbers):

| concept        | eGeMAPS functionals (weight)                                                         | high means                     |
|----------------|--------------------------------------------------------------------------------------|--------------------------------|
| energy         | loudness_sma3_amean (+1)                                                             | loud                           |
| pitch          | F0semitoneFrom27.5Hz_sma3nz_amean (+1)                                               | high mean F0                   |
| dynamics       | loudness_sma3_stddevNorm, F0semitoneFrom27.5Hz_sma3nz_stddevNorm (variability);      | lively, fast-changing prosody  |
|                | loudness_sma3_meanRisingSlope, loudness_sma3_meanFallingSlope,                       |                                |
|                | F0semitoneFrom27.5Hz_sma3nz_meanRisingSlope, ..._meanFallingSlope (rate of change);  |                                |
|                | all +1                                                                               |                                |
| brightness     | slopeV0-500_sma3nz_amean (+1), slopeV500-1500_sma3nz_amean (+1),                     | more high-frequency energy     |
|                | alphaRatioV_sma3nz_amean (+1), hammarbergIndexV_sma3nz_amean (-1)                    |                                |
| formants       | F1/F2/F3frequency_sma3nz_amean (+1 each), F1/F2/F3bandwidth_sma3nz_amean (-1 each)   | higher, sharper formants       |
| voice_quality  | jitterLocal_sma3nz_amean (-1), shimmerLocaldB_sma3nz_amean (-1), HNRdBACF_sma3nz_amean (+1) | clear, periodic voice    |

Directions were checked on generated harmonic signals: a flatter spectral tilt raises the alpha
ratio and both slopes and lowers the Hammarberg index (its peak ratio is low band over high
band), so Hammarberg enters with -1. Bandwidths enter formants with -1 because a wide bandwidth
is a weak, smeared resonance; the level then reads as "formant position and definition".

Levels: the concept scores of the reference set are cut at their quantiles (1/3, 2/3 for the
default three levels). A score equal to an edge takes the middle of the tied range, so a single
reference file comes out ``mid`` and two files come out ``low`` / ``high``. The bins (z
statistics, per-speaker statistics, edges, the scaling, the concept table, the feature version)
are saved to JSON and reloaded, so the same bins are used across runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from probes.data.manifest import Manifest

_F0 = "F0semitoneFrom27.5Hz_sma3nz"
CONCEPTS: dict[str, tuple[tuple[str, float], ...]] = {
    "energy": (("loudness_sma3_amean", 1.0),),
    "pitch": ((f"{_F0}_amean", 1.0),),
    "dynamics": (
        ("loudness_sma3_stddevNorm", 1.0), (f"{_F0}_stddevNorm", 1.0),
        ("loudness_sma3_meanRisingSlope", 1.0), ("loudness_sma3_meanFallingSlope", 1.0),
        (f"{_F0}_meanRisingSlope", 1.0), (f"{_F0}_meanFallingSlope", 1.0),
    ),
    "brightness": (
        ("slopeV0-500_sma3nz_amean", 1.0), ("slopeV500-1500_sma3nz_amean", 1.0),
        ("alphaRatioV_sma3nz_amean", 1.0), ("hammarbergIndexV_sma3nz_amean", -1.0),
    ),
    "formants": (
        ("F1frequency_sma3nz_amean", 1.0), ("F2frequency_sma3nz_amean", 1.0), ("F3frequency_sma3nz_amean", 1.0),
        ("F1bandwidth_sma3nz_amean", -1.0), ("F2bandwidth_sma3nz_amean", -1.0), ("F3bandwidth_sma3nz_amean", -1.0),
    ),
    "voice_quality": (
        ("jitterLocal_sma3nz_amean", -1.0), ("shimmerLocaldB_sma3nz_amean", -1.0), ("HNRdBACF_sma3nz_amean", 1.0),
    ),
}
CONCEPT_NAMES: tuple[str, ...] = tuple(CONCEPTS)
DISPLAY = {c: c.replace("_", " ") for c in CONCEPT_NAMES}
FEATURES: tuple[str, ...] = tuple(dict.fromkeys(f for terms in CONCEPTS.values() for f, _ in terms))

LEVEL_NAMES: dict[int, tuple[str, ...]] = {
    2: ("low", "high"),
    3: ("low", "mid", "high"),
    4: ("low", "mid-low", "mid-high", "high"),
    5: ("very low", "low", "mid", "high", "very high"),
}
OUT_OF_RANGE: tuple[str, str] = ("extremely low", "extremely high")  # never a fitted level
BINS_FORMAT = 2          # 2: robust scaling recorded ("scaling"); format-1 files load as "standard"
SCALINGS = ("robust", "standard")
Z_CLIP = 3.0             # robust z-scores are clipped to +-Z_CLIP
MAD_TO_SD = 1.4826       # the MAD of a normal distribution times this is its standard deviation

_TEMPLATES_FILE = Path(__file__).with_name("cue_templates.json")


class CueError(ValueError):
    """Bins or templates that cannot be used; the message names the file and the fix."""


def concept_table() -> list[dict]:
    """The mapping as rows (concept, feature, weight), e.g. for docs or a run manifest."""
    return [{"concept": c, "feature": f, "weight": w} for c, terms in CONCEPTS.items() for f, w in terms]


# ------------------------------------------------------------------------------------- bins
@dataclass
class CueBins:
    """Fitted discretisation: z statistics + per-concept quantile edges. Build with ``fit``."""

    n_levels: int = 3
    per_speaker: bool = False
    mean: dict[str, float] = field(default_factory=dict)            # feature -> reference centre (mean or median)
    std: dict[str, float] = field(default_factory=dict)             # feature -> reference scale (>0)
    speakers: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # spk -> {mean, std}
    edges: dict[str, list[float]] = field(default_factory=dict)     # concept -> n_levels-1 edges
    fitted_on: dict = field(default_factory=dict)                   # source, n
    feature_version: str = ""
    scaling: str = "robust"                                         # "robust" (median/MAD, clipped) | "standard"

    @property
    def levels(self) -> tuple[str, ...]:
        return LEVEL_NAMES[self.n_levels]

    # fitting ---------------------------------------------------------------------------
    @classmethod
    def fit(cls, features: "pd.DataFrame", *, speakers: Sequence[str] | None = None, per_speaker: bool = False,
            n_levels: int = 3, source: str = "", scaling: str = "robust") -> "CueBins":
        """Fit on reference functionals [n, 88]; ``speakers`` [n] is needed for ``per_speaker``."""
        from interventions.egemaps import FEATURE_VERSION

        if n_levels not in LEVEL_NAMES:
            raise CueError(f"n_levels={n_levels}: use one of {sorted(LEVEL_NAMES)}")
        if scaling not in SCALINGS:
            raise CueError(f"scaling={scaling!r}: use one of {', '.join(SCALINGS)}")
        if len(features) == 0:
            raise CueError(f"cannot fit cue bins on an empty reference set ({source or 'no source'}); give a manifest with audio.")
        if per_speaker and speakers is None:
            raise CueError("per-speaker bins need the speaker of every reference file (a manifest with a speaker column).")
        X = _matrix(features)                                      # [n, n_features]
        b = cls(n_levels=n_levels, per_speaker=per_speaker, feature_version=FEATURE_VERSION,
                fitted_on={"source": source, "n": int(len(X))}, scaling=scaling)
        mu, sd = _stats(X, scaling)
        b.mean, b.std = dict(zip(FEATURES, mu.tolist())), dict(zip(FEATURES, sd.tolist()))
        if per_speaker:
            spk = np.asarray([str(s) for s in speakers])
            for s in sorted(set(spk)):
                m, d = _stats(X[spk == s], scaling)
                b.speakers[s] = {"mean": dict(zip(FEATURES, m.tolist())), "std": dict(zip(FEATURES, d.tolist()))}
        S = b.scores(features, speakers=speakers).to_numpy()       # [n, 6]
        qs = np.arange(1, n_levels) / n_levels
        b.edges = {c: np.quantile(S[:, j], qs).tolist() for j, c in enumerate(CONCEPT_NAMES)}
        return b

    # applying --------------------------------------------------------------------------
    def zscores(self, features: "pd.DataFrame", speakers: Sequence[str] | None = None) -> np.ndarray:
        """[n, n_features] z-scores; per speaker when the bins are per speaker.

        A speaker the bins have not seen is normalised with its own statistics in ``features``
        when it has at least two files there, else with the global reference statistics.
        Robust bins clip the result to +-``Z_CLIP``.
        """
        X = _matrix(features)
        mu = np.array([self.mean[f] for f in FEATURES])
        sd = np.array([self.std[f] for f in FEATURES])
        Z = (X - mu) / sd
        if self.per_speaker:
            if speakers is None:
                raise CueError("these bins are per speaker: pass the speaker of every file (use --data MANIFEST on the CLI).")
            spk = np.asarray([str(s) for s in speakers])
            for s in set(spk):
                rows = spk == s
                if s in self.speakers:
                    m = np.array([self.speakers[s]["mean"][f] for f in FEATURES])
                    d = np.array([self.speakers[s]["std"][f] for f in FEATURES])
                elif rows.sum() >= 2:
                    m, d = _stats(X[rows], self.scaling)
                else:
                    continue  # a lone unseen speaker keeps the global z
                Z[rows] = (X[rows] - m) / d
        Z = np.nan_to_num(Z, nan=0.0)  # a missing feature counts as average
        if self.scaling == "robust":
            Z = np.clip(Z, -Z_CLIP, Z_CLIP)
        return Z

    def scores(self, features: "pd.DataFrame", speakers: Sequence[str] | None = None) -> "pd.DataFrame":
        """Concept scores [n, 6]: weighted means of z-scored features (module table)."""
        import pandas as pd

        Z = self.zscores(features, speakers)
        col = {f: i for i, f in enumerate(FEATURES)}
        out = {}
        for c, terms in CONCEPTS.items():
            w = np.array([wt for _, wt in terms])
            out[c] = Z[:, [col[f] for f, _ in terms]] @ w / np.abs(w).sum()
        return pd.DataFrame(out, index=getattr(features, "index", None))

    def level_index(self, features: "pd.DataFrame", speakers: Sequence[str] | None = None) -> np.ndarray:
        """[n, 6] integer levels 0..n_levels-1."""
        S = self.scores(features, speakers).to_numpy()
        out = np.zeros(S.shape, dtype=int)
        for j, c in enumerate(CONCEPT_NAMES):
            e = np.asarray(self.edges[c])
            lt = (S[:, j, None] > e[None, :]).sum(1)     # edges strictly below the score
            le = (S[:, j, None] >= e[None, :]).sum(1)    # edges at or below it
            out[:, j] = (lt + le) // 2                   # ties take the middle of the tied range
        return out

    def transform(self, features: "pd.DataFrame", speakers: Sequence[str] | None = None) -> list[dict[str, str]]:
        """One {concept: level word} per row of ``features``."""
        names = self.levels
        return [{c: names[i] for c, i in zip(CONCEPT_NAMES, row)} for row in self.level_index(features, speakers)]

    # saving ----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": BINS_FORMAT, "kind": "dissonance-cue-bins", "feature_version": self.feature_version,
            "n_levels": self.n_levels, "levels": list(self.levels), "per_speaker": self.per_speaker,
            "concepts": {c: [[f, w] for f, w in t] for c, t in CONCEPTS.items()},
            "scaling": self.scaling, "z_clip": Z_CLIP if self.scaling == "robust" else None,
            "mean": self.mean, "std": self.std, "speakers": self.speakers, "edges": self.edges,
            "fitted_on": self.fitted_on,
        }

    @classmethod
    def from_dict(cls, d: Mapping, where: str = "<dict>") -> "CueBins":
        from interventions.egemaps import FEATURE_VERSION

        if d.get("kind") != "dissonance-cue-bins" or d.get("format") not in (1, BINS_FORMAT):
            raise CueError(f"{where}: not a cue-bins file (format 1 or {BINS_FORMAT}); write one with `probe cues ... --save-bins FILE`.")
        scaling = str(d.get("scaling") or "standard")  # format 1 had plain mean/std z, unclipped
        if scaling not in SCALINGS:
            raise CueError(f"{where}: unknown scaling {scaling!r} (known: {', '.join(SCALINGS)}); refit the bins with --save-bins.")
        table = {c: [[f, float(w)] for f, w in t] for c, t in d["concepts"].items()}
        if table != {c: [[f, w] for f, w in t] for c, t in CONCEPTS.items()}:
            raise CueError(f"{where}: the bins were fitted with a different concept table; refit them with --save-bins.")
        if d.get("feature_version") != FEATURE_VERSION:
            raise CueError(f"{where}: fitted on {d.get('feature_version')!r} features, this install extracts "
                           f"{FEATURE_VERSION!r}; refit the bins with --save-bins.")
        return cls(n_levels=int(d["n_levels"]), per_speaker=bool(d["per_speaker"]), mean=dict(d["mean"]),
                   std=dict(d["std"]), speakers=dict(d.get("speakers") or {}),
                   edges={c: list(map(float, v)) for c, v in d["edges"].items()},
                   fitted_on=dict(d.get("fitted_on") or {}), feature_version=d["feature_version"], scaling=scaling)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "CueBins":
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such bins file; write one with `probe cues ... --save-bins {path}`.")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise CueError(f"{path}: not JSON ({e}); write bins with `probe cues ... --save-bins FILE`.") from None
        return cls.from_dict(d, where=str(path))


def _matrix(features: "pd.DataFrame") -> np.ndarray:
    missing = [f for f in FEATURES if f not in features.columns]
    if missing:
        raise CueError(f"eGeMAPS functionals lack {', '.join(missing[:3])}...; extract with interventions.egemaps.extract.")
    return features[list(FEATURES)].to_numpy(dtype=float)      # [n, n_features]


def _stats(X: np.ndarray, scaling: str = "robust") -> tuple[np.ndarray, np.ndarray]:
    """Centre and scale per column of X [n, n_features]: mean/std, or median/(1.4826 MAD)."""
    import warnings

    if not len(X):
        return np.zeros(X.shape[1]), np.ones(X.shape[1])
    with warnings.catch_warnings():  # an all-missing column: nan, handled below
        warnings.simplefilter("ignore", RuntimeWarning)
        sd = np.nanstd(X, axis=0)
        if scaling == "robust":
            mu = np.nanmedian(X, axis=0)
            mad = MAD_TO_SD * np.nanmedian(np.abs(X - mu), axis=0)
            sd = np.where(np.isfinite(mad) & (mad >= 1e-12), mad, sd)  # MAD 0 (ties): fall back to the SD
        else:
            mu = np.nanmean(X, axis=0)
    mu = np.nan_to_num(mu, nan=0.0)
    sd = np.where(~np.isfinite(sd) | (sd < 1e-12), 1.0, sd)  # a constant feature carries no level
    return mu, sd


# ---------------------------------------------------------------------------------- render
@lru_cache(maxsize=1)
def cue_templates() -> dict[str, dict]:
    data = json.loads(_TEMPLATES_FILE.read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if not k.startswith("_")}


def render(tokens: Mapping[str, str], template: str = "brackets") -> str:
    """Prompt text for one utterance's tokens, e.g. ``[energy: high] [pitch: low] ...``."""
    t = cue_templates()
    if template not in t:
        raise CueError(f"unknown cue template {template!r}; known: {', '.join(sorted(t))} ({_TEMPLATES_FILE.name})")
    spec = t[template]
    phrases = spec.get("phrases", {})
    items = []
    for c in CONCEPT_NAMES:
        if c not in tokens:
            continue
        lv = tokens[c]
        phrase = phrases.get(c, {}).get(lv, f"{lv} {DISPLAY[c]}")
        items.append(spec["item"].format(name=DISPLAY[c], level=lv, phrase=phrase))
    sep, last = spec.get("sep", " "), spec.get("last_sep", spec.get("sep", " "))
    body = sep.join(items[:-1]) + last + items[-1] if len(items) > 1 else "".join(items)
    return spec.get("prefix", "") + body + spec.get("suffix", "")


# ------------------------------------------------------------------------------ class profiles
def class_profiles(tokens: Sequence[Mapping[str, str]], labels: Sequence[str], levels: Sequence[str]) -> dict[str, dict[str, str]]:
    """Typical level per concept for each class: the median level index (x.5 rounds toward mid)."""
    idx = {lv: i for i, lv in enumerate(levels)}
    mid = (len(levels) - 1) / 2
    out: dict[str, dict[str, str]] = {}
    for cls_ in sorted(set(labels)):
        rows = [t for t, y in zip(tokens, labels) if y == cls_]
        prof = {}
        for c in CONCEPT_NAMES:
            m = float(np.median([idx[r[c]] for r in rows]))
            if m != int(m):
                m = np.floor(m) if m > mid else np.ceil(m)
            prof[c] = levels[int(m)]
        out[cls_] = prof
    return out


def profile_distance(a: Mapping[str, str], b: Mapping[str, str], levels: Sequence[str]) -> int:
    """L1 distance between two level profiles over the ordinal level indices."""
    idx = {lv: i for i, lv in enumerate(levels)}
    return int(sum(abs(idx[a[c]] - idx[b[c]]) for c in CONCEPT_NAMES))
