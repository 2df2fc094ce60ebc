"""Acoustic cue tokens in the prompt: ``token-aligned``, ``token-shuffle``, ``token-conflict``,
``token-corrupt`` and ``token-all``.

What it measures: whether an audio-language model uses symbolic acoustic cues written into its
prompt (energy, pitch, dynamics, brightness, formants, voice quality, as tokens binned from
eGeMAPS by ``interventions/cues.py``) while the audio stays unchanged. Each probe runs the
condition ``none`` (no cue tokens) and its own arm(s):

- ``aligned``: the utterance's own cue tokens;
- ``shuffled``: the cue tokens of another utterance;
- ``conflicting``: the cue profile of a different emotion class;
- ``corrupted``: randomly perturbed cue tokens.

``token-all`` runs ``none`` and the four arms in one pass over the data (the adapters encode each
utterance's audio once and share it across the five conditions).

What it reads: the manifest (audio, labels) and the cue bank fitted on it (or on ``reference``).
One row per (utterance, condition), as ``probes.probe.prediction_row``: ``utt_id, condition,
pred, acoustic_label, semantic_label, congruent, ..., probs, cues`` (the rendered cue text).

metrics.json, besides the per-condition scores of ``probes.metrics.score_run`` (UAR, accuracy,
macro-F1 with bootstrap intervals, follows-voice / follows-text on conflict items):
- ``compare``: for each reference (``none``, and ``aligned`` when it ran) and each other
  condition, the change in UAR / accuracy / macro-F1 and McNemar's test on paired correctness
  (utterances present in both conditions);
- ``neutral``: per condition the share of predictions that are ``neutral`` among items whose
  voice is not neutral, its change against each reference (the shift of confusions toward
  neutral), and the mean probability on ``neutral`` when the model gave distributions;
- ``collapse``: per condition the entropy (bits) of the distribution of predicted labels and
  the share of the most frequent label (near 0 bits / near 1.0 = collapse onto one label);
- ``confusion``: per condition the confusion counts (rows: acoustic label, columns: prediction).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from probes.probe import PredictionProbe
from probes.registry import INTERVENTIONS, PROBES

ARMS = {"aligned": "cues-aligned", "shuffled": "cues-shuffled", "conflicting": "cues-conflicting",
        "corrupted": "cues-corrupted"}


@dataclass(frozen=True)
class _TokenProbe(PredictionProbe):
    """Shared by the cue-token probes: the arms, the cue options, and the summary."""

    arms: ClassVar[tuple[str, ...]] = ()
    kind: ClassVar[str] = "predictions"
    cue_template: str = field(default="brackets", metadata={"help": "cue text template: brackets, sentence, list", "choices": lambda: _cue_template_names()})
    n_levels: int = field(default=3, metadata={"help": "levels per cue concept (2-5)"})
    per_speaker: bool | None = field(default=None, metadata={"help": "z-normalise cue features within each speaker (default: when every row names its speaker)"})
    reference: str | None = field(default=None, metadata={"help": "cue bins fitted on: the train split (default), train|dev|test, a manifest, or self", "validate": lambda v: _check_reference(v)})
    bins: str | None = field(default=None, metadata={"help": "a saved cue bins JSON instead of fitting"})
    cue_placement: str = field(default="after", metadata={"help": "cue line after the question (the study's) or before", "choices": ("after", "before")})
    n_boot: int = field(default=500, metadata={"help": "bootstrap resamples for the intervals"})

    def conditions(self) -> dict[str, list]:
        opts = dict(template=self.cue_template, n_levels=self.n_levels, per_speaker=self.per_speaker,
                    reference=self.reference, bins=self.bins, placement=self.cue_placement)
        return {"none": [], **{arm: [INTERVENTIONS[ARMS[arm]](**opts)] for arm in self.arms}}

    def summarize(self, run_dir: Path) -> dict:
        from probes.metrics import score_run

        out = score_run(run_dir, n_boot=self.n_boot)
        out.update(compare_conditions(run_dir, refs=("none", "aligned")))
        return out


def _cue_template_names() -> list[str]:  # for the option check (probes/options.py), imported lazily
    from interventions.concepts import cue_templates

    return sorted(cue_templates())


def _check_reference(value) -> None:
    from interventions.cues import check_reference

    check_reference(value)


def compare_conditions(run_dir: Path, refs: tuple[str, ...] = ("none",), correct_col: str = "acoustic_label") -> dict:
    """The paired comparisons, neutral shift, collapse and confusions of the module docstring."""
    import numpy as np

    from probes.metrics import compare_conditions as paired_compare
    from probes.metrics import confusion, normalize_pred, prediction_entropy
    from probes.store import read_rows

    df = read_rows(run_dir)
    if df.empty or "pred" not in df.columns:
        return {"compare": {}, "neutral": {}, "collapse": {}, "confusion": {}}
    df = df.copy()
    df["pred_c"] = [normalize_pred(p) or "" for p in df["pred"]]
    by = {c: g.set_index("utt_id") for c, g in df.groupby("condition", sort=True)}
    compare = paired_compare(df, refs, correct_col=correct_col)  # the one paired comparison (probes.metrics)
    neutral, collapse, conf = {}, {}, {}
    for c, g in by.items():
        nn = g[g["acoustic_label"] != "neutral"]
        share = float(np.mean(nn["pred_c"] == "neutral")) if len(nn) else float("nan")
        entry = {"neutral_share_non_neutral_voice": share,
                 "neutral_share_all": float(np.mean(g["pred_c"] == "neutral"))}
        if "probs" in g.columns:
            pn = [p.get("neutral") for p in g["probs"] if isinstance(p, dict) and "neutral" in p]
            if pn:
                entry["mean_prob_neutral"] = float(np.mean(pn))
        neutral[c] = entry
        counts = g["pred_c"].value_counts()
        collapse[c] = {"entropy_bits": abs(prediction_entropy(g["pred_c"].tolist())),
                       "top_label": str(counts.index[0]) if len(counts) else None,
                       "top_share": float(counts.iloc[0] / counts.sum()) if len(counts) else None,
                       "n_distinct": int((counts > 0).sum())}
        m = confusion(g["acoustic_label"].tolist(), g["pred_c"].tolist())
        conf[c] = {str(k): {str(kk): int(vv) for kk, vv in row.items()} for k, row in m.iterrows()}
    for ref in refs:
        if ref in neutral:
            for c in neutral:
                if c != ref:
                    neutral[c][f"neutral_shift_vs_{ref}"] = (neutral[c]["neutral_share_non_neutral_voice"]
                                                             - neutral[ref]["neutral_share_non_neutral_voice"])
    return {"compare": compare, "neutral": neutral, "collapse": collapse, "confusion": conf}


# The five registered probes differ only in their arms: one generated class each, the name and
# the arms written once in this table.
PROBE_ARMS = {
    "token-aligned": (("aligned",), "Cue tokens of the utterance itself in the prompt vs none: do aligned cues help?"),
    "token-shuffle": (("shuffled",), "Cue tokens of another utterance in the prompt vs none: does the model follow foreign cues?"),
    "token-conflict": (("conflicting",), "Cue tokens of a different emotion's profile vs none: do conflicting cues pull the answer?"),
    "token-corrupt": (("corrupted",), "Randomly corrupted cue tokens vs none: how robust is the model to noisy cues?"),
    "token-all": (("aligned", "shuffled", "conflicting", "corrupted"),
                  "None + aligned + shuffled + conflicting + corrupted cue tokens in one pass over the data."),
}


def _token_probe(name: str, arms: tuple[str, ...], doc: str) -> type:
    cls = type("Token" + "".join(w.title() for w in name.split("-")[1:]), (_TokenProbe,),
               {"arms": arms, "__doc__": doc, "__module__": __name__, "__annotations__": {}})
    return PROBES.register(name)(dataclass(frozen=True)(cls))


TokenAligned, TokenShuffle, TokenConflict, TokenCorrupt, TokenAll = (_token_probe(n, *v) for n, v in PROBE_ARMS.items())
