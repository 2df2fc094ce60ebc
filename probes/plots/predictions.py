"""Figures of prediction runs and prediction tables: confusion matrices, follows-voice vs
follows-text bars (pooled or per conflict type), the cue-token conditions, the EMIS study's
table, and comparisons across runs. Scores come from ``probes.metrics``; nothing is computed here
that a metric function does not already define.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from probes.plots.style import (
    ANSWER, CUE_COLORS, CUE_CONDITIONS, CUES, DPI, EMOTION_COLORS, OTHER, SERIES_COLORS, SPAN_COLORS, TEXT, VOICE,
    _ci, _figure, _finish, _int_layers, _metric_color, _num, _series_palette, _slug, _span_palette, _suptitle,
    label_order, save, style,
)

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

TYPE_ORDER = ("emotional-conflict", "neutral-voice", "neutral-text")


def run_table(run_dir: str | Path) -> "pd.DataFrame":
    """metrics.json's per-condition scores as a table (one row per condition)."""
    import pandas as pd

    p = Path(run_dir) / "metrics.json"
    m = json.loads(p.read_text()) if p.exists() else {}
    conds = m.get("conditions") or {}
    return pd.DataFrame([{"condition": c, **v} for c, v in conds.items() if isinstance(v, dict)])


def confusion_counts(df: "pd.DataFrame", *, reference: str = "acoustic_label", pred: str = "pred",
                     labels: Sequence[str] | None = None, columns: Sequence[str] | None = None) -> "pd.DataFrame":
    """Counts: rows = reference label (``labels``), columns = predicted label (``columns``, by
    default the reference labels plus any other label predicted) and ``invalid`` for answers
    outside the vocabulary. A valid answer is never counted as invalid just because no item
    carries that reference label (a "fear" answer to a corpus with no fear sentences)."""
    import pandas as pd

    from probes.metrics import normalize_pred

    ref = df[reference].fillna("").astype(str)
    keep = (ref != "").to_numpy()
    labels = list(labels) if labels is not None else label_order(ref[keep])
    preds = [normalize_pred(v) or "invalid" for v in df.loc[keep, pred]]
    if columns is None:
        columns = label_order(list(labels) + [p for p in preds if p != "invalid"])
    columns = list(columns) + (["invalid"] if "invalid" in preds and "invalid" not in columns else [])
    m = pd.DataFrame(0, index=labels, columns=columns)
    for a, b in zip(ref[keep], preds):
        if a in m.index:
            m.loc[a, b if b in m.columns else "invalid"] += 1
    return m


def _draw_confusion(ax, counts: "pd.DataFrame", *, title: str | None, ylabel: str, xlabel: str,
                    show_y: bool = True) -> None:
    m = counts.to_numpy(dtype=float)
    rows = m.sum(axis=1, keepdims=True)
    share = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)  # colour = share of the row
    ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")  # the figure size keeps cells square
    ax.grid(False)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=8,
                    color="white" if share[i, j] > 0.55 else "#222222")
    ax.set_xticks(range(m.shape[1]), [str(c) for c in counts.columns], rotation=40, ha="right")
    ax.set_yticks(range(m.shape[0]), [str(r) for r in counts.index] if show_y else [])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel if show_y else "")
    if title:
        ax.set_title(title, fontsize=10)


def confusion_matrix(df: "pd.DataFrame", *, reference: str = "acoustic_label", pred: str = "pred",
                     labels: Sequence[str] | None = None, title: str | None = None,
                     out: str | Path | None = None) -> "Figure":
    """One confusion matrix: counts written in the cells, colour = share of the reference row."""
    return confusion_grid(df, reference=reference, pred=pred, labels=labels, title=title, out=out)


