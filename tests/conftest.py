"""Shared fixtures. Fixture modules live in tests/fixtures/ (one per area) and are loaded here.

Markers: ``slow`` (opt in with --run-slow), ``corpus`` (needs ../shared/data; runs when present),
``gpu`` (opt in with --run-gpu).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")

ROOT = Path(__file__).resolve().parents[1]
# numba caches the compiled librosa kernels beside the package (site-packages) by default; test
# processes compiling the same kernel at once (xdist workers, several sessions on one machine) left
# a corrupt cache there, and librosa.yin then crashed with a segfault. One cache folder per worker.
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba" / os.environ.get("PYTEST_XDIST_WORKER", "main")))
SHARED = Path(os.environ.get("DISSONANCE_SHARED", ROOT.parent / "shared"))

pytest_plugins = [
    f"tests.fixtures.{p.stem}" for p in sorted((Path(__file__).parent / "fixtures").glob("*.py")) if not p.stem.startswith("_")
]


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="run tests marked slow")
    parser.addoption("--run-gpu", action="store_true", help="run tests marked gpu")


def pytest_collection_modifyitems(config, items):
    skip_slow = pytest.mark.skip(reason="slow: opt in with --run-slow")
    skip_gpu = pytest.mark.skip(reason="gpu: opt in with --run-gpu")
    skip_corpus = pytest.mark.skip(reason=f"corpus: {SHARED / 'data'} is not present")
    for item in items:
        if "slow" in item.keywords and not config.getoption("--run-slow"):
            item.add_marker(skip_slow)
        if "gpu" in item.keywords and not config.getoption("--run-gpu"):
            item.add_marker(skip_gpu)
        if "corpus" in item.keywords and not (SHARED / "data").exists():
            item.add_marker(skip_corpus)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    p = SHARED / "data"
    if not p.exists():
        pytest.skip(f"{p} is not present")
    return p
