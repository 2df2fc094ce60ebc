"""The embedded default, end to end: ``probe demo`` / ``make demo``.

1. builds the synthetic conflict corpus under ``ROOT/corpus`` (once; reused afterwards);
2. runs ``predict`` with the two reference predictors (``text-oracle``, ``voice-oracle``): the
   sanity checks of the metrics (text-dominance 1.0 and 0.0), not results;
3. runs every later step registered in ``STEPS`` (the trained FAS, ...);
4. writes an HTML report per run and prints where everything is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

# Extra demo steps: callables (corpus_manifest_path, root, seed, quick) -> list of run folders.
STEPS: list[Callable] = []


def run_demo(root: Path, *, seed: int = 0, n: int | None = None, quick: bool = False) -> list[Path]:
    from probes.data.manifest import Manifest
    from probes.data.synth import build
    from probes.probe import run_probe
    from probes.registry import MODELS, PROBES
    from probes.report import write_report

    root = Path(root)
    corpus = root / "corpus" / "manifest.csv"
    if not corpus.exists():
        print(f"[demo] building the synthetic conflict corpus in {corpus.parent} ...")
        build(corpus.parent, seed=seed, n=n if n is not None else (240 if quick else None))
    data = Manifest.read(corpus)
    print(f"[demo] corpus: {len(data)} utterances, {int((data.df['congruent'] == 'false').sum())} conflict items")
    runs = []
    for model in ("text-oracle", "voice-oracle"):
        out = root / "runs" / "predict" / model
        run_probe(PROBES["predict"](), MODELS[model](), data, out, seed=seed, progress=True)
        runs.append(out)
    _load_steps()
    for step in STEPS:
        runs += step(corpus, root, seed, quick)
    print("\n[demo] run folders and reports:")
    for r in runs:
        rep = write_report(r)
        print(f"  {r}\n    report: {rep}")
    return runs


def _load_steps() -> None:
    """Packages that add demo steps register them on import."""
    import importlib

    for mod in ("fas.demo",):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise
