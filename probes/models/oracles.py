"""Reference predictors that read the labels: the sanity checks of every metric.

``text-oracle`` answers the semantic label (what the words say), ``voice-oracle`` the acoustic
label (what the voice says). On any conflict corpus they must score a text-dominance ratio of
1.0 and 0.0; they are checks, not results, and their runs are marked ``weights: oracle``.
Neither loads audio. The ``dummy`` adapter answers at random (seeded by utterance), so the CLI
and metrics can be exercised with no model at all.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

from probes.adapter import Adapter, Example, Prediction
from probes.registry import MODELS


class _Oracle(Adapter):
    weights = "oracle"
    needs_audio = False
    column = ""

    def predict(self, examples: Sequence[Example]) -> list[Prediction]:
        out = []
        for ex in examples:
            label = ex.row.get(self.column) or None
            probs = {l: float(l == label) for l in self.labels} if label in self.labels else None
            out.append(Prediction(label=label, probs=probs))
        return out


@MODELS.register("text-oracle")
class TextOracle(_Oracle):
    """Answers the semantic label (what the words carry): text-dominance 1.0 by construction."""

    column = "semantic_label"


@MODELS.register("voice-oracle")
class VoiceOracle(_Oracle):
    """Answers the acoustic label (what the voice carries): text-dominance 0.0 by construction."""

    column = "acoustic_label"


@MODELS.register("dummy")
class Dummy(Adapter):
    """Answers a label drawn from a hash of the utterance id and condition: chance level, no weights."""

    weights = "oracle"
    needs_audio = False

    def predict(self, examples: Sequence[Example]) -> list[Prediction]:
        out = []
        for ex in examples:
            h = int(hashlib.sha256(f"{ex.utt_id}|{ex.template}|{ex.cues}".encode()).hexdigest(), 16)
            out.append(Prediction(label=self.labels[h % len(self.labels)]))
        return out
