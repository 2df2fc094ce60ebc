"""ESD (Emotional Speech Dataset): 10 Mandarin + 10 English speakers, 350 parallel sentences, 5 emotions.

Reads ``ROOT/{speaker}/{Emotion}/[train|evaluation|test/]{speaker}_{NNNNNN}.wav`` (possibly
inside an ``Emotion Speech Dataset/`` folder): speaker folders 0001-0020, emotion folders
Angry, Happy, Neutral, Sad, Surprise, and, in the official release, the split folders train /
evaluation / test (mapped to train / dev / test; without them ``split`` is empty).
The speaker transcript ``ROOT/{speaker}/{speaker}.txt`` (lines ``{utt}<TAB>{text}<TAB>{emotion}``,
UTF-8, UTF-16 or GB18030 depending on the copy) gives ``text`` when present.

Speakers 0001-0010 speak Mandarin (``language`` zh), 0011-0020 English (en). Every speaker
reads the same 350 sentences of their language once per emotion, numbered in emotion blocks of
350 (000001-000350, 000351-000700, ...), so ``sentence_id`` is ``{language}-{(N-1) mod 350 + 1}``.

Mapping: the emotion folder names (Angry angry, Happy happy, Neutral neutral, Sad sad,
Surprise surprise). The sentences were not chosen to carry or avoid an emotion, so
``semantic_label`` stays empty; ``--set neutral_text=true`` marks them neutral.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

from probes.data.corpora.base import Corpus, Labels, Option, read_text_file
from probes.registry import CORPORA

NAME = re.compile(r"(\d{4})_(\d{6})\.wav")
RULE = "{speaker}_{NNNNNN}.wav (e.g. 0011_000351.wav)"
SPLITS = {"train": "train", "evaluation": "dev", "test": "test"}
SPEAKERS = tuple(f"{i:04d}" for i in range(1, 21))
PER_EMOTION = 350


@CORPORA.register("esd")
class ESD(Corpus):
    """ESD: Mandarin and English read speech, 20 speakers, 350 parallel sentences, 5 emotions."""

    mapping = {"Angry": "angry", "Happy": "happy", "Neutral": "neutral", "Sad": "sad", "Surprise": "surprise"}
    display = "ESD"
    layout = "speaker folders 0001-0020, each with Angry/ Happy/ Neutral/ Sad/ Surprise/ (optionally train/ evaluation/ test/ inside) and files like 0011_000351.wav"
    options = {
        "neutral_text": Option(False, "set semantic_label=neutral for every sentence", bool),
    }

    @classmethod
    def records(cls, root: Path, opts: dict[str, Any], labels: Labels) -> Iterator[dict]:
        base = root
        if not any((root / s).is_dir() for s in SPEAKERS) and (root / "Emotion Speech Dataset").is_dir():
            base = root / "Emotion Speech Dataset"
        speakers = [base / s for s in SPEAKERS if (base / s).is_dir()]
        if not speakers:
            raise cls.not_like(root, "no speaker folder 0001 ... 0020")
        for spk_dir in speakers:
            spk = spk_dir.name
            lang = "zh" if int(spk) <= 10 else "en"
            texts = _transcript(spk_dir / f"{spk}.txt")
            emo_dirs = sorted(d for d in spk_dir.iterdir() if d.is_dir())
            if not emo_dirs:
                raise cls.not_like(spk_dir, "a speaker folder without emotion folders")
            for emo_dir in emo_dirs:
                label = labels(emo_dir.name, str(emo_dir))
                if label is None:
                    continue
                for f in cls.wavs(emo_dir, recursive=True):
                    split_dir = f.parent.name if f.parent != emo_dir else ""
                    if split_dir and (split_dir not in SPLITS or f.parent.parent != emo_dir):
                        raise cls.not_like(f, "only train/, evaluation/ or test/ may sit inside an emotion folder")
                    f_spk, num = cls.match(NAME, f, RULE).groups()
                    if f_spk != spk:
                        raise cls.not_like(f, f"speaker {f_spk} in the name but the folder is {spk}")
                    k = (int(num) - 1) % PER_EMOTION + 1
                    yield cls.record(
                        root, f.stem, f, label, semantic="neutral" if opts["neutral_text"] else "",
                        text=texts.get(f.stem, ""), sentence_id=f"{lang}-{k:03d}", speaker=spk,
                        split=SPLITS.get(split_dir, ""), language=lang, raw_label=emo_dir.name,
                    )


def _transcript(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    out = {}
    for line in read_text_file(path).splitlines():
        parts = line.strip().split("\t")
        if len(parts) >= 2 and NAME.fullmatch(parts[0] + ".wav"):
            out[parts[0]] = parts[1].strip()
    return out
