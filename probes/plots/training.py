"""Training figures (FAS): loss over epochs per arm, and scores over the number of learnable queries."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from probes.plots.style import (
    ANSWER, CUE_COLORS, CUE_CONDITIONS, CUES, DPI, EMOTION_COLORS, OTHER, SERIES_COLORS, SPAN_COLORS, TEXT, VOICE,
    _ci, _figure, _finish, _int_layers, _metric_color, _num, _series_palette, _slug, _span_palette, _suptitle,
    label_order, save, style,
)

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

def loss_curves(df: "pd.DataFrame", *, title: str | None = None, out: str | Path | None = None) -> "Figure":
    """Loss over epochs (FAS fig. 6): solid = train, dotted = the other splits (held out).

    Few arms: one panel, one colour per arm. Arms named ``<arm>@<mix>`` (the conflict experiment,
    dozens of them): small multiples, one panel per arm, one colour per conflict mix, so no colour
    repeats and the legend stays short.
    """
    import numpy as np

    with style():
        tags = list(dict.fromkeys(df["arm"].astype(str)))
        splits = list(dict.fromkeys(df["split"].astype(str)))
        dashes = {s: ("-" if s == "train" else (":", "--", "-.")[i % 3]) for i, s in enumerate(splits)}
        grouped = len(tags) > 1 and all(t.count("@") == 1 for t in tags)
        if grouped:
            arms = list(dict.fromkeys(t.split("@")[0] for t in tags))
            mixes = list(dict.fromkeys(t.split("@")[1] for t in tags))
            palette = _series_palette(mixes)
            ncols = min(4, len(arms))
            nrows = int(np.ceil(len(arms) / ncols))
            fig = _figure(3.1 * ncols + 0.4, 2.3 * nrows + 1.0)
            axes = np.atleast_1d(fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)).ravel()
            panels = [(ax, arm, [(f"{arm}@{m}", m) for m in mixes]) for ax, arm in zip(axes, arms)]
            for ax in axes[len(arms):]:
                ax.set_visible(False)
        else:
            palette = _series_palette(tags)
            fig = _figure(6.4, 3.8)
            ax = fig.subplots()
            panels = [(ax, None, [(t, t) for t in tags])]
        handles = {}
        for ax, arm, series in panels:
            for tag, key in series:
                for sp in splits:
                    g = df[(df["arm"].astype(str) == tag) & (df["split"].astype(str) == sp)]
                    if g.empty:
                        continue
                    g = g.groupby("epoch", as_index=False)["loss"].mean().sort_values("epoch")
                    (line,) = ax.plot(g["epoch"], g["loss"], color=palette[key], ls=dashes[sp], lw=1.4)
                    if sp == splits[0] or sp == "train":
                        handles.setdefault(key, line)
            if arm is not None:
                ax.set_title(arm, fontsize=9)
        from matplotlib.lines import Line2D

        names = [f"{k} conflict in training" if grouped else k for k in handles]
        style_keys = [Line2D([], [], color="#444444", ls=dashes[sp], lw=1.4) for sp in splits]
        style_names = [f"{sp} split" + (" (held out)" if sp != "train" else "") for sp in splits]
        if grouped:
            for i, (ax, _, _) in enumerate(panels):
                if i + ncols >= len(panels):  # the lowest panel of each column
                    ax.set_xlabel("epoch", fontsize=9)
                    ax.xaxis.set_tick_params(labelbottom=True)
                if i % ncols == 0:
                    ax.set_ylabel("loss", fontsize=9)
            fig.legend(list(handles.values()) + (style_keys if len(splits) > 1 else []),
                       names + (style_names if len(splits) > 1 else []), loc="outside lower center",
                       ncols=min(6, len(names) + len(splits)), fontsize=8)
        else:
            panels[0][0].set_xlabel("epoch")
            panels[0][0].set_ylabel("loss")
            panels[0][0].legend(list(handles.values()) + (style_keys if len(splits) > 1 else []),
                                names + (style_names if len(splits) > 1 else []),
                                fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
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
