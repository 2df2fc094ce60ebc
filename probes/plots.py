"""Figures, drawn only from run folders or tables read from them: never from a model.

Every function here takes a DataFrame (or arrays) and returns a matplotlib ``Figure``; given
``out`` (a path without suffix, or with one that is replaced) it also writes ``out.png`` and
``out.svg``. One style for all of them (``style()``): seaborn's whitegrid, the Okabe-Ito
colour-blind-safe palette, and fixed colours for the two channels that every figure compares:
the voice (``VOICE``, blue) and the words (``TEXT``, vermillion). A figure that shows voice
against text uses those two colours and no others for them.

Figures and the columns they need:

============================  ==================================================================
``confusion_matrix``          rows with a reference label column and ``pred``
``confusion_grid``            the same plus one or two facet columns (model x corpus, condition)
``follows_bars``              a score table: ``follows_voice``, ``follows_text`` (+ ``_ci``)
``cue_condition_bars``        a score table over the cue conditions: ``uar`` (+ ``uar_ci``)
``umap_scatter``              embeddings ``[n, dim]`` (or 2-D coordinates) + two label arrays
``loss_curves``               ``arm, epoch, split, loss``
``ablation_curve``            ``n_q, metric, value``
``attention_share``           ``layer, span, value`` (+ optional ``group``)
``probe_curves``              ``layer, target, score`` (target in acoustic / semantic / control)
``patching_map``              ``layer, span, value``
``depth_lines``               ``layer, metric, value`` (the generic fallback for depth-wise rows)
``span_bars``                 ``span, value`` (+ ``method``): attribution shares per span
``emis_figures``              an EMIS result table (``txt_emo, txt_cond, wav_emo, pred_emo, slm``)
``compare_runs``              several prediction run folders, one panel per run
============================  ==================================================================

``figures_for_run(run_dir)`` looks at what a run folder holds and draws every figure it
supports; ``probe figures`` and ``probe report`` both go through it.
"""

from __future__ import annotations

import hashlib
import json
import math
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import numpy as np

if TYPE_CHECKING:  # matplotlib and pandas load lazily: `probe --help` must stay fast
    import pandas as pd
    from matplotlib.figure import Figure

# ---------------------------------------------------------------------------------- style
# Okabe & Ito (2008): distinguishable under the common colour-vision deficiencies.
VOICE = "#0072B2"   # what the voice carries (acoustic label)
TEXT = "#D55E00"    # what the words carry (semantic label)
OTHER = "#9E9E9E"   # neither
CUES = "#009E73"    # prompt-side acoustic cue tokens
ANSWER = "#CC79A7"
SPAN_COLORS = {"audio": VOICE, "acoustic": VOICE, "voice": VOICE, "prompt": TEXT, "text": TEXT,
               "semantic": TEXT, "cues": CUES, "answer": ANSWER, "control": OTHER}
EMOTION_COLORS = {"neutral": "#8C8C8C", "happy": "#E69F00", "sad": "#56B4E9", "angry": "#D55E00",
                  "fear": "#CC79A7", "disgust": "#009E73", "surprise": "#B8A200", "other": "#000000"}
CUE_CONDITIONS = ("none", "aligned", "shuffled", "conflicting", "corrupted")
# Cue conditions, training arms and metrics get colours that are never the voice's blue or the
# text's vermillion, so those two keep one meaning across every figure.
CUE_COLORS = {"none": OTHER, "aligned": CUES, "shuffled": "#E69F00", "conflicting": ANSWER, "corrupted": "#4D4D4D"}
SERIES_COLORS = ("#009E73", "#CC79A7", "#E69F00", "#000000", "#56B4E9", "#8C6D31", "#9E9E9E")
DPI = 110


@contextmanager
def style() -> Iterator[None]:
    """The house style as an rc context, so importing this module changes no global state."""
    import matplotlib as mpl
    import seaborn as sns

    rc = {**sns.axes_style("whitegrid"), **sns.plotting_context("notebook", font_scale=0.85)}
    rc.update({
        "axes.titleweight": "bold", "axes.titlesize": 11, "axes.edgecolor": "#555555",
        "grid.color": "#E6E6E6", "legend.frameon": False, "figure.dpi": DPI,
        # text stays text in the SVG (small, searchable), and the SVG ids do not change between runs
        "svg.fonttype": "none", "svg.hashsalt": "dissonance",
    })
    with mpl.rc_context(rc):
        yield


def _figure(width: float, height: float) -> "Figure":
    # A bare Figure (not pyplot): nothing is registered globally, nothing needs closing.
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _int_layers(ax) -> None:
    """Layers are whole numbers: no 0.5 ticks on a two-layer test model."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _series_palette(names: Sequence) -> dict:
    """Colours for arms / metrics / models: cycle through SERIES_COLORS (never VOICE or TEXT)."""
    return {n: SERIES_COLORS[i % len(SERIES_COLORS)] for i, n in enumerate(names)}


def _suptitle(fig: "Figure", title: str) -> None:
    """A bold title wrapped to the figure's width (a long run name must not run off the page)."""
    import textwrap

    width = max(20, int(fig.get_figwidth() * 10))
    fig.suptitle("\n".join(textwrap.wrap(title, width)), fontweight="bold", fontsize=11)


def save(fig: "Figure", out: str | Path) -> list[Path]:
    """Write ``out.png`` and ``out.svg`` (any suffix on ``out`` is replaced)."""
    out = Path(out)
    stem = out.with_suffix("") if out.suffix in (".png", ".svg", ".pdf") else out
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".svg")]
    with style():
        fig.savefig(paths[0], dpi=DPI, metadata={"Software": None})
        fig.savefig(paths[1], metadata={"Date": None, "Creator": None})
    return paths


def _finish(fig: "Figure", out: str | Path | None) -> "Figure":
    if out is not None:
        save(fig, out)
    return fig


def label_order(values: Sequence) -> list[str]:
    """Labels in the canonical order, unknown ones after, empties dropped."""
    from probes.labels import CANONICAL

    present = {str(v) for v in values if v is not None and str(v) not in ("", "nan")}
    return [l for l in CANONICAL if l in present] + sorted(present - set(CANONICAL))


def _ci(row, key: str) -> tuple[float, float]:
    """An interval from ``key_ci`` ([lo, hi]) or ``key_lo`` / ``key_hi``; NaN when absent."""
    v = row.get(f"{key}_ci") if hasattr(row, "get") else None
    if isinstance(v, (list, tuple, np.ndarray)) and len(v) == 2 and v[0] is not None and v[1] is not None:
        return float(v[0]), float(v[1])
    lo, hi = row.get(f"{key}_lo"), row.get(f"{key}_hi")
    if lo is not None and hi is not None:
        return float(lo), float(hi)
    return float("nan"), float("nan")


def _num(v) -> float:
    return float("nan") if v is None else float(v)


# ---------------------------------------------------------------------------------- scoring
def score_table(df: "pd.DataFrame", by: Sequence[str] = (), *, pred: str = "pred",
                acoustic: str = "acoustic_label", semantic: str = "semantic_label",
                n_boot: int = 1000, seed: int = 0) -> "pd.DataFrame":
    """One row per group: ``probes.metrics.score`` plus bootstrap intervals of the rates.

    The point values come from ``probes.metrics.score``. The intervals are the same percentile
    bootstrap as ``probes.metrics.bootstrap_ci`` (same seed, same resamples of the group's
    items), computed for all resamples at once: the EMIS table (12 groups) takes a second
    instead of a minute.
    """
    import pandas as pd

    from probes.metrics import normalize_pred, score

    by = list(by)
    out = []
    groups = [((), df)] if not by else list(df.groupby(by, sort=True))
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        a = g[acoustic].fillna("").astype(str).tolist()
        s = g[semantic].fillna("").astype(str).replace("nan", "").tolist() if semantic in g else [""] * len(g)
        p = ["" if x is None else x for x in (normalize_pred(v) for v in g[pred].tolist())]
        row = dict(zip(by, key))
        row.update(score(a, s, p))
        ci = bootstrap_rates(a, s, p, n_boot=n_boot, seed=seed)
        row.update({f"{k}_ci": v for k, v in ci.items()})
        out.append(row)
    return pd.DataFrame(out)


def bootstrap_rates(acoustic: Sequence[str], semantic: Sequence[str], pred: Sequence[str], *,
                    n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> dict[str, list[float]]:
    """Percentile intervals of follows_voice, follows_text and UAR, vectorised over resamples.

    ``pred`` must already be normalised (invalid = ""). Resample ``b`` uses the ``b``-th draw
    of ``rng.integers(0, n, n)`` from ``default_rng(seed)``, exactly as metrics.bootstrap_ci,
    and resamples where a rate is undefined (no conflict item drawn) are left out as there.
    """
    a = np.asarray([str(x) for x in acoustic], dtype=object)
    s = np.asarray([str(x) for x in semantic], dtype=object)
    p = np.asarray([str(x) for x in pred], dtype=object)
    n = len(a)
    nan2 = [float("nan"), float("nan")]
    if n == 0:
        return {"follows_voice": nan2, "follows_text": nan2, "uar": nan2}
    rng = np.random.default_rng(seed)
    idx = np.stack([rng.integers(0, n, n) for _ in range(n_boot)])  # [n_boot, n]
    conflict = (a != "") & (s != "") & (a != s)

    def q(vals: np.ndarray) -> list[float]:
        vals = vals[~np.isnan(vals)]
        if not len(vals):
            return nan2
        return [float(np.quantile(vals, alpha / 2)), float(np.quantile(vals, 1 - alpha / 2))]

    nc = conflict[idx].sum(1).astype(float)  # [n_boot]
    with np.errstate(invalid="ignore", divide="ignore"):
        fv = np.where(nc > 0, (conflict & (p == a))[idx].sum(1) / nc, np.nan)
        ft = np.where(nc > 0, (conflict & (p == s))[idx].sum(1) / nc, np.nan)
        recalls = []
        for c in sorted(set(a)):
            tc = (a == c)[idx].sum(1).astype(float)
            hit = ((a == c) & (p == c))[idx].sum(1)
            recalls.append(np.where(tc > 0, hit / tc, np.nan))  # a class absent from a resample does not count
        uar = np.nanmean(np.stack(recalls), axis=0) if recalls else np.full(n_boot, np.nan)
    return {"follows_voice": q(fv), "follows_text": q(ft), "uar": q(uar)}


def run_table(run_dir: str | Path) -> "pd.DataFrame":
    """metrics.json's per-condition scores as a table (one row per condition)."""
    import pandas as pd

    p = Path(run_dir) / "metrics.json"
    m = json.loads(p.read_text()) if p.exists() else {}
    conds = m.get("conditions") or {}
    return pd.DataFrame([{"condition": c, **v} for c, v in conds.items() if isinstance(v, dict)])


def neutral_share(df: "pd.DataFrame", by: str = "condition", pred: str = "pred",
                  acoustic: str = "acoustic_label") -> dict[str, float]:
    """Share of ``neutral`` answers per group among items whose voice is not neutral (where a
    ``neutral`` answer is always wrong): the cue-token study's shift of confusions toward neutral."""
    from probes.metrics import normalize_pred

    if acoustic in df:
        df = df[df[acoustic].astype(str) != "neutral"]
    return {str(k): float(np.mean([normalize_pred(v) == "neutral" for v in g[pred]])) for k, g in df.groupby(by)}


# ---------------------------------------------------------------------------------- confusion
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
            counts = confusion_counts(sub, reference=reference, pred=pred, labels=labels, columns=columns)
            name = " · ".join(v for v in (r, c) if v is not None) or None
            if name is not None:
                name = f"{name}  (n={int(counts.to_numpy().sum())})"
            _draw_confusion(ax, counts, title=name, ylabel=ref_name, xlabel="prediction", show_y=(k % ncols == 0))
        for ax in axes[len(cells):]:
            ax.set_visible(False)
        if title:
            _suptitle(fig, title)
        return _finish(fig, out)


# ---------------------------------------------------------------------------------- follows bars
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


# ---------------------------------------------------------------------------------- UMAP
def umap_coords(X: np.ndarray, *, cache: str | Path | None = None, n_neighbors: int = 15, min_dist: float = 0.1,
                seed: int = 0, reducer: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """2-D UMAP coordinates of ``X`` [n, dim], cached on disk by content and parameters.

    UMAP is slow to import and to fit (numba compiles on first use), so a figure drawn twice
    from the same embeddings fits once. ``reducer`` replaces UMAP (tests, or PCA for a quick look).
    """
    X = np.ascontiguousarray(np.asarray(X, dtype=np.float32))  # [n, dim]
    key = hashlib.sha256(X.tobytes() + repr((X.shape, n_neighbors, min_dist, seed)).encode()).hexdigest()[:20]
    path = Path(cache) / f"umap-{key}.npy" if cache is not None else None
    if path is not None and path.exists():
        return np.load(path)
    if reducer is None:
        import umap  # heavy: only here

        nn = max(2, min(n_neighbors, len(X) - 1))
        reducer = umap.UMAP(n_neighbors=nn, min_dist=min_dist, random_state=seed).fit_transform
    Y = np.asarray(reducer(X), dtype=np.float32)  # [n, 2]
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, Y)
    return Y


def umap_scatter(X: np.ndarray | None, acoustic: Sequence[str], semantic: Sequence[str], *,
                 coords: np.ndarray | None = None, cache: str | Path | None = None, title: str | None = None,
                 axis_name: str = "UMAP", out: str | Path | None = None, **umap_kw) -> "Figure":
    """Two panels of the same 2-D map: coloured by the voice's label and by the words' label.

    Clusters that follow the left panel mean the representation keeps the voice; clusters
    that follow the right one mean it keeps the words.
    """
    Y = coords if coords is not None else umap_coords(X, cache=cache, **umap_kw)
    acoustic = [str(v) for v in acoustic]
    semantic = [str(v) if v not in (None, "", "nan") else "" for v in semantic]
    labels = label_order(list(acoustic) + list(semantic))
    with style():
        fig = _figure(9.0, 4.2)
        axes = fig.subplots(1, 2, sharex=True, sharey=True)
        for ax, lab, name, edge in ((axes[0], acoustic, "coloured by the voice's label", VOICE),
                                    (axes[1], semantic, "coloured by the words' label", TEXT)):
            lab = np.asarray(lab, dtype=object)
            for l in labels:
                m = lab == l
                if m.any():
                    ax.scatter(Y[m, 0], Y[m, 1], s=14, color=EMOTION_COLORS.get(l, "#444444"), label=l,
                               alpha=0.85, linewidths=0)
            if (lab == "").any():
                m = lab == ""
                ax.scatter(Y[m, 0], Y[m, 1], s=10, color="#DDDDDD", label="(none)", linewidths=0)
            ax.set_title(name, fontsize=10, color=edge)
            ax.set_xticks([]); ax.set_yticks([])
            ax.set_xlabel(f"{axis_name} 1"); ax.set_ylabel(f"{axis_name} 2")
        # one legend for both panels, holding every label either panel shows
        by_name = {}
        for ax in axes:
            for h, n in zip(*ax.get_legend_handles_labels()):
                by_name.setdefault(n, h)
        names = [l for l in labels if l in by_name] + [n for n in by_name if n not in labels]
        fig.legend([by_name[n] for n in names], names, loc="outside right center", fontsize=8, markerscale=1.4)
        if title:
            _suptitle(fig, title)
        return _finish(fig, out)


# ---------------------------------------------------------------------------------- training
def loss_curves(df: "pd.DataFrame", *, title: str | None = None, out: str | Path | None = None) -> "Figure":
    """Loss over epochs, one colour per arm, solid = train, dashed = the other splits (FAS fig. 6)."""
    with style():
        arms = list(dict.fromkeys(df["arm"].astype(str)))
        splits = list(dict.fromkeys(df["split"].astype(str)))
        palette = _series_palette(arms)
        dashes = {s: ("-" if s == "train" else ("--", ":", "-.")[i % 3]) for i, s in enumerate(splits)}
        fig = _figure(6.4, 3.8)
        ax = fig.subplots()
        for arm in arms:
            for sp in splits:
                g = df[(df["arm"].astype(str) == arm) & (df["split"].astype(str) == sp)]
                if g.empty:
                    continue
                g = g.groupby("epoch", as_index=False)["loss"].mean().sort_values("epoch")
                ax.plot(g["epoch"], g["loss"], color=palette[arm], ls=dashes[sp], lw=1.6,
                        label=f"{arm} ({sp})" if len(splits) > 1 else arm)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
        if title:
            _suptitle(fig, title)
        return _finish(fig, out)


def ablation_curve(df: "pd.DataFrame", *, x: str = "n_q", title: str | None = None,
                   out: str | Path | None = None) -> "Figure":
    """Metric over the number of learnable queries N_q (FAS fig. 4), one line per metric."""
    with style():
        metrics = list(dict.fromkeys(df["metric"].astype(str)))
        # follows-voice / follows-text keep the voice and text colours of every other figure
        palette = {**_series_palette([m for m in metrics if m not in ("follows_voice", "follows_text")]),
                   "follows_voice": VOICE, "follows_text": TEXT}
        fig = _figure(5.0, 3.4)
        ax = fig.subplots()
        xs = sorted(set(df[x].astype(float)))
        for m in metrics:
            g = df[df["metric"].astype(str) == m].groupby(x, as_index=False)["value"].mean().sort_values(x)
            ax.plot(g[x].astype(float), g["value"], marker="o", color=palette[m], lw=1.6, label=m)
            best = g.loc[g["value"].idxmax()]
            ax.scatter([float(best[x])], [best["value"]], s=90, facecolors="none", edgecolors=palette[m], lw=1.4)
        if xs and min(xs) > 0 and max(xs) / min(xs) >= 8:
            ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [f"{v:g}" for v in xs])
        ax.minorticks_off()
        ax.set_xlabel("N_q (learnable queries)" if x == "n_q" else x)
        ax.set_ylabel("score")
        ax.legend(fontsize=8)
        if title:
            _suptitle(fig, title)
        return _finish(fig, out)


