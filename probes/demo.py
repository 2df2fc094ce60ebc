"""The embedded default, end to end: ``probe demo`` / ``make demo``.

1. builds the synthetic conflict corpus under ``ROOT/data/<dataset>/`` (once; reused afterwards);
2. runs ``predict`` with the two reference predictors (``text-oracle``, ``voice-oracle``): the
   sanity checks of the metrics (text-dominance 1.0 and 0.0), not results;
3. runs every later step registered in ``STEPS``: the model organisms
   (``probes/models/organisms/demo.py``) and the FAS conflict experiment (``fas/demo.py``);
4. writes ``report.html`` and ``figures/`` into every run folder, and ``ROOT/index.json``
   (every run folder and report of this demo) and prints where everything is.

Layout (the same ``<probe>/<model>/<dataset>/`` as ``probe run``, without the time stamp: a
demo run that is started again resumes the same folder)::

    ROOT/data/synth/manifest.csv               the corpus (``synth-n96`` for ``--quick``)
    ROOT/predict/text-oracle/synth/            a run folder: manifest.json, rows.jsonl, metrics.json,
                                               figures/, report.html
    ROOT/fas-conflict/fas-untrained/synth/     ...
    ROOT/index.json                            the run folders of the last demo (notebooks read it)

``--quick`` builds a 96-utterance corpus and asks every step for its quick variant (fewer arms
and epochs): a check that everything runs, in a few minutes, not a measurement. The test suite
runs it once per session (tests/fixtures/reports.py) and executes the notebooks on its output.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

# Extra demo steps: callables (corpus_manifest_path, root, seed, quick) -> list of run folders;
# each writes its runs at ``run_dir(root, probe, model, corpus_manifest_path)``.
STEPS: list[Callable] = []

QUICK_N = 96
INDEX = "index.json"


def dataset_name(n: int | None, quick: bool) -> str:
    n = n if n is not None else (QUICK_N if quick else None)
    return "synth" if n is None else f"synth-n{n}"


def run_dir(root: Path, probe: str, model: str, corpus: Path | str) -> Path:
    """Where a demo step writes its run: ``ROOT/<probe>/<model>/<dataset>/`` (dataset = the corpus folder)."""
    return Path(root).resolve() / probe / model / Path(corpus).resolve().parent.name


def run_demo(root: Path, *, seed: int = 0, n: int | None = None, quick: bool = False) -> list[Path]:
    from probes.data.manifest import Manifest
    from probes.data.synth import build
    from probes.probe import run_probe
    from probes.registry import MODELS, PROBES
    from probes.report import write_report

    root = Path(root).resolve()  # run manifests then name the corpus by an absolute path
    corpus = root / "data" / dataset_name(n, quick) / "manifest.csv"
    if not corpus.exists():
        print(f"[demo] building the synthetic conflict corpus in {corpus.parent} ...")
        build(corpus.parent, seed=seed, n=n if n is not None else (QUICK_N if quick else None))
    data = Manifest.read(corpus)
    print(f"[demo] corpus: {len(data)} utterances, {int((data.df['congruent'] == 'false').sum())} conflict items")
    runs = []
    for model in ("text-oracle", "voice-oracle"):
        out = run_dir(root, "predict", model, corpus)
        run_probe(PROBES["predict"](), MODELS[model](), data, out, seed=seed, progress=True)
        runs.append(out)
    _load_steps()
    for step in STEPS:
        runs += [Path(r).resolve() for r in step(corpus, root, seed, quick)]
    print("\n[demo] run folders and reports:")
    index = []
    for r in runs:
        rep = write_report(r)
        index.append({"run": str(r), "report": str(rep)})
        print(f"  {r}\n    report: {rep}")
    (root / INDEX).write_text(json.dumps({"corpus": str(corpus), "quick": quick, "seed": seed, "runs": index}, indent=1))
    from probes.notebooks import DEMO_ROOT

    env = "" if root == DEMO_ROOT.resolve() else f"DISSONANCE_RUNS={root} "
    print(f"\n[demo] the notebooks read these runs: {env}jupyter lab notebooks/")
    return runs


def _load_steps() -> None:
    """Packages that add demo steps register them on import."""
    import importlib

    for mod in ("probes.models.organisms.demo", "fas.demo"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise
