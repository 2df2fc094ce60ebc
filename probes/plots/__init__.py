"""Figures, drawn only from run folders or tables read from them: never from a model, never a metric.

Every drawing function takes a DataFrame (or arrays) and returns a matplotlib ``Figure``; given
``out`` (a path without suffix, or with one that is replaced) it also writes ``out.png`` and
``out.svg``. Scores come from ``probes.metrics`` (``score_table``, ``conflict_type_table``).

The package, one module per kind of figure:

==========================  ===================================================================
``probes.plots.style``      colours (``VOICE`` blue, ``TEXT`` vermillion), ``style()``, ``save``
``.predictions``            ``confusion_matrix`` / ``confusion_grid``, ``follows_bars`` (a score
                            table: ``follows_voice``, ``follows_text`` + ``_ci``; per conflict
                            type through ``probes.metrics.conflict_type_table``),
                            ``cue_condition_bars``, ``emis_figures``, ``compare_runs``
``.depth``                  ``attention_share``, ``probe_curves``, ``patching_map``,
                            ``depth_lines``, ``span_bars`` (looking-inside rows)
``.embeddings``             ``umap_coords`` (cached), ``umap_scatter``
``.training``               ``loss_curves``, ``ablation_curve`` (FAS)
``.runs``                   ``figures_for_run``: the figures each probe declares
                            (``PROBE_FIGURES``: probe name -> figure sets of its run folder)
==========================  ===================================================================

``import probes.plots`` keeps every name the old single module had.
"""

from __future__ import annotations

from probes.plots.depth import attention_share, depth_lines, patching_map, probe_curves, span_bars
from probes.plots.embeddings import umap_coords, umap_scatter
from probes.plots.predictions import (
    TYPE_ORDER, compare_runs, confusion_counts, confusion_grid, confusion_matrix, cue_condition_bars, emis_figures,
    follows_bars, read_emis, run_table,
)
from probes.plots.runs import FIGURE_SETS, PROBE_FIGURES, RunTables, figures_for_run, figures_of
from probes.plots.style import (
    ANSWER, CUE_COLORS, CUE_CONDITIONS, CUES, DPI, EMOTION_COLORS, OTHER, SERIES_COLORS, SPAN_COLORS, TEXT, VOICE,
    label_order, save, style,
)
from probes.plots.training import ablation_curve, loss_curves


def __getattr__(name: str):
    # statistics moved to probes.metrics; old notebook imports (plots.score_table, plots.neutral_share) still resolve
    if name in ("score_table", "neutral_share", "conflict_type_table"):
        from probes import metrics

        return getattr(metrics, name)
    raise AttributeError(f"module 'probes.plots' has no attribute {name!r}")
