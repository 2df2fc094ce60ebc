"""benchmarks/real_model_check.py end to end on tiny instances: every check runs and the table prints."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("real_model_check", ROOT / "benchmarks" / "real_model_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    from tests.fixtures.interventions import make_cue_manifest

    return make_cue_manifest(tmp_path_factory.mktemp("real-check"))


def test_full_table_on_tiny_qwen2_audio(manifest, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DISSONANCE_CACHE", str(tmp_path / "cache"))
    rc = _script().main(["--model", "qwen2-audio", "--tiny", "--manifest", str(manifest), "--n", "6",
                         "--min-agreement", "0", "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    for name in ("audio-reached", "prompt-equality", "closed-vs-generated", "batch-invariance", "token-shuffle"):
        line = next(l for l in out.splitlines() if l.strip().startswith(name))
        assert " PASS " in line, line
    assert rc == 0
    assert (tmp_path / "out" / "token-shuffle" / "metrics.json").exists()


def test_failures_and_skips_are_reported(manifest, capsys):
    # voxtral: no chat template (mistral-common builds its prompts) -> SKIP; an impossible
    # agreement threshold -> FAIL and exit status 1
    rc = _script().main(["--model", "voxtral", "--tiny", "--manifest", str(manifest), "--n", "4",
                         "--min-agreement", "1.01", "--skip", "token-shuffle,batch-invariance"])
    out = capsys.readouterr().out
    assert rc == 1
    assert next(l for l in out.splitlines() if l.strip().startswith("prompt-equality")).split()[1] == "SKIP"
    assert next(l for l in out.splitlines() if l.strip().startswith("closed-vs-generated")).split()[1] == "FAIL"


def test_needs_exactly_one_model_source(manifest):
    with pytest.raises(SystemExit):
        _script().main(["--model", "qwen2-audio", "--manifest", str(manifest)])
