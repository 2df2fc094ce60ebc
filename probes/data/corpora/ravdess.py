"""RAVDESS (Ryerson Audio-Visual Database of Emotional Speech and Song): 24 actors, 2 statements.

Reads ``ROOT/Actor_NN/*.wav`` (or the wavs directly in ROOT, or any depth below it), named by
seven two-digit fields, e.g. ``03-01-05-01-02-01-12.wav``:

    modality (01 audio-video, 02 video, 03 audio) - vocal channel (01 speech, 02 song) -
    emotion - intensity (01 normal, 02 strong) - statement (01, 02) - repetition (01, 02) - actor

Emotion codes: 01 neutral, 02 calm, 03 happy, 04 sad, 05 angry, 06 fearful, 07 disgust,
08 surprised. Odd actors are male, even actors female.

Calm has no canonical class. By default it becomes ``neutral`` (low arousal, no valence, the
convention of most papers that keep the 8th class out); ``--set calm=other`` keeps it apart,
``--set calm=drop`` leaves those files out. The two statements are emotionally neutral, so
``semantic_label`` is ``neutral`` (``--set neutral_text=false`` leaves it empty). RAVDESS has no
official split; ``split`` stays empty. ``--set channel=speech|song`` keeps one vocal channel.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

from probes.data.corpora.base import Corpus, Labels, Option
from probes.registry import CORPORA

NAME = re.compile(r"(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)\.wav")
RULE = "MM-VV-EE-II-SS-RR-AA.wav (e.g. 03-01-05-01-02-01-12.wav)"
STATEMENTS = {"01": "Kids are talking by the door.", "02": "Dogs are sitting by the door."}
CHANNELS = {"01": "speech", "02": "song"}
INTENSITY = {"01": "normal", "02": "strong"}


@CORPORA.register("ravdess")
class RAVDESS(Corpus):
    """RAVDESS: acted English speech and song, 24 actors, 8 emotions (calm -> neutral by default)."""

    mapping = {"01": "neutral", "02": "neutral", "03": "happy", "04": "sad", "05": "angry",
               "06": "fear", "07": "disgust", "08": "surprise"}
    display = "RAVDESS"
    layout = f"Actor_01 ... Actor_24 folders with files named {RULE}"
    options = {
        "calm": Option("neutral", "what calm (code 02) becomes: neutral, other or drop", str, ("neutral", "other", "drop")),
        "channel": Option("all", "vocal channel to keep: all, speech or song", str, ("all", "speech", "song")),
        "neutral_text": Option(True, "set semantic_label=neutral (the two statements are neutral)", bool),
    }

    @classmethod
    def resolve_mapping(cls, opts: dict[str, Any]) -> dict[str, str | None]:
        calm = None if opts["calm"] == "drop" else opts["calm"]
        return {**cls.mapping, "02": calm, **(opts.get("label_map") or {})}

    @classmethod
    def records(cls, root: Path, opts: dict[str, Any], labels: Labels) -> Iterator[dict]:
        files = cls.wavs(root, recursive=True)
        if not files:
            raise cls.not_like(root, "no .wav files under it")
        for f in files:
            modality, channel, emo, intensity, statement, rep, actor = cls.match(NAME, f, RULE).groups()
            if channel not in CHANNELS or statement not in STATEMENTS or intensity not in INTENSITY:
                raise cls.not_like(f, "channel, intensity and statement codes are 01 or 02")
            if opts["channel"] != "all" and CHANNELS[channel] != opts["channel"]:
                continue
            if f.parent.name.startswith("Actor_") and f.parent.name != f"Actor_{actor}":
                raise cls.not_like(f, f"actor {actor} in the name but the folder is {f.parent.name}")
            label = labels(emo, str(f))
            if label is None:
                continue
            yield cls.record(
                root, f.stem, f, label, semantic="neutral" if opts["neutral_text"] else "",
                text=STATEMENTS[statement], sentence_id=f"s{statement}", speaker=f"Actor_{actor}",
                raw_label=emo, gender="m" if int(actor) % 2 else "f", channel=CHANNELS[channel],
                intensity=INTENSITY[intensity], repetition=rep, modality=modality,
            )
