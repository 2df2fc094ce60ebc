"""Acoustic cue tokens in the prompt: aligned, shuffled, conflicting, corrupted.

What changes: only ``Example.cues``, the rendered text of six concept tokens
(``[energy: high] [pitch: low] ...``, template by name, see ``interventions/concepts.py``) that
the adapter slots into its prompt. The audio is left as it is. Condition ``none`` is simply no
cue intervention.

- ``cues-aligned``: the utterance's own tokens.
- ``cues-shuffled``: the tokens of another utterance. Donors form a random derangement of the
  fitted manifest (seed, ``draw``), so over the data set the tokens are only moved around: the
  distribution of levels per concept is exactly that of ``aligned``.
- ``cues-conflicting``: the typical level profile of a different emotion. Profiles are the median
  level per concept and acoustic label on the reference set; the class farthest (L1 over level
  indices) from the utterance's own class is rendered. If that profile happens to equal the
  utterance's own tokens, the next farthest class is used, and failing all, the mirrored
  tokens (low <-> high, mid -> low or high): it never equals ``aligned``.
- ``cues-corrupted``: ``round(fraction * 6)`` concepts, drawn per utterance, get a level other
  than their own: a random in-range level (``mode="random"``) or an out-of-range word
  (``mode="out-of-range"``: "extremely low" / "extremely high", the end farther from the own level).

What it reads: eGeMAPSv02 functionals of every file of the manifest (``fit``, through the
extraction cache of ``interventions/egemaps.py``) and the reference set's acoustic labels. The
fitted bank (bins, tokens, class profiles) is shared by all four conditions of a run.

Defaults that keep speaker and evaluated data out of the tokens:

- ``per_speaker=None`` (auto): features are z-normalised within each speaker whenever every row
  of the reference set and of the data names its speaker; global z only where speakers are
  unknown (or with ``per_speaker=False``). On EmoDB global bins made the pitch and voice-quality
  tokens say more about the speaker's sex than about the emotion (docs/interventions.md).
- ``reference=None`` (auto): the bins and class profiles are fitted on the manifest's ``train``
  split; a manifest without one is refused until the reference is named: a manifest path, a
  split name (``train`` / ``dev`` / ``test``), or ``self`` (fit on the evaluated data itself, an
  explicit choice that every row records). A path that does not exist is refused when the
  intervention is made, before any work. When the default's train split is itself among the
  evaluated utterances (a run over a whole manifest), a warning says so and those rows carry
  ``cue_in_reference=true``; ``reference=train`` states that choice explicitly.

What it records in the row (``Example.meta``): ``cues`` (the text), ``cue_source`` (whose tokens:
the utterance, the donor, or a ``class:<label>`` profile), ``cue_reference`` (what the bins were
fitted on), ``cue_norm`` (``per-speaker`` / ``global``), ``cue_in_reference`` (this utterance was
part of the reference set), ``cue_placement`` (``after`` / ``before`` the question) and, per
condition, ``cue_donor``, ``cue_class`` / ``cue_conflict``, ``cue_corrupted`` (the changed
concepts). ``describe()`` returns the same settings, resolved, for the run manifest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from interventions.base import Intervention, rng_for
from interventions.concepts import CONCEPT_NAMES, OUT_OF_RANGE, CueBins, CueError, profile_distance, render
from probes.registry import INTERVENTIONS

if TYPE_CHECKING:
    from probes.adapter import Example
    from probes.data.manifest import Manifest


@dataclass
class CueBank:
    """Tokens of every utterance of one manifest, with the bins and class profiles behind them."""

    bins: CueBins
    tokens: dict[str, dict[str, str]]          # utt_id -> {concept: level}
    labels: dict[str, str]                     # utt_id -> acoustic label
    profiles: dict[str, dict[str, str]]        # acoustic label -> typical {concept: level} (reference set)
    reference: str = ""
    failed: dict[str, str] = field(default_factory=dict)  # utt_id -> why its audio could not be read
    info: dict = field(default_factory=dict)              # what the bins were fitted on, resolved (describe())
    in_reference: set = field(default_factory=set)        # utt_ids of the data that are in the reference set

    def text(self, utt_id: str, template: str = "brackets") -> str:
        return render(self.tokens[utt_id], template)


_BANKS: dict[tuple, CueBank] = {}


SPLITS = ("train", "dev", "test")
SELF = "self"
MIN_REFERENCE_FILES = 20  # fewer reference files than this: levels mean little (one file is always "mid")


def check_reference(reference: str | None) -> None:
    """Refuse a reference that names neither a known keyword nor an existing manifest file."""
    if reference in (None, "", "auto", SELF, *SPLITS):
        return
    p = Path(str(reference))
    if not p.is_file():
        raise CueError(f"reference={reference!r}: no such manifest file; give an existing manifest path, "
                       f"a split name ({', '.join(SPLITS)}), or {SELF!r} to fit the cue bins on the evaluated data.")


def _has_speakers(m: "Manifest") -> bool:
    return len(m) > 0 and bool((m.df["speaker"].astype(str).str.strip() != "").all())


def resolve_reference(data: "Manifest", reference: str | None) -> tuple["Manifest", str, str]:
    """(reference manifest, kind, description) for ``reference`` (see the module docstring).

    kind: ``split`` (a split of ``data``), ``manifest`` (another file) or ``self``.
    """
    from probes.data.manifest import Manifest

    check_reference(reference)
    if reference in (None, "", "auto"):
        if (data.df["split"] == "train").any():
            return data.split("train"), "split", f"train split of {data.source} (default)"
        raise CueError(f"{data.source}: no reference set for the cue bins: the manifest has no train split to fit them "
                       f"on. Name one: reference=MANIFEST (--set reference=PATH, e.g. the training manifest; "
                       f"`probe cues --reference PATH`), a split (train, dev, test), or reference={SELF} to fit the "
                       f"bins on the evaluated data itself (recorded in every row).")
    if reference == SELF:
        return data, SELF, f"{data.source} itself (reference=self)"
    if reference in SPLITS:
        ref = data.split(reference)
        if len(ref) == 0:
            raise CueError(f"{data.source}: reference split {reference!r} is empty; name another split, a manifest path, "
                           f"or reference={SELF}.")
        return ref, "split", f"{reference} split of {data.source}"
    return Manifest.read(reference), "manifest", str(reference)


def cue_bank(
    data: "Manifest",
    *,
    reference: str | None = None,
    bins: str | Path | CueBins | None = None,
    per_speaker: bool | None = None,
    n_levels: int = 3,
    scaling: str = "robust",
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> CueBank:
    """Fit (or reuse) the cue bank of ``data``; memoised per data set and settings in this process.

    ``reference``: None (auto: the manifest's train split), a split name of it, another
    manifest's path, or ``"self"`` (the data itself): the bins and the class profiles are fitted
    there. ``per_speaker``: None (auto: when every row names its speaker), True or False.
    ``bins``: a saved bins file (or object) used instead of fitting; the profiles still come
    from the reference set.
    """
    from interventions.concepts import class_profiles
    from interventions.egemaps import FEATURE_VERSION, cache_root, extract, failures

    bins_key: Any = None
    if isinstance(bins, (str, Path)):
        p = Path(bins)
        bins_key = (str(p.resolve()), p.stat().st_mtime_ns if p.exists() else None)
    elif bins is not None:
        bins_key = id(bins)
    key = (data.sha256(), str(Path(data.root).resolve()), reference, bins_key, per_speaker, n_levels, scaling,
           str(cache_root(cache_dir).resolve()), FEATURE_VERSION)
    if key in _BANKS:
        return _BANKS[key]

    ref, kind, described = resolve_reference(data, reference)
    if per_speaker is None:
        per_speaker = _has_speakers(ref) and _has_speakers(data)
    # Bad files are skipped here, not raised: the runner turns each into an error row for its
    # own utterance (apply raises), and the rest of the run goes on.
    opts = dict(cache_dir=cache_dir, workers=workers, progress=progress, errors="skip")
    feats = extract([data.audio_path(i) for i in range(len(data))], **opts)          # [n, 88]
    ref_feats = feats if ref is data else extract([ref.audio_path(i) for i in range(len(ref))], **opts)
    ref_ok = np.array([i not in failures(ref_feats) for i in range(len(ref))], dtype=bool)
    if not ref_ok.any():
        raise CueError(f"{ref.source}: no reference file could be read ({next(iter(failures(ref_feats).values()))}).")
    ref_f = ref_feats[ref_ok].reset_index(drop=True)
    ref_spk = list(ref.df["speaker"][ref_ok])
    if isinstance(bins, CueBins):
        fitted = bins
    elif bins is not None:
        fitted = CueBins.load(bins)
    else:
        fitted = CueBins.fit(ref_f, speakers=ref_spk, per_speaker=per_speaker, n_levels=n_levels, source=described,
                             scaling=scaling)
    if bins is None and len(ref_f) < MIN_REFERENCE_FILES:
        import warnings

        warnings.warn(f"cue bins fitted on {len(ref_f)} reference file(s) ({described}), fewer than {MIN_REFERENCE_FILES}: "
                      f"their levels mean little; name a larger reference (reference=MANIFEST).", stacklevel=2)
    ref_tokens = fitted.transform(ref_f, ref_spk)
    profiles = class_profiles(ref_tokens, list(ref.df["acoustic_label"][ref_ok]), fitted.levels)
    ok = np.array([i not in failures(feats) for i in range(len(data))], dtype=bool)
    ids = list(data.df["utt_id"])
    toks = fitted.transform(feats[ok].reset_index(drop=True), list(data.df["speaker"][ok]))
    if kind == SELF:
        in_ref = set(ids)
    elif kind == "split":
        in_ref = set(ref.df["utt_id"])
    else:  # another manifest: the same audio file counts as the same utterance
        ref_audio = {str(ref.audio_path(i).resolve()) for i in range(len(ref))}
        in_ref = {u for i, u in enumerate(ids) if str(data.audio_path(i).resolve()) in ref_audio}
    if reference in (None, "", "auto") and in_ref:
        import warnings

        warnings.warn(f"{data.source}: {len(in_ref)} of the {len(ids)} utterances evaluated are in the train split the cue bins "
                      f"are fitted on (rows say cue_in_reference=true); evaluate a test-split manifest, or say "
                      f"reference=train to make that choice explicit.", stacklevel=2)
    if bins is not None:  # the levels come from saved bins; only the class profiles from the reference set
        described = (f"bins {bins if isinstance(bins, (str, Path)) else '<object>'} fitted on "
                     f"{fitted.fitted_on.get('source') or '?'}; class profiles from {described}")
    info = {"reference": described, "reference_kind": kind, "reference_given": reference,
            "n_reference": int(ref_ok.sum()), "per_speaker": bool(fitted.per_speaker),
            "norm": "per-speaker" if fitted.per_speaker else "global", "scaling": fitted.scaling,
            "n_levels": fitted.n_levels, "bins_file": str(bins) if isinstance(bins, (str, Path)) else None,
            "bins_fitted_on": dict(fitted.fitted_on),  # differs from the reference when saved bins were given
            "n_evaluated_in_reference": len(in_ref & set(ids)), "n_evaluated": len(ids)}
    bank = CueBank(bins=fitted, tokens=dict(zip([u for u, k in zip(ids, ok) if k], toks)),
                   labels=dict(zip(ids, data.df["acoustic_label"])), profiles=profiles,
                   reference=described, failed={ids[i]: m for i, m in failures(feats).items()},
                   info=info, in_reference=in_ref)
    _BANKS[key] = bank
    return bank


@dataclass(frozen=True)
class _CueIntervention(Intervention):
    """Shared fields and fitting of the four cue conditions (not registered)."""

    template: str = field(default="brackets", metadata={"help": "cue text template: brackets, sentence, list"})
    n_levels: int = field(default=3, metadata={"help": "levels per concept (2-5)"})
    per_speaker: bool | None = field(default=None, metadata={"help": "z-normalise features within each speaker (default: yes when every row names its speaker)"})
    reference: str | None = field(default=None, metadata={"help": "bins fitted on: the train split (default), train|dev|test, a manifest path, or self (the evaluated data)"})
    bins: str | None = field(default=None, metadata={"help": "a saved bins JSON to use instead of fitting"})
    placement: str = field(default="after", metadata={"help": "cue line after the question (the study's) or before it"})
    scaling: str = field(default="robust", metadata={"help": "feature z-scores: robust (median/MAD, clipped to +-3) or standard"})
    workers: int | None = field(default=None, metadata={"help": "extraction processes (default: all cores)"})
    cache_dir: str | None = field(default=None, metadata={"help": "feature cache (default $DISSONANCE_CACHE/egemaps or .cache/dissonance/egemaps)"})

    side = "prompt"

    def __post_init__(self) -> None:
        from interventions.concepts import SCALINGS
        from interventions.prompts import CUE_PLACEMENTS

        name = _registered_name(self)
        if self.placement not in CUE_PLACEMENTS:
            raise CueError(f"{name}: placement={self.placement!r}; use one of {', '.join(CUE_PLACEMENTS)}")
        if self.scaling not in SCALINGS:
            raise CueError(f"{name}: scaling={self.scaling!r}; use one of {', '.join(SCALINGS)}")
        if self.per_speaker == "auto":
            object.__setattr__(self, "per_speaker", None)
        elif self.per_speaker is not None and not isinstance(self.per_speaker, bool):
            raise CueError(f"{name}: per_speaker={self.per_speaker!r}; use true, false or auto")
        try:
            check_reference(self.reference)
        except CueError as e:
            raise CueError(f"{name}: {e}") from None
        if self.bins is not None and not Path(self.bins).is_file():
            raise CueError(f"{name}: bins={self.bins!r}: no such file; write one with `probe cues ... --save-bins FILE`.")

    def fit(self, data: "Manifest", *, seed: int = 0) -> "_CueIntervention":
        from interventions.concepts import cue_templates

        if self.template not in cue_templates():
            raise CueError(f"unknown cue template {self.template!r}; known: {', '.join(sorted(cue_templates()))}")
        bank = cue_bank(data, reference=self.reference, bins=self.bins, per_speaker=self.per_speaker,
                        n_levels=self.n_levels, scaling=self.scaling, workers=self.workers, cache_dir=self.cache_dir)
        object.__setattr__(self, "_bank", bank)  # fitted state, not config: kept off the dataclass fields
        return self

    def describe(self) -> dict:
        """Name, settings and, once fitted, what the bins were fitted on: for the run manifest."""
        out = {"name": _registered_name(self), **self.config()}
        bank: CueBank | None = getattr(self, "_bank", None)
        if bank is not None:
            out["fitted"] = dict(bank.info)
        return out

    def _own(self, ex: "Example") -> dict[str, str]:
        bank: CueBank | None = getattr(self, "_bank", None)
        if bank is None:
            raise RuntimeError(f"{type(self).__name__}: call .fit(manifest) before .apply (the cue bins are fitted on the data).")
        if ex.utt_id in bank.failed:
            from probes.audio import AudioError

            raise AudioError(bank.failed[ex.utt_id])
        if ex.utt_id not in bank.tokens:
            raise KeyError(f"{type(self).__name__}: utterance {ex.utt_id!r} was not in the manifest the cues were fitted on; fit on the manifest you run.")
        return bank.tokens[ex.utt_id]

    def _set(self, ex: "Example", tokens: dict[str, str], **meta: Any) -> "Example":
        from interventions.prompts import with_placement

        text = render(tokens, self.template)
        bank: CueBank = self._bank
        template = with_placement(ex.template or "plain", self.placement)
        return ex.with_(cues=text, template=template,
                        meta={**ex.meta, "cues": text, **meta, "cue_reference": bank.info.get("reference", bank.reference),
                              "cue_norm": bank.info.get("norm", "per-speaker" if bank.bins.per_speaker else "global"),
                              "cue_in_reference": ex.utt_id in bank.in_reference, "cue_placement": self.placement})


def _registered_name(iv: object) -> str:
    return type(iv).__dict__.get("registered_name") or type(iv).__name__


@INTERVENTIONS.register("cues-aligned")
@dataclass(frozen=True)
class CuesAligned(_CueIntervention):
    """Acoustic cue tokens of the utterance itself in the prompt (audio unchanged)."""

    def apply(self, ex: "Example", *, rng: np.random.Generator) -> "Example":
        return self._set(ex, self._own(ex), cue_source=ex.utt_id)


@INTERVENTIONS.register("cues-shuffled")
@dataclass(frozen=True)
class CuesShuffled(_CueIntervention):
    """Cue tokens of another utterance (a seeded derangement: level distribution unchanged)."""

    draw: int = field(default=0, metadata={"help": "which shuffle (several draws under one seed)"})

    def fit(self, data: "Manifest", *, seed: int = 0) -> "CuesShuffled":
        super().fit(data, seed=seed)
        ids = list(self._bank.tokens)
        if len(ids) < 2:
            raise CueError(f"{data.source}: cues-shuffled needs at least two utterances to swap tokens between.")
        perm = _derangement(len(ids), rng_for(seed, "cues-shuffled", self.draw))
        object.__setattr__(self, "_donor", {u: ids[j] for u, j in zip(ids, perm)})
        return self

    def apply(self, ex: "Example", *, rng: np.random.Generator) -> "Example":
        self._own(ex)
        donor = self._donor[ex.utt_id]
        return self._set(ex, self._bank.tokens[donor], cue_source=donor, cue_donor=donor)


def _derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random permutation with no fixed point (rejection: ~e tries on average)."""
    while True:
        p = rng.permutation(n)
        if not np.any(p == np.arange(n)):
            return p


@INTERVENTIONS.register("cues-conflicting")
@dataclass(frozen=True)
class CuesConflicting(_CueIntervention):
    """Cue tokens typical of the emotion farthest from the utterance's own (never equal to aligned)."""

    def apply(self, ex: "Example", *, rng: np.random.Generator) -> "Example":
        own = self._own(ex)
        bank: CueBank = self._bank
        levels = bank.bins.levels
        label = str(ex.row.get("acoustic_label") or bank.labels.get(ex.utt_id, ""))
        if label not in bank.profiles:  # a class the reference set lacks: stand in the nearest profile
            label = min(sorted(bank.profiles), key=lambda c: profile_distance(own, bank.profiles[c], levels))
        base = bank.profiles[label]
        others = [c for c in sorted(bank.profiles) if c != label]
        rng.shuffle(others)  # ties in distance are broken at random (seeded), not alphabetically
        others.sort(key=lambda c: -profile_distance(base, bank.profiles[c], levels))
        for rank, c in enumerate(others):
            if bank.profiles[c] != own:
                how = "farthest-class" if rank == 0 else "next-class"
                return self._set(ex, dict(bank.profiles[c]), cue_source=f"class:{c}", cue_class=c, cue_conflict=how)
        return self._set(ex, _mirror(own, levels, rng), cue_source="mirrored", cue_class=None, cue_conflict="mirrored")


def _mirror(tokens: dict[str, str], levels: tuple[str, ...], rng: np.random.Generator) -> dict[str, str]:
    """Each level reflected about the middle; an exact middle goes to a random end."""
    idx = {lv: i for i, lv in enumerate(levels)}
    out = {}
    top = len(levels) - 1
    for c in CONCEPT_NAMES:
        i = idx[tokens[c]]
        j = top - i
        if j == i:
            j = int(rng.choice([0, top]))
        out[c] = levels[j]
    return out


@INTERVENTIONS.register("cues-corrupted")
@dataclass(frozen=True)
class CuesCorrupted(_CueIntervention):
    """A seeded fraction of the cue tokens replaced by wrong in-range or out-of-range levels."""

    fraction: float = field(default=0.5, metadata={"help": "share of the six concepts to corrupt (0-1)"})
    mode: str = field(default="random", metadata={"help": "random (another in-range level) | out-of-range"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError(f"cues-corrupted: fraction={self.fraction} must lie in [0, 1]")
        if self.mode not in ("random", "out-of-range"):
            raise ValueError(f"cues-corrupted: mode={self.mode!r}; use 'random' or 'out-of-range'")

    @property
    def n_corrupt(self) -> int:
        return int(self.fraction * len(CONCEPT_NAMES) + 0.5)  # half rounds up, unlike round()

    def apply(self, ex: "Example", *, rng: np.random.Generator) -> "Example":
        own = self._own(ex)
        levels = self._bank.bins.levels
        which = sorted(rng.choice(len(CONCEPT_NAMES), size=self.n_corrupt, replace=False).tolist())
        out = dict(own)
        for j in which:
            c = CONCEPT_NAMES[j]
            i = levels.index(own[c])
            if self.mode == "random":
                out[c] = str(rng.choice([lv for lv in levels if lv != own[c]]))
            else:
                far = 0 if i > (len(levels) - 1) / 2 else 1 if i < (len(levels) - 1) / 2 else int(rng.integers(2))
                out[c] = OUT_OF_RANGE[far]
        changed = [CONCEPT_NAMES[j] for j in which]
        return self._set(ex, out, cue_source=ex.utt_id, cue_corrupted=changed)
