"""``embeddings``: pooled representations per layer, saved for UMAP and for your own analysis.

What it measures: nothing by itself; it stores what the model computes so that maps can be
drawn and re-drawn without running the model again. For every utterance and every residual
layer (0 = input embeddings) it keeps the pooled readouts the model offers (ALMs:
``audio-mean``, the mean over the audio span, and ``last``, the answer position; FAS:
``fused``, the embedding its head reads, and the per-stream means).

What it writes:
- ``features/units/<hash>.safetensors`` per utterance (pool -> [layers + 1, dim]); one row per
  utterance names its file: ``utt_id, condition, features, pools, shapes`` + the manifest's
  labels, speaker, sentence_id, split, corpus;
- after the run, ``embeddings/<pool>-layer<L>.npz`` for the layers in ``umap_layers``:
  ``embeddings`` [n, dim], ``utt_id``, ``acoustic_label``, ``semantic_label``, ``congruent``
  (plain arrays, loadable with ``allow_pickle=False``), the format ``probes.plots`` draws;
- ``umap.csv``: ``utt_id, pool, layer, x, y, acoustic_label, semantic_label, congruent``, from
  ``probes.plots.umap_coords``, whose on-disk cache (``.cache/``, keyed by the data and the UMAP
  parameters) means the figures reuse the same fit instead of fitting again.

UMAP is slow the first time in a process (numba compiles, about 15 s); ``--set umap=false``
skips it, ``--set reducer=pca`` uses a PCA projection for a quick look.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from probes.library._inside import execute_features, feature_conditions, read_features
from probes.probe import Conditions, Probe, WorkItem
from probes.registry import PROBES


@PROBES.register("embeddings")
@dataclass(frozen=True)
class Embeddings(Conditions, Probe):
    """Pooled representations per layer saved to the run folder, with a cached UMAP of chosen layers."""

    kind = "inside"
    pools: tuple = field(default=(), metadata={"help": "pooled readouts (default: all the model offers)"})
    umap_layers: tuple = field(default=("middle", "last"), metadata={"help": "layers to map: ints, 'first', 'middle', 'last' or 'all'"})
    umap: bool = field(default=True, metadata={"help": "fit the 2-D maps after the run"})
    reducer: str = field(default="umap", metadata={"help": "umap | pca"})
    n_neighbors: int = field(default=15, metadata={"help": "UMAP n_neighbors"})
    template: str = field(default="plain", metadata={"help": "prompt template"})
    dtype: str = field(default="float32", metadata={"help": "feature file dtype"})

    def execute(self, model, data, items, ctx):
        yield from execute_features(self, model, data, items, ctx, pools=self.pools, template=self.template,
                                    dtype=self.dtype)

    def summarize(self, run_dir: Path) -> dict:
        import json

        import pandas as pd

        from probes.store import count_errors, read_rows

        run_dir = Path(run_dir)
        out: dict = {"errors": count_errors(run_dir), "files": []}
        rows = read_rows(run_dir)
        if rows.empty or "features" not in rows.columns:
            return out
        seed = int(json.loads((run_dir / "manifest.json").read_text()).get("seed", 0))
        coords = []
        for cond, pool in ((c, p) for c in feature_conditions(run_dir)
                           for p in dict.fromkeys(p for ps in rows["pools"] for p in ps)):
            meta, X = read_features(run_dir, pool, cond)                    # [n, layers + 1, dim]
            for layer in pick_layers(self.umap_layers, X.shape[1]):
                path = write_layer(run_dir, pool, layer, meta, X[:, layer], condition=cond)
                out["files"].append(str(path.relative_to(run_dir)))
                if self.umap and len(X) >= 4:
                    Y = project(X[:, layer], cache=run_dir / ".cache", how=self.reducer,
                                n_neighbors=self.n_neighbors, seed=seed)  # [n, 2]
                    coords.append(pd.DataFrame({"utt_id": meta["utt_id"], "condition": cond, "pool": pool, "layer": layer,
                                                "x": Y[:, 0], "y": Y[:, 1],
                                                "acoustic_label": meta["acoustic_label"],
                                                "semantic_label": meta["semantic_label"],
                                                "congruent": meta["congruent"]}))
            if cond == "none" or "none" not in feature_conditions(run_dir):
                out.setdefault("shapes", {})[pool] = list(X.shape)
            else:
                out.setdefault("condition_shapes", {}).setdefault(cond, {})[pool] = list(X.shape)
        if coords:
            pd.concat(coords).to_csv(run_dir / "umap.csv", index=False)
            out["umap"] = {"file": "umap.csv", "reducer": self.reducer}
        return out


def pick_layers(spec, n: int) -> list[int]:
    """Layer indices from a spec of ints and the words first / middle / last / all (n residual layers)."""
    spec = [spec] if isinstance(spec, (str, int)) else list(spec)
    named = {"first": 0, "middle": (n - 1) // 2, "last": n - 1}
    out: list[int] = []
    for s in spec:
        if s == "all":
            out += list(range(n))
        elif isinstance(s, str) and s in named:
            out.append(named[s])
        else:
            i = int(s)
            if not -n <= i < n:
                raise ValueError(f"embeddings: layer {i} does not exist (the model has residual layers 0..{n - 1})")
            out.append(i % n)
    return list(dict.fromkeys(out))


def write_layer(run_dir: Path, pool: str, layer: int, meta, X: np.ndarray, condition: str = "none") -> Path:
    """``embeddings/<pool>-layer<L>.npz`` (``...@<condition>.npz`` for a condition other than none):
    fixed-width string arrays, so no pickle is needed to read it."""
    suffix = "" if condition == "none" else "@" + "".join(ch if ch.isalnum() or ch in "._-+" else "-" for ch in condition)
    path = Path(run_dir) / "embeddings" / f"{pool}-layer{layer}{suffix}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = {c: np.asarray(meta[c].astype(str).tolist(), dtype=str) for c in
            ("utt_id", "acoustic_label", "semantic_label", "congruent", "speaker", "sentence_id")}
    np.savez(path, embeddings=np.asarray(X, dtype=np.float32), **cols)
    return path


def project(X: np.ndarray, *, cache: Path, how: str = "umap", n_neighbors: int = 15, seed: int = 0) -> np.ndarray:
    """2-D coordinates [n, 2] through ``probes.plots.umap_coords`` (same cache the figures use)."""
    from probes.plots import umap_coords

    reducer = None
    if how == "pca":
        def reducer(Z: np.ndarray) -> np.ndarray:
            Z = Z - Z.mean(0)
            _, _, vt = np.linalg.svd(Z, full_matrices=False)
            return Z @ vt[:2].T
        # a PCA map must not be mistaken for a UMAP one in the shared cache
        cache = cache / "pca"
    elif how != "umap":
        raise ValueError(f"embeddings: reducer={how!r}; use umap or pca")
    return umap_coords(X, cache=cache, n_neighbors=n_neighbors, seed=seed, reducer=reducer)
