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


# ---- issue 11: bad options are refused before any work, with one line ------------------------
@pytest.mark.parametrize("extra, words", [
    (["--set", "cue_template=nope"], ["cue_template", "nope", "brackets"]),
    (["--set", "reference=/nonexistent.csv"], ["reference", "/nonexistent.csv", "no such manifest"]),
    (["--set", "n_levels=three"], ["n_levels", "three", "whole number"]),
    (["--set", "no_such_option=1"], ["no_such_option", "cue_template"]),
    (["--batch-size", "0"], ["--batch-size", "0", "at least 1"]),
    (["--batch-size", "-1"], ["--batch-size", "-1", "at least 1"]),
    (["--limit", "-5"], ["--limit", "-5", "at least 1"]),
])
def test_bad_options_are_one_line_before_any_work(tiny_manifest, tmp_path, capsys, extra, words):
    from probes.cli import main

    out = tmp_path / "run"
    assert main(["run", "token-shuffle", "--model", "voice-oracle", "--data", str(tiny_manifest), "--out", str(out),
                 "--quiet", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(w in err for w in words), err
    assert not out.exists()


def test_run_probe_refuses_a_bad_batch_size():
    from probes.options import OptionError

    with pytest.raises(OptionError, match="--batch-size 0"):
        run_probe(PROBES["predict"](), LoudnessModel(), None, "unused", batch_size=0, progress=False)


def test_a_run_whose_every_unit_failed_exits_non_zero(tmp_path, tiny_manifest, capsys, monkeypatch):
    import soundfile as sf

    from probes.cli import main
    from probes.registry import MODELS

    base = pd.read_csv(tiny_manifest, dtype=str, keep_default_na=False)
    for i in range(len(base)):
        p = tmp_path / f"silent{i}.wav"
        sf.write(p, np.zeros(1600, np.float32), 16000)
        base.loc[i, "audio_path"] = str(p)
    base.to_csv(tmp_path / "manifest.csv", index=False)
    MODELS.discover()
    monkeypatch.setitem(MODELS._entries, "loudness", LoudnessModel)
    out = tmp_path / "run"
    assert main(["run", "predict", "--model", "loudness", "--data", str(tmp_path / "manifest.csv"), "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "every unit failed (8)" in err and "silent0.wav" in err
    assert len(read_errors(out)) == 8  # the error rows are there, and a rerun retries them


# ---- --out of `probe data synth` -----------------------------------------------------------------
def test_synth_refuses_a_folder_it_did_not_write_and_never_deletes_its_files(tmp_path, capsys):
    from probes.cli import main

    out = tmp_path / "mine"
    (out / "wav").mkdir(parents=True)
    (out / "wav" / "holiday.wav").write_bytes(b"RIFF my recording")
    (out / "manifest.csv").write_text("utt_id,audio_path,acoustic_label\nh,wav/holiday.wav,happy\n")
    argv = ["data", "synth", "--out", str(out), "--n", "4", "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "did not write" in err and "--force" in err and "holiday.wav" in err
    assert (out / "wav" / "holiday.wav").read_bytes() == b"RIFF my recording"
    assert (out / "manifest.csv").read_text().startswith("utt_id,audio_path,acoustic_label\nh,")
    assert main(argv + ["--force"]) == 0
    assert (out / "wav" / "holiday.wav").read_bytes() == b"RIFF my recording"  # kept
    assert (out / "manifest.csv.orig").read_text().startswith("utt_id,audio_path,acoustic_label\nh,")  # set aside
    assert len(Manifest.read(out / "manifest.csv")) == 4


def test_synth_reruns_on_its_own_output_and_refuses_other_settings(tmp_path, capsys):
    from probes.cli import main

    out = tmp_path / "corpus"
    argv = ["data", "synth", "--out", str(out), "--n", "4", "--quiet"]
    assert main(argv) == 0
    before = sorted(p.name for p in (out / "wav").iterdir())
    (out / "wav" / before[0]).unlink()
    (out / "manifest.csv").unlink()  # an unfinished build: wavs, no manifest yet
    assert main(argv) == 0
    assert sorted(p.name for p in (out / "wav").iterdir()) == before
    capsys.readouterr()
    assert main(argv[:-1] + ["--seed", "1", "--quiet"]) == 2
    assert "other settings" in capsys.readouterr().err
    assert sorted(p.name for p in (out / "wav").iterdir()) == before


# ---- --model-path and --checkpoint fail at once, saying what to do --------------------------------
@pytest.fixture
def no_network(monkeypatch):
    import socket

    calls = []

    def refuse(*a, **k):
        calls.append(a)
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket, "create_connection", refuse)
    return calls


def test_model_path_offline_hub_id_fails_without_network(no_network, monkeypatch):
    from probes.models.loading import ModelPathError, check_model_path

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", "/nonexistent-hub-cache")
    with pytest.raises(ModelPathError, match="HF_HUB_OFFLINE") as e:
        check_model_path("Qwen/Qwen2-Audio-7B-Instruct")
    assert "Qwen/Qwen2-Audio-7B-Instruct" in str(e.value) and "huggingface-cli download" in str(e.value)
    assert no_network == []


def test_model_path_unreachable_hub_is_one_connect_attempt(monkeypatch):
    import socket

    from probes.models import loading

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(loading, "cached_snapshot", lambda s: None)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False, raising=False)
    calls = []

    def unreachable(addr, timeout=None):
        calls.append((addr, timeout))
        raise OSError("unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    with pytest.raises(loading.ModelPathError, match="no hub is reachable"):
        loading.check_model_path("org/some-model")
    assert len(calls) == 1 and calls[0][1] <= 2.0


def test_model_path_local_folders(tmp_path, no_network):
    from probes.models.loading import ModelPathError, check_model_path

    with pytest.raises(ModelPathError, match="no such folder"):
        check_model_path(str(tmp_path / "nope" / "qwen"))
    (tmp_path / "w").mkdir()
    with pytest.raises(ModelPathError) as e:
        check_model_path(str(tmp_path / "w"))
    assert str(tmp_path / "w" / "config.json") in str(e.value)
    (tmp_path / "w" / "config.json").write_text("{}")
    assert check_model_path(str(tmp_path / "w")) == str(tmp_path / "w")
    assert no_network == []


def test_cli_model_path_nonexistent_is_one_line(tiny_manifest, tmp_path, capsys, no_network):
    from probes.cli import main

    assert main(["run", "predict", "--model", "qwen2-audio", "--model-path", str(tmp_path / "missing"),
                 "--data", str(tiny_manifest), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no such folder" in err and str(tmp_path / "missing") in err
    assert no_network == []


def test_truncated_checkpoint_is_one_line(tiny_manifest, tmp_path, capsys):
    from fas.model import FAS, FASConfig
    from fas.train import save_checkpoint
    from probes.cli import main

    ck = save_checkpoint(FAS(FASConfig()), tmp_path / "ck")
    w = ck / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    assert main(["run", "predict", "--model", "fas", "--checkpoint", str(ck), "--data", str(tiny_manifest),
                 "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(w) in err and "truncated" in err


def test_model_path_hub_id_in_the_local_cache_is_its_snapshot(tmp_path, monkeypatch, no_network):
    from probes.models.loading import check_model_path

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    snap = tmp_path / "models--org--tiny" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    (tmp_path / "models--org--tiny" / "refs").mkdir()
    (tmp_path / "models--org--tiny" / "refs" / "main").write_text("abc123")
    assert check_model_path("org/tiny") == str(snap)
    assert no_network == []
