"""Manifest validation: every bad input gives one clear error naming the row and the fix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from probes.audio import AudioError, load_audio
from probes.data.manifest import Manifest, ManifestError
from probes.labels import LabelError, canonical, parse_answer


def _write(tmp_path, rows, name="manifest.csv"):
    p = tmp_path / name
    pd.DataFrame(rows).to_csv(p, index=False)
    return p


def test_roundtrip_and_congruence(tiny_manifest, tmp_path):
    m = Manifest.read(tiny_manifest)
    assert len(m) == 8
    assert list(m.df["congruent"][:3]) == ["true", "false", "false"]
    out = m.write(tmp_path / "copy" / "manifest.csv")
    m2 = Manifest.read(out)
    assert m2.sha256() == m.sha256() or list(m2.df["utt_id"]) == list(m.df["utt_id"])
    assert m2.audio_path("utt00").exists()


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda r: r.pop("acoustic_label"), "row 2 .*has no acoustic_label"),
        (lambda r: r.update(acoustic_label="furious"), "row 2 .*'furious'.*canonical"),
        (lambda r: r.update(audio_path="nope.wav"), "row 2 .*does not exist"),
        (lambda r: r.update(split="holdout"), "unknown split"),
        (lambda r: r.update(utt_id=""), "empty utt_id"),
    ],
)
def test_bad_manifests(tmp_path, mutate, match):
    (tmp_path / "a.wav").write_bytes(b"")
    row = dict(utt_id="u1", audio_path="a.wav", acoustic_label="sad", semantic_label="happy")
    mutate(row)
    p = _write(tmp_path, [row, dict(utt_id="u2", audio_path="a.wav", acoustic_label="sad")])
    with pytest.raises(ManifestError, match=match):
        Manifest.read(p)


def test_missing_column(tmp_path):
    p = _write(tmp_path, [dict(utt_id="u1", audio_path="a.wav")])
    with pytest.raises(ManifestError, match="missing column.*acoustic_label"):
        Manifest.read(p)


def test_duplicate_ids(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"")
    p = _write(tmp_path, [dict(utt_id="u", audio_path="a.wav", acoustic_label="sad")] * 2)
    with pytest.raises(ManifestError, match="'u' appears more than once"):
        Manifest.read(p)


def test_not_a_csv(tmp_path):
    with pytest.raises(ManifestError, match="no such manifest"):
        Manifest.read(tmp_path / "missing.csv")


def test_labels():
    assert canonical("Anger") == "angry"
    assert canonical("W", {"W": "angry"}) == "angry"
    with pytest.raises(LabelError, match="not in this corpus' mapping"):
        canonical("Q", {"W": "angry"})
    assert parse_answer("Sad.") == "sad"
    assert parse_answer("I'd say it sounds happy and a bit angry") is None


# ---- bad audio (fuzz-style: generated broken files) -------------------------------------
def _sf_write(path, data, sr, subtype=None):
    import soundfile as sf

    sf.write(str(path), data, sr, subtype=subtype)


def test_bad_audio_files(tmp_path):
    rng = np.random.default_rng(0)
    good = (0.1 * rng.standard_normal(8000)).astype(np.float32)
    _sf_write(tmp_path / "stereo44.wav", np.stack([good, good], 1).repeat(3, 0), 44100)
    w = load_audio(tmp_path / "stereo44.wav", 16000)
    assert w.ndim == 1 and abs(len(w) - 24000 * 16000 / 44100) < 2
    _sf_write(tmp_path / "silent.wav", np.zeros(8000, np.float32), 16000)
    _sf_write(tmp_path / "empty.wav", np.zeros(0, np.float32), 16000)
    full = (tmp_path / "stereo44.wav").read_bytes()
    (tmp_path / "truncated.wav").write_bytes(full[:30])
    (tmp_path / "garbage.wav").write_bytes(rng.bytes(2000))
    nan = good.copy()
    nan[100] = np.nan
    _sf_write(tmp_path / "nan.wav", nan, 16000, "FLOAT")
    cases = {"silent.wav": "silent", "empty.wav": "no samples", "truncated.wav": "cannot be read",
             "garbage.wav": "cannot be read", "nan.wav": "NaN", "missing.wav": "not found"}
    for name, msg in cases.items():
        with pytest.raises(AudioError, match=msg) as e:
            load_audio(tmp_path / name)
        assert name in str(e.value)
    _sf_write(tmp_path / "long.wav", np.tile(good, 10), 16000)
    with pytest.raises(AudioError, match="longer than the model accepts"):
        load_audio(tmp_path / "long.wav", max_seconds=1.0)
    assert len(load_audio(tmp_path / "long.wav", max_seconds=1.0, too_long="truncate")) == 16000
