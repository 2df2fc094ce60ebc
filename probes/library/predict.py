"""``predict``: each utterance once per condition (``none`` by default).

Reads the manifest, asks the model for one label per utterance and condition. ``--set
conditions=none,audio-noise,patch-span`` runs any registered interventions (``+`` joins several
into one condition; ``--set intervention_options='{"patch-span": {"layer": 3}}'`` passes their
options). One row per (utterance, condition):
``utt_id, condition, pred, acoustic_label, semantic_label, congruent, speaker,
sentence_id, split, corpus`` (+ ``probs`` when the model gives a distribution).
"""

from __future__ import annotations

from dataclasses import dataclass

from probes.probe import Conditions, PredictionProbe
from probes.registry import PROBES


@PROBES.register("predict")
@dataclass(frozen=True)
class Predict(Conditions, PredictionProbe):
    """Each utterance once per condition (none by default): the plain prediction of a model."""

