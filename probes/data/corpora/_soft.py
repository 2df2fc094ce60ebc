"""Soft labels for the importers: annotator votes per utterance as ``soft_<label>`` columns.

An importer that finds per-annotator votes in the official files (IEMOCAP's evaluator lines,
CREMA-D's tabulatedVotes.csv, MSP-Podcast's labels_detailed.json) turns its raw codes into the
canonical labels with the same ``Labels`` lookup as the hard label, and writes one column per
label the corpus maps to (``soft_neutral``, ``soft_happy``, ...: vote counts, possibly
fractional where one annotator gave several categories), plus ``n_soft_votes`` (votes counted in
those columns) and ``n_soft_dropped`` (votes for categories the label convention drops, e.g.
frustration in IEMOCAP's 4 classes: left out of the distribution). An utterance without votes
gets empty cells. ``probes.metrics.soft_labels`` reads the columns back as distributions.
"""

from __future__ import annotations

from typing import Mapping

from probes.labels import CANONICAL


def soft_targets(labels) -> list[str]:
    """The canonical labels a ``Labels`` lookup maps to, in canonical order."""
    got = {v for v in labels.table.values() if v}
    return [l for l in CANONICAL if l in got] + sorted(got - set(CANONICAL))


def soft_columns(raw_votes: Mapping[str, float], labels, targets: list[str], where: str) -> dict:
    """{soft_<label>: votes, n_soft_votes, n_soft_dropped} from {raw code: votes}; empty cells without votes."""
    if not raw_votes or sum(raw_votes.values()) <= 0:
        return {**{f"soft_{t}": "" for t in targets}, "n_soft_votes": "", "n_soft_dropped": ""}
    acc = {t: 0.0 for t in targets}
    dropped = 0.0
    for code, v in raw_votes.items():
        lab = labels(code, where)
        if lab is None or lab not in acc:
            dropped += v
        else:
            acc[lab] += v
    fmt = lambda x: f"{round(x, 4):g}"  # noqa: E731
    return {**{f"soft_{t}": fmt(acc[t]) for t in targets}, "n_soft_votes": fmt(sum(acc.values())), "n_soft_dropped": fmt(dropped)}
