"""The house style of every figure: colours, the rc context, figure creation and saving.

One style for all figures (``style()``): seaborn's whitegrid, the Okabe-Ito colour-blind-safe
palette, and fixed colours for the two channels that every figure compares: the voice
(``VOICE``, blue) and the words (``TEXT``, vermillion). A figure that shows voice against text
uses those two colours and no others for them. Nothing here reads a model or computes a metric.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np

if TYPE_CHECKING:  # matplotlib loads lazily: `probe --help` must stay fast
    from matplotlib.figure import Figure

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


def _span_palette(spans: Sequence[str]) -> dict[str, str]:
    spare = iter(c for c in SERIES_COLORS if c not in SPAN_COLORS.values())
    return {s: SPAN_COLORS.get(s, next(spare, "#444444")) for s in spans}


def _metric_color(name: str, fallback: str) -> str:
    n = name.lower()
    if "voice" in n or "acoustic" in n or "audio" in n:
        return VOICE
    if "text" in n or "semantic" in n:
        return TEXT
    return fallback


def _slug(s: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "-", s).strip("-") or "x"
