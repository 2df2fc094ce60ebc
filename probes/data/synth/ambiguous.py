"""Ambiguous items by design: a voice blended between two emotions at a stated ratio.

The default synthetic corpus (``probes.data.synth.build``) gives every utterance one voice
emotion. Here each item's prosody is a *blend*: the knobs of ``voices.py`` drawn for emotion A
and for emotion B from the **same** random state (so both draws carry the same per-utterance
jitter) and interpolated with weight ``r`` on A and ``1 - r`` on B:

| knob | blend |
|---|---|
| ``pitch``, ``range``, ``rate``, ``volume`` (factors) | geometric, ``a**r * b**(1-r)``: with shared jitter this is exactly a draw from the profile whose means are the geometric blend of A's and B's |
| ``breath``, ``tremolo``, ``rough``, ``tilt`` | linear, ``r*a + (1-r)*b`` (exact blend of the profile means where no draw was clipped) |
| ``wordgap`` | linear, rounded to whole 10 ms units |
| ``ending`` (statement / exclamation / question tune) | A's drawn ending with probability ``r``, else B's |

So the voice sits between the two emotions' prosody, at ``r``, and is rendered by
``voices.render`` like any other item (tested: eGeMAPS F0 and loudness of a blend lie between the
two pure emotions' on the same sentence, speaker and jitter).

**The intended soft label is the voice blend**: ``soft_A = r``, ``soft_B = 1 - r``, every other
emotion 0. The words are *not* folded into it. In this corpus the label of an utterance is what
the voice carries (``acoustic_label``, the conflict corpus' ground truth); how far a model lets
the words pull its answer is what the workbench measures, so a soft label that already leaned
toward the words would presuppose the answer. The words are a stated factor instead (column
``words``): ``a`` (a sentence of emotion A), ``b`` (of emotion B) or ``neutral`` (a neutral
sentence), so a run can compare the prediction's distribution on the same blends with words that
agree with one side, the other, or neither. The soft label is a design intention, not an
estimate of what listeners would vote: nobody listened to these items.

Ratios (share of A): ``RATIOS`` = 0.2, 0.35, 0.5, 0.65, 0.8 (0.5: no majority; the distribution
metrics leave ties out of accuracy against the majority label). Pairs (``PAIRS``): emotions
whose prosody and perception overlap (neutral-sad and sad-fear: low arousal and shaky voices;
happy-surprise, fear-surprise, angry-happy: raised pitch and energy; angry-disgust: harsh
voices). Every item uses a ``test`` speaker and a ``test`` sentence of the default corpus' split
(``design.py``), so models trained on the default corpus' ``train`` split (the organisms) never
heard its speaker nor read its sentence; ``split`` is ``test``.

Manifest columns: the standard ones, with ``acoustic_label`` = the majority side of the blend
(at ``r = 0.5``: the first-named emotion A, a nominal choice; use the soft label there) and
``semantic_label`` = the sentence's emotion; ``corpus`` = ``synth-ambiguous``; ``blend_a``,
``blend_b``, ``mix_ratio`` (= r, the share of A), ``words``; the blended prosody ``p_*`` as in
the default corpus; ``soft_<emotion>`` for the seven emotions (shares, summing to 1);
``duration_s``; ``seed``. Note that ``congruent`` is derived from the two labels as everywhere,
so an ambiguous item whose words are B's counts as a conflict item for ``follows-voice``: score
conflict items on the default corpus and ambiguous items with the distribution metrics.

``build(out, n=N)`` writes the N items; ``build(out, n=N, with_corpus=M)`` also builds the
default corpus with M items (``probes.data.synth.build(out / "base", n=M)``, unchanged) and
lists both in ``out/manifest.csv`` (the default corpus' rows with empty soft cells). The same
seed gives the same manifest and byte-identical audio. CLI:
``probe data synth --out D --ambiguous N [--with-corpus M]``. The default ``probe data synth``
output is not touched by any of this.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

PAIRS: tuple[tuple[str, str], ...] = (
    ("neutral", "sad"), ("happy", "surprise"), ("angry", "disgust"),
    ("fear", "surprise"), ("sad", "fear"), ("angry", "happy"),
)
RATIOS: tuple[float, ...] = (0.2, 0.35, 0.5, 0.65, 0.8)  # share of the pair's first emotion in the voice
WORDS: tuple[str, ...] = ("a", "b", "neutral")
CORPUS = "synth-ambiguous"


class AmbiguousError(ValueError):
    """Bad settings or an --out folder the ambiguous builder will not write into; says why and the fix."""


@dataclass(frozen=True)
class AmbiguousItem:
    utt_id: str
    a: str              # emotion A of the blend
    b: str              # emotion B
    ratio: float        # share of A in the voice (and in the soft label)
    words: str          # "a" | "b" | "neutral": whose sentence is spoken
    sentence_id: str
    text: str
    sentence_emotion: str
    explicitness: str
    speaker: str

    @property
    def soft(self) -> dict[str, float]:
        """The intended soft label over the seven emotions (sums to 1)."""
        from probes.data.synth.design import EXTRA, MAIN

        out = {e: 0.0 for e in (*MAIN, *EXTRA)}
        out[self.a] += self.ratio
        out[self.b] += 1.0 - self.ratio
        return out

    @property
    def majority(self) -> str:
        """The side with the larger share (the first-named at 0.5)."""
        return self.a if self.ratio >= 0.5 else self.b


def cells() -> list[tuple[tuple[str, str], float, str]]:
    """Every (pair, ratio, words) combination of the design (6 x 5 x 3 = 90)."""
    return [(p, r, w) for p in PAIRS for r in RATIOS for w in WORDS]


def design(seed: int = 0, n: int = len(PAIRS) * len(RATIOS) * len(WORDS)) -> list[AmbiguousItem]:
    """``n`` items: the 90 cells in a seeded order, each round covering every cell once (so any
    ``n`` >= 90 is balanced, and smaller ``n`` a seeded sample of cells); sentence and speaker
    drawn per item from the default corpus' test split."""
    from probes.data.synth.design import TEST_SPEAKERS, load_bank, rng_for, sentence_split, unit

    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise AmbiguousError(f"--ambiguous {n!r}: give a positive number of ambiguous items (e.g. --ambiguous 30)")
    bank = load_bank()
    split = sentence_split(bank, seed)
    by_emotion: dict[str, list] = {}
    for s in bank:
        if split[s.sentence_id] == "test":
            by_emotion.setdefault(s.emotion, []).append(s)
    for e in {e for p in PAIRS for e in p} | {"neutral"}:
        if not by_emotion.get(e):
            raise AmbiguousError(f"the sentence bank has no test-split sentence of emotion {e!r}; "
                                 "ambiguous items need one per emotion of PAIRS")
    items = []
    all_cells = cells()
    rounds = -(-n // len(all_cells))
    for rnd in range(rounds):
        order = sorted(all_cells, key=lambda c: unit(seed, "ambiguous-order", rnd, c[0], c[1], c[2]))
        for (a, b), r, w in order:
            k = len(items)
            if k == n:
                break
            emo = {"a": a, "b": b, "neutral": "neutral"}[w]
            rng = rng_for(seed, "ambiguous-pick", k)
            pool = by_emotion[emo]
            s = pool[int(rng.integers(len(pool)))]
            spk = TEST_SPEAKERS[int(rng.integers(len(TEST_SPEAKERS)))]
            uid = f"amb{k + 1:04d}_{a}-{b}_r{round(r * 100):02d}_w{w}"
            items.append(AmbiguousItem(uid, a, b, float(r), w, s.sentence_id, s.text, s.emotion, s.explicitness, spk))
    return items


def blend(a: str, b: str, ratio: float, rng: np.random.Generator, *, jitter: float | None = None):
    """Prosody blended ``ratio`` of emotion ``a`` and ``1 - ratio`` of ``b`` (see the module doc).

    Both emotions are drawn with ``voices.draw`` from copies of ``rng``'s state (the same jitter);
    ``rng`` itself is then advanced by one draw plus one uniform (the ending's choice)."""
    from probes.data.synth.voices import draw

    if not 0.0 <= ratio <= 1.0:
        raise AmbiguousError(f"blend ratio {ratio}: must be within 0..1 (the share of {a!r})")
    pa = draw(a, copy.deepcopy(rng), jitter)
    pb = draw(b, copy.deepcopy(rng), jitter)
    draw(a, rng, jitter)   # advance the caller's generator past the draw
    u = float(rng.random())

    def geo(x: float, y: float) -> float:
        return float(np.exp(ratio * np.log(x) + (1 - ratio) * np.log(y)))

    def lin(x: float, y: float) -> float:
        return float(ratio * x + (1 - ratio) * y)

    return replace(
        pa,
        pitch=geo(pa.pitch, pb.pitch), range=geo(pa.range, pb.range), rate=geo(pa.rate, pb.rate),
        volume=geo(pa.volume, pb.volume), breath=lin(pa.breath, pb.breath), tremolo=lin(pa.tremolo, pb.tremolo),
        rough=lin(pa.rough, pb.rough), tilt=lin(pa.tilt, pb.tilt), wordgap=int(round(lin(pa.wordgap, pb.wordgap))),
        ending=pa.ending if u < ratio else pb.ending,
    )


def render_item(it: AmbiguousItem, seed: int = 0) -> tuple[np.ndarray, object]:
    """(audio float32 at 16 kHz, prosody) of one item; depends only on the seed and the item."""
    from probes.data.synth.design import rng_for
    from probes.data.synth.voices import SPEAKER_BY_ID, render

    # one generator per item (keyed by its id): the audio does not depend on the other items built
    rng = rng_for(seed, "ambiguous-prosody", it.utt_id)
    prosody = blend(it.a, it.b, it.ratio, rng)
    return render(it.text, SPEAKER_BY_ID[it.speaker], prosody, rng), prosody


def rows(items: list[AmbiguousItem], out: Path, seed: int, *, progress: bool = False) -> list[dict]:
    import soundfile as sf
    from tqdm.auto import tqdm

    from probes.data.synth.voices import SPEAKER_BY_ID

    wav_dir = out / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    out_rows = []
    for it in tqdm(items, desc="ambiguous", unit="utt", disable=not progress):
        wav, prosody = render_item(it, seed)
        rel = f"wav/{it.utt_id}.wav"
        tmp = out / f"{rel}.part"
        sf.write(str(tmp), np.clip(wav, -1.0, 1.0), 16000, subtype="PCM_16", format="WAV")
        os.replace(tmp, out / rel)
        spk = SPEAKER_BY_ID[it.speaker]
        out_rows.append({
            "utt_id": it.utt_id, "audio_path": rel, "text": it.text, "sentence_id": it.sentence_id,
            "acoustic_label": it.majority, "semantic_label": it.sentence_emotion, "speaker": it.speaker,
            "language": "en", "corpus": CORPUS, "split": "test", "explicitness": it.explicitness,
            "voice": f"{spk.stock}@{spk.f0:.0f}+{spk.span:.0f}Hz", "blend_a": it.a, "blend_b": it.b,
            "mix_ratio": f"{it.ratio:g}", "words": it.words, **prosody.columns(),
            **{f"soft_{e}": f"{v:.4g}" for e, v in it.soft.items()},
            "duration_s": f"{len(wav) / 16000:.3f}", "seed": str(seed),
        })
    return out_rows


def _check_out(out: Path, force: bool) -> None:
    """Refuse a non-empty folder that is not an earlier ambiguous build (unless ``force``)."""
    import pandas as pd

    if out.exists() and not out.is_dir():
        raise AmbiguousError(f"{out}: --out is a file; give a folder for manifest.csv and wav/")
    if not out.exists() or not any(out.iterdir()) or force:
        return
    man = out / "manifest.csv"
    if man.exists():
        try:
            cols = set(pd.read_csv(man, nrows=1, dtype=str).columns)
        except Exception:
            cols = set()
        if {"mix_ratio", "blend_a", "blend_b"} <= cols:
            return
    raise AmbiguousError(f"{out}: holds files that are not an ambiguous build; give a new or empty --out folder, "
                         "or pass --force to write into it (no file is deleted)")


def _earlier_wavs(out: Path) -> list[Path]:
    import pandas as pd

    man = out / "manifest.csv"
    try:
        df = pd.read_csv(man, dtype=str, keep_default_na=False)
    except Exception:
        return []
    if "corpus" not in df or "audio_path" not in df:
        return []
    return [out / a for a in df.loc[df["corpus"] == CORPUS, "audio_path"] if Path(a).parent == Path("wav")]


def build(out: Path, *, n: int, seed: int = 0, with_corpus: int | None = None, progress: bool = True,
          force: bool = False) -> Path:
    """Write ``n`` ambiguous items (and, with ``with_corpus=M``, the default corpus' ``M`` items in
    ``out/base``) and ``out/manifest.csv`` listing them; return the manifest path."""
    import pandas as pd

    from probes.data.manifest import Manifest

    out = Path(out)
    items = design(seed, n)   # bad n refused before anything is written
    if with_corpus is not None and (isinstance(with_corpus, bool) or with_corpus < 1):
        raise AmbiguousError(f"--with-corpus {with_corpus!r}: give a positive number of default-corpus items")
    _check_out(out, force)
    earlier = _earlier_wavs(out)
    out.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(rows(items, out, seed, progress=progress))
    if with_corpus:
        from probes.data.synth import build as build_default

        base = build_default(out / "base", seed=seed, n=with_corpus, progress=progress, force=force)
        bdf = pd.read_csv(base, dtype=str, keep_default_na=False)
        bdf["audio_path"] = "base/" + bdf["audio_path"]
        df = pd.concat([bdf, df], ignore_index=True).fillna("")
    Manifest(df, out, source=str(out / "manifest.csv"))  # validate before the manifest is replaced
    tmp = out / "manifest.csv.part"
    df.to_csv(tmp, index=False)
    os.replace(tmp, out / "manifest.csv")
    keep = {f"{it.utt_id}.wav" for it in items}
    for old in earlier:   # wavs an earlier ambiguous build wrote here and the new manifest does not name
        if old.name not in keep and old.exists():
            old.unlink()
    return out / "manifest.csv"


__all__ = ["PAIRS", "RATIOS", "WORDS", "AmbiguousItem", "AmbiguousError", "design", "blend", "render_item", "build"]
