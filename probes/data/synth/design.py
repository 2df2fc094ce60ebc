"""The design of the synthetic corpus: which sentence is spoken by whom, with which voice emotion.

Everything here is pure bookkeeping (no audio), so it is cheap to test and to reason about.

**Sentence bank.** ``bank.json``: 32 sentences for each of the seven emotions (neutral; happy,
sad, angry, fear, disgust, surprise with 16 explicit and 16 implicit each), so a text pathway has
about 22 training sentences per emotion and is tested on about 10 others (FINDINGS lesson 5).

**Crossing (the full design, 1,120 items).** Every sentence is spoken
- congruently ``CONGRUENT_TAKES`` = 2 times (two speakers of its side): 448 congruent items, so
  about 280 congruent items fall in the train split (a model trained on congruent items sees
  hundreds, not one hundred);
- in ``CONFLICT_VOICES`` = 3 other voice emotions, rotated over the six other emotions so that
  every (text, voice) cell gets 16 items: 672 conflict items (60 %).
Voice labels and text labels are balanced (160 each). ``conflict_rate`` changes the mix by
sampling; when it asks for more congruent items than the crossing has, extra congruent *takes*
(the same sentence and emotion, other speakers of the same side) are added.

**Splits: speakers and sentences held out at once.** Speakers are split train / test (5 / 3,
both sides with low and high voices) and sentences are split train / test (about 70 / 30,
stratified by emotion and explicitness). An item is ``train`` when its speaker *and* its sentence
are train, ``test`` when both are test, and ``dev`` when they disagree. Items are given a speaker
of their sentence's side, except a share ``DEV_SHARE`` that deliberately get a speaker of the other
side and so form ``dev``. No speaker and no sentence is ever shared between train and test.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from probes.data.synth.voices import SPEAKERS

MAIN = ("neutral", "happy", "sad", "angry")
EXTRA = ("fear", "disgust", "surprise")
TEST_SPEAKERS = ("spk02", "spk05", "spk07")  # a low male, a low female and a high female voice
TEST_SENTENCE_SHARE = 0.3
DEV_SHARE = 0.12
EXTRA_TAKES = 2  # extra congruent takes per sentence available to conflict_rate
CONGRUENT_TAKES = 2  # congruent takes of every sentence in the crossing
CONFLICT_VOICES = 3  # conflict voice emotions of every sentence in the crossing


class DesignError(ValueError):
    """Settings that no design can satisfy; the message says which and what would work."""


@dataclass(frozen=True)
class Sentence:
    sentence_id: str
    text: str
    emotion: str
    explicitness: str


@dataclass(frozen=True)
class Item:
    utt_id: str
    sentence: Sentence
    voice_emotion: str
    speaker: str
    split: str
    take: int = 0  # 0 = the crossing; 1.. = extra congruent takes

    @property
    def congruent(self) -> bool:
        return self.voice_emotion == self.sentence.emotion


def bank_path() -> Path:
    return Path(__file__).with_name("bank.json")


@lru_cache(maxsize=None)
def load_bank(path: str | None = None) -> tuple[Sentence, ...]:
    """Read and check the sentence bank (ids unique, labels canonical, text speakable)."""
    from probes.labels import EMOTIONS

    p = Path(path) if path else bank_path()
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise DesignError(f"{p}: cannot read the sentence bank ({e}); restore it from git.") from None
    out, seen = [], set()
    for k, d in enumerate(doc["sentences"]):
        s = Sentence(**d)
        where = f"{p}: sentence {k + 1} ({s.sentence_id!r})"
        if s.sentence_id in seen:
            raise DesignError(f"{where}: duplicate sentence_id; ids must be unique and never reused.")
        if s.emotion not in EMOTIONS:
            raise DesignError(f"{where}: emotion {s.emotion!r} is not one of {', '.join(EMOTIONS)}.")
        if s.explicitness not in ("explicit", "implicit", "neutral"):
            raise DesignError(f"{where}: explicitness must be explicit, implicit or neutral.")
        if not any(ch.isalpha() for ch in s.text):
            raise DesignError(f"{where}: empty text; every sentence must be speakable.")
        seen.add(s.sentence_id)
        out.append(s)
    return tuple(out)


def unit(seed: int, *keys: object) -> float:
    """A uniform number in [0, 1) that depends only on the seed and the keys."""
    h = hashlib.sha256("|".join(map(str, (seed, *keys))).encode()).digest()
    return int.from_bytes(h[:8], "little") / 2.0 ** 64


def rng_for(seed: int, *keys: object) -> np.random.Generator:
    h = hashlib.sha256("|".join(map(str, (seed, *keys))).encode()).digest()
    return np.random.default_rng(int.from_bytes(h[:8], "little"))


def sentence_split(bank: tuple[Sentence, ...], seed: int) -> dict[str, str]:
    """sentence_id -> "train" | "test", stratified by (emotion, explicitness)."""
    groups: dict[tuple[str, str], list[Sentence]] = {}
    for s in bank:
        groups.setdefault((s.emotion, s.explicitness), []).append(s)
    out = {}
    for key, group in sorted(groups.items()):
        ranked = sorted(group, key=lambda s: unit(seed, "sentence-split", s.sentence_id))
        n_test = max(1, int(round(TEST_SENTENCE_SHARE * len(group)))) if len(group) > 1 else 0
        for i, s in enumerate(ranked):
            out[s.sentence_id] = "test" if i < n_test else "train"
    return out


def speaker_split() -> dict[str, str]:
    return {s.id: ("test" if s.id in TEST_SPEAKERS else "train") for s in SPEAKERS}


def full_design(seed: int = 0, *, extra_takes: int = 0) -> list[Item]:
    """Every item of the crossing (and ``extra_takes`` congruent re-takes per sentence)."""
    bank = load_bank()
    s_split = sentence_split(bank, seed)
    spk_side = speaker_split()
    sides = {side: [s.id for s in SPEAKERS if spk_side[s.id] == side] for side in ("train", "test")}

    # (sentence, voice emotion, take) triples
    emotions = MAIN + EXTRA
    cells: list[tuple[Sentence, str, int]] = []
    rank = {e: 0 for e in emotions}
    for s in bank:
        r = rank[s.emotion]
        rank[s.emotion] += 1
        others = [e for e in emotions if e != s.emotion]
        conflict = [others[(CONFLICT_VOICES * r + j + seed) % len(others)] for j in range(CONFLICT_VOICES)]
        cells += [(s, s.emotion, t) for t in range(CONGRUENT_TAKES + extra_takes)]
        cells += [(s, v, 0) for v in conflict]

    # which cells cross sides (-> dev), then speakers in rotation per (side, voice emotion) so
    # every speaker gets a balanced mix of emotions (per-speaker normalisation relies on it)
    items: list[Item] = []
    queues: dict[tuple[str, str], int] = {}
    order = sorted(cells, key=lambda c: unit(seed, "speaker-order", c[0].sentence_id, c[1], c[2]))
    for s, v, take in order:
        side = s_split[s.sentence_id]
        crossed = unit(seed, "dev", s.sentence_id, v, take) < DEV_SHARE
        spk_side_ = ("test" if side == "train" else "train") if crossed else side
        pool = sides[spk_side_]
        q = queues.get((spk_side_, v), int(unit(seed, "rotation", spk_side_, v) * len(pool)))
        queues[(spk_side_, v)] = q + 1
        speaker = pool[q % len(pool)]
        split = side if not crossed else "dev"
        utt = f"{s.sentence_id}-{v[:3]}-{speaker}" + (f"-t{take}" if take else "")
        items.append(Item(utt, s, v, speaker, split, take))
    items.sort(key=lambda it: it.utt_id)
    return items


def _pick(items: list[Item], n: int, seed: int, *, ensure: bool) -> list[Item]:
    """Deterministic stratified sample of ``n`` items.

    Strata are (split, voice emotion, congruent). With ``ensure``, train and test first get one
    congruent item per emotion (so every emotion appears there as voice and as text); the rest
    is shared in proportion to the strata sizes (largest remainder). Within a stratum, items are
    taken in a seed-hashed order that prefers the crossing over extra takes.
    """
    if n >= len(items):
        return list(items)
    key = lambda it: (it.take, unit(seed, "pick", it.utt_id))  # noqa: E731
    strata: dict[tuple, list[Item]] = {}
    for it in sorted(items, key=key):
        strata.setdefault((it.split, it.voice_emotion, it.congruent), []).append(it)
    chosen: list[Item] = []
    if ensure:
        for (split, _v, cong), group in sorted(strata.items()):
            if split in ("train", "test") and cong and len(chosen) < n:
                chosen.append(group.pop(0))
    left = n - len(chosen)
    total = sum(len(g) for g in strata.values())
    if left > 0 and total:
        names = sorted(strata)
        exact = [left * len(strata[k]) / total for k in names]
        quota = [int(x) for x in exact]
        for i in sorted(range(len(names)), key=lambda i: (quota[i] - exact[i], names[i]))[: left - sum(quota)]:
            quota[i] += 1
        for k, q in zip(names, quota):
            chosen += strata[k][:q]
    return sorted(chosen, key=lambda it: it.utt_id)


def select(seed: int = 0, n: int | None = None, conflict_rate: float | None = None) -> list[Item]:
    """The items of one corpus: the full crossing, or a deterministic subsample of it."""
    if n is not None and n < 1:
        raise DesignError(f"n={n}: ask for at least 1 utterance (the full design has {len(full_design(seed))}).")
    if conflict_rate is None:
        items = full_design(seed)
        return _pick(items, n, seed, ensure=True) if n is not None else items
    if not 0.0 <= conflict_rate <= 1.0:
        raise DesignError(f"conflict_rate={conflict_rate}: give a share between 0 and 1, e.g. 0.5.")
    pool = full_design(seed, extra_takes=EXTRA_TAKES)
    conflict = [it for it in pool if not it.congruent]
    congruent = [it for it in pool if it.congruent]
    target = n if n is not None else len(full_design(seed))
    n_conf = int(round(target * conflict_rate))
    n_cong = target - n_conf
    if n_conf > len(conflict) or n_cong > len(congruent):
        # shrink the corpus rather than break the asked-for rate
        scale = min(len(conflict) / max(n_conf, 1e-9), len(congruent) / max(n_cong, 1e-9))
        target = int(target * scale)
        n_conf = int(round(target * conflict_rate))
        n_cong = target - n_conf
        print(f"[synth] conflict_rate={conflict_rate}: the design has {len(conflict)} conflict and {len(congruent)} "
              f"congruent items, so the corpus shrinks to {target} utterances.")
    return sorted(_pick(congruent, n_cong, seed, ensure=True) + _pick(conflict, n_conf, seed, ensure=False),
                  key=lambda it: it.utt_id)


__all__ = ["Item", "Sentence", "DesignError", "full_design", "select", "load_bank", "sentence_split", "speaker_split",
           "rng_for"]
