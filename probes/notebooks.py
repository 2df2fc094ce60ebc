"""What the notebooks in notebooks/ share: where the run folders are, which runs exist, and what
to run when one is missing.

The notebooks read run folders only. By default they read the demo's runs (``runs/demo`` of this
checkout, what ``make demo`` writes), wherever the notebook is started from (Jupyter, nbconvert
inside ``notebooks/``, the tests); the environment variable ``DISSONANCE_RUNS`` names another
folder of run folders (searched recursively), e.g. ``DISSONANCE_RUNS=runs jupyter lab``.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO_ROOT = REPO / "runs" / "demo"
ENV = "DISSONANCE_RUNS"

# what makes a run of each probe, said when a notebook finds none ({data}: the demo's corpus)
MAKE = {
    "predict": "make demo   (or: probe run predict --model voice-oracle --data {data} --out DIR)",
    "token-": "probe run token-all --model qwen2-audio --model-path DIR --data {data} --out {root}/token-all/qwen2-audio/{dataset}",
    "fas-conflict": "make demo   (or: probe fas experiment --data {data} --out DIR)",
}
ALM_RUN = "probe run {probe} --model qwen2-audio --model-path DIR --data {data} --out {root}/{probe}/qwen2-audio/{dataset}"


def runs_root() -> Path:
    """``$DISSONANCE_RUNS`` if set (relative paths against the current folder, then this checkout), else runs/demo."""
    env = os.environ.get(ENV)
    if not env:
        return DEMO_ROOT
    p = Path(env).expanduser()
    if not p.is_absolute() and not p.exists() and (REPO / p).exists():
        p = REPO / p
    return p.resolve()


def find_runs(root: Path | None = None):
    """One line per run folder under ``root``: probe, model, weights, dataset, run (a path)."""
    import pandas as pd

    from probes.store import read_manifest

    root = Path(root) if root is not None else runs_root()
    if not root.exists():
        raise FileNotFoundError(f"no run folders: {root} does not exist. Run `make demo` (it writes {DEMO_ROOT}), "
                                f"or set {ENV} to a folder that holds run folders.")
    out = []
    for p in sorted(root.rglob("manifest.json")):
        if (p.parent / "rows.jsonl").exists():
            m = read_manifest(p.parent)
            model = m.get("model")
            out.append({"probe": m.get("probe"), "model": model.get("name") if isinstance(model, dict) else model,
                        "weights": m.get("weights"), "dataset": Path(str(m.get("data", ""))).parent.name, "run": p.parent})
    runs = pd.DataFrame(out, columns=["probe", "model", "weights", "dataset", "run"])
    if runs.empty:
        raise FileNotFoundError(f"no run folders under {root}. Run `make demo`, or set {ENV} to a folder of run folders.")
    return runs


def run_of(runs, probe: str, model: str | None = None, make: str | None = None) -> Path | None:
    """The first run of ``probe`` (``probe`` ending in ``*``: a prefix), or None after saying which command makes one."""
    if probe.endswith("*"):
        hit = runs[runs["probe"].astype(str).str.startswith(probe[:-1])]
    else:
        hit = runs[runs["probe"] == probe]
    if model is not None:
        hit = hit[hit["model"].astype(str).str.startswith(model)]
    if len(hit):
        return Path(hit["run"].iloc[0])
    root = runs_root()
    name = probe.rstrip("*")
    data = next(iter(sorted(root.glob("data/*/manifest.csv"))), root / "data" / "synth" / "manifest.csv")
    cmd = make or MAKE.get(name, ALM_RUN).format(probe=name, data=data, root=root, dataset=data.parent.name)
    print(f"No `{probe}` run{f' of {model}' if model else ''} among the runs read here: this section is skipped. "
          f"Make one with:\n    {cmd}\n(into the folder the notebook reads, or set {ENV}).")
    return None


def data_of(run: Path):
    """The data manifest a run folder names (old relative paths resolved as the report does)."""
    from probes.data.manifest import Manifest
    from probes.report import data_path
    from probes.store import read_manifest

    return Manifest.read(data_path(read_manifest(run), Path(run)), check_audio=False)
