"""Prompt templates for audio-language models, kept as data in ``prompts.json``.

A template has the slots ``{labels}``, ``{cues}`` and ``{transcript}``. ``render`` fills them:
cue tokens and transcripts that an intervention put on the Example are added even when the
template has no slot for them (as a line before the question), so any template can carry any
prompt-side condition. Adapters only wrap the rendered text in their own chat format.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Sequence

_FILE = Path(__file__).with_name("prompts.json")


@lru_cache(maxsize=1)
def templates() -> dict[str, str]:
    data = json.loads(_FILE.read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if not k.startswith("_")}


def render(template: str, labels: Sequence[str], *, cues: str | None = None, transcript: str | None = None) -> str:
    """The user-turn text for one example."""
    t = templates()
    if template not in t:
        raise KeyError(f"unknown prompt template {template!r}; known: {', '.join(sorted(t))} (interventions/prompts.json)")
    text = t[template]
    lines = text.split("\n")
    if "{cues}" not in text and cues:
        lines.insert(0, "Acoustic cues measured from the recording: {cues}")
    if "{transcript}" not in text and transcript:
        lines.insert(0, 'Transcript of the recording: "{transcript}"')
    # drop a slot's line when there is nothing to put in it
    lines = [ln for ln in lines if not ("{cues}" in ln and not cues) and not ("{transcript}" in ln and not transcript)]
    return "\n".join(lines).format(labels=", ".join(labels), cues=cues or "", transcript=transcript or "")