# ---------------------------------------------------------------------------------- inside the model
def _span_palette(spans: Sequence[str]) -> dict[str, str]:
    spare = iter(c for c in SERIES_COLORS if c not in SPAN_COLORS.values())
    return {s: SPAN_COLORS.get(s, next(spare, "#444444")) for s in spans}


def attention_share(df: "pd.DataFrame", *, group: str | None = "group", title: str | None = None,
                    ylabel: str = "attention share", out: str | Path | None = None) -> "Figure":
    """Attention mass per span over depth: mean over items with a 95% band; audio in the voice colour.

    ``group`` (e.g. congruent vs conflict), when that column exists, is drawn as line style.
    """
    import seaborn as sns

    with style():
        spans = list(dict.fromkeys(df["span"].astype(str)))
        fig = _figure(6.2, 3.6)
        ax = fig.subplots()
        use_group = group if group and group in df.columns and df[group].nunique() > 1 else None
        sns.lineplot(data=df.assign(span=df["span"].astype(str)), x="layer", y="value", hue="span",
                     style=use_group, palette=_span_palette(spans), hue_order=spans, errorbar=("ci", 95),
                     n_boot=200, seed=0, marker="o", markersize=4, ax=ax)
        ax.set_xlabel("layer")
        _int_layers(ax)
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
        if title:
            _suptitle(fig, title)
        return _finish(fig, out)


def probe_curves(df: "pd.DataFrame", *, chance: float | None = None, metric_name: str = "probe score",
                 title: str | None = None, out: str | Path | None = None) -> "Figure":
    """Linear-probe score over depth for the voice's label, the words' label and the control task.

    The gap between a target's curve and the control curve is the selectivity: a high curve
    next to a high control says capacity, not content.
    """
    import seaborn as sns

    with style():
        targets = [t for t in ("acoustic", "semantic", "control") if t in set(df["target"].astype(str))]
        targets += [t for t in dict.fromkeys(df["target"].astype(str)) if t not in targets]
        pal = _span_palette(targets)
        fig = _figure(6.0, 3.6)
        ax = fig.subplots()
        d = df.assign(target=df["target"].astype(str))
        sns.lineplot(data=d, x="layer", y="score", hue="target", hue_order=targets, palette=pal,
                     style="target", dashes={t: ((4, 2) if t == "control" else "") for t in targets},
                     errorbar=("ci", 95), n_boot=200, seed=0, marker="o", markersize=4, ax=ax)
        if chance is not None:
            ax.axhline(chance, color="#555555", lw=0.8, ls=":", label="chance")
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("layer")
        _int_layers(ax)
        ax.set_ylabel(metric_name)
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
        if title:
            _suptitle(fig, title)
        return _finish(fig, out)


