"""``tts-self-consistency``: N sampled answers, majority vote; the vote shares are the soft prediction.

Each utterance's answer is sampled ``n`` times at ``temperature`` (top ``top_k`` tokens, 0 = all),
under a generator seeded from the run seed and the unit, so a run is reproducible. Each answer is
parsed to a label (``probes.labels.parse_answer``; with the ``reason-then-answer`` template the
final ``Answer:`` is read); the most voted valid label wins (ties: the label voted first), and
``probs`` holds the vote shares over the labels (invalid answers are counted in ``votes`` but not
in ``probs``; no valid answer gives an invalid row). Rows add: ``votes`` ({label or invalid:
count}, summing to ``n``), ``n_invalid``, the budget columns of ``probes.library._tts``, and
``candidates``. With soft labels in the manifest, metrics.json's ``soft`` scores the vote shares
against them (JS divergence, KL, Brier, ECE, top-2 agreement, entropies).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from probes.library._tts import TTSProbe, _positive, vote
from probes.registry import PROBES


@PROBES.register("tts-self-consistency")
@dataclass(frozen=True)
class TTSSelfConsistency(TTSProbe):
    """N sampled answers, majority vote; the vote shares are kept as the soft prediction."""

    strategy: ClassVar[str] = "self-consistency"
    n: int = field(default=8, metadata={"help": "sampled answers per utterance", "validate": lambda v: _positive("n")(v)})
    temperature: float = field(default=0.7, metadata={"help": "sampling temperature (0 = greedy: every sample equal)"})
    top_k: int = field(default=0, metadata={"help": "sample from the k most likely tokens (0 = all)"})

    def budget_asked(self) -> dict:
        return {"n": self.n, "beam_width": 1, "max_new_tokens": self.max_new_tokens}

    def decide(self, model, ex, dec, gen, ctx):
        from probes.adapter import Prediction

        reasoning = self.template.startswith("reason")
        cands = dec.sample(self.n, max_new_tokens=self.max_new_tokens, temperature=self.temperature, top_k=self.top_k,
                           generator=gen, reasoning=reasoning)
        label, probs, votes = vote(cands, model.labels)
        votes = {k: int(v) for k, v in votes.items()}
        return Prediction(label=label, probs=probs), cands, {"votes": votes, "n_invalid": votes.get("invalid", 0)}
