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