def patching_map(df: "pd.DataFrame", *, value_name: str = "shift toward the\nsource's voice label",
                 title: str | None = None, out: str | Path | None = None) -> "Figure":
    """Activation patching: mean effect per (span, layer) as a heatmap centred on zero."""
    with style():
        spans = list(dict.fromkeys(df["span"].astype(str)))
        piv = df.assign(span=df["span"].astype(str)).pivot_table(index="span", columns="layer", values="value", aggfunc="mean")
        piv = piv.reindex(spans)  # the probe's span order, not the alphabet
        m = piv.to_numpy(dtype=float)  # [span, layer]
        lim = float(np.nanmax(np.abs(m))) if np.isfinite(m).any() else 1.0
        lim = lim or 1.0
        fig = _figure(max(4.5, 0.38 * m.shape[1] + 2.4), 0.45 * m.shape[0] + 1.6)
        ax = fig.subplots()
        im = ax.imshow(m, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
        ax.grid(False)
        ax.set_xticks(range(m.shape[1]), [str(c) for c in piv.columns])
        ax.set_yticks(range(m.shape[0]), [str(i) for i in piv.index])
        ax.set_xlabel("layer")
        _int_layers(ax)
        ax.set_ylabel("patched span")
        fig.colorbar(im, ax=ax, label=value_name, shrink=0.9)
        if title:
            _suptitle(fig, title)
        return _finish(fig, out)


def _metric_color(name: str, fallback: str) -> str:
    n = name.lower()
    if "voice" in n or "acoustic" in n or "audio" in n:
        return VOICE
    if "text" in n or "semantic" in n:
        return TEXT
    return fallback


def depth_lines(df: "pd.DataFrame", *, hue: str = "metric", conflict_pairs: bool = True,
                title: str | None = None, out: str | Path | None = None) -> "Figure":
    """Any ``layer, metric, value`` rows: mean per layer with a 95% band, small multiples.

    Metrics whose names differ only by voice/text (``p_voice`` / ``p_text``, ``top_is_voice`` /
    ``top_is_text``) share a panel in the voice and text colours; every other metric gets its
    own panel, since their scales differ (probabilities, bits). With ``conflict_pairs`` and a
    ``congruent`` column, the voice/text panels use conflict items only: on congruent items the
    two labels are the same and the curves would coincide.
    """
    import seaborn as sns

    with style():
        d = df.assign(**{hue: df[hue].astype(str)})
        names = list(dict.fromkeys(d[hue]))
        panels: dict[str, list[str]] = {}
        for n in names:
            key = n.replace("voice", "~").replace("text", "~") if ("voice" in n or "text" in n) else n
            panels.setdefault(key, []).append(n)
        keys = sorted(panels, key=lambda k: len(panels[k]) == 1)  # voice/text pairs first
        ncols = min(3, len(keys))
        nrows = math.ceil(len(keys) / ncols)
        fig = _figure(3.6 * ncols + 0.4, 2.9 * nrows + (0.4 if title else 0.0))
        axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
        spare = _series_palette(names)
        for ax, key in zip(axes, keys):
            members = panels[key]
            sub = d[d[hue].isin(members)]
            paired = len(members) > 1
            note = ""
            if paired and conflict_pairs and "congruent" in sub and (sub["congruent"].astype(str) == "false").any():
                sub = sub[sub["congruent"].astype(str) == "false"]
                note = " (conflict items)"
            pal = {m: _metric_color(m, spare[m]) if paired else spare[m] for m in members}
            sns.lineplot(data=sub, x="layer", y="value", hue=hue, hue_order=members, palette=pal,
                         errorbar=("ci", 95), n_boot=200, seed=0, marker="o", markersize=3.5, ax=ax,
                         legend=paired)
            ax.set_title((" / ".join(members)) + note, fontsize=9.5)
            ax.set_xlabel("layer")
            _int_layers(ax)
            ax.set_ylabel("")
            if paired:
                ax.legend(fontsize=8)
        for ax in axes[len(keys):]:
            ax.set_visible(False)
        if title:
            _suptitle(fig, title)
        return _finish(fig, out)


def span_bars(df: "pd.DataFrame", *, facet: str | None = "method", title: str | None = None,
              ylabel: str = "share of attribution", out: str | Path | None = None) -> "Figure":
    """Mean ``value`` per span (with a 95% interval over items), one panel per ``facet`` value;
    congruent vs conflict items side by side when a ``congruent`` column exists."""
    import seaborn as sns

    with style():
        d = df.assign(span=df["span"].astype(str))
        fvals = list(dict.fromkeys(d[facet].astype(str))) if facet and facet in d else [None]
        spans = list(dict.fromkeys(d["span"]))
        grp = "congruent" in d and d["congruent"].astype(str).nunique() > 1
        if grp:
            d = d.assign(items=np.where(d["congruent"].astype(str) == "false", "conflict", "congruent"))
        fig = _figure(max(4.0, (0.7 * len(spans) + 1.2) * len(fvals)), 3.4 + (0.3 if title else 0.0))
        axes = np.atleast_1d(fig.subplots(1, len(fvals), sharey=True, squeeze=False)).ravel()
        for ax, fv in zip(axes, fvals):
            sub = d if fv is None else d[d[facet].astype(str) == fv]
            if grp:
                sns.barplot(data=sub, x="span", y="value", hue="items", hue_order=["congruent", "conflict"],
                            order=spans, palette={"congruent": "#BBBBBB", "conflict": "#4D4D4D"},
                            errorbar=("ci", 95), n_boot=200, seed=0, capsize=0.1, err_kws={"linewidth": 1}, ax=ax)
            else:
                sns.barplot(data=sub, x="span", y="value", hue="span", order=spans, palette=_span_palette(spans),
                            errorbar=("ci", 95), n_boot=200, seed=0, capsize=0.1, err_kws={"linewidth": 1}, ax=ax,
                            legend=False)
            for lab in ax.get_xticklabels():  # the span names keep their channel colour
                lab.set_color(SPAN_COLORS.get(lab.get_text(), "#222222"))
            ax.set_title(fv or "", fontsize=10)
            ax.set_xlabel("span")
            ax.set_ylabel(ylabel)
            if grp and ax.get_legend():
                if ax is axes[0]:
                    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=2, fontsize=8)
                ax.get_legend().remove()
        if title:
            _suptitle(fig, title)
        return _finish(fig, out)


