"""The embedded default corpus: synthetic speech whose words say one emotion and voice another.

``build(out)`` writes ``out/manifest.csv`` and ``out/wav/*.wav`` (16 kHz mono 16-bit), spoken by
libespeak-ng from the ``espeakng-loader`` wheel (no system package, no download). The words come
from the project's own sentence bank (``bank.json``); the voice's emotion is prosody drawn from
per-emotion profiles with per-utterance jitter (``voices.py``); who says what, and the splits
that hold out speakers and sentences at once, are in ``design.py``. docs/synthetic-corpus.md has
the measured numbers.

Manifest columns: the standard ones (``acoustic_label`` = the voice emotion, ``semantic_label`` =
the sentence's emotion) plus ``explicitness``, ``voice`` (speaker's stock timbre and pitch),
``take`` and the drawn prosody ``p_pitch, p_range, p_rate, p_volume, p_breath, p_tremolo, p_rough,
p_tilt, p_wordgap, p_ending``, ``p_intensity`` (1 = full, ``MILD_INTENSITY`` for a mild take)
and ``duration_s``.

Re-running on an existing folder is safe: each wav is written to a temporary name and moved into
place, the manifest is replaced last, and only then are wavs that the new manifest no longer
names removed. At no moment does a manifest name a missing file. ``out`` must be new, empty, or
an earlier (maybe unfinished) build of the same settings; any other folder is refused unless
``force=True``, and even then no file this command did not write is deleted (a foreign
``manifest.csv`` is moved aside to ``manifest.csv.orig``).

The same ``seed`` gives the same manifest and byte-identical audio (espeak's pitch flutter is
switched off for that reason; see engine.py), whatever else the process synthesised before.
"""

from __future__ import annotations

import os
from pathlib import Path

SMALL_N = 80  # the test-sized corpus: all splits, 7 emotions, 8 speakers, a few seconds to build


def build(
    out: Path,
    *,
    seed: int = 0,
    n: int | None = None,
    conflict_rate: float | None = None,
    progress: bool = True,
    force: bool = False,
) -> Path:
    """Build the synthetic conflict corpus in ``out``; return the manifest path.

    ``n`` subsamples the full design (1,120 items) deterministically, stratified so that train,
    dev and test stay populated; ``conflict_rate`` sets the share of conflict items.
    """
    import numpy as np
    import pandas as pd
    import soundfile as sf
    from tqdm.auto import tqdm

    from probes.data.manifest import Manifest
    from probes.data.synth.design import rng_for, select
    from probes.data.synth.voices import SPEAKER_BY_ID, draw, intensity_for, render

    out = Path(out)
    items = select(seed, n, conflict_rate)
    ours = _check_out(out, [it.utt_id for it in items], force=force)
    wav_dir = out / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for it in tqdm(items, desc="synth", unit="utt", disable=not progress):
        spk = SPEAKER_BY_ID[it.speaker]
        # one generator per utterance: the audio does not depend on which other items are built
        rng = rng_for(seed, "prosody", it.utt_id)
        prosody = draw(it.voice_emotion, rng, intensity=intensity_for(seed, it.utt_id))
        wav = render(it.sentence.text, spk, prosody, rng)
        rel = f"wav/{it.utt_id}.wav"
        tmp = out / f"{rel}.part"
        # the format is named because ".part" is no sound-file suffix; 16-bit PCM like write_wav
        sf.write(str(tmp), np.clip(wav, -1.0, 1.0), 16000, subtype="PCM_16", format="WAV")
        os.replace(tmp, out / rel)
        rows.append({
            "utt_id": it.utt_id, "audio_path": rel, "text": it.sentence.text, "sentence_id": it.sentence.sentence_id,
            "acoustic_label": it.voice_emotion, "semantic_label": it.sentence.emotion,
            "congruent": "true" if it.congruent else "false", "speaker": it.speaker, "language": "en",
            "corpus": "synth", "split": it.split, "explicitness": it.sentence.explicitness,
            "voice": f"{spk.stock}@{spk.f0:.0f}+{spk.span:.0f}Hz", "take": str(it.take),
            **prosody.columns(), "duration_s": f"{len(wav) / 16000:.3f}", "seed": str(seed),
        })
    df = pd.DataFrame(rows)
    Manifest(df, out, source=str(out / "manifest.csv"))  # validate before anything is replaced
    tmp = out / "manifest.csv.part"
    df.to_csv(tmp, index=False)
    os.replace(tmp, out / "manifest.csv")
    keep = {Path(r["audio_path"]).name for r in rows}
    for old in ours:  # wavs of an earlier build this command wrote, not named any more
        if old.parent == wav_dir and old.name not in keep and old.exists():
            old.unlink()
    return out / "manifest.csv"


class SynthError(ValueError):
    """An --out folder the synthesiser will not write into; the message says why and what to do."""


def _check_out(out: Path, ids: list[str], *, force: bool) -> list[Path]:
    """Refuse a non-empty ``out`` that is not an earlier build of the same settings (unless
    ``force``); return the wavs an earlier synth build wrote there (the only files ever deleted)."""
    import pandas as pd

    if out.exists() and not out.is_dir():
        raise SynthError(f"{out}: --out is a file; give a folder for manifest.csv and wav/")
    if not out.exists():
        return []
    want = set(ids)
    ours: list[Path] = []
    same = True
    man = out / "manifest.csv"
    prev = None
    if man.exists():
        try:
            prev = pd.read_csv(man, dtype=str, keep_default_na=False)
        except Exception:
            prev = None
        is_synth = (prev is not None and {"utt_id", "audio_path", "corpus", "seed"} <= set(prev.columns)
                    and len(prev) and (prev["corpus"] == "synth").all())
        if is_synth:
            ours = [out / a for a in prev["audio_path"] if Path(a).parent == Path("wav")]
            same = set(prev["utt_id"]) == want
        else:
            prev = None
    foreign = []
    for f in sorted(out.rglob("*")):
        if f.is_dir():
            continue
        rel = f.relative_to(out)
        if rel == Path("manifest.csv"):
            if prev is None:
                foreign.append(rel)
            continue
        if rel == Path("manifest.csv.part"):
            continue
        if rel.parent == Path("wav") and (rel.name.removesuffix(".part").removesuffix(".wav") in want
                                          or f in ours):
            continue
        foreign.append(rel)
    if (foreign or not same) and not force:
        if foreign:
            shown = ", ".join(map(str, foreign[:3])) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            why = f"holds files this command did not write ({shown})"
        else:
            why = "holds a synthetic corpus built with other settings (--seed / --n / --conflict-rate)"
        raise SynthError(f"{out}: {why}; give a new or empty --out folder, or pass --force to write into it "
                         "(files it did not write are kept)")
    if force and man.exists() and prev is None:
        os.replace(man, out / "manifest.csv.orig")  # a user's manifest: set aside, never deleted
    return ours


def build_small(out: Path, *, seed: int = 0, progress: bool = False) -> Path:
    """The test-sized corpus (``SMALL_N`` utterances) that tests/fixtures/synth.py builds."""
    return build(out, seed=seed, n=SMALL_N, progress=progress)


__all__ = ["build", "build_small", "SMALL_N"]
