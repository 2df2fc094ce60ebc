"""``predict``: each utterance once, no intervention.

Reads the manifest, asks the model for one label per utterance. One row per utterance:
``utt_id, condition="none", pred, acoustic_label, semantic_label, congruent, speaker,
sentence_id, split, corpus`` (+ ``probs`` when the model gives a distribution).
"""

from __future__ import annotations

from dataclasses import dataclass

from probes.probe import PredictionProbe
from probes.registry import PROBES


@PROBES.register("predict")
@dataclass(frozen=True)
class Predict(PredictionProbe):
    """Each utterance once, no intervention: the plain prediction of a model."""

