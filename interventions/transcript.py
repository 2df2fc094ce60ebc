"""Transcripts and instructions in the prompt: the words made explicit, replaced, or told to be ignored.

What changes:
- ``transcript``: ``Example.transcript`` = the utterance's own text (manifest column ``text``):
  the words handed to the model as text, beside the audio that already carries them.
- ``transcript-neutral``: ``Example.transcript`` = a neutral sentence (field ``sentence``) that
  carries no emotion, the same for every utterance.
- ``transcript-swap``: ``Example.transcript`` = the text of another utterance with a different
  sentence (a different ``sentence_id``, or different text where ids are missing), drawn with
  the seeded generator; ``prefer="other-label"`` draws first among donors whose
  ``semantic_label`` differs from the utterance's own, so the swapped words pull elsewhere.
- ``instruction-voice-only``: ``Example.template`` = ``"voice-only"`` (interventions/prompts.json),
  which asks the model to judge the tone of voice and ignore the words.

What it reads: the manifest rows (``text``, ``sentence_id``, ``semantic_label``).
What it records: ``transcript_source`` (the donor utt_id, ``"self"`` or ``"neutral"``), and for
the instruction ``template``.
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

NEUTRAL_SENTENCE = "The report lists the times of the trains that leave the station on weekdays."


@INTERVENTIONS.register("transcript")
@dataclass(frozen=True)
class Transcript(Intervention):
    """The utterance's true transcript (manifest ``text``) inserted into the prompt."""

    side = "text"

    def apply(self, ex: "Example", *, rng: np.random.Generator) -> "Example":
        text = str(ex.row.get("text") or "").strip()
        if not text:
            raise ValueError(f"utterance {ex.utt_id!r} has no text in the manifest; the transcript condition needs the column 'text'.")
        return ex.with_(transcript=text, meta={**ex.meta, "transcript_source": "self"})


@INTERVENTIONS.register("transcript-neutral")
@dataclass(frozen=True)
class TranscriptNeutral(Intervention):
    """A fixed emotionally neutral sentence inserted as the transcript."""

    sentence: str = field(default=NEUTRAL_SENTENCE, metadata={"help": "the neutral transcript"})
    side = "text"

    def apply(self, ex: "Example", *, rng: np.random.Generator) -> "Example":
        return ex.with_(transcript=self.sentence, meta={**ex.meta, "transcript_source": "neutral"})


@INTERVENTIONS.register("transcript-swap")
@dataclass(frozen=True)
class TranscriptSwap(Intervention):
    """Another utterance's transcript (a different sentence, seeded) inserted into the prompt."""

    prefer: str = field(default="other-sentence", metadata={"help": "other-sentence | other-label (different semantic label first)"})
    side = "text"

    def __post_init__(self) -> None:
        if self.prefer not in ("other-sentence", "other-label"):
            raise ValueError(f"transcript-swap: prefer={self.prefer!r}; use 'other-sentence' or 'other-label'")

    def fit(self, data: "Manifest", *, seed: int = 0) -> "TranscriptSwap":
        df = data.df
        pool = [(u, t.strip(), s or t.strip(), lab) for u, t, s, lab in
                zip(df["utt_id"], df["text"], df["sentence_id"], df["semantic_label"]) if str(t).strip()]
        if len({p[2] for p in pool}) < 2:
            raise ValueError(f"{data.source}: transcript-swap needs texts of at least two different sentences (column 'text').")
        object.__setattr__(self, "_pool", pool)
        return self

    def apply(self, ex: "Example", *, rng: np.random.Generator) -> "Example":
        pool = getattr(self, "_pool", None)
        if pool is None:
            raise RuntimeError("transcript-swap: call .fit(manifest) before .apply (the donors come from the data set).")
        own_text = str(ex.row.get("text") or "").strip()
        own_sent = str(ex.row.get("sentence_id") or "") or own_text
        cands = [p for p in pool if p[2] != own_sent and p[1] != own_text]
        if self.prefer == "other-label":
            own_lab = str(ex.row.get("semantic_label") or "")
            other = [p for p in cands if p[3] and p[3] != own_lab]
            cands = other or cands
        donor = cands[int(rng.integers(len(cands)))]
        return ex.with_(transcript=donor[1], meta={**ex.meta, "transcript_source": donor[0]})


@INTERVENTIONS.register("instruction-voice-only")
@dataclass(frozen=True)
class InstructionVoiceOnly(Intervention):
    """The prompt asks for the tone of voice only, ignoring the words (template ``voice-only``)."""

    template: str = field(default="voice-only", metadata={"help": "prompt template name (interventions/prompts.json)"})
    side = "prompt"

    def apply(self, ex: "Example", *, rng: np.random.Generator) -> "Example":
        from interventions.prompts import split_placement, templates, with_placement

        if self.template not in templates():
            raise KeyError(f"instruction-voice-only: no prompt template {self.template!r} in interventions/prompts.json")
        where = split_placement(ex.template)[1]  # a cue placement set before (cue intervention) is kept
        template = with_placement(self.template, where) if where else self.template
        return ex.with_(template=template, meta={**ex.meta, "template": template})