def confusion_grid(df: "pd.DataFrame", *, row: str | None = None, col: str | None = None,
                   reference: str = "acoustic_label", pred: str = "pred", labels: Sequence[str] | None = None,
                   row_order: Sequence[str] | None = None, col_order: Sequence[str] | None = None,
                   title: str | None = None, out: str | Path | None = None, max_cols: int = 4) -> "Figure":
    """Confusion matrices faceted by ``row`` x ``col`` (models x corpora, or conditions).

    With only ``col`` and more than ``max_cols`` values the panels wrap onto several rows. All
    panels share one label order so they can be read against each other.
    """
    with style():
        ref_name = "voice label" if reference == "acoustic_label" else ("text label" if reference == "semantic_label" else reference)
        labels = list(labels) if labels is not None else label_order(df[reference])
        # one set of prediction columns for every panel, so the panels line up
        from probes.metrics import normalize_pred

        predicted = {normalize_pred(v) for v in df[pred]}
        columns = label_order(labels + [p for p in predicted if p])
        if None in predicted:
            columns.append("invalid")
        rvals = (list(row_order) if row_order else list(dict.fromkeys(df[row].astype(str)))) if row else [None]
        cvals = (list(col_order) if col_order else list(dict.fromkeys(df[col].astype(str)))) if col else [None]
        cells = [(r, c) for r in rvals for c in cvals]
        ncols = len(cvals) if row else min(len(cvals), max_cols)
        nrows = len(rvals) if row else math.ceil(len(cvals) / ncols)
        # panel size from the cell counts, plus room for tick labels, axis label and panel title
        pw = 0.36 * len(columns) + 1.3
        ph = 0.36 * len(labels) + 1.6
        fig = _figure(max(4.2, pw * ncols + 0.6), ph * nrows + (0.45 if title else 0.0))
        axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
        for k, (r, c) in enumerate(cells):
            ax = axes[k]
            sub = df
            if r is not None:
                sub = sub[sub[row].astype(str) == r]
            if c is not None:
                sub = sub[sub[col].astype(str) == c]
            name = " · ".join(v for v in (r, c) if v is not None) or None
            if r is not None and c is not None and sub.empty:  # a cell of the grid that was not run (e.g. an arm at one mix only)
                ax.axis("off")
                ax.text(0.5, 0.5, f"{name}\nnot run", ha="center", va="center", transform=ax.transAxes, color="0.45")
                continue
            counts = confusion_counts(sub, reference=reference, pred=pred, labels=labels, columns=columns)
            if name is not None:
                name = f"{name}  (n={int(counts.to_numpy().sum())})"
            _draw_confusion(ax, counts, title=name, ylabel=ref_name, xlabel="prediction", show_y=(k % ncols == 0))
        for ax in axes[len(cells):]:
            ax.set_visible(False)
        if title:
            _suptitle(fig, title)
        return _finish(fig, out)


def follows_bars(table: "pd.DataFrame", *, x: str = "condition", facet: str | None = None,
                 order: Sequence[str] | None = None, title: str | None = None, show_other: bool = True,
                 out: str | Path | None = None) -> "Figure":
    """On conflict items: follows-voice vs follows-text (vs neither) per ``x``, one panel per ``facet``.

    ``table`` holds ``follows_voice``, ``follows_text`` (rates in [0, 1]) and optionally
    ``follows_voice_ci`` / ``follows_text_ci`` ([lo, hi]), ``other_rate`` and ``n_conflict``.
    """
    with style():
        fvals = list(dict.fromkeys(table[facet].astype(str))) if facet else [None]
        xs = list(order) if order is not None else list(dict.fromkeys(table[x].astype(str)))
        series = [("follows_voice", "follows the voice", VOICE), ("follows_text", "follows the text", TEXT)]
        if show_other and "other_rate" in table:
            series.append(("other_rate", "neither", OTHER))
        width = 0.8 / len(series)
        panel_w = max(2.2, 0.55 * len(xs) * len(series) + 0.8)
        fig = _figure(min(max(4.8, panel_w * len(fvals) + 0.8), 13.0), 3.8)
        axes = np.atleast_1d(fig.subplots(1, len(fvals), sharey=True, squeeze=False)).ravel()
        for ax, fv in zip(axes, fvals):
            sub = table if fv is None else table[table[facet].astype(str) == fv]
            for si, (key, name, color) in enumerate(series):
                vals, lo, hi = [], [], []
                for xv in xs:
                    r = sub[sub[x].astype(str) == xv]
                    if r.empty:
                        vals.append(np.nan); lo.append(0.0); hi.append(0.0)
                        continue
                    rr = r.iloc[0]
                    v = _num(rr.get(key))
                    a, b = _ci(rr, key)
                    vals.append(v)
                    lo.append(0.0 if math.isnan(a) else max(0.0, v - a))
                    hi.append(0.0 if math.isnan(b) else max(0.0, b - v))
                pos = np.arange(len(xs)) + (si - (len(series) - 1) / 2) * width
                has_ci = any(l > 0 or h > 0 for l, h in zip(lo, hi))
                ax.bar(pos, vals, width * 0.92, color=color, label=name,
                       yerr=np.array([lo, hi]) if has_ci else None,
                       error_kw={"elinewidth": 1.0, "capsize": 2.5, "ecolor": "#333333"})
            ax.set_ylim(0, 1.05)
            ax.set_xlabel(x.replace("_", " "))
            ticks = []
            for xv in xs:  # the number of conflict items under each bar group, so n is never hidden
                r = sub[sub[x].astype(str) == xv]
                nc = r.iloc[0].get("n_conflict") if len(r) and "n_conflict" in r else None
                ticks.append(xv if nc is None or (isinstance(nc, float) and math.isnan(nc)) else f"{xv}\nn={int(nc)}")
            ax.set_xticks(range(len(xs)), ticks, rotation=0 if max(map(len, xs)) < 12 else 25)
            if fv is not None:
                ax.set_title(fv, fontsize=10)
        axes[0].set_ylabel("share of conflict items")
        handles, names = axes[0].get_legend_handles_labels()
        fig.legend(handles, names, loc="outside lower center", ncols=len(series), fontsize=8)
        if title:
            _suptitle(fig, title)
        return _finish(fig, out)


