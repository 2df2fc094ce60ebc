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


# ---- issue 11: the command line ---------------------------------------------------------------
def _walk(parser, path):
    import argparse

    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sp in a.choices.items():
                yield from _walk(sp, path + [name])
        elif not isinstance(a, argparse._HelpAction):
            yield path, a


def test_every_option_has_a_line_of_help():
    from probes.cli import build_parser

    missing = [(" ".join(p), a.option_strings or a.dest) for p, a in _walk(build_parser(), ["probe"])
               if not a.help]
    assert missing == []


def test_run_help_lists_the_probes(capsys):
    from probes.registry import PROBES

    with pytest.raises(SystemExit) as e:
        main(["run", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name in PROBES.names():
        assert f"\n  {name} " in out
    assert "--too-long" in out and "--seed" in out


def test_run_probe_help_lists_its_options_with_types_and_defaults(capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", "token-shuffle", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "options of probe token-shuffle" in out
    assert "cue_template  (str, default \"brackets\")" in out and "One of: brackets" in out
    assert "n_levels  (int, default 3)" in out and "levels per cue concept" in out


def test_the_catalog_is_what_the_registries_hold(tmp_path, monkeypatch):
    from probes.cli import catalog
    from probes.registry import MODELS, PROBES, summary

    monkeypatch.setenv("DISSONANCE_CACHE", str(tmp_path))
    for what, reg in (("models", MODELS), ("probes", PROBES)):
        want = {n: summary(o) for n, o in reg.items()}
        assert catalog(what) == want        # computed
        assert (tmp_path / f"catalog-{what}.json").exists()
        assert catalog(what) == want        # from the cache


def test_list_models_imports_no_numpy_once_the_catalog_is_cached(tmp_path, monkeypatch):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "DISSONANCE_CACHE": str(tmp_path), "PYTHONPATH": str(root)}
    code = ("import sys; from probes.cli import main; main(['list', 'models']); "
            "print('HEAVY', sorted(m for m in ('numpy', 'pandas', 'torch', 'transformers') if m in sys.modules))")
    from probes.cli import catalog

    # others edit the sources while the suite runs, and an edit rightly invalidates the cache:
    # warm it here, just before the listing, and allow one retry for an edit in between
    for _ in range(2):
        monkeypatch.setenv("DISSONANCE_CACHE", str(tmp_path))
        listing = "".join(f"{n:24s} {d}\n" for n, d in catalog("models").items())
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
        if "HEAVY []" in out:
            break
    assert "text-oracle" in out and out.split("HEAVY")[0] == listing
    assert "HEAVY []" in out


def test_organism_reaches_the_model_options(tiny_manifest, tmp_path, monkeypatch):
    from probes.models.oracles import VoiceOracle
    from probes.registry import MODELS

    seen = {}

    class Spy(VoiceOracle):
        @classmethod
        def from_cli(cls, **kw):
            seen.update(kw)
            return cls()

    MODELS.discover()
    monkeypatch.setitem(MODELS._entries, "spy", Spy)
    out = tmp_path / "run"
    assert main(["run", "predict", "--model", "spy", "--organism", "text-reliant", "--data", str(tiny_manifest),
                 "--out", str(out), "--quiet"]) == 0
    assert seen.get("organism") == "text-reliant"
    assert json.loads((out / "manifest.json").read_text())["model_options"]["organism"] == "text-reliant"


def test_progress_bar_shows_no_estimate_before_warmup():
    import io

    from probes.progress import progress_bar

    f = io.StringIO()
    with progress_bar(total=100, desc="x", file=f, mininterval=0, miniters=1, warmup=3) as bar:
        for _ in range(3):
            bar.update(1)
        early = f.getvalue()
        for _ in range(5):
            bar.update(1)
    late = f.getvalue()[len(early):]
    assert "<?" in early and "s/unit" not in early and "unit/s" not in early
    assert "<?" not in late.split("\r")[-1]


def test_demo_output_is_quiet(recwarn):
    import warnings

    from probes.progress import quiet_libraries

    quiet_libraries()
    warnings.warn("constrained_layout not applied because axes sizes collapsed to zero.", UserWarning)
    assert not [w for w in recwarn if "constrained_layout" in str(w.message)]
    from transformers.utils import logging as tlog

    quiet_libraries()
    assert not tlog.is_progress_bar_enabled()
