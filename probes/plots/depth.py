"""Figures of the looking-inside probes, drawn from their long rows (``layer, span, metric,
value``): attention share per span over depth, linear-probe curves, the patching map, any
depth-wise metric, and attribution shares per span.
"""

from __future__ import annotations

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