# ---------------------------------------------------------------------------------- EMIS
EMIS_COLUMNS = {"pred": "pred_emo", "acoustic": "wav_emo", "semantic": "txt_emo", "model": "slm", "text_condition": "txt_cond"}


def read_emis(csv: str | Path) -> "pd.DataFrame":
    """An EMIS result table with the run-row column names added (acoustic_label, semantic_label, pred...)."""
    import pandas as pd

    df = pd.read_csv(csv, dtype=str, keep_default_na=False)
    missing = [c for c in EMIS_COLUMNS.values() if c not in df.columns]
    if missing:
        raise ValueError(f"{csv}: not an EMIS result table (no column {', '.join(missing)}); "
                         "expected txt_emo, txt_cond, wav_emo, pred_emo, slm")
    return df.assign(acoustic_label=df["wav_emo"].str.strip().str.lower(),
                     semantic_label=df["txt_emo"].str.strip().str.lower(),
                     pred=df["pred_emo"], model=df["slm"], text_condition=df["txt_cond"])


def emis_figures(csv: str | Path, out_dir: str | Path, *, n_boot: int = 1000) -> list[Path]:
    """The EMIS study's figures from its real per-utterance table: follows bars per model and
    text condition, and one confusion matrix per model (against the voice's label)."""
    out_dir = Path(out_dir)
    df = read_emis(csv)
    table = score_table(df, by=["model", "text_condition"], n_boot=n_boot)
    follows_bars(table, x="text_condition", facet="model", order=[c for c in ("explicit", "implicit", "neutral") if c in set(table["text_condition"])],
                 title="EMIS: on conflict items, whom do the models follow?", out=out_dir / "emis-follows")
    confusion_grid(df, col="model", col_order=sorted(set(df["model"])), title="EMIS: prediction vs the voice's emotion", out=out_dir / "emis-confusion")
    table.to_csv(out_dir / "emis-follows.csv", index=False)
    return [out_dir / "emis-follows.png", out_dir / "emis-follows.svg", out_dir / "emis-confusion.png",
            out_dir / "emis-confusion.svg", out_dir / "emis-follows.csv"]


# ---------------------------------------------------------------------------------- several runs
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
        label = model if model not in names else f"{model} ({r.name})"
        names.append(label)
        rows = read_rows(r)
        if rows.empty or "pred" not in rows:
            continue
        rows = rows.assign(model=label, condition=rows["condition"].astype(str) if "condition" in rows else "none")
        frames.append(rows)
        t = run_table(r)
        tables.append(t.assign(model=label) if not t.empty else score_table(rows, by=["condition"]).assign(model=label))
    if not frames:
        return []
    rows = pd.concat(frames, ignore_index=True)
    table = pd.concat(tables, ignore_index=True)
    conds = list(dict.fromkeys(rows["condition"]))
    models = list(dict.fromkeys(rows["model"]))
    made = []
    if "follows" in which:
        follows_bars(table, x="condition", facet="model", order=conds, title="On conflict items: whom does each model follow?",
                     out=out_dir / f"{name}-follows")
        made.append((out_dir / f"{name}-follows.png", "Follows-voice vs follows-text (vs neither) on conflict items, "
                                                      "one panel per run, with bootstrap 95% intervals."))
    if "confusion" not in which:
        return made
    grid = {"row": "model", "col": "condition", "row_order": models, "col_order": conds} if len(conds) > 1 else \
        {"col": "model", "col_order": models}
    confusion_grid(rows, title="Prediction vs the voice's label", out=out_dir / f"{name}-confusion", **grid)
    made.append((out_dir / f"{name}-confusion.png", "Confusion matrices (rows: the voice's label; counts, colour = "
                                                    "share of the row), one panel per run and condition."))
    return made


# ---------------------------------------------------------------------------------- run folders
def _read_tables(run_dir: Path) -> dict[str, "pd.DataFrame"]:
    """CSV tables a run folder holds beside its rows (FAS writes its loss curves as one)."""
    import pandas as pd

    out = {}
    for p in sorted(list(run_dir.glob("*.csv")) + list(run_dir.glob("*/*.csv"))):
        if p.parent.name == "figures":
            continue
        try:
            out[str(p.relative_to(run_dir))] = pd.read_csv(p)
        except Exception:  # a table we cannot read is not a figure; the report lists the file anyway
            continue
    return out


def _embedding_files(run_dir: Path) -> list[Path]:
    return sorted(p for p in list(run_dir.glob("*.npz")) + list(run_dir.glob("embeddings/*.npz")))


