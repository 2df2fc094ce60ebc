"""The contract between probes and models: one abstract base, ``Adapter``.

A probe hands an adapter a batch of ``Example`` objects (one utterance each, already changed by
the condition's interventions) and gets one ``Prediction`` per example back (``predict``). The
looking-inside probes use the adapter's *instruments* (``inside_info``, ``inside_read``,
``inside_patch``, ``inside_attribution``), which every model family implements on itself: there
are no bridges and no name sniffing. A model that lacks an instrument inherits the default
here, which raises ``MissingInstrument`` naming the model and the instrument (``logit lens on
fas``), so a probe refuses with one clear line before it starts.

Everything a probe may touch inside a model goes through stable names: token spans (``audio``,
``prompt``, ``cues``, ``transcript``, ``answer``; FAS: ``acoustic``, ``semantic``) and layers
counted along the residual stream (below); probes never see a raw module path.

Layer numbering (one, everywhere, ``Edit`` included; docs/vocabulary.md): residual ``0`` = the
input embeddings with the audio merged in, residual ``i`` = the input of decoder block ``i``,
residual ``L`` = the output of the last block before the final norm (TransformerLens'
``resid_pre`` counting). Attention belongs to a block: block ``i`` reads residual ``i``.

Adapters are registered in ``probes.registry.MODELS`` by a short name, the CLI's ``--model``
(the decorator sets ``name``). ``weights`` says what ran: ``real`` (trained weights),
``random`` (a tiny random-weight instance, for tests: its numbers are not results) or
``oracle`` (a reference predictor that reads the labels, for checking metrics).

Method by method (lm-eval's ``api/model.py`` style: what a subclass must / may implement)::

    predict(examples) -> [Prediction]            MUST. One per example, in order.
    encode(examples) -> batch                    MAY. The model's own input for a batch (ALM: ``Batch``
                                                 of merged embeddings + spans); no forward pass.
    hidden_states(examples, layers, spans, pool) MAY. Residual stream at spans x layers.
    attention(examples, layers)                  MAY. Attention weights from the answer position.
    capture(examples, layer, span)               MAY. One residual layer at one span, per example.
    run_with_edits(examples, edits, sources=)    MAY. Answer-position logits under ``Edit``s.
    unembed(hidden, normed=)                     MAY. Logits from residual vectors (the logit lens).
    forward_embeds(embeds, batch)                MAY. Answer logits from given input embeddings (captum).
    inside_info() -> InsideInfo                  MAY. What the inside probes can ask for.
    inside_read(examples, attention=, pools=, lens=) -> [Readout]
    inside_patch(target, source, span=, layers=) -> [len(layers), n_labels]
    inside_attribution(example) -> AttributionInputs
    prepare(data)                                MAY. Corpus-level statistics before a run (the runner
                                                 calls it once per run).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from probes.labels import EMOTIONS

VOICE_SPANS = ("audio", "acoustic")   # spans that carry the voice; every other span is "text"


class MissingInstrument(NotImplementedError):
    """A model asked for an instrument it does not have; the message names both."""

    def __init__(self, model: str, instrument: str, why: str = ""):
        self.model, self.instrument = model, instrument
        super().__init__(f"{model} has no {instrument}" + (f": {why}" if why else "")
                         + " (see docs/inside.md for which model offers which instrument)")


@dataclass(frozen=True)
class Edit:
    """An activation-side change the adapter applies inside its forward pass.

    ``layer`` is a residual-stream index (module docstring): 0 = the input embeddings, ``i`` =
    the input of block ``i``, ``L`` = the output of the last block.
    """

    kind: str                      # "ablate" | "patch" | "stream-ablate"
    span: str = "audio"            # a stable span name of the adapter ("audio", "cues", "acoustic", ...)
    layer: int = 0                 # residual index 0 .. n_layers
    mode: str = "zero"             # "zero" | "mean" for ablations
    source: str | None = None      # utt_id whose activations are patched in

    def __post_init__(self) -> None:
        layer = self.layer
        if isinstance(layer, str):  # from a CLI or a config: "3", or "input" (a name for residual 0)
            if layer.strip() == "input":
                layer = 0
            elif layer.strip().isdigit():
                layer = int(layer)
            else:
                raise ValueError(f"Edit layer {layer!r}: layers are residual indices (0 = the input embeddings with "
                                 "the audio merged in, i = the input of block i, L = after the last block)")
        if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or layer < 0:
            raise ValueError(f"Edit layer {layer!r}: a residual index 0 .. n_layers")
        object.__setattr__(self, "layer", int(layer))

    def describe(self) -> str:
        """``kind:span@layer[/mode]``, the ``edit`` column of a row."""
        return f"{self.kind}:{self.span}@{self.layer}" + (f"/{self.mode}" if self.kind != "patch" else "")


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


# ---------------------------------------------------------------------------------- what the inside probes read
@dataclass(frozen=True)
class InsideInfo:
    """What a model can show. Probes check ``supports`` (through ``require``) before they start."""

    n_layers: int                         # decoder blocks (residual indices run 0 .. n_layers)
    n_heads: int                          # attention heads per block (FAS: learnable queries)
    pools: tuple[str, ...]                # pooled readouts it can give ("audio-mean", "last", "fused" ...)
    spans: tuple[str, ...]                # span names it reports ("audio", "prompt", "cues", "answer" ...)
    supports: frozenset[str]              # of "attention", "hidden", "lens", "patch", "attribution"
    why_not: dict[str, str] = field(default_factory=dict)  # capability -> reason it is missing


@dataclass
class Readout:
    """One utterance seen from inside. Only what was asked for is filled.

    ``spans`` are token positions of the sequence the model saw, as a half-open ``(start, end)``
    pair or an array of positions; they do not overlap, and positions no span covers
    (chat-template tokens) are ``other`` to the probes, so span shares sum to one.
    """

    utt_id: str
    spans: dict[str, Any]                         # name -> (start, end) or an array of positions
    seq_len: int                                  # tokens the model saw
    answer_pos: int                               # position whose logits give the label
    attention: np.ndarray | None = None           # [n_layers, n_heads, seq_len] from the answer position
    pooled: dict[str, np.ndarray] = field(default_factory=dict)  # pool -> [n_layers + 1, dim]
    lens: np.ndarray | None = None                # [n_layers + 1, n_labels] label logits per residual
    final: np.ndarray | None = None               # [n_labels] the model's own label logits (always filled)


@dataclass
class AttributionInputs:
    """A differentiable view of one utterance for captum.

    ``forward(*inputs)`` -> label scores ``[batch, n_labels]``; ``inputs`` and ``baselines`` are
    tensors with a leading batch dim of 1 (ALM: the merged input embeddings ``[1, seq, dim]``;
    FAS: the two feature streams). ``spans`` maps a span name to ``(input index, positions)``
    along dim 1 of that input (positions as in ``Readout.spans``).
    """

    inputs: tuple[Any, ...]
    baselines: tuple[Any, ...]
    forward: Callable[..., Any]
    spans: dict[str, tuple[int, Any]]


# ---------------------------------------------------------------------------------- the base
class Adapter:
    """Base class of every model the workbench can probe (see the module docstring for the contract)."""

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
        """One Prediction per example, in order (closed-set ``probs`` where the model gives them)."""
        raise NotImplementedError(f"{self.name}: predict is not implemented")

    def describe(self) -> dict:
        """What goes into the run manifest under ``model``."""
        return {"name": self.name, "weights": self.weights, "labels": list(self.labels)}

    def set_labels(self, labels: Sequence[str]) -> None:
        self.labels = tuple(labels)

    def missing(self, instrument: str, why: str = "") -> MissingInstrument:
        return MissingInstrument(self.name, instrument, why)

    # ---- instruments: defaults raise, naming the model and the instrument ----------------
    def encode(self, examples: Sequence[Example]):
        """The model's input for a batch, no forward pass."""
        raise self.missing("encode")

    def hidden_states(self, examples: Sequence[Example], layers: Sequence[int] | None = None,
                      spans: Sequence[str] = ("audio", "answer"), pool: str = "mean") -> dict:
        """Residual stream at ``spans`` x residual ``layers`` (default 0 .. L)."""
        raise self.missing("hidden states")

    def attention(self, examples: Sequence[Example], layers: Sequence[int] | None = None) -> dict:
        """Per block and head, the attention weights of the answer position over the sequence."""
        raise self.missing("attention weights")

    def capture(self, examples: Sequence[Example], layer: int, span: str = "audio") -> list:
        """One residual layer's activations at one span, per example."""
        raise self.missing("activation capture")

    def run_with_edits(self, examples: Sequence[Example], edits: Sequence[Edit] = (), *,
                       sources: dict[str, Example] | None = None):
        """Answer-position logits with ``edits`` applied inside the forward pass."""
        raise self.missing("activation edits")

    def unembed(self, hidden, *, normed: bool = True):
        """Logits from residual-stream vectors (the logit lens)."""
        raise self.missing("logit lens", "it has no unembedding that reads its residual stream")

    def forward_embeds(self, embeds, batch):
        """Answer-position logits from given input embeddings (captum's entry point)."""
        raise self.missing("forward from embeddings")

    def inside_info(self) -> InsideInfo:
        """What the inside probes may ask of this model."""
        raise self.missing("inside instruments", "it exposes no internals to the inside probes")

    def inside_read(self, examples: Sequence[Example], *, attention: bool = False, pools: Sequence[str] = (),
                    lens: bool = False) -> list[Readout]:
        """One Readout per example: final label logits always; attention / pooled / lens on request."""
        raise self.missing("inside readouts")

    def inside_patch(self, target: Example, source: Example, *, span: str, layers: Sequence[int]) -> np.ndarray:
        """Label scores ``[len(layers), n_labels]`` of ``target`` with ``span``'s residual at each
        layer replaced by ``source``'s (one layer at a time).

        A voice span (``VOICE_SPANS``) whose length differs between the two utterances is aligned
        along time (``probes.models.alm.engine.time_align``); equal lengths give the identity, so
        an utterance patched into itself is unchanged. Other spans must have equal length."""
        raise self.missing("activation patching")

    def inside_attribution(self, example: Example) -> AttributionInputs:
        """A differentiable view of one utterance for captum."""
        raise self.missing("attribution inputs")


def require(model: Adapter, capability: str, probe: str) -> InsideInfo:
    """The model's InsideInfo, or one clear error: which probe, which model, what is missing and why."""
    try:
        info = model.inside_info()
    except MissingInstrument as e:
        raise MissingInstrument(getattr(model, "name", type(model).__name__), f"{capability} (for {probe})",
                                "it exposes no internals to the inside probes") from e
    if capability not in info.supports:
        why = info.why_not.get(capability, "the model does not expose it")
        raise MissingInstrument(getattr(model, "name", "?"), f"{capability} (for {probe})", why)
    return info
