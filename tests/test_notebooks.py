"""Every notebook in notebooks/ executes headless on small runs made here, so a notebook that
breaks fails the suite. The runs come from tiny random-weight models and reference predictors:
the notebooks are checked for running, not for their numbers.

The notebooks find their runs through the ``DISSONANCE_RUNS`` environment variable (a folder of
run folders); each test gives its notebook its own folder.
"""

from __future__ import annotations

from pathlib import Path

from probes.data.manifest import Manifest
from probes.probe import run_probe
from probes.registry import MODELS, PROBES

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def execute(name: str, runs: Path, monkeypatch) -> None:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{name}: clear its outputs before committing"
    monkeypatch.setenv("DISSONANCE_RUNS", str(runs))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors


def test_every_notebook_has_a_test():
    tested = {"01_conflict_corpus.ipynb", "02_cue_tokens.ipynb", "03_inside_the_model.ipynb", "04_fas.ipynb"}
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
