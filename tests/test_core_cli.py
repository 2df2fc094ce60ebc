"""The `probe` CLI end to end on the tiny manifest and on the real EMIS tables."""

from __future__ import annotations

import json

import pytest

from probes.cli import main


def _json_out(capsys, argv):
    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("model, dominance", [("text-oracle", 1.0), ("voice-oracle", 0.0)])
def test_oracles_pin_the_text_dominance(tiny_manifest, tmp_path, capsys, model, dominance):
    out = tmp_path / model
    assert main(["run", "predict", "--model", model, "--data", str(tiny_manifest), "--out", str(out), "--quiet"]) == 0
    res = _json_out(capsys, ["score", str(out), "--json"])
    assert set(res) == {"all"}
    s = res["all"]
    assert s["text_dominance"] == dominance
    assert s["follows_voice"] == 1 - dominance and s["follows_text"] == dominance
    assert s["n"] == 8 and s["invalid"] == 0
    for key in ("accuracy", "uar", "macro_f1", "cramers_v_acoustic", "cramers_v_semantic"):
        assert key in s
    if model == "voice-oracle":
        assert s["accuracy"] == 1.0 and s["cramers_v_acoustic"] == pytest.approx(1.0)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["weights"] == "oracle" and manifest["git_sha"] and "pandas" in manifest["versions"]


def test_score_a_csv_with_flags(tmp_path, capsys):
    p = tmp_path / "preds.csv"
    p.write_text("who,voice,words,guess\nA,sad,happy,happy\nA,sad,happy,sad\nB,angry,angry,angry\nB,happy,sad,banana\n")
    res = _json_out(capsys, ["score", str(p), "--pred", "guess", "--acoustic", "voice", "--semantic", "words", "--group", "who", "--json"])
    assert res["A"]["follows_text"] == 0.5 and res["A"]["follows_voice"] == 0.5
    assert res["B"]["invalid"] == 1 and res["B"]["accuracy"] == 0.5


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "predcit", "--model", "dummy", "--data", "x.csv"], "Did you mean 'predict'"),
        (["run", "predict", "--model", "dummy", "--data", "/nonexistent/m.csv"], "no such manifest"),
        (["score", "/nonexistent.csv", "--pred", "a", "--acoustic", "b"], "no such file"),
        (["run", "predict", "--model", "dummy", "--data", "x.csv", "--shard", "5/2"], "--shard"),
    ],
)
def test_errors_are_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_score_missing_column(tmp_path, capsys):
    p = tmp_path / "t.csv"
    p.write_text("a,b\nsad,sad\n")
    assert main(["score", str(p), "--pred", "zz", "--acoustic", "a"]) == 2
    assert "no column 'zz'" in capsys.readouterr().err


def test_list_registries(capsys):
    assert main(["list", "models"]) == 0
    out = capsys.readouterr().out
    assert "text-oracle" in out and "voice-oracle" in out
    assert main(["list", "probes"]) == 0
    assert "predict" in capsys.readouterr().out


@pytest.mark.corpus
def test_score_real_emis_tables(shared_data, capsys):
    table = shared_data / "emis-predictions" / "aggregated_results_v4_fullLabel.csv"
    res = _json_out(capsys, ["score", str(table), "--preset", "emis", "--json"])
    assert set(res) == {"desta2", "flamingo3", "qwen2", "salmonn"} or len(res) == 4
    for model, s in res.items():
        assert s["n"] == 1248
        # EMIS: the models follow the words far more than the voice on conflict items
        assert s["follows_text"] > s["follows_voice"], model
        assert 0 <= s["cramers_v_semantic"] <= 1
        assert s["cramers_v_semantic"] > s["cramers_v_acoustic"], model
    # the same table without the preset, columns auto-detected
    res2 = _json_out(capsys, ["score", str(table), "--json"])
    assert res2 == res
    # the older table has raw free-text answers: they are parsed or counted invalid, never dropped
    v3 = _json_out(capsys, ["score", str(shared_data / "emis-predictions" / "aggregated_results_v3.csv"), "--json"])
    assert all(s["n"] == 1248 for s in v3.values())
