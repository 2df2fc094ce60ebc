"""``attention-share``: where does the answer position look, the voice or the words?

What it measures: at every decoder block, the attention weights of the answer position (the
token whose next-token distribution gives the label) summed over each token span: ``audio``
(the projected audio frames), ``prompt`` (the instruction and, where present, the transcript),
``cues`` (acoustic cue tokens), ``answer`` and ``other`` (chat-template tokens no span covers).
Because each attention row is a distribution over the keys, the spans' shares sum to one per
head. A long audio span gets mass just by being long, so each share is also given normalised
by the span's share of the visible positions (``share_norm`` = share / (span tokens / visible
tokens); 1.0 = what uniform attention would give). Attention weights say where a head reads,
not what it uses: read them beside ``activation-patching`` and ``attribution``.

For FAS the "layer" is its single cross-attention block, the "heads" are its learnable queries
and the spans are ``acoustic`` and ``semantic``: the queries' mass on the kept acoustic vs
semantic tokens (the paper's section 3.1).

What it reads: the manifest (labels for grouping), the model through ``inside_read(attention=True)``
(ALMs switch to eager attention for this; it is slower than SDPA).

One row per (utterance, block, span, metric):
``utt_id, condition, layer, span, metric ("share" | "share_norm"), value (mean over heads),
heads ([per-head values]), n_tokens, acoustic_label, semantic_label, congruent, speaker,
sentence_id, split, corpus``. ``metrics.json`` compares congruent and conflict items: the mean
share per span and block for each group, and the conflict - congruent difference of the audio
share (averaged over blocks) with a bootstrap interval over utterances.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from probes.library._inside import label_columns, read_rows, require, span_mass, with_other
from probes.probe import Conditions, Probe, WorkItem
from probes.registry import PROBES


@PROBES.register("attention-share")
@dataclass(frozen=True)
class AttentionShare(Conditions, Probe):
    """Attention mass of the answer position on the audio vs the text spans, per layer and head."""

    kind = "inside"
    template: str = field(default="plain", metadata={"help": "prompt template (interventions/prompts)"})
    n_boot: int = field(default=1000, metadata={"help": "bootstrap resamples for the congruent/conflict difference"})

    def execute(self, model, data, items, ctx):
        m = model
        require(m, "attention", self.name)
        yield from read_rows(model, data, items, ctx, self.template,
                             lambda it, ex, r: rows_for(r, ex.row, it.condition), attention=True)

    def summarize(self, run_dir: Path) -> dict:
        from probes.store import count_errors, read_rows

        df = read_rows(run_dir)
        out: dict = {"errors": count_errors(run_dir)}
        if df.empty or "span" not in df.columns:
            return out
        return {**out, **compare_groups(df, n_boot=self.n_boot)}


def rows_for(r, row: dict, condition: str) -> list[dict]:
    """The tidy rows of one Readout (see the module docstring)."""
    w = np.asarray(r.attention, dtype=np.float64)                      # [layers, heads, seq]
    visible = r.answer_pos + 1                                         # causal: keys 0 .. answer_pos
    masks = with_other(r.spans, r.seq_len)
    mass = span_mass(w, masks, visible)
    base = {"utt_id": r.utt_id, "condition": condition, **label_columns(row)}
    rows = []
    for layer in range(w.shape[0]):
        for span, (share, norm) in mass.items():
            n_tok = int(masks[span][:visible].sum())
            for metric, v in (("share", share[layer]), ("share_norm", norm[layer])):
                rows.append({**base, "layer": layer, "span": span, "metric": metric,
                             "value": float(np.mean(v)), "heads": [round(float(x), 6) for x in v], "n_tokens": n_tok})
    return rows


def compare_groups(df, *, n_boot: int = 1000, seed: int = 0) -> dict:
    """Congruent vs conflict: mean share per (span, layer) and the conflict - congruent audio gap."""
    from probes.metrics import bootstrap_ci

    share = df[df["metric"] == "share"]
    out: dict = {"mean_share": {}}
    for (grp, span), g in share.groupby(["congruent", "span"]):
        name = {"true": "congruent", "false": "conflict"}.get(str(grp), "unknown")
        out["mean_share"].setdefault(name, {})[span] = {int(k): float(v) for k, v in g.groupby("layer")["value"].mean().items()}
    voice = share[share["span"].isin(("audio", "acoustic"))]
    per_utt = voice.groupby(["utt_id", "congruent"], as_index=False)["value"].mean()  # audio share over blocks
    a = per_utt[per_utt["congruent"] == "false"]["value"].to_numpy()
    b = per_utt[per_utt["congruent"] == "true"]["value"].to_numpy()
    if len(a) and len(b):
        vals = np.concatenate([a, b])
        grp = np.array([1] * len(a) + [0] * len(b))

        def gap(v, g):
            v, g = np.asarray(v, dtype=float), np.asarray(g, dtype=int)
            return float(v[g == 1].mean() - v[g == 0].mean()) if (g == 1).any() and (g == 0).any() else float("nan")

        # stratified-enough for a summary: resample utterances, keep their group
        out["voice_share_gap"] = {"conflict_minus_congruent": gap(vals, grp),
                                  "ci": list(bootstrap_ci(gap, vals, grp, n_boot=n_boot, seed=seed)),
                                  "n_conflict": int(len(a)), "n_congruent": int(len(b))}
    return out
