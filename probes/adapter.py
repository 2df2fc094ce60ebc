"""The contract between probes and models.

A probe hands an Adapter a batch of ``Example`` objects (one utterance each, already changed by
the condition's interventions) and gets one ``Prediction`` per example back. Everything a probe
may touch inside a model goes through the adapter's stable names (``spans``, ``paths``);
probes never see a raw module path.

Adapters are registered in ``probes.registry.MODELS`` by a short name, the CLI's ``--model``.
``weights`` says what ran: ``real`` (trained weights), ``random`` (a tiny random-weight
instance, for tests: its numbers are not results) or ``oracle`` (a reference predictor that
reads the labels, for checking metrics).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Sequence

import numpy as np

from probes.labels import EMOTIONS


@dataclass(frozen=True)
class Edit:
    """An activation-side change the adapter applies inside its forward pass."""

    kind: str                      # "ablate" | "patch" | "stream-ablate"
    span: str = "audio"            # a stable span name of the adapter ("audio", "cues", "acoustic", ...)
    layer: int | str = "input"     # a layer index, or "input" for the embeddings
    mode: str = "zero"             # "zero" | "mean" for ablations
    source: str | None = None      # utt_id whose activations are patched in


@dataclass(frozen=True)
class Example:
    """One utterance as a model will see it under one condition."""

    utt_id: str
    row: dict                                  # the manifest row (labels, text, speaker, ...)
    audio: np.ndarray | None = None            # [time] float32 mono at ``sr``; None if not needed
    sr: int = 16_000
    template: str = "plain"                    # name of the prompt template (interventions/prompts)
    cues: str | None = None                    # rendered acoustic cue tokens, slotted into the prompt
    transcript: str | None = None              # a transcript slotted into the prompt
    edits: tuple[Edit, ...] = ()               # activation-side changes
    meta: dict = field(default_factory=dict)   # what interventions want recorded in the row

    def with_(self, **kw: Any) -> "Example":
        return replace(self, **kw)


@dataclass(frozen=True)
class Prediction:
    label: str | None                          # None = invalid answer (not in the label set)
    probs: dict[str, float] | None = None      # closed-set distribution over the labels
    raw: str | None = None                     # the model's raw text answer, if it generated one
    extra: dict = field(default_factory=dict)  # anything else worth a column (e.g. attention mass)


class Adapter:
    """Base class of every model the workbench can probe."""

    name: ClassVar[str] = "adapter"
    weights: ClassVar[str] = "real"
    needs_audio: ClassVar[bool] = True
    sample_rate: ClassVar[int] = 16_000
    max_seconds: ClassVar[float | None] = 30.0
    labels: tuple[str, ...] = EMOTIONS

    @classmethod
    def from_cli(cls, **options: Any) -> "Adapter":
        """Build from CLI options (model_path, tiny, checkpoint, device, dtype, ...)."""
        return cls()

    def predict(self, examples: Sequence[Example]) -> list[Prediction]:
        raise NotImplementedError

    def describe(self) -> dict:
        """What goes into the run manifest under ``model``."""
        return {"name": self.name, "weights": self.weights, "labels": list(self.labels)}

    def set_labels(self, labels: Sequence[str]) -> None:
        self.labels = tuple(labels)
