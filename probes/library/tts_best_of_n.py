"""``tts-best-of-n``: N sampled answers, a verifier picks one (or weights the votes).

The verifier is the model's own likelihood of each answer by default (``score=mean``: per token,
``sum``: the whole answer), or any registered adapter (``--set verifier=NAME``, with
``verifier_tiny`` / ``verifier_path`` as ``--tiny`` / ``--model-path`` would be): it predicts
once per utterance and scores each candidate by the log of its probability of the candidate's
label (``probes.library._tts.verifier_scores``; e.g. ``voice-oracle``, FAS, or a second ALM).

- ``weighted=false``: the valid candidate with the best verifier score wins (ties: own likelihood);
- ``weighted=true`` (weighted best-of-N): every candidate votes for its label with weight
  softmax(verifier scores); the label with the most weight wins and ``probs`` holds the shares.

Rows add ``verifier`` (``self`` or the adapter's name), ``chosen`` (the winning candidate's
index, unweighted), ``votes`` (weights per label, invalid included), the budget columns of
``probes.library._tts`` (``verifier_calls``) and ``candidates``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from probes.library._tts import (TTSProbe, _positive, final_answer, load_verifier, softmax_weights, verifier_scores,
                                 vote)
from probes.registry import PROBES


@PROBES.register("tts-best-of-n")
@dataclass(frozen=True)
class TTSBestOfN(TTSProbe):
    """N sampled answers judged by a verifier (own likelihood by default); weighted=true: weighted votes."""

    strategy: ClassVar[str] = "best-of-n"
    n: int = field(default=8, metadata={"help": "sampled answers per utterance", "validate": lambda v: _positive("n")(v)})
    temperature: float = field(default=0.7, metadata={"help": "sampling temperature"})
    top_k: int = field(default=0, metadata={"help": "sample from the k most likely tokens (0 = all)"})
    score: str = field(default="mean", metadata={"help": "own-likelihood score: per token (mean) or whole answer (sum)", "choices": ("mean", "sum")})
    weighted: bool = field(default=False, metadata={"help": "weighted best-of-N: votes weighted by softmax(verifier score)"})
    verifier: str | None = field(default=None, metadata={"help": "a registered model that scores the candidates (default: the model's own likelihood)", "validate": lambda v: _check_verifier(v)})
    verifier_tiny: bool = field(default=False, metadata={"help": "load the verifier as its tiny random-weight instance"})
    verifier_path: str | None = field(default=None, metadata={"help": "the verifier's --model-path"})

    def budget_asked(self) -> dict:
        return {"n": self.n, "beam_width": 1, "max_new_tokens": self.max_new_tokens}

    def _verifier(self, model, ctx):
        if "tts_verifier" not in ctx.cache:
            v = load_verifier(self.verifier, tiny=self.verifier_tiny, model_path=self.verifier_path)
            if tuple(v.labels) != tuple(model.labels) and hasattr(v, "set_labels"):
                v.set_labels(model.labels)
            ctx.cache["tts_verifier"] = v
        return ctx.cache["tts_verifier"]

    def decide(self, model, ex, dec, gen, ctx):
        from probes.adapter import Prediction

        reasoning = self.template.startswith("reason")
        cands = dec.sample(self.n, max_new_tokens=self.max_new_tokens, temperature=self.temperature, top_k=self.top_k,
                           generator=gen, reasoning=reasoning)
        own = [c.mean_logprob if self.score == "mean" else c.logprob for c in cands]
        if self.verifier:
            scores = verifier_scores(self._verifier(model, ctx), ex, cands, dec.budget)
        else:
            scores = own
        extra = {"verifier": self.verifier or "self"}
        if self.weighted:
            label, probs, votes = vote(cands, model.labels, softmax_weights(scores))
            extra["votes"] = {k: round(v, 6) for k, v in votes.items()}
            return Prediction(label=label, probs=probs), cands, extra
        valid = [i for i, c in enumerate(cands) if c.label is not None] or list(range(len(cands)))
        best = max(valid, key=lambda i: (scores[i], own[i], -i))
        c = cands[best]
        extra["chosen"] = best
        return Prediction(label=c.label, raw=final_answer(c.text, reasoning=reasoning)), cands, extra


def _check_verifier(name) -> None:
    """An unknown verifier fails when the options are read, naming the closest registered models."""
    if name in (None, ""):
        return
    from probes.registry import MODELS, RegistryError

    try:
        MODELS[str(name)]
    except RegistryError as e:
        raise ValueError(f"verifier: {e}") from None
