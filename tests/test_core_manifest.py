"""Manifest validation: every bad input gives one clear error naming the row and the fix."""

from __future__ import annotations

from pathlib import Path

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
    cases = {"silent.wav": "silent", "empty.wav": "no samples", "truncated.wav": "cannot be read|cut short|ends inside",
             "garbage.wav": "cannot be read", "nan.wav": "NaN", "missing.wav": "not found"}
    for name, msg in cases.items():
        with pytest.raises(AudioError, match=msg) as e:
            load_audio(tmp_path / name)
        assert name in str(e.value)
    _sf_write(tmp_path / "long.wav", np.tile(good, 10), 16000)
    with pytest.raises(AudioError, match="longer than the model accepts"):
        load_audio(tmp_path / "long.wav", max_seconds=1.0)
    assert len(load_audio(tmp_path / "long.wav", max_seconds=1.0, too_long="truncate")) == 16000


# ---- issue 11: audio cut short, manifests with near-duplicate ids, JSONL ---------------------
def test_a_wav_whose_body_is_cut_in_half_is_an_error_naming_it(tmp_path):
    rng = np.random.default_rng(0)
    _sf_write(tmp_path / "whole.wav", (0.1 * rng.standard_normal(16000)).astype(np.float32), 16000)
    full = (tmp_path / "whole.wav").read_bytes()
    (tmp_path / "half.wav").write_bytes(full[: len(full) // 2])
    (tmp_path / "head60.wav").write_bytes(full[:60])
    assert len(load_audio(tmp_path / "whole.wav")) == 16000
    for name in ("half.wav", "head60.wav"):
        with pytest.raises(AudioError, match="truncated") as e:
            load_audio(tmp_path / name)
        assert name in str(e.value) and "\n" not in str(e.value)


def test_truncated_audio_becomes_an_error_row_naming_the_file(tiny_manifest, tmp_path):
    import shutil

    from probes.cli import main
    from probes.store import read_errors

    folder = tmp_path / "data"
    shutil.copytree(Path(tiny_manifest).parent, folder)
    df = pd.read_csv(folder / "manifest.csv", dtype=str, keep_default_na=False)
    victim = folder / df["audio_path"][0]
    victim.write_bytes(victim.read_bytes()[:60])
    out = tmp_path / "run"
    # the audio conditions of modality-ablation read the file; the oracle itself needs no audio
    assert main(["run", "modality-ablation", "--model", "voice-oracle", "--data", str(folder / "manifest.csv"),
                 "--out", str(out), "--quiet", "--set", "n_boot=20"]) == 0
    err = read_errors(out)
    assert len(err) >= 1 and all(victim.name in e and "truncated" in e for e in err["error"])


def _rows(tiny_manifest):
    df = pd.read_csv(tiny_manifest, dtype=str, keep_default_na=False)
    df["audio_path"] = [str(Path(tiny_manifest).parent / a) for a in df["audio_path"]]
    return df.to_dict("records")


@pytest.mark.parametrize("other", ["utt00 ", " utt00", "UTT00"])
def test_near_duplicate_ids_are_refused_naming_the_row(tiny_manifest, tmp_path, other):
    rows = _rows(tiny_manifest)
    rows[3]["utt_id"] = other
    with pytest.raises(ManifestError, match=r"row 5 has utt_id .* row 2"):
        Manifest.read(_write(tmp_path, rows))


def test_a_given_congruent_that_disagrees_with_the_labels_is_refused(tiny_manifest, tmp_path):
    rows = _rows(tiny_manifest)
    k = next(i for i, r in enumerate(rows) if r["acoustic_label"] != r["semantic_label"] and r["semantic_label"])
    rows[k]["congruent"] = "true"
    with pytest.raises(ManifestError, match=rf"row {k + 2} .*congruent='true'"):
        Manifest.read(_write(tmp_path, rows))
    rows[k]["congruent"] = "perhaps"
    with pytest.raises(ManifestError, match=rf"row {k + 2} .*'perhaps'"):
        Manifest.read(_write(tmp_path, rows))
    rows[k]["congruent"] = "FALSE"  # agreeing, in another spelling: fine
    assert Manifest.read(_write(tmp_path, rows)).df["congruent"][k] == "false"


def test_jsonl_manifests_are_read(tiny_manifest, tmp_path):
    import json

    rows = _rows(tiny_manifest)
    p = tmp_path / "m.jsonl"
    p.write_text("".join(json.dumps({**r, "congruent": None}) + "\n" for r in rows))
    m = Manifest.read(p)
    ref = Manifest.read(tiny_manifest)
    assert list(m.df["utt_id"]) == list(ref.df["utt_id"]) and list(m.df["congruent"]) == list(ref.df["congruent"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(rows[0]) + "\n{oops\n")
    with pytest.raises(ManifestError, match="line 2 is not valid JSON"):
        Manifest.read(bad)
    misnamed = tmp_path / "m.csv"
    misnamed.write_text(p.read_text())
    with pytest.raises(ManifestError, match="JSON lines, not CSV"):
        Manifest.read(misnamed)


def test_unknown_label_suggests_an_option_that_exists_and_it_works(tiny_manifest, tmp_path, capsys):
    import json

    from probes.cli import build_parser, main

    rows = _rows(tiny_manifest)
    rows[0]["acoustic_label"] = "furious"
    p = _write(tmp_path, rows)
    with pytest.raises(ManifestError, match="--label-map") as e:
        Manifest.read(p)
    assert "probe run" in str(e.value)
    assert "--label-map" in build_parser()._subparsers._group_actions[0].choices["run"].format_help()
    lm = tmp_path / "map.json"
    lm.write_text(json.dumps({"furious": "angry"}))
    out = tmp_path / "run"
    assert main(["run", "predict", "--model", "voice-oracle", "--data", str(p), "--label-map", str(lm), "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "manifest.json").read_text())["label_map"] == {"furious": "angry"}
