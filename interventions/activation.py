"""Activation-side interventions: the model's hidden states changed inside its forward pass.

What changes: nothing in the input. Each appends one ``probes.adapter.Edit`` to ``Example.edits``;
the adapter applies it at the named span (``audio``, ``prompt``, ``cues``, ... or, for the FAS
model, ``acoustic`` / ``semantic``) and residual layer (0 = the input embeddings with the audio merged
in, ``i`` = the input of block ``i``, ``L`` = after the last block; docs/vocabulary.md).
Adapters that cannot apply an edit must raise, never ignore it.

- ``ablate-span``: the span's activations at ``layer`` set to zero (``mode="zero"``) or to their
  mean over the span's positions (``mode="mean"``).
- ``patch-span``: the span's activations at ``layer`` replaced by those of a partner utterance:
  the same ``sentence_id`` with a different ``acoustic_label`` when one exists (the same words in
  another voice), else any utterance with a different acoustic label, else any other
  utterance; drawn with the seeded generator.
- ``stream-ablate``: one input stream of the fusion model removed (``span="acoustic"`` or
  ``"semantic"``), zero or mean (FAS adapter).

What it reads: for ``patch-span`` the manifest's ``sentence_id`` and ``acoustic_label``.
What it records: ``edit`` (kind:span@layer/mode), and for patches ``patch_source`` (utt_id) and
``patch_partner`` (``same-sentence`` | ``other-label`` | ``any``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from interventions.base import Intervention
from probes.registry import INTERVENTIONS

if TYPE_CHECKING:
    from probes.adapter import Example
    from probes.data.manifest import Manifest

MODES = ("zero", "mean")


def _check_mode(name: str, mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"{name}: mode={mode!r}; use one of {', '.join(MODES)}")


def _add(ex: "Example", edit, **meta) -> "Example":
    return ex.with_(edits=ex.edits + (edit,), meta={**ex.meta, "edit": edit.describe(), **meta})


@INTERVENTIONS.register("ablate-span")
@dataclass(frozen=True)
class AblateSpan(Intervention):
    """A token span's activations at a layer zeroed or mean-replaced (adapter-applied Edit)."""

    span: str = field(default="audio", metadata={"help": "adapter span name: audio, prompt, cues, ..."})
    layer: int = field(default=0, metadata={"help": "residual index: 0 = input embeddings, i = input of block i, L = after the last block"})
    mode: str = field(default="zero", metadata={"help": "zero | mean"})
    side = "activation"

    def __post_init__(self) -> None:
        _check_mode("ablate-span", self.mode)

    def apply(self, ex: "Example", *, rng: np.random.Generator) -> "Example":
        from probes.adapter import Edit

        return _add(ex, Edit(kind="ablate", span=self.span, layer=self.layer, mode=self.mode))


@INTERVENTIONS.register("patch-span")
@dataclass(frozen=True)
class PatchSpan(Intervention):
    """A span's activations patched in from a partner utterance (same sentence, other voice emotion)."""

    span: str = field(default="audio", metadata={"help": "adapter span name"})
    layer: int = field(default=0, metadata={"help": "residual index (0 = input embeddings)"})
    side = "activation"

    def fit(self, data: "Manifest", *, seed: int = 0) -> "PatchSpan":
        df = data.df
        if len(df) < 2:
            raise ValueError(f"{data.source}: patch-span needs at least two utterances (a source to patch from).")
        object.__setattr__(self, "_pool", list(zip(df["utt_id"], df["sentence_id"], df["acoustic_label"])))
        return self

    def partner(self, ex: "Example", rng: np.random.Generator, exclude=()) -> tuple[str, str]:
        """(source utt_id, how it was found); utterances in ``exclude`` are never picked."""
        pool = getattr(self, "_pool", None)
        if pool is None:
            raise RuntimeError("patch-span: call .fit(manifest) before .apply (partners come from the data set).")
        sent, lab = str(ex.row.get("sentence_id") or ""), str(ex.row.get("acoustic_label") or "")
        others = [p for p in pool if p[0] != ex.utt_id and p[0] not in exclude]
        tiers = (
            ("same-sentence", [p for p in others if sent and p[1] == sent and p[2] != lab]),
            ("other-label", [p for p in others if p[2] != lab]),
            ("any", others),
        )
        for how, cands in tiers:
            if cands:
                return cands[int(rng.integers(len(cands)))][0], how
        raise ValueError(f"patch-span: no other utterance to patch {ex.utt_id!r} from")

    def apply(self, ex: "Example", *, rng: np.random.Generator) -> "Example":
        from probes.adapter import Edit

        src, how = self.partner(ex, rng)
        return _add(ex, Edit(kind="patch", span=self.span, layer=self.layer, source=src),
                    patch_source=src, patch_partner=how)


@INTERVENTIONS.register("stream-ablate")
@dataclass(frozen=True)
class StreamAblate(Intervention):
    """One input stream of the fusion model (acoustic or semantic) zeroed or mean-replaced."""

    span: str = field(default="acoustic", metadata={"help": "acoustic | semantic"})
    mode: str = field(default="zero", metadata={"help": "zero | mean"})
    side = "activation"

    def __post_init__(self) -> None:
        _check_mode("stream-ablate", self.mode)
        if self.span not in ("acoustic", "semantic"):
            raise ValueError(f"stream-ablate: span={self.span!r}; use 'acoustic' or 'semantic'")

    def apply(self, ex: "Example", *, rng: np.random.Generator) -> "Example":
        from probes.adapter import Edit

        return _add(ex, Edit(kind="stream-ablate", span=self.span, layer=0, mode=self.mode))