def figures_for_run(run_dir: str | Path, out_dir: str | Path | None = None, *,
                    reducer: Callable[[np.ndarray], np.ndarray] | None = None, umap: bool = True,
                    failures: list[str] | None = None) -> list[tuple[Path, str]]:
    """Draw every figure that a run folder supports; returns (png path, caption) pairs.

    What it looks for: prediction rows (confusion matrices per condition; follows-voice vs
    follows-text per condition; cue-token bars when cue conditions are present), depth-wise
    rows (attention share, linear probes, patching map, or any ``layer, metric, value``),
    CSV tables beside the rows (loss curves, N_q ablation), and embedding archives
    (``*.npz`` with ``embeddings`` [n, dim] and ``utt_id``) for UMAP.

    With ``failures`` (a list) a figure that cannot be drawn is recorded there as one line and
    the others are still drawn (the report's behaviour); without it the error propagates.
    """
    from probes.store import read_manifest, read_rows

    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "figures"
    man = read_manifest(run_dir)
    model = (man.get("model") or {}).get("name", "?") if isinstance(man.get("model"), dict) else str(man.get("model"))
    who = f"{man.get('probe', '?')} · {model}"
    made: list[tuple[Path, str]] = []

    def draw(stem: str, caption: str, fn: Callable, *args, **kw) -> None:
        try:
            fn(*args, out=out_dir / stem, **kw)
        except Exception as e:
            if failures is None:
                raise
            failures.append(f"{stem}: {type(e).__name__}: {e}")
            return
        made.append((out_dir / f"{stem}.png", caption))

    rows = read_rows(run_dir)
    cols = set(rows.columns)
    if not rows.empty and {"pred", "acoustic_label"} <= cols:
        rows = rows.assign(condition=rows["condition"].astype(str) if "condition" in cols else "none")
        conds = list(dict.fromkeys(rows["condition"]))
        order = [c for c in CUE_CONDITIONS if c in conds] + [c for c in conds if c not in CUE_CONDITIONS]
        facet = {"col": "condition", "col_order": order} if len(conds) > 1 else {}
        # conditions named "<arm>@<mix>" (the FAS conflict experiment): arms x mixes
        split_at = len(conds) > 1 and all(c.count("@") == 1 for c in conds)
        if split_at:
            rows = rows.assign(arm=[c.split("@")[0] for c in rows["condition"]], mix=[c.split("@")[1] for c in rows["condition"]])
            arms = list(dict.fromkeys(rows["arm"]))
            mixes = list(dict.fromkeys(rows["mix"]))
            facet = {"row": "arm", "col": "mix", "row_order": arms, "col_order": mixes}
        draw("confusion", "Confusion matrix per condition: rows are the voice's (acoustic) label, columns the "
                          "prediction; numbers are counts, colour is the share of the row.",
             confusion_grid, rows, title=f"{who}: prediction vs the voice's label", **facet)
        sem = rows["semantic_label"].fillna("").astype(str) if "semantic_label" in cols else None
        conflict = rows[(sem != "") & (sem != rows["acoustic_label"].astype(str))] if sem is not None else rows.iloc[:0]
        if not conflict.empty:
            cfacet = {**facet, "col_order": [c for c in order if c in set(conflict["condition"])]} if facet and not split_at else facet
            draw("confusion-text", "On conflict items only: rows are the words' (semantic) label. A diagonal here "
                                   "means the model answers what the words say.",
                 confusion_grid, conflict, reference="semantic_label",
                 title=f"{who}: on conflict items, prediction vs the words' label", **cfacet)
        table = run_table(run_dir)
        if table.empty or "follows_voice" not in table:
            table = score_table(rows, by=["condition"], n_boot=500)
        if split_at and not table.empty:
            table = table.assign(arm=[str(c).split("@")[0] for c in table["condition"]],
                                 mix=[str(c).split("@")[-1] for c in table["condition"]])
        if split_at and table["follows_voice"].notna().any():
            draw("follows", "On conflict items: share of predictions equal to the voice's label, to the words' "
                            "label, or to neither, per arm (panels: conflict mix), with bootstrap 95% intervals.",
                 follows_bars, table, x="arm", facet="mix", order=arms, title=f"{who}: whom does each arm follow?")
        elif table["follows_voice"].notna().any():
            draw("follows", "On conflict items: share of predictions equal to the voice's label, to the words' "
                            "label, or to neither, per condition, with bootstrap 95% intervals.",
                 follows_bars, table, order=order, title=f"{who}: whom does it follow on conflict items?")
        if set(conds) & (set(CUE_CONDITIONS) - {"none"}) and "uar" in table:
            draw("cue-conditions", "UAR per cue-token condition with bootstrap 95% intervals (dotted line: no "
                                   "cues), and the share of 'neutral' answers on items whose voice is not neutral.",
                 cue_condition_bars, table[table["condition"].isin(CUE_CONDITIONS)], neutral=neutral_share(rows),
                 title=f"{who}: acoustic cue tokens")

    if not rows.empty and "layer" in cols:
        probe = str(man.get("probe", ""))
        if {"span", "value"} <= cols and "method" in cols:
            pass  # attribution rows: drawn below, per method
        elif {"span", "value"} <= cols or {"target", "score"} <= cols:
            # one figure per metric (raw vs length-normalised share, accuracy vs selectivity ...)
            metrics = list(dict.fromkeys(rows["metric"].astype(str))) if "metric" in cols else [None]
            for m in metrics:
                sub = rows if m is None else rows[rows["metric"].astype(str) == m]
                tag, mname = ("", "") if m is None else (f"-{_slug(m)}", f" ({m})")
                if {"target", "score"} <= cols:
                    draw(f"probe-curves{tag}", f"Linear-probe score over depth{mname}: the voice's label, the words' "
                                               "label and the control task (dashed), mean with 95% band.",
                         probe_curves, sub, title=f"{who}{mname}")
                elif "patch" in probe:
                    if "condition" in cols and (sub["condition"].astype(str) == "patch").any():
                        sub = sub[sub["condition"].astype(str) == "patch"]  # "self" pairs are the known-zero check
                    draw(f"patching{tag}", f"Activation patching{mname}: mean over pairs of patching each span "
                                           "at each layer (source and target share the words, not the voice).",
                         patching_map, sub, value_name=m or "effect", title=f"{who}{mname}")
                else:
                    grp = "congruent" if "congruent" in cols else None
                    draw(f"attention-share{tag}", f"Attention mass per span over depth{mname}, mean with 95% band"
                                                  + (" (line style: congruent vs conflict items)." if grp else "."),
                         attention_share, sub, group=grp, title=f"{who}{mname}")
        elif {"metric", "value"} <= cols:
            draw("depth", "Each metric of the run over depth, mean with 95% band; voice/text pairs share a panel "
                          "(on conflict items when the rows say which).", depth_lines, rows, title=who)
    if not rows.empty and {"span", "value", "method"} <= cols and "layer" not in cols:
        sub = rows[rows["metric"].astype(str) == "share"] if "metric" in cols else rows
        if not sub.empty:
            draw("span-shares", "Share of attribution mass per span and method, mean with 95% interval over "
                                "utterances (congruent vs conflict items where both occur).",
                 span_bars, sub, facet="method", title=f"{who}: where the answer comes from")

    for name, t in _read_tables(run_dir).items():
        tcols = set(t.columns)
        stem = _slug(Path(name).with_suffix("").as_posix())
        if {"arm", "epoch", "split", "loss"} <= tcols:
            draw(f"loss-{stem}", f"Loss over epochs per arm (solid: train), from {name}.",
                 loss_curves, t, title=f"{who}: training loss")
        elif {"layer", "target", "score"} <= tcols:
            chance = float(t["chance"].dropna().iloc[0]) if "chance" in tcols and t["chance"].notna().any() else None
            draw(f"probe-curves-{stem}", f"Linear-probe score over depth from {name}: the voice's label, the "
                                         "words' label and the control task (dashed); dotted: chance.",
                 probe_curves, t, chance=chance, metric_name=str(t["metric"].iloc[0]) if "metric" in tcols else "probe score",
                 title=f"{who}: {Path(name).stem}")
        elif {"n_q", "metric", "value"} <= tcols:
            draw(f"ablation-{stem}", f"Scores over the number of learnable queries, from {name} (circle: best).",
                 ablation_curve, t, title=f"{who}: N_q ablation")

    if umap:
        for p in _embedding_files(run_dir):
            lab = _umap_inputs(p, rows, man)
            if lab is None:
                continue
            X, ac, se = lab
            coords = _saved_coords(run_dir, p, _archive_ids(p))
            reducer_name = str((man.get("config") or {}).get("reducer", "umap")) if coords is not None else "umap"
            axis = "PCA" if reducer_name == "pca" else "UMAP"
            draw(f"umap-{_slug(p.stem)}", f"{axis} of {p.name}, coloured by the voice's label (left) and the words' "
                                          "label (right).",
                 umap_scatter, X, ac, se, coords=coords, axis_name=axis, cache=run_dir / ".cache", reducer=reducer,
                 title=f"{who}: {p.stem}")
    return made