def cue_condition_bars(table: "pd.DataFrame", *, metric: str = "uar", hue: str | None = None,
                       neutral: dict[str, float] | None = None, title: str | None = None,
                       out: str | Path | None = None) -> "Figure":
    """The cue-token study: ``metric`` (with its interval) per cue condition, in the study's order.

    ``neutral`` (condition -> share of ``neutral`` answers), when given, adds a second panel:
    perturbed cues are reported to push answers toward neutral.
    """
    with style():
        present = list(dict.fromkeys(table["condition"].astype(str)))
        conds = [c for c in CUE_CONDITIONS if c in present] + [c for c in present if c not in CUE_CONDITIONS]
        hues = list(dict.fromkeys(table[hue].astype(str))) if hue else [None]
        palette = _series_palette(hues)
        cond_colors = CUE_COLORS
        fig = _figure(max(4.5, 0.9 * len(conds) * max(1, len(hues))) + (3.2 if neutral else 0.0), 3.4)
        axes = np.atleast_1d(fig.subplots(1, 2 if neutral else 1, squeeze=False, width_ratios=[2, 1] if neutral else None)).ravel()
        ax = axes[0]
        width = 0.8 / len(hues)
        for hi_, hv in enumerate(hues):
            sub = table if hv is None else table[table[hue].astype(str) == hv]
            vals, lo, hi = [], [], []
            for c in conds:
                r = sub[sub["condition"].astype(str) == c]
                if r.empty:
                    vals.append(np.nan); lo.append(0.0); hi.append(0.0)
                    continue
                v = _num(r.iloc[0].get(metric))
                a, b = _ci(r.iloc[0], metric)
                vals.append(v)
                lo.append(0.0 if math.isnan(a) else max(0.0, v - a))
                hi.append(0.0 if math.isnan(b) else max(0.0, b - v))
            pos = np.arange(len(conds)) + (hi_ - (len(hues) - 1) / 2) * width
            colors = [cond_colors.get(c, OTHER) for c in conds] if hv is None else palette[hv]
            ax.bar(pos, vals, width * 0.92, color=colors, label=hv, yerr=np.array([lo, hi]),
                   error_kw={"elinewidth": 1.0, "capsize": 3, "ecolor": "#333333"})
            if "none" in conds and not math.isnan(vals[conds.index("none")]) and hv is None:
                ax.axhline(vals[conds.index("none")], color="#555555", lw=0.8, ls=":", zorder=0)
        ax.set_xticks(range(len(conds)), conds)
        ax.set_ylim(0, 1.0)
        ax.set_ylabel(metric.upper() if metric in ("uar",) else metric.replace("_", " "))
        ax.set_xlabel("cue-token condition")
        if hue:
            ax.legend(fontsize=8)
        if neutral:
            ax2 = axes[1]
            nc = [c for c in conds if c in neutral]
            ax2.bar(range(len(nc)), [neutral[c] for c in nc], 0.7, color=[cond_colors.get(c, OTHER) for c in nc])
            ax2.set_xticks(range(len(nc)), nc, rotation=30, ha="right")
            ax2.set_ylim(0, 1.0)
            ax2.set_ylabel("'neutral' answers\n(voice not neutral)")
        if title:
            _suptitle(fig, title)
        return _finish(fig, out)


def read_emis(csv: str | Path) -> "pd.DataFrame":
    """An EMIS result table with the run-row column names added (``probes.metrics.PRESETS["emis"]``)."""
    import pandas as pd

    from probes.metrics import apply_preset

    df = pd.read_csv(csv, dtype=str, keep_default_na=False)
    try:
        return apply_preset(df, "emis")
    except ValueError as e:
        raise ValueError(f"{csv}: not an EMIS result table ({e})") from None


