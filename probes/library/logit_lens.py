"""``logit-lens``: the label distribution read off every layer's residual stream.

What it measures: at the answer position, each residual layer's vector (0 = input embeddings,
``n_layers`` = after the last block) is pushed through the model's own final norm and
unembedding, restricted to the label tokens, and turned into a distribution over the labels
(softmax). On a conflict item the two curves ``p_voice`` (probability of the voice's label) and
``p_text`` (of the words' label) over depth show where the voice's answer is present and where
the words' answer overtakes it. At the last layer the lens *is* the model's output, which the
tests check; early layers were never trained to be read this way, so their distributions are
noisy and often near-uniform (nostalgebraist 2020; the tuned lens corrects this and is not done
here).

ALMs score a label by its whole token string (``fear`` is ``f`` + ``ear`` under the real Qwen
vocabulary), and so does their lens (``inside_read(lens=True)``): at layer ``l`` every token of
the label is read through the final norm + unembedding of residual ``l`` at the position before
it, the label's tokens being fed as input -- the label's score under the model cut after layer
``l`` (an early exit). Its last layer is therefore the model's own closed-set distribution,
under the run's ``--length-norm`` (recorded in the manifest as ``model.label_readout``).

What it reads: the model through ``inside_read(lens=True)``; the manifest's labels.

One row per (utterance, layer, metric): ``utt_id, condition, layer, metric, value, top`` (the
label the layer ranks first) + labels, speaker, sentence_id, split, corpus; metrics:
``p_voice``, ``p_text`` (NaN-free: absent where the item has no words' label), ``top_is_voice``,
``top_is_text`` (0/1), ``entropy`` (bits) and ``kl_to_final`` (KL(final || layer), bits). The
``p_voice`` row also carries ``probs`` (the whole distribution).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from probes.library._inside import label_columns, read_rows, require, softmax
from probes.probe import Conditions, Probe, WorkItem
from probes.registry import PROBES


@PROBES.register("logit-lens")
@dataclass(frozen=True)
class LogitLens(Conditions, Probe):
    """The label distribution read from each layer's residual at the answer position."""

    kind = "inside"
    template: str = field(default="plain", metadata={"help": "prompt template"})

    def execute(self, model, data, items, ctx):
        m = model
        require(m, "lens", self.name)
        labels = tuple(m.labels)
        yield from read_rows(model, data, items, ctx, self.template,
                             lambda it, ex, r: lens_rows(r.lens, labels, ex.row, it.utt_id, it.condition), lens=True)

    def summarize(self, run_dir: Path) -> dict:
        from probes.store import count_errors, read_rows

        df = read_rows(run_dir)
        out: dict = {"errors": count_errors(run_dir)}
        if df.empty or "metric" not in df.columns:
            return out
        out["mean"] = {}
        for (grp, metric), g in df.groupby(["congruent", "metric"]):
            name = {"true": "congruent", "false": "conflict"}.get(str(grp), "unknown")
            out["mean"].setdefault(name, {})[metric] = {int(k): round(float(v), 6) for k, v in g.groupby("layer")["value"].mean().items()}
        return out


def lens_rows(lens: np.ndarray, labels: tuple[str, ...], row: dict, utt_id: str, condition: str) -> list[dict]:
    """Rows of one utterance from its lens logits [layers + 1, n_labels]."""
    p = softmax(np.asarray(lens, dtype=np.float64))                    # [layers + 1, n_labels]
    final = p[-1]
    a, s = str(row.get("acoustic_label") or ""), str(row.get("semantic_label") or "")
    base = {"utt_id": utt_id, "condition": condition, **label_columns(row)}
    rows = []
    for layer, q in enumerate(p):
        top = labels[int(q.argmax())]
        ent = float(-(q * np.log2(np.clip(q, 1e-300, None))).sum())
        kl = float((final * (np.log2(np.clip(final, 1e-300, None)) - np.log2(np.clip(q, 1e-300, None)))).sum())
        vals = [("entropy", ent), ("kl_to_final", kl)]
        if a in labels:
            vals += [("p_voice", float(q[labels.index(a)])), ("top_is_voice", float(top == a))]
        if s in labels:
            vals += [("p_text", float(q[labels.index(s)])), ("top_is_text", float(top == s))]
        for metric, v in vals:
            r = {**base, "layer": layer, "metric": metric, "value": v, "top": top}
            if metric == "p_voice":
                r["probs"] = {l: round(float(x), 6) for l, x in zip(labels, q)}
            rows.append(r)
    return rows
