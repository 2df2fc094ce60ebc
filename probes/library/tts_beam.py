"""``tts-beam``: beam search over the answer, the beam width a parameter (width 1 = greedy).

Keeps the ``beam_width`` most likely partial answers (summed log-likelihood, or per token with
``length_norm=mean``) for up to ``max_new_tokens`` tokens; the answer is the best finished beam,
parsed to a label. ``probs``: the final beams' labels weighted by their likelihood (softmax over
the beams' scores), a soft prediction. Rows add the budget columns of ``probes.library._tts``,
``beam_labels`` and ``candidates`` (the final beams, best first).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from probes.library._tts import TTSProbe, _positive, final_answer, softmax_weights, vote
from probes.registry import PROBES


@PROBES.register("tts-beam")
@dataclass(frozen=True)
class TTSBeam(TTSProbe):
    """Beam search over the answer (beam_width 1 = greedy decoding)."""

    strategy: ClassVar[str] = "beam"
    beam_width: int = field(default=4, metadata={"help": "beams kept per step (1 = greedy)", "validate": lambda v: _positive("beam_width")(v)})
    length_norm: str = field(default="sum", metadata={"help": "rank beams by summed log-likelihood or per token", "choices": ("sum", "mean")})

    def budget_asked(self) -> dict:
        return {"n": 1, "beam_width": self.beam_width, "max_new_tokens": self.max_new_tokens}

    def decide(self, model, ex, dec, gen, ctx):
        from probes.adapter import Prediction

        reasoning = self.template.startswith("reason")
        beams = dec.beam(self.beam_width, max_new_tokens=self.max_new_tokens, length_norm=self.length_norm,
                         reasoning=reasoning)
        scores = [b.mean_logprob if self.length_norm == "mean" else b.logprob for b in beams]
        _, probs, _ = vote(beams, model.labels, softmax_weights(scores))
        best = beams[0]
        pred = Prediction(label=best.label, probs=probs if best.label is not None else None,
                          raw=final_answer(best.text, reasoning=reasoning))
        return pred, beams, {"beam_labels": [b.label for b in beams]}
