"""Broken files in a long run become error rows (counted), never the end of the run, unless strict."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from probes.adapter import Adapter, Prediction
from probes.audio import AudioError
from probes.data.manifest import Manifest
from probes.probe import run_probe
from probes.registry import PROBES
from probes.store import read_errors, read_rows


class LoudnessModel(Adapter):
    """Needs audio: answers 'angry' for loud input, 'sad' for quiet input."""

    name = "loudness"
    weights = "oracle"

    def predict(self, examples):
        return [Prediction(label="angry" if float(np.abs(e.audio).mean()) > 0.05 else "sad") for e in examples]


def _broken_corpus(folder, tiny_manifest):
    import soundfile as sf

    base = pd.read_csv(tiny_manifest, dtype=str, keep_default_na=False)
    base["audio_path"] = [str(tiny_manifest.parent / p) for p in base["audio_path"]]
    rng = np.random.default_rng(0)
    broken = {
        "silent": lambda p: sf.write(p, np.zeros(16000, np.float32), 16000),
        "truncated": lambda p: p.write_bytes(open(base["audio_path"][0], "rb").read()[:40]),
        "garbage": lambda p: p.write_bytes(rng.bytes(5000)),
        "stereo_8k": lambda p: sf.write(p, 0.3 * rng.standard_normal((8000, 2)).astype(np.float32), 8000),
        "nan": lambda p: sf.write(p, np.full(1600, np.nan, np.float32), 16000, subtype="FLOAT"),
    }
    rows = base.to_dict("records")
    for name, make in broken.items():
        p = folder / f"{name}.wav"
        make(p)
        rows.append({**rows[0], "utt_id": name, "audio_path": str(p)})
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    return folder / "manifest.csv"


def test_bad_utterances_become_error_rows(tmp_path, tiny_manifest):
    m = Manifest.read(_broken_corpus(tmp_path, tiny_manifest))
    out = run_probe(PROBES["predict"](), LoudnessModel(), m, tmp_path / "run", batch_size=3, progress=False)
    rows, errs = read_rows(out), read_errors(out)
    # the stereo 8 kHz file is fine after downmix + resampling; four files are broken
    assert set(errs["utt_id"]) == {"silent", "truncated", "garbage", "nan"}
    assert len(rows) == 8 + 1 and "stereo_8k" in set(rows["utt_id"])
    assert all(name in msg for name, msg in zip(errs["utt_id"], errs["error"]))
    import json

    assert json.loads((out / "metrics.json").read_text())["errors"] == 4


def test_strict_stops_at_the_first_bad_file(tmp_path, tiny_manifest):
    m = Manifest.read(_broken_corpus(tmp_path, tiny_manifest))
    with pytest.raises(AudioError):
        run_probe(PROBES["predict"](), LoudnessModel(), m, tmp_path / "run", strict=True, progress=False)