def emis_figures(csv: str | Path, out_dir: str | Path, *, n_boot: int = 1000) -> list[Path]:
    """The EMIS study's figures from its real per-utterance table, read under the study's parse
    policy (strict): follows bars per model and conflict type, one confusion matrix per model.
    ``emis-follows.csv`` holds every score per model and text condition, ``emis-types.csv`` per model."""
    from probes.metrics import PRESETS, conflict_type_table, score_table

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    df = read_emis(csv)
    parse = PRESETS["emis"]["parse"]
    per_model = score_table(df, by=["model"], n_boot=n_boot, parse=parse)
    types = conflict_type_table(per_model, keep=["model"])
    follows_bars(types, x="conflict_type", facet="model", order=[t for t in TYPE_ORDER if t in set(types["conflict_type"])],
                 title="EMIS: whom do the models follow, per conflict type? (neutral-text: 'text' = answers neutral)",
                 out=out_dir / "emis-follows")
    confusion_grid(df, col="model", col_order=sorted(set(df["model"])), title="EMIS: prediction vs the voice's emotion",
                   out=out_dir / "emis-confusion")
    score_table(df, by=["model", "text_condition"], n_boot=n_boot, parse=parse).to_csv(out_dir / "emis-follows.csv", index=False)
    per_model.to_csv(out_dir / "emis-types.csv", index=False)
    return [out_dir / "emis-follows.png", out_dir / "emis-follows.svg", out_dir / "emis-confusion.png",
            out_dir / "emis-confusion.svg", out_dir / "emis-follows.csv", out_dir / "emis-types.csv"]


def compare_runs(run_dirs: Sequence[str | Path], out_dir: str | Path, *, name: str = "compare",
                 which: Sequence[str] = ("follows", "confusion")) -> list[tuple[Path, str]]:
    """Figures across prediction runs (one model each): follows bars and confusion matrices,
    one panel per run, named by the model (and the run folder when two runs share a model)."""
    import pandas as pd

    from probes.store import read_manifest, read_rows

    out_dir = Path(out_dir)
    frames, tables, names = [], [], []
    for r in run_dirs:
        r = Path(r)
        man = read_manifest(r)
        model = man.get("model", {}).get("name", "?") if isinstance(man.get("model"), dict) else str(man.get("model"))
        org = man["model"].get("organism") if isinstance(man.get("model"), dict) else None
        if isinstance(org, dict) and org.get("name"):  # a model organism: say which one (weights trained here)
            model = f"{model} organism {org['name']}"
        label = model if model not in names else f"{model} ({r.name})"
        names.append(label)
        rows = read_rows(r)
        if rows.empty or "pred" not in rows:
            continue
        rows = rows.assign(model=label, condition=rows["condition"].astype(str) if "condition" in rows else "none")
        frames.append(rows)
        t = run_table(r)
        if t.empty:
            from probes.metrics import score_table

            t = score_table(rows, by=["condition"])
        tables.append(t.assign(model=label))
    if not frames:
        return []
    from probes.metrics import conflict_type_table

    rows = pd.concat(frames, ignore_index=True)
    table = pd.concat(tables, ignore_index=True)
    conds = list(dict.fromkeys(rows["condition"]))
    models = list(dict.fromkeys(rows["model"]))
    made = []
    if "follows" in which:
        types = conflict_type_table(table, keep=["model", "condition"])
        if types.empty:
            pass
        elif len(conds) == 1:
            follows_bars(types, x="conflict_type", facet="model", order=[t for t in TYPE_ORDER if t in set(types["conflict_type"])],
                         title="Whom does each model follow, per conflict type?", out=out_dir / f"{name}-follows")
            made.append((out_dir / f"{name}-follows.png", "Follows-voice vs follows-text (vs neither) per conflict type "
                         "(on neutral-text items following the text means answering neutral), one panel per run, with "
                         "bootstrap 95% intervals."))
        else:
            ec = types[types["conflict_type"] == "emotional-conflict"]
            follows_bars(ec, x="condition", facet="model", order=conds, out=out_dir / f"{name}-follows",
                         title="On emotional-conflict items: whom does each model follow?")
            made.append((out_dir / f"{name}-follows.png", "Follows-voice vs follows-text (vs neither) on emotional-conflict "
                         "items (emotional words, another emotional voice), one panel per run, with bootstrap 95% intervals."))
    if "confusion" not in which:
        return made
    grid = {"row": "model", "col": "condition", "row_order": models, "col_order": conds} if len(conds) > 1 else \
        {"col": "model", "col_order": models}
    confusion_grid(rows, title="Prediction vs the voice's label", out=out_dir / f"{name}-confusion", **grid)
    made.append((out_dir / f"{name}-confusion.png", "Confusion matrices (rows: the voice's label; counts, colour = "
                                                    "share of the row), one panel per run and condition."))
    return made
