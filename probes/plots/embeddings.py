"""Embedding maps: 2-D UMAP (or saved PCA/UMAP coordinates) of pooled representations,
coloured by the voice's label and by the words' label, with an on-disk cache of the fits.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from probes.plots.style import (
    ANSWER, CUE_COLORS, CUE_CONDITIONS, CUES, DPI, EMOTION_COLORS, OTHER, SERIES_COLORS, SPAN_COLORS, TEXT, VOICE,
    _ci, _figure, _finish, _int_layers, _metric_color, _num, _series_palette, _slug, _span_palette, _suptitle,
    label_order, save, style,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

def umap_coords(X: np.ndarray, *, cache: str | Path | None = None, n_neighbors: int = 15, min_dist: float = 0.1,
                seed: int = 0, reducer: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """2-D UMAP coordinates of ``X`` [n, dim], cached on disk by content and parameters.

    UMAP is slow to import and to fit (numba compiles on first use), so a figure drawn twice
    from the same embeddings fits once. ``reducer`` replaces UMAP (tests, or PCA for a quick look).
    """
    X = np.ascontiguousarray(np.asarray(X, dtype=np.float32))  # [n, dim]
    key = hashlib.sha256(X.tobytes() + repr((X.shape, n_neighbors, min_dist, seed)).encode()).hexdigest()[:20]
    path = Path(cache) / f"umap-{key}.npy" if cache is not None else None
    if path is not None and path.exists():
        return np.load(path)
    if reducer is None:
        import umap  # heavy: only here

        nn = max(2, min(n_neighbors, len(X) - 1))
        reducer = umap.UMAP(n_neighbors=nn, min_dist=min_dist, random_state=seed).fit_transform
    Y = np.asarray(reducer(X), dtype=np.float32)  # [n, 2]
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, Y)
    return Y


def umap_scatter(X: np.ndarray | None, acoustic: Sequence[str], semantic: Sequence[str], *,
                 coords: np.ndarray | None = None, cache: str | Path | None = None, title: str | None = None,
                 axis_name: str = "UMAP", out: str | Path | None = None, **umap_kw) -> "Figure":
    """Two panels of the same 2-D map: coloured by the voice's label and by the words' label.

    Clusters that follow the left panel mean the representation keeps the voice; clusters
    that follow the right one mean it keeps the words.
    """
    Y = coords if coords is not None else umap_coords(X, cache=cache, **umap_kw)
    acoustic = [str(v) for v in acoustic]
    semantic = [str(v) if v not in (None, "", "nan") else "" for v in semantic]
    labels = label_order(list(acoustic) + list(semantic))
    with style():
        fig = _figure(9.0, 4.2)
        axes = fig.subplots(1, 2, sharex=True, sharey=True)
        for ax, lab, name, edge in ((axes[0], acoustic, "coloured by the voice's label", VOICE),
                                    (axes[1], semantic, "coloured by the words' label", TEXT)):
            lab = np.asarray(lab, dtype=object)
            for l in labels:
                m = lab == l
                if m.any():
                    ax.scatter(Y[m, 0], Y[m, 1], s=14, color=EMOTION_COLORS.get(l, "#444444"), label=l,
                               alpha=0.85, linewidths=0)
            if (lab == "").any():
                m = lab == ""
                ax.scatter(Y[m, 0], Y[m, 1], s=10, color="#DDDDDD", label="(none)", linewidths=0)
            ax.set_title(name, fontsize=10, color=edge)
            ax.set_xticks([]); ax.set_yticks([])
            ax.set_xlabel(f"{axis_name} 1"); ax.set_ylabel(f"{axis_name} 2")
        # one legend for both panels, holding every label either panel shows
        by_name = {}
        for ax in axes:
            for h, n in zip(*ax.get_legend_handles_labels()):
                by_name.setdefault(n, h)
        names = [l for l in labels if l in by_name] + [n for n in by_name if n not in labels]
        fig.legend([by_name[n] for n in names], names, loc="outside right center", fontsize=8, markerscale=1.4)
        if title:
            _suptitle(fig, title)
        return _finish(fig, out)


def _umap_inputs(path: Path, rows, man: dict):
    """(embeddings [n, dim], acoustic labels, semantic labels) from an archive, or None.

    Labels come from the archive (``acoustic_label`` / ``semantic_label``) or, by ``utt_id``,
    from the run's rows or its data manifest.
    """
    with np.load(path, allow_pickle=False) as z:
        key = "embeddings" if "embeddings" in z else ("X" if "X" in z else None)
        if key is None:
            return None
        X = z[key]
        ids = [str(u) for u in z["utt_id"]] if "utt_id" in z else None
        ac = [str(v) for v in z["acoustic_label"]] if "acoustic_label" in z else None
        se = [str(v) for v in z["semantic_label"]] if "semantic_label" in z else None
    if (ac is None or se is None) and ids is not None:
        lab = _labels_by_utt(rows, man)
        ac = ac or [lab.get(u, ("", ""))[0] for u in ids]
        se = se or [lab.get(u, ("", ""))[1] for u in ids]
    if ac is None or len(ac) != len(X) or X.ndim != 2:
        return None
    return X, ac, se or [""] * len(X)


def _archive_ids(path: Path) -> list[str] | None:
    with np.load(path, allow_pickle=False) as z:
        return [str(u) for u in z["utt_id"]] if "utt_id" in z else None


def _saved_coords(run_dir: Path, path: Path, ids: list[str] | None) -> np.ndarray | None:
    """Coordinates the run already computed (``umap.csv`` of the embeddings probe), in the
    archive's item order, so the figure shows the map the run recorded (UMAP or PCA) unfitted."""
    import re

    import pandas as pd

    csv = run_dir / "umap.csv"
    m = re.fullmatch(r"(.+)-layer(\d+)", path.stem)
    if ids is None or m is None or not csv.exists():
        return None
    t = pd.read_csv(csv, dtype={"utt_id": str, "pool": str})
    t = t[(t["pool"] == m.group(1)) & (t["layer"] == int(m.group(2)))].drop_duplicates("utt_id").set_index("utt_id")
    if not set(ids) <= set(t.index):
        return None
    return t.loc[ids, ["x", "y"]].to_numpy(dtype=np.float32)  # [n, 2]


def _labels_by_utt(rows, man: dict) -> dict[str, tuple[str, str]]:
    if not rows.empty and {"utt_id", "acoustic_label"} <= set(rows.columns):
        sem = rows["semantic_label"] if "semantic_label" in rows else [""] * len(rows)
        return {str(u): (str(a), str(s)) for u, a, s in zip(rows["utt_id"], rows["acoustic_label"], sem)}
    try:
        from probes.data.manifest import Manifest

        m = Manifest.read(man["data"], check_audio=False)
        return {u: (a, s) for u, a, s in zip(m.df["utt_id"], m.df["acoustic_label"], m.df["semantic_label"])}
    except Exception:
        return {}
