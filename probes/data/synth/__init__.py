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
p_tilt, p_wordgap, p_ending``, and ``duration_s``.

Re-running on an existing folder is safe: each wav is written to a temporary name and moved into
place, the manifest is replaced last, and only then are wavs that the new manifest no longer
names removed. At no moment does a manifest name a missing file.

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
) -> Path:
    """Build the synthetic conflict corpus in ``out``; return the manifest path.

    ``n`` subsamples the full design (784 items) deterministically, stratified so that train,
    dev and test stay populated; ``conflict_rate`` sets the share of conflict items.
    """
    import numpy as np
    import pandas as pd
    import soundfile as sf
    from tqdm.auto import tqdm

    from probes.data.manifest import Manifest
    from probes.data.synth.design import rng_for, select
    from probes.data.synth.voices import SPEAKER_BY_ID, draw, render

    out = Path(out)
    wav_dir = out / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    items = select(seed, n, conflict_rate)
    rows = []
    for it in tqdm(items, desc="synth", unit="utt", disable=not progress):
        spk = SPEAKER_BY_ID[it.speaker]
        # one generator per utterance: the audio does not depend on which other items are built
        rng = rng_for(seed, "prosody", it.utt_id)
        prosody = draw(it.voice_emotion, rng)
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
    for old in wav_dir.glob("*.wav"):  # wavs of an earlier, larger build
        if old.name not in keep:
            old.unlink()
    return out / "manifest.csv"


def build_small(out: Path, *, seed: int = 0, progress: bool = False) -> Path:
    """The test-sized corpus (``SMALL_N`` utterances) that tests/fixtures/synth.py builds."""
    return build(out, seed=seed, n=SMALL_N, progress=progress)


__all__ = ["build", "build_small", "SMALL_N"]
