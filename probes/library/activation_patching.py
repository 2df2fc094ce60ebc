"""``activation-patching``: does the voice's emotion, carried at a layer and a span, change the answer?

The method (causal tracing / activation patching, Meng et al. 2022; Heimersheim & Nanda 2024):
take two utterances with the *same words* and a *different voice emotion* (same ``sentence_id``,
different ``acoustic_label``: the synthetic corpus makes such pairs by design). Run the
*source* and keep its residual stream. Run the *target* again, but at one layer replace the
residual of one span (``audio``, ``prompt``, ``answer`` ...) with the source's, and let the rest
of the forward pass run. If the target's label distribution now moves toward the source's
voice label, that span at that layer carries voice information the model uses downstream.
Sweeping layers x spans gives a map of where the voice flows: into the audio positions early,
into the text / answer positions later, or nowhere (the text wins).

Because the words are identical, the text spans differ between source and target only through
what they have read from the audio: patching ``prompt`` at a layer asks "has voice information
already moved into the text positions here?".

Unequal lengths: two recordings of a sentence never last equally long, so their ``audio`` spans
differ in length (61 vs 53 tokens, say). The source's audio span is aligned onto the target's
along time before it is patched in: target position ``j`` (the fraction ``(j + 1/2) / n_t`` of the
span) takes the source position nearest to the same fraction, ``floor((j + 1/2) * n_s / n_t)``
(``probes.models._alm.time_align``; nearest neighbour rather than linear interpolation, so every
patched vector is a real activation of the source, not a blend the residual stream may never
hold). Equal lengths give the identity, so patching an utterance into itself stays exact. The
text spans of the same sentence have equal length; a text span that differs is an error row.
What is patched is therefore "the source's voice, stretched to the target's duration": a pair of
very different durations also differs in tempo.

Label distributions are the model's closed-set ones: on the ALMs each label's whole token string
is scored on the patched prompt (``fear`` = ``f`` + ``ear`` under the real Qwen vocabulary; sum or
mean of its token log-probabilities as the run's ``--length-norm`` says), so ``p_t`` / ``p_s``
equal what ``predict`` gives. Measured per (layer, span), with ``lab`` = the source's voice label,
``p_t`` / ``p_s`` the clean target / source distributions and ``p`` the patched one:
- ``shift`` = p[lab] - p_t[lab] (probability moved toward the source's voice label);
- ``shift_norm`` = shift / (p_s[lab] - p_t[lab]): 0 = no effect, 1 = as far as the source itself
  (left empty when the denominator is below ``eps``: the clean runs already agree);
- ``top_is_source`` (0/1): the patched answer equals the source's voice label;
- ``tv_to_source``: total-variation distance between p and p_s.
Known answers (tested): patching an utterance into itself changes nothing at any layer; patching
every position at a layer reproduces the source exactly.

Conditions (``--set conditions=none,audio-flatten-f0``): with ``pairs="partner"`` (default) both
utterances of a pair are built under the same condition; with ``pairs="condition"`` the source
is the target's own copy under a condition and the target its clean run (``none``): "where
does what the intervention changed flow into the answer?".

One row per (target, source, span, layer, metric): ``utt_id`` (target), ``condition`` (as in
prediction rows), ``pair`` ("patch" | "self" | "condition"), ``source``, ``source_label``, ``span``, ``layer``, ``metric``, ``value`` +
the target's labels, speaker, sentence_id, split, corpus. ``metrics.json``: mean ``shift_norm``
per span and layer (the map) and the number of pairs, keyed by the pair kind (``patch``, ``self``)
under ``none`` and ``<pair>@<condition>`` otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from probes.library._inside import label_columns, positions, require, softmax
from probes.probe import Conditions, Probe, WorkItem
from probes.registry import PROBES


@PROBES.register("activation-patching")
@dataclass(frozen=True)
class ActivationPatching(Conditions, Probe):
    """Patch a span's residual from a same-words, other-voice utterance at each layer; a layer x span map."""

    kind = "inside"
    spans: tuple = field(default=(), metadata={"help": "spans to patch, or 'all' (every position); default: every span the model names"})
    max_sources: int = field(default=1, metadata={"help": "partners per target (same sentence, other voice label), drawn with the seed"})
    self_patch: bool = field(default=False, metadata={"help": "also patch each utterance into itself (a control: must change nothing)"})
    pairs: str = field(default="partner", metadata={"help": "partner: same words, other voice; condition: each utterance's copy under a condition into its clean run"})
    template: str = field(default="plain", metadata={"help": "prompt template"})
    eps: float = field(default=1e-3, metadata={"help": "below this p_s - p_t gap shift_norm is left empty"})
    seed: int = field(default=0, metadata={"help": "partner draw"})

    def plan(self, data) -> list[WorkItem]:
        """Per condition: each utterance with up to ``max_sources`` partners (``pairs="partner"``:
        ``PatchSpan.partner``'s same-sentence, other-voice tier), itself (``self_patch``), or, with
        ``pairs="condition"``, its own copy under each condition other than ``none``."""
        from interventions.activation import PatchSpan
        from interventions.base import rng_for
        from probes.adapter import Example

        if self.pairs not in ("partner", "condition"):
            raise ValueError(f"activation-patching: pairs={self.pairs!r}; use partner or condition")
        conds = list(self.condition_map())
        items = []
        if self.pairs == "condition":
            if "none" not in conds or len(conds) < 2:
                raise ValueError("activation-patching pairs=condition patches each utterance's copy under a condition "
                                 "into its clean run: give --set conditions=none,<intervention>[,...]")
            items = [WorkItem(u, c, ("condition", u)) for u in data.df["utt_id"] for c in conds if c != "none"]
        else:
            finder = PatchSpan().fit(data)
            for c in conds:
                for u in data.df["utt_id"]:
                    if self.self_patch:
                        items.append(WorkItem(u, c, ("self", u)))
                    ex, picked = Example(utt_id=u, row=data.row(u)), []
                    rng = rng_for(self.seed, u, "patch-source")
                    while len(picked) < self.max_sources:
                        try:
                            src, how = finder.partner(ex, rng, exclude=picked)
                        except ValueError:
                            break
                        if how != "same-sentence":  # the method needs the same words in another voice
                            break
                        picked.append(src)
                    items += [WorkItem(u, c, ("patch", v)) for v in sorted(picked)]
        if not items:
            raise ValueError(f"{data.source}: activation-patching needs pairs with the same sentence_id and a "
                             "different acoustic_label (the synthetic corpus makes them); none found.")
        return items

    def execute(self, model, data, items, ctx):
        m = model
        info = require(m, "patch", self.name)
        labels = tuple(m.labels)
        layers = list(range(info.n_layers + 1))
        for it in items:
            pair, src_id = it.key
            try:
                t = ctx.example(it.utt_id, "none" if pair == "condition" else it.condition)
                s = ctx.example(src_id, it.condition)
                rt, rs = m.inside_read([t, s])
                rows, skipped = [], []
                for span in (tuple(self.spans) or info.spans):
                    if span != "all" and (span not in rt.spans or not len(positions(rt.spans[span]))):
                        continue  # this model / prompt has no such span (no cue tokens, say)
                    try:
                        scores = m.inside_patch(t, s, span=span, layers=layers)   # [layers + 1, n_labels]
                    except ValueError as e:
                        if pair != "condition" or "equal length" not in str(e):
                            raise
                        skipped.append(span)  # a condition that changes a text span's length: not patchable
                        continue
                    rows += patch_rows(scores, rt.final, rs.final, labels, span=span, layers=layers, eps=self.eps,
                                       base={"utt_id": it.utt_id, "condition": it.condition, "pair": pair,
                                             "source": src_id, "source_label": s.row["acoustic_label"],
                                             **label_columns(t.row)})
                if not rows and skipped:
                    raise ValueError(f"{it.utt_id}: under {it.condition} every span differs in length ({', '.join(skipped)})")
                yield it, rows
            except Exception as err:
                yield it, err

    def summarize(self, run_dir: Path) -> dict:
        from probes.store import count_errors, read_rows

        df = read_rows(run_dir)
        out: dict = {"errors": count_errors(run_dir)}
        if df.empty or "metric" not in df.columns:
            return out
        if "pair" not in df.columns:  # runs written before conditions (condition held the pair kind)
            df = df.assign(pair=df["condition"], condition="none")
        for (cond, pair), g in df.groupby(["condition", "pair"]):
            sub = g[g["metric"] == "shift_norm"]
            key = pair if cond == "none" else f"{pair}@{cond}"  # "patch" / "self" under none, as before
            out[key] = {"pairs": int(g["unit"].nunique()),
                         "shift_norm": {sp: {int(l): _f(v) for l, v in h.groupby("layer")["value"].mean().items()}
                                        for sp, h in sub.groupby("span")},
                         "max_abs_shift": _f(g[g["metric"] == "shift"]["value"].abs().max())}
        return out


def patch_rows(scores: np.ndarray, final_t: np.ndarray, final_s: np.ndarray, labels: tuple[str, ...], *,
               span: str, layers: list[int], eps: float, base: dict) -> list[dict]:
    """Rows for one (pair, span) from patched label scores [len(layers), n_labels]."""
    p = softmax(np.asarray(scores, dtype=np.float64))                  # [layers, n_labels]
    pt, ps = softmax(np.asarray(final_t, dtype=np.float64)), softmax(np.asarray(final_s, dtype=np.float64))
    lab = str(base["source_label"])
    k = labels.index(lab) if lab in labels else None
    rows = []
    for layer, q in zip(layers, p):
        vals = [("tv_to_source", 0.5 * float(np.abs(q - ps).sum()))]
        if k is not None:
            gap = ps[k] - pt[k]
            shift = float(q[k] - pt[k])
            vals += [("shift", shift), ("shift_norm", shift / gap if abs(gap) >= eps else None),
                     ("top_is_source", float(int(q.argmax()) == k))]
        rows += [{**base, "span": span, "layer": layer, "metric": mt, "value": v} for mt, v in vals]
    return rows


def _f(x) -> float | None:
    x = float(x)
    return None if np.isnan(x) else round(x, 6)
