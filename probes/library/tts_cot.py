"""``tts-cot``: chain-of-thought, the model reasons then answers; the parser reads the final label.

The prompt is ``reason-then-answer`` (interventions/prompts.json: describe the tone of voice and
the words, then end with ``Answer: <emotion>``); the answer is decoded greedily for up to
``max_new_tokens`` tokens (default 96: room for the reasoning). The label is read from what
follows the last ``Answer:`` (or, without one, from the last line) by ``probes.labels.parse_answer``;
a generation that never names a label is invalid. Rows (``probes.probe.prediction_row`` plus):
``raw`` (the answer part), ``generation`` (the whole text), ``reached_answer`` (an ``Answer:``
was written), the budget columns of ``probes.library._tts`` and ``candidates``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from probes.library._tts import TTSProbe, final_answer
from probes.registry import PROBES


@PROBES.register("tts-cot")
@dataclass(frozen=True)
class TTSCoT(TTSProbe):
    """Chain-of-thought: reason about voice and words, then 'Answer: <emotion>' (greedy decoding)."""

    strategy: ClassVar[str] = "cot"
    reasoning: ClassVar[bool] = True
    template: str = field(default="reason-then-answer", metadata={"help": "prompt template; the default asks for reasoning, then 'Answer: <emotion>'"})
    max_new_tokens: int = field(default=96, metadata={"help": "tokens generated at most (reasoning + answer)"})

    def decide(self, model, ex, dec, gen, ctx):
        from probes.adapter import Prediction

        (c,) = dec.sample(1, max_new_tokens=self.max_new_tokens, temperature=0.0, reasoning=True)
        pred = Prediction(label=c.label, raw=final_answer(c.text, reasoning=True))
        return pred, [c], {"generation": c.text, "reached_answer": "answer" in c.text.lower()}
