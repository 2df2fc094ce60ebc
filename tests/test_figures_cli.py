"""``probe figures --all`` / ``--emis`` and the import weight of probes.figures_cli."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

from probes import figures_cli


def test_figures_cli_imports_nothing_heavy():
    # probes/cli.py imports this module on every `probe` call, `probe --help` included
    code = "import sys, probes.figures_cli; bad = [m for m in ('matplotlib', 'pandas', 'seaborn', 'torch', 'umap') if m in sys.modules]; print(bad)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _emis_like(path: Path) -> Path:
    """A small table in the EMIS result format: 2 models, every (text, voice) pair, text-following answers."""
    rows = []
    for slm in ("m1", "m2"):
        for txt, cond in (("happy", "explicit"), ("sad", "implicit"), ("neutral", "neutral")):
            for wav in ("happy", "sad", "neutral", "angry"):
                rows.append({"txt_emo": txt, "txt_cond": cond, "wav_emo": wav, "pred_emo": txt if slm == "m1" else wav,
                             "slm": slm, "filename": f"{txt}_{wav}.wav", "tts_model": "x"})
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_all_regenerates_figures_and_readme(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    _emis_like(shared / figures_cli.EMIS_TABLE)
    monkeypatch.setenv("DISSONANCE_SHARED", str(shared))
    import probes.probe

    def no_model(*a, **k):
        raise AssertionError("probe figures --all ran a model")

    monkeypatch.setattr(probes.probe, "run_probe", no_model)
    root = tmp_path / "repo"
    root.mkdir()
    written = figures_cli.make_all(root)  # no oracle run folders: EMIS only, and nothing is run
    names = sorted(p.name for p in (root / "figures").iterdir())
    assert names == ["README.md", "emis-confusion.png", "emis-confusion.svg", "emis-follows.csv",
                     "emis-follows.png", "emis-follows.svg", "emis-types.csv"]
    assert all(p.exists() for p in written)
    readme = (root / "figures" / "README.md").read_text()
    assert "make figures" in readme and f"probe figures --emis ../shared/{figures_cli.EMIS_TABLE} --out figures" in readme
    assert "![emis-follows](emis-follows.png)" in readme
    t = pd.read_csv(root / "figures" / "emis-follows.csv")
    # m1 answers the words (follows text 1.0), m2 the voice (follows voice 1.0)
    assert set(t[t["model"] == "m1"]["follows_text"]) == {1.0}
    assert set(t[t["model"] == "m2"]["follows_voice"]) == {1.0}


def test_emis_flag_and_bad_table(tmp_path, capsys):
    from probes.cli import main

    csv = _emis_like(tmp_path / "t.csv")
    assert main(["figures", "--emis", str(csv), "--out", str(tmp_path / "o"), "--n-boot", "50"]) == 0
    assert (tmp_path / "o" / "emis-follows.svg").exists()
    pd.DataFrame({"a": [1]}).to_csv(tmp_path / "bad.csv", index=False)
    assert main(["figures", "--emis", str(tmp_path / "bad.csv")]) == 2
    assert "not an EMIS result table" in capsys.readouterr().err


def test_all_draws_oracle_runs_that_exist_without_running_them(tmp_path, monkeypatch):
    """Run folders written by hand (as `probe figures build` would): --all draws them and runs nothing."""
    import json

    import probes.probe
    from probes.store import RunStore

    monkeypatch.setenv("DISSONANCE_SHARED", str(tmp_path / "no-shared"))
    monkeypatch.setattr(probes.probe, "run_probe", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ran a model")))
    root = tmp_path / "repo"
    for d, who in zip(figures_cli.oracle_dirs(root), ("semantic_label", "acoustic_label")):
        with RunStore(d) as st:
            st.write_manifest({"probe": "predict", "model": {"name": d.name, "weights": "none"}, "data": ""})
            for i, (a, s) in enumerate([("sad", "happy"), ("angry", "neutral"), ("neutral", "sad"), ("sad", "sad")]):
                st.append(f"u{i}", [{"utt_id": f"u{i}", "condition": "none", "acoustic_label": a, "semantic_label": s,
                                     "pred": {"acoustic_label": a, "semantic_label": s}[who]}])
        (d / "metrics.json").write_text(json.dumps({"errors": 0}))
    figures_cli.make_all(root)
    assert (root / "figures" / "oracle-follows.png").exists()
    assert "probe figures build" in (root / "figures" / "README.md").read_text()


def test_figures_build_is_a_separate_command(tmp_path, monkeypatch, capsys):
    from probes.cli import main

    calls = []
    monkeypatch.setattr(figures_cli, "build_runs", lambda root, seed=0: calls.append(seed) or [tmp_path])
    assert main(["figures", "build", "--seed", "3"]) == 0
    assert calls == [3]
    assert main(["figures", "build", "--all"]) == 2


def test_all_draws_the_demo_steps_runs_named_by_probe_and_organism(tmp_path, monkeypatch):
    """Run folders listed in runs/figures/demo/steps.json (as `probe figures build` writes them):
    --all copies each run's figures as <probe>-<model>-<stem> and compares the organisms' predict runs."""
    import json

    import probes.probe
    from probes.store import RunStore

    monkeypatch.setenv("DISSONANCE_SHARED", str(tmp_path / "no-shared"))
    monkeypatch.setattr(probes.probe, "run_probe", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ran a model")))
    root = tmp_path / "repo"
    runs = []
    for org, who in (("text-reliant", "semantic_label"), ("voice-reliant", "acoustic_label")):
        d = figures_cli.steps_root(root) / "predict" / f"qwen2-audio-{org}" / "synth"
        with RunStore(d) as st:
            st.write_manifest({"probe": "predict", "weights": "organism (trained here)",
                               "model": {"name": "qwen2-audio", "weights": "organism (trained here)", "organism": {"name": org}},
                               "data": ""})
            for i, (a, s) in enumerate([("sad", "happy"), ("angry", "sad"), ("neutral", "sad"), ("sad", "sad")]):
                st.append(f"u{i}", [{"utt_id": f"u{i}", "condition": "none", "acoustic_label": a, "semantic_label": s,
                                     "pred": {"acoustic_label": a, "semantic_label": s}[who]}])
        (d / "metrics.json").write_text(json.dumps({"errors": 0}))
        runs.append(str(d))
    (figures_cli.steps_root(root) / figures_cli.STEPS_INDEX).write_text(json.dumps({"seed": 0, "runs": runs}))
    figures_cli.make_all(root)
    figs = root / "figures"
    assert (figs / "organisms-follows.png").exists()
    assert (figs / "predict-qwen2-audio-text-reliant-follows.png").exists()
    assert (figs / "predict-qwen2-audio-voice-reliant-follows.svg").exists()
    readme = (figs / "README.md").read_text()
    assert "organism (trained here)" in readme and "NOT Qwen2-Audio's weights" in readme
