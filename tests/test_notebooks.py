"""Every notebook in notebooks/ executes headless, so a notebook that breaks fails the suite:

* on the demo's real output (``probe demo --quick``, run once per session), as a user would
  after ``make demo``: a section whose run the demo does not make says which command makes it;
* on small runs made here from tiny random-weight models, for the sections the demo has no run
  for (cue tokens, the looking-inside probes).

The notebooks are checked for running, not for their numbers. They find their runs through the
``DISSONANCE_RUNS`` environment variable (default: runs/demo of the checkout).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from probes.data.manifest import Manifest
from probes.probe import run_probe
from probes.registry import MODELS, PROBES

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def execute(name: str, runs: Path, monkeypatch, cwd: Path = ROOT) -> str:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{name}: clear its outputs before committing"
    monkeypatch.setenv("DISSONANCE_RUNS", str(runs))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    return "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                     if o.get("output_type") == "stream")


@pytest.mark.parametrize("name", ["01_conflict_corpus.ipynb", "02_cue_tokens.ipynb", "03_inside_the_model.ipynb",
                                  "04_fas.ipynb"])
def test_notebook_on_the_demo_output(name, quick_demo, monkeypatch):
    """Started inside notebooks/ as nbconvert and Jupyter do: paths in the run folders still resolve."""
    out = execute(name, quick_demo, monkeypatch, cwd=NOTEBOOKS)
    if name in ("02_cue_tokens.ipynb", "03_inside_the_model.ipynb"):  # the demo makes no such run: say how
        assert "Make one with:" in out and "probe run" in out


def test_runs_root_defaults_to_the_demo(monkeypatch, tmp_path):
    from probes.notebooks import DEMO_ROOT, find_runs, runs_root

    monkeypatch.delenv("DISSONANCE_RUNS", raising=False)
    assert runs_root() == DEMO_ROOT == ROOT / "runs" / "demo"
    monkeypatch.setenv("DISSONANCE_RUNS", str(tmp_path / "nothing"))
    with pytest.raises(FileNotFoundError, match="make demo"):
        find_runs(runs_root())


def test_old_relative_data_paths_resolve(tmp_path, tiny_manifest, monkeypatch):
    """Runs written before manifests stored absolute paths named the data relative to where the
    command ran (the repository root); readers find it from anywhere."""
    import json
    import os

    from probes.notebooks import data_of
    from probes.report import data_path
    from tests.fixtures.reports import write_predict_run

    run = write_predict_run(tiny_manifest, tmp_path / "run")
    man = json.loads((run / "manifest.json").read_text())
    assert Path(man["data"]).is_absolute()
    man["data"] = os.path.relpath(tiny_manifest, tmp_path)  # as if run from tmp_path
    (run / "manifest.json").write_text(json.dumps(man))
    monkeypatch.chdir(NOTEBOOKS)
    assert data_path(man, run) == Path(tiny_manifest).resolve()
    assert len(data_of(run)) == 8


def test_every_notebook_has_a_test():
    tested = {"01_conflict_corpus.ipynb", "02_cue_tokens.ipynb", "03_inside_the_model.ipynb", "04_fas.ipynb",
              "05_test_time_scaling.ipynb"}
    assert {p.name for p in NOTEBOOKS.glob("*.ipynb")} == tested


def test_01_conflict_corpus(tmp_path, tiny_manifest, monkeypatch):
    data = Manifest.read(tiny_manifest)
    for model in ("text-oracle", "voice-oracle"):
        run_probe(PROBES["predict"](), MODELS[model](), data, tmp_path / model, progress=False)
    execute("01_conflict_corpus.ipynb", tmp_path, monkeypatch)


def test_02_cue_tokens(tmp_path, tiny_manifest, monkeypatch):
    data = Manifest.read(tiny_manifest)
    run_probe(PROBES["token-all"](), MODELS["qwen2-audio"].from_cli(tiny=True), data, tmp_path / "token-all", progress=False)
    execute("02_cue_tokens.ipynb", tmp_path, monkeypatch)


def test_03_inside_the_model(toy_runs, tmp_path, monkeypatch):
    root = next(iter(toy_runs.values())).parent
    execute("03_inside_the_model.ipynb", root, monkeypatch)


def test_04_fas(tmp_path, tiny_manifest, monkeypatch):
    data = Manifest.read(tiny_manifest)
    fas = MODELS["fas"].from_cli(tiny=True)
    for name, opts in (("predict", {}), ("attention-share", {}), ("attribution", {"n_steps": 8}),
                       ("activation-patching", {})):
        run_probe(PROBES[name](**opts), fas, data, tmp_path / name, progress=False)
    execute("04_fas.ipynb", tmp_path, monkeypatch)


def test_05_test_time_scaling(tmp_path, monkeypatch):
    """No tts runs under DISSONANCE_RUNS: the notebook makes its own tiny random-weight sweep and says so."""
    monkeypatch.setenv("DISSONANCE_TTS_WORK", str(tmp_path / "work"))
    out = execute("05_test_time_scaling.ipynb", tmp_path / "no-runs", monkeypatch)
    assert "RANDOM-WEIGHT sweep" in out and "NOT results" in out
    assert len(list((tmp_path / "work" / "runs").iterdir())) == 10


def test_run_manifest_names_the_data_by_an_absolute_path(tmp_path, tiny_manifest, monkeypatch):
    from probes.store import read_manifest

    monkeypatch.chdir(Path(tiny_manifest).parent)
    data = Manifest.read(Path(tiny_manifest).name)  # a relative path, as a user types it
    run_probe(PROBES["predict"](), MODELS["voice-oracle"](), data, tmp_path / "run", progress=False)
    recorded = Path(read_manifest(tmp_path / "run")["data"])
    assert recorded.is_absolute() and recorded == Path(tiny_manifest).resolve()


def test_demo_layout(quick_demo):
    """The layout the README shows: ROOT/data/<dataset>/, ROOT/<probe>/<model>/<dataset>/ with a
    report and figures, ROOT/index.json; run manifests name the corpus by an absolute path."""
    import json

    from probes.store import read_manifest

    index = json.loads((quick_demo / "index.json").read_text())
    corpus = Path(index["corpus"])
    assert corpus == quick_demo.resolve() / "data" / "synth-n96" / "manifest.csv" and corpus.exists()
    runs = [Path(e["run"]) for e in index["runs"]]
    assert quick_demo.resolve() / "predict" / "text-oracle" / "synth-n96" in runs
    assert quick_demo.resolve() / "predict" / "voice-oracle" / "synth-n96" in runs
    for run in runs:
        rel = run.relative_to(quick_demo.resolve())
        assert len(rel.parts) == 3 and rel.parts[2] == "synth-n96", rel
        assert (run / "report.html").exists() and any((run / "figures").glob("*.png"))
        assert Path(read_manifest(run)["data"]) == corpus
    assert not (quick_demo / "runs").exists()  # not runs/demo/runs/...


def test_every_demo_report_fits_1400px(quick_demo, browser):
    """Every report `probe demo --quick` writes, as written (audio beside the corpus, figures embedded),
    in headless Chromium (tests/test_browser.py); here so that one worker builds the demo once."""
    import json

    from tests.fixtures.reports import layout_check

    index = json.loads((quick_demo / "index.json").read_text())
    assert len(index["runs"]) >= 3
    for entry in index["runs"]:
        page = Path(entry["report"])
        assert page.stat().st_size < 3_000_000, page  # audio is not inlined
        res = layout_check(page, 1400, browser=browser)
        assert res["scroll_width"] <= res["viewport"] and res["too_wide"] == [], (page, res["too_wide"][:10])
        assert res["broken_images"] == [], page
