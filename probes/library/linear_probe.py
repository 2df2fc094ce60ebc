"""``linear-probe``: at which depth is the voice's emotion decodable, and where do the words take over?

What it measures: for every residual layer (0 = input embeddings) and every pooled readout
(``audio-mean``: the mean over the audio span; ``last``: the answer position; FAS: ``fused`` and
the per-stream means), a logistic-regression probe predicting
- ``acoustic``: the voice's label,
- ``semantic``: the words' label (items without one are left out),
- ``control``: the voice's labels shuffled across items, the selectivity control: a probe that
  beats chance here is fitting noise, so read ``acoustic - control`` (selectivity), not the raw
  score.
The splits hold out speakers *and* sentences at once (``_inside.group_folds``: a k x k grid of
speaker folds x sentence folds; training items share neither with the test items), so a probe
can learn neither voices nor sentences. Score = UAR (balanced accuracy) of the out-of-fold
predictions; chance = 1 / number of classes.

How: the run stores each utterance's pooled readouts in ``features/units/*.safetensors`` (one
row per utterance names its file); the probes are fit afterwards, in ``summarize``, on all of
them. Re-running ``summarize`` (``probe run`` again on a finished run) refits without touching
the model.

Under several conditions (``--set conditions=none,audio-flatten-f0``) the probes are fit per
condition, never across them: ``probe-scores/<pool>.csv`` for ``none``, ``<pool>@<condition>.csv``
for the others, and ``metrics.json["conditions"][condition][pool]``.

What it writes beside the rows: ``probe-scores/<pool>.csv``, one row per (layer, target):
``condition, layer, target ("acoustic" | "semantic" | "control"), score, metric ("uar"), accuracy,
n_scored, n_classes, chance, held_out, pool``; ``metrics.json`` holds the same per pool plus the
best layer per target and the selectivity curve.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from probes.library._inside import control_labels, execute_features, feature_conditions, fit_probe, read_features
from probes.probe import Conditions, Probe, WorkItem
from probes.registry import PROBES

TARGETS = ("acoustic", "semantic", "control")


@PROBES.register("linear-probe")
@dataclass(frozen=True)
class LinearProbe(Conditions, Probe):
    """Per-layer logistic-regression probes for the voice's and the words' label, with a control task."""

    kind = "inside"
    pools: tuple = field(default=(), metadata={"help": "pooled readouts, e.g. [\"audio-mean\",\"last\"] (default: all the model offers)"})
    folds: int = field(default=3, metadata={"help": "speaker folds x sentence folds (k x k fits per layer)"})
    C: float = field(default=1.0, metadata={"help": "inverse L2 strength of the logistic regression"})
    template: str = field(default="plain", metadata={"help": "prompt template"})
    dtype: str = field(default="float32", metadata={"help": "feature file dtype (float16 halves the disk)"})

    def execute(self, model, data, items, ctx):
        yield from execute_features(self, model, data, items, ctx, pools=self.pools, template=self.template,
                                    dtype=self.dtype)

    def summarize(self, run_dir: Path) -> dict:
        import json

        from probes.store import count_errors, read_rows

        run_dir = Path(run_dir)
        out: dict = {"errors": count_errors(run_dir), "pools": {}}
        rows = read_rows(run_dir)
        if rows.empty or "features" not in rows.columns:
            return out
        seed = int(json.loads((run_dir / "manifest.json").read_text()).get("seed", 0))
        pools = list(dict.fromkeys(p for ps in rows["pools"] for p in ps))
        (run_dir / "probe-scores").mkdir(exist_ok=True)
        for cond in feature_conditions(run_dir):  # one probe per condition: never fit across conditions
            for pool in pools:
                table = score_layers(run_dir, pool, folds=self.folds, C=self.C, seed=seed, condition=cond)
                suffix = "" if cond == "none" else f"@{_slug(cond)}"
                table.to_csv(run_dir / "probe-scores" / f"{_slug(pool)}{suffix}.csv", index=False)
                if cond == "none":
                    out["pools"][pool] = summarize_table(table)
                else:
                    out.setdefault("conditions", {}).setdefault(cond, {})[pool] = summarize_table(table)
        return out


def score_layers(run_dir: Path, pool: str, *, folds: int = 3, C: float = 1.0, seed: int = 0,
                 condition: str | None = None):
    """The (layer, target, score) table of one pool under one condition (see the module docstring)."""
    import pandas as pd

    conds = feature_conditions(run_dir)
    if condition is None and len(conds) > 1:
        condition = "none" if "none" in conds else conds[0]
    meta, X = read_features(run_dir, pool, condition)                 # X [n, layers + 1, dim]
    spk, sent = meta["speaker"].astype(str).tolist(), meta["sentence_id"].astype(str).tolist()
    ys = {"acoustic": meta["acoustic_label"].astype(str).to_numpy(),
          "semantic": meta["semantic_label"].fillna("").astype(str).to_numpy()}
    ys["control"] = control_labels(ys["acoustic"], seed)
    out = []
    for layer in range(X.shape[1]):
        for target in TARGETS:
            y = ys[target]
            keep = y != ""
            if keep.sum() < 4 or len(set(y[keep])) < 2:
                continue
            sc, _ = fit_probe(X[keep, layer], y[keep], np.asarray(spk)[keep], np.asarray(sent)[keep],
                              folds=folds, seed=seed, C=C)
            out.append({"pool": pool, "condition": condition or "none", "layer": layer, "target": target, "metric": "uar", "score": sc.score,
                        "accuracy": sc.accuracy, "n_scored": sc.n_scored, "n_classes": sc.n_classes,
                        "chance": 1.0 / sc.n_classes, "held_out": sc.held_out})
    return pd.DataFrame(out)


def summarize_table(table) -> dict:
    """Best layer per target and the selectivity (acoustic - control) per layer."""
    res: dict = {"scores": {}, "best": {}}
    if table.empty:  # too few items or a single class: nothing could be fit
        res["note"] = "no probe could be fit (fewer than 4 items or one class per target)"
        return res
    for target, g in table.groupby("target"):
        res["scores"][target] = {int(l): _f(s) for l, s in zip(g["layer"], g["score"])}
        if g["score"].notna().any():
            b = g.loc[g["score"].idxmax()]
            res["best"][target] = {"layer": int(b["layer"]), "score": _f(b["score"]), "chance": _f(b["chance"])}
    a, c = res["scores"].get("acoustic", {}), res["scores"].get("control", {})
    res["selectivity"] = {l: _f(a[l] - c[l]) for l in a if l in c}
    if len(table):
        res["held_out"] = str(table["held_out"].iloc[0])
    return res


def _f(x) -> float | None:
    x = float(x)
    return None if np.isnan(x) else round(x, 6)


def _slug(s: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "-", s)