def _umap_inputs(path: Path, rows, man: dict):
    """(embeddings [n, dim], acoustic labels, semantic labels) from an archive, or None.

    Labels come from the archive (``acoustic_label`` / ``semantic_label``) or, by ``utt_id``,
    from the run's rows or its data manifest.
    """
    with np.load(path, allow_pickle=False) as z:
        key = "embeddings" if "embeddings" in z else ("X" if "X" in z else None)
        if key is None:
            return None
        X = z[key]
        ids = [str(u) for u in z["utt_id"]] if "utt_id" in z else None
        ac = [str(v) for v in z["acoustic_label"]] if "acoustic_label" in z else None
        se = [str(v) for v in z["semantic_label"]] if "semantic_label" in z else None
    if (ac is None or se is None) and ids is not None:
        lab = _labels_by_utt(rows, man)
        ac = ac or [lab.get(u, ("", ""))[0] for u in ids]
        se = se or [lab.get(u, ("", ""))[1] for u in ids]
    if ac is None or len(ac) != len(X) or X.ndim != 2:
        return None
    return X, ac, se or [""] * len(X)


def _archive_ids(path: Path) -> list[str] | None:
    with np.load(path, allow_pickle=False) as z:
        return [str(u) for u in z["utt_id"]] if "utt_id" in z else None


def _saved_coords(run_dir: Path, path: Path, ids: list[str] | None) -> np.ndarray | None:
    """Coordinates the run already computed (``umap.csv`` of the embeddings probe), in the
    archive's item order, so the figure shows the map the run recorded (UMAP or PCA) unfitted."""
    import re

    import pandas as pd

    csv = run_dir / "umap.csv"
    m = re.fullmatch(r"(.+)-layer(\d+)", path.stem)
    if ids is None or m is None or not csv.exists():
        return None
    t = pd.read_csv(csv, dtype={"utt_id": str, "pool": str})
    t = t[(t["pool"] == m.group(1)) & (t["layer"] == int(m.group(2)))].drop_duplicates("utt_id").set_index("utt_id")
    if not set(ids) <= set(t.index):
        return None
    return t.loc[ids, ["x", "y"]].to_numpy(dtype=np.float32)  # [n, 2]


def _labels_by_utt(rows, man: dict) -> dict[str, tuple[str, str]]:
    if not rows.empty and {"utt_id", "acoustic_label"} <= set(rows.columns):
        sem = rows["semantic_label"] if "semantic_label" in rows else [""] * len(rows)
        return {str(u): (str(a), str(s)) for u, a, s in zip(rows["utt_id"], rows["acoustic_label"], sem)}
    try:
        from probes.data.manifest import Manifest

        m = Manifest.read(man["data"], check_audio=False)
        return {u: (a, s) for u, a, s in zip(m.df["utt_id"], m.df["acoustic_label"], m.df["semantic_label"])}
    except Exception:
        return {}


def _slug(s: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "-", s).strip("-") or "x"
