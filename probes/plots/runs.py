"""Figures of a run folder: each probe declares the figures its run folder gets.

``PROBE_FIGURES`` maps a probe's registered name (the ``probe`` field of the run's
manifest.json) to the names of its figure sets; ``FIGURE_SETS`` maps each name to a function of
the run folder's tables (``RunTables``) that yields what to draw. Nothing is guessed from
column names or condition names: a probe that is not declared gets no figures and one line
saying how to declare it. The declarations live here, beside the drawing code, and not on the
probe classes, so that probes/library/* never imports plotting code and a probe's figures can
change without touching the probe (the coupling runs one way: plots know probe names, probes
know nothing of plots). ``figures_of(probe)`` is the lookup; tests/test_plots.py checks that every
registered probe is declared.

A figure set is ``fn(run) -> iterator of Figure(stem, caption, draw, args, kwargs)``; the
runner of the sets (``figures_for_run``) calls ``draw(*args, out=out_dir / stem, **kwargs)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

from probes.plots.depth import attention_share, depth_lines, patching_map, probe_curves, span_bars
from probes.plots.embeddings import _archive_ids, _saved_coords, _umap_inputs, umap_scatter
from probes.plots.predictions import TYPE_ORDER, confusion_grid, cue_condition_bars, follows_bars, run_table
from probes.plots.style import CUE_CONDITIONS, _slug
from probes.plots.training import ablation_curve, loss_curves

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class Figure:
    stem: str
    caption: str
    draw: Callable
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)


class RunTables:
    """What a run folder holds, read once and lazily: manifest, rows, metrics table, CSV tables, archives."""

    def __init__(self, run_dir: str | Path, *, reducer: Callable | None = None, umap: bool = True):
        from probes.store import read_manifest

        self.dir = Path(run_dir)
        self.manifest: dict = read_manifest(self.dir)
        self.reducer, self.umap = reducer, umap
        m = self.manifest.get("model")
        model = m.get("name", "?") if isinstance(m, dict) else str(m)
        self.probe = str(self.manifest.get("probe", ""))
        self.who = f"{self.probe or '?'} · {model}"

    @cached_property
    def rows(self) -> "pd.DataFrame":
        from probes.store import read_rows

        return read_rows(self.dir)

    def column(self, name: str) -> bool:
        return not self.rows.empty and name in self.rows.columns

    @cached_property
    def scores(self) -> "pd.DataFrame":
        """metrics.json per condition, or (no metrics.json yet) the rows scored per condition."""
        t = run_table(self.dir)
        if (t.empty or "follows_voice" not in t) and self.column("pred"):
            from probes.metrics import score_table

            t = score_table(self.predictions, by=["condition"], n_boot=500)
        return t

    @cached_property
    def predictions(self) -> "pd.DataFrame":
        r = self.rows
        return r.assign(condition=r["condition"].astype(str) if "condition" in r else "none")

    @cached_property
    def tables(self) -> dict[str, "pd.DataFrame"]:
        """CSV tables beside the rows (loss curves, probe scores, the N_q ablation), by relative path."""
        import pandas as pd

        out = {}
        for p in sorted(list(self.dir.glob("*.csv")) + list(self.dir.glob("*/*.csv"))):
            if p.parent.name == "figures":
                continue
            try:
                out[str(p.relative_to(self.dir))] = pd.read_csv(p)
            except Exception:  # a table we cannot read is not a figure; the report lists the file anyway
                continue
        return out


# ---------------------------------------------------------------------------------- figure sets
def _order(conds: list[str]) -> list[str]:
    return [c for c in CUE_CONDITIONS if c in conds] + [c for c in conds if c not in CUE_CONDITIONS]


def _follows(run: RunTables, table: "pd.DataFrame", *, x: str, keep: list[str], order: list[str],
             facet_extra: str | None = None) -> Iterator[Figure]:
    """Follows bars per conflict type (one panel per type), or per ``facet_extra`` on the headline type."""
    from probes.metrics import conflict_type_table

    types = conflict_type_table(table, keep=keep)
    if types.empty:
        return
    if facet_extra is not None:
        ec = types[types["conflict_type"] == "emotional-conflict"]
        if not ec.empty:
            yield Figure("follows", "On emotional-conflict items (emotional words, another emotional voice): share of "
                         "answers equal to the voice's label, the words' label or neither, with bootstrap 95% intervals.",
                         follows_bars, (ec,), {"x": x, "facet": facet_extra, "order": order,
                                               "title": f"{run.who}: whom does each arm follow?"})
        return
    types = types.assign(_o=types["conflict_type"].map(TYPE_ORDER.index)).sort_values("_o", kind="stable")
    yield Figure("follows", "Per conflict type: share of answers equal to the voice's label, to the words' label or "
                 "neither, with bootstrap 95% intervals. On neutral-text items following the words means answering "
                 "'neutral' (the neutral pull); the headline is emotional-conflict.",
                 follows_bars, (types.drop(columns="_o"),),
                 {"x": x, "facet": "conflict_type", "order": order, "title": f"{run.who}: whom does it follow?"})


def predictions_set(run: RunTables) -> Iterator[Figure]:
    """Confusion matrices per condition (voice's label; words' label on conflict items), follows bars per type."""
    if not run.column("pred"):
        return
    rows = run.predictions
    conds = _order(list(dict.fromkeys(rows["condition"])))
    facet = {"col": "condition", "col_order": conds} if len(conds) > 1 else {}
    yield Figure("confusion", "Confusion matrix per condition: rows are the voice's (acoustic) label, columns the "
                 "prediction; numbers are counts, colour is the share of the row.",
                 confusion_grid, (rows,), {"title": f"{run.who}: prediction vs the voice's label", **facet})
    yield from _conflict_confusion(run, rows, facet, conds)
    if not run.scores.empty:
        yield from _follows(run, run.scores, x="condition", keep=["condition"], order=conds)


def _conflict_confusion(run: RunTables, rows, facet: dict, conds: list[str]) -> Iterator[Figure]:
    if "semantic_label" not in rows:
        return
    sem = rows["semantic_label"].fillna("").astype(str)
    conflict = rows[(sem != "") & (sem != rows["acoustic_label"].astype(str))]
    if conflict.empty:
        return
    if "col_order" in facet and facet.get("col") == "condition":
        facet = {**facet, "col_order": [c for c in conds if c in set(conflict["condition"])]}
    yield Figure("confusion-text", "On conflict items only: rows are the words' (semantic) label. A diagonal here "
                 "means the model answers what the words say.",
                 confusion_grid, (conflict,), {"reference": "semantic_label", **facet,
                                               "title": f"{run.who}: on conflict items, prediction vs the words' label"})


def cue_conditions_set(run: RunTables) -> Iterator[Figure]:
    """UAR per cue-token condition, and the share of 'neutral' answers where the voice is not neutral."""
    from probes.metrics import neutral_share

    t = run.scores
    if t.empty or "uar" not in t:
        return
    yield Figure("cue-conditions", "UAR per cue-token condition with bootstrap 95% intervals (dotted line: no cues), "
                 "and the share of 'neutral' answers on items whose voice is not neutral.",
                 cue_condition_bars, (t[t["condition"].isin(CUE_CONDITIONS)],),
                 {"neutral": neutral_share(run.predictions), "title": f"{run.who}: acoustic cue tokens"})


def arms_by_mix_set(run: RunTables) -> Iterator[Figure]:
    """The FAS conflict experiment: conditions are ``<arm>@<mix>``; arms x conflict mixes."""
    if not run.column("pred"):
        return
    rows = run.predictions
    split = [c.split("@", 1) if "@" in c else [c, ""] for c in rows["condition"]]
    rows = rows.assign(arm=[a for a, _ in split], mix=[m for _, m in split])
    arms, mixes = list(dict.fromkeys(rows["arm"])), list(dict.fromkeys(rows["mix"]))
    facet = {"row": "arm", "col": "mix", "row_order": arms, "col_order": mixes}
    yield Figure("confusion", "Confusion matrix per arm (rows) and training conflict mix (columns): rows are the "
                 "voice's label; numbers are counts, colour is the share of the row.",
                 confusion_grid, (rows,), {"title": f"{run.who}: prediction vs the voice's label", **facet})
    yield from _conflict_confusion(run, rows, facet, [])
    t = run.scores
    if not t.empty:
        parts = [str(c).split("@", 1) if "@" in str(c) else [str(c), ""] for c in t["condition"]]
        t = t.assign(arm=[a for a, _ in parts], mix=[m for _, m in parts])
        yield from _follows(run, t, x="arm", keep=["arm", "mix"], order=arms, facet_extra="mix")


def attention_set(run: RunTables) -> Iterator[Figure]:
    """Attention mass per span over depth, one figure per metric (raw vs length-normalised share)."""
    if not run.column("layer"):
        return
    rows = run.rows
    grp = "congruent" if "congruent" in rows else None
    for m, sub, tag, mname in _per_metric(rows):
        yield Figure(f"attention-share{tag}", f"Attention mass per span over depth{mname}, mean with 95% band"
                     + (" (line style: congruent vs conflict items)." if grp else "."),
                     attention_share, (sub,), {"group": grp, "title": f"{run.who}{mname}"})


def patching_set(run: RunTables) -> Iterator[Figure]:
    """Activation patching: mean effect per (span, layer), the 'patch' pairs (the 'self' pairs are the known-zero check)."""
    if not run.column("layer"):
        return
    rows = run.rows
    kind = "pair" if "pair" in rows else "condition"  # activation-patching rows name the pair kind in "pair"
    if kind in rows and (rows[kind].astype(str) == "patch").any():
        rows = rows[rows[kind].astype(str) == "patch"]
    for m, sub, tag, mname in _per_metric(rows):
        yield Figure(f"patching{tag}", f"Activation patching{mname}: mean over pairs of patching each span at each "
                     "layer (source and target share the words, not the voice).",
                     patching_map, (sub,), {"value_name": m or "effect", "title": f"{run.who}{mname}"})


def depth_set(run: RunTables) -> Iterator[Figure]:
    """Any ``layer, metric, value`` rows (logit lens): each metric over depth."""
    if run.column("layer") and {"metric", "value"} <= set(run.rows.columns):
        m = run.manifest.get("model")
        readout = m.get("label_readout") if isinstance(m, dict) else None  # how the run read a label (ALMs)
        yield Figure("depth", "Each metric of the run over depth, mean with 95% band; voice/text pairs share a panel "
                     "(on conflict items when the rows say which)." + (f" Labels read as: {readout}." if readout else ""),
                     depth_lines, (run.rows,), {"title": run.who})


def probe_curves_set(run: RunTables) -> Iterator[Figure]:
    """Linear-probe scores over depth: from the rows (``layer, target, score``) and from ``probe-scores/*.csv``."""
    if run.column("layer") and {"target", "score"} <= set(run.rows.columns):
        for m, sub, tag, mname in _per_metric(run.rows):
            yield Figure(f"probe-curves{tag}", f"Linear-probe score over depth{mname}: the voice's label, the words' "
                         "label and the control task (dashed), mean with 95% band.", probe_curves, (sub,),
                         {"title": f"{run.who}{mname}"})
    for name, t in run.tables.items():
        if {"layer", "target", "score"} <= set(t.columns):
            chance = float(t["chance"].dropna().iloc[0]) if "chance" in t and t["chance"].notna().any() else None
            stem = _slug(Path(name).with_suffix("").as_posix())
            yield Figure(f"probe-curves-{stem}", f"Linear-probe score over depth from {name}: the voice's label, the "
                         "words' label and the control task (dashed); dotted: chance.", probe_curves, (t,),
                         {"chance": chance, "metric_name": str(t["metric"].iloc[0]) if "metric" in t else "probe score",
                          "title": f"{run.who}: {Path(name).stem}"})


def span_shares_set(run: RunTables) -> Iterator[Figure]:
    """Attribution: share of attribution mass per span and method."""
    if not run.column("span"):
        return
    rows = run.rows
    sub = rows[rows["metric"].astype(str) == "share"] if "metric" in rows else rows
    if not sub.empty:
        yield Figure("span-shares", "Share of attribution mass per span and method, mean with 95% interval over "
                     "utterances (congruent vs conflict items where both occur).", span_bars, (sub,),
                     {"facet": "method", "title": f"{run.who}: where the answer comes from"})


def training_set(run: RunTables) -> Iterator[Figure]:
    """Training tables beside the rows: loss curves (``arm, epoch, split, loss``), the N_q ablation (``n_q, metric, value``)."""
    for name, t in run.tables.items():
        cols = set(t.columns)
        stem = _slug(Path(name).with_suffix("").as_posix())
        if {"arm", "epoch", "split", "loss"} <= cols:
            yield Figure(f"loss-{stem}", f"Loss over epochs per arm (solid: train), from {name}.", loss_curves, (t,),
                         {"title": f"{run.who}: training loss"})
        elif {"n_q", "metric", "value"} <= cols:
            yield Figure(f"ablation-{stem}", f"Scores over the number of learnable queries, from {name} (circle: best).",
                         ablation_curve, (t,), {"title": f"{run.who}: N_q ablation"})


def umap_set(run: RunTables) -> Iterator[Figure]:
    """Embedding archives (``*.npz`` with ``embeddings`` [n, dim] and ``utt_id``): 2-D maps by voice and words."""
    if not run.umap:
        return
    for p in sorted(list(run.dir.glob("*.npz")) + list(run.dir.glob("embeddings/*.npz"))):
        lab = _umap_inputs(p, run.rows, run.manifest)
        if lab is None:
            continue
        X, ac, se = lab
        coords = _saved_coords(run.dir, p, _archive_ids(p))
        reducer_name = str((run.manifest.get("config") or {}).get("reducer", "umap")) if coords is not None else "umap"
        axis = "PCA" if reducer_name == "pca" else "UMAP"
        yield Figure(f"umap-{_slug(p.stem)}", f"{axis} of {p.name}, coloured by the voice's label (left) and the "
                     "words' label (right).", umap_scatter, (X, ac, se),
                     {"coords": coords, "axis_name": axis, "cache": run.dir / ".cache", "reducer": run.reducer,
                      "title": f"{run.who}: {p.stem}"})


def _per_metric(rows) -> Iterator[tuple[Any, "pd.DataFrame", str, str]]:
    metrics = list(dict.fromkeys(rows["metric"].astype(str))) if "metric" in rows else [None]
    for m in metrics:
        sub = rows if m is None else rows[rows["metric"].astype(str) == m]
        yield (m, sub) + (("", "") if m is None else (f"-{_slug(m)}", f" ({m})"))


FIGURE_SETS: dict[str, Callable[[RunTables], Iterator[Figure]]] = {
    "predictions": predictions_set,
    "cue-conditions": cue_conditions_set,
    "arms-by-mix": arms_by_mix_set,
    "attention-share": attention_set,
    "patching": patching_set,
    "depth": depth_set,
    "probe-curves": probe_curves_set,
    "span-shares": span_shares_set,
    "training": training_set,
    "umap": umap_set,
}

# Each probe's figures, by its registered name. A new probe adds its line here (test_plots checks).
PROBE_FIGURES: dict[str, tuple[str, ...]] = {
    "predict": ("predictions",),
    "modality-ablation": ("predictions",),
    "token-aligned": ("predictions", "cue-conditions"),
    "token-shuffle": ("predictions", "cue-conditions"),
    "token-conflict": ("predictions", "cue-conditions"),
    "token-corrupt": ("predictions", "cue-conditions"),
    "token-all": ("predictions", "cue-conditions"),
    "attention-share": ("attention-share",),
    "activation-patching": ("patching",),
    "logit-lens": ("depth",),
    "linear-probe": ("probe-curves",),
    "attribution": ("span-shares",),
    "embeddings": ("umap",),
    "tts-beam": ("predictions",),             # test-time scaling: prediction rows under a decoding budget
    "tts-best-of-n": ("predictions",),
    "tts-cot": ("predictions",),
    "tts-self-consistency": ("predictions",),
    "fas-conflict": ("arms-by-mix", "training"),
    "fas-nq-sweep": ("training",),  # `probe fas sweep-nq`: not a registered probe, but a run folder
}


def figures_of(probe: str) -> tuple[str, ...]:
    """The figure sets a probe declares (empty when it declares none)."""
    return PROBE_FIGURES.get(probe, ())


def figures_for_run(run_dir: str | Path, out_dir: str | Path | None = None, *,
                    reducer: Callable[[np.ndarray], np.ndarray] | None = None, umap: bool = True,
                    failures: list[str] | None = None) -> list[tuple[Path, str]]:
    """Draw the figures the run's probe declares; returns (png path, caption) pairs.

    With ``failures`` (a list) a figure that cannot be drawn is recorded there as one line and
    the others are still drawn (the report's behaviour); without it the error propagates. A
    probe that declares no figures is one line in ``failures`` (or a ValueError without it).
    """
    run = RunTables(run_dir, reducer=reducer, umap=umap)
    out_dir = Path(out_dir) if out_dir is not None else run.dir / "figures"
    sets = figures_of(run.probe)
    if not sets:
        msg = (f"probe {run.probe or '?'!r} declares no figures: add it to PROBE_FIGURES in probes/plots/runs.py "
               f"(figure sets: {', '.join(FIGURE_SETS)})")
        if failures is None:
            raise ValueError(msg)
        failures.append(msg)
        return []
    made: list[tuple[Path, str]] = []
    for name in sets:
        try:
            specs = list(FIGURE_SETS[name](run))
        except Exception as e:
            if failures is None:
                raise
            failures.append(f"{name}: {type(e).__name__}: {e}")
            continue
        for f in specs:
            try:
                f.draw(*f.args, out=out_dir / f.stem, **f.kwargs)
            except Exception as e:
                if failures is None:
                    raise
                failures.append(f"{f.stem}: {type(e).__name__}: {e}")
                continue
            made.append((out_dir / f"{f.stem}.png", f.caption))
    return made
