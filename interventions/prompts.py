"""Prompt templates for audio-language models, kept as data in ``prompts.json``.

A template has the slots ``{labels}``, ``{cues}`` and ``{transcript}``. ``render`` fills them:
cue tokens and transcripts that an intervention put on the Example are added even when the
template has no slot for them, so any template can carry any prompt-side condition. Adapters
only wrap the rendered text in their own chat format.

Where the cue line goes (``CUE_PLACEMENTS``): the cue-token study appends the tokens to the
prompt, after the question, and that is the default: a template without a ``{cues}`` slot gets
the line ``Acoustic cues measured from the recording: ...`` after its last line
(``with-cues`` writes it there too; ``with-cues-before`` is the variant with the line first).
A template name may carry a placement variant, ``NAME+cues-after`` or ``NAME+cues-before``, which
moves the cue line (the template's own slot line, or the added one) to that place; the cue
interventions set it (their ``placement`` field) so every row says which placement ran. A
transcript without a slot goes first, as the context of the question.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Sequence

_FILE = Path(__file__).with_name("prompts.json")
CUE_LINE = "Acoustic cues measured from the recording: {cues}"
CUE_PLACEMENTS = ("after", "before")   # after the question (the study's, default) | before it
DEFAULT_CUE_PLACEMENT = "after"
_SEP = "+cues-"


@lru_cache(maxsize=1)
def templates() -> dict[str, str]:
    data = json.loads(_FILE.read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if not k.startswith("_")}


def split_placement(template: str) -> tuple[str, str | None]:
    """``"plain+cues-before"`` -> ``("plain", "before")``; ``"plain"`` -> ``("plain", None)``."""
    base, sep, where = template.partition(_SEP)
    if not sep:
        return template, None
    if where not in CUE_PLACEMENTS:
        raise KeyError(f"prompt template {template!r}: cue placement {where!r} is not one of "
                       f"{', '.join(CUE_PLACEMENTS)} (write NAME+cues-after or NAME+cues-before)")
    return base, where


def with_placement(template: str, placement: str) -> str:
    """The variant of ``template`` (any earlier placement replaced) with the cue line at ``placement``."""
    if placement not in CUE_PLACEMENTS:
        raise ValueError(f"cue placement {placement!r}: use one of {', '.join(CUE_PLACEMENTS)}")
    return f"{split_placement(template)[0]}{_SEP}{placement}"


def cue_placement(template: str) -> str:
    """Where ``render`` puts the cue line for this template name: ``"after"`` or ``"before"``."""
    base, where = split_placement(template)
    if where:
        return where
    text = templates().get(base, "")
    if "{cues}" not in text:
        return DEFAULT_CUE_PLACEMENT
    lines = text.split("\n")
    k = next(i for i, ln in enumerate(lines) if "{cues}" in ln)
    return "before" if k < len(lines) - 1 else "after"


def render(template: str, labels: Sequence[str], *, cues: str | None = None, transcript: str | None = None) -> str:
    """The user-turn text for one example."""
    t = templates()
    base, where = split_placement(template)
    if base not in t:
        raise KeyError(f"unknown prompt template {base!r}; known: {', '.join(sorted(t))} (interventions/prompts.json)")
    text = t[base]
    lines = text.split("\n")
    if cues and (where is not None or "{cues}" not in text):
        own = [ln for ln in lines if "{cues}" in ln]
        lines = [ln for ln in lines if "{cues}" not in ln]
        cue_line = own[0] if own else CUE_LINE
        if (where or DEFAULT_CUE_PLACEMENT) == "before":
            lines.insert(0, cue_line)
        else:
            lines.append(cue_line)
    if "{transcript}" not in text and transcript:
        lines.insert(0, 'Transcript of the recording: "{transcript}"')
    # drop a slot's line when there is nothing to put in it
    lines = [ln for ln in lines if not ("{cues}" in ln and not cues) and not ("{transcript}" in ln and not transcript)]
    return "\n".join(lines).format(labels=", ".join(labels), cues=cues or "", transcript=transcript or "")
