"""The pieces the looking-inside probes share (the contract itself is in ``probes/adapter.py``).

The six probes of ``docs/inside.md`` (``attention-share``, ``linear-probe``,
``activation-patching``, ``logit-lens``, ``attribution``, ``embeddings``) never touch a module
path: they call the adapter's own instruments (``inside_info``, ``inside_read``,
``inside_patch``, ``inside_attribution``), which every model family implements on itself; a
model without one refuses with ``MissingInstrument`` naming the model and the instrument.

Conventions every model keeps (the probes' known-answer tests rely on them):

- *layer* is a residual-stream index: 0 = the input embeddings (the audio merged in), ``i`` =
  the input of block ``i``, ``n_layers`` = the output of the last block *before* the final
  norm. Attention rows use the block index ``0 .. n_layers - 1`` (block ``i`` reads residual ``i``).
- *spans* are token positions of the sequence the model saw, as a half-open ``(start, end)`` pair
  or an array of positions (a prompt split by the audio is not contiguous); they do not overlap.
  Positions no span covers (chat-template tokens, BOS) are reported as ``other`` by the probes,
  so span shares always sum to one.
- the *answer position* is the position whose next-token distribution gives the label (the
  last prompt token in closed-set scoring).
- label scores are over ``labels`` in that order; the probes apply ``softmax`` themselves.

Examples come from the runner (``RunContext.example``): built once per work item, with the
condition's interventions fitted once on the manifest, so an inside probe runs under any
condition a prediction probe can.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np

if TYPE_CHECKING:
    from probes.adapter import Adapter, Example
    from probes.data.manifest import Manifest
    from probes.probe import RunContext, WorkItem

from probes.adapter import VOICE_SPANS  # noqa: E402  (spans that carry the voice; the rest is "text")
LABEL_COLUMNS = ("acoustic_label", "semantic_label", "congruent", "speaker", "sentence_id", "split", "corpus")


# The contract (InsideInfo, Readout, AttributionInputs, the instrument methods, ``require``)
# lives in probes/adapter.py; re-exported here for the probes and older imports.
from probes.adapter import AttributionInputs, InsideInfo, Readout, require  # noqa: E402,F401


# ---------------------------------------------------------------------------------- examples
def make_examples(model: "Adapter", data: "Manifest", items: Sequence["WorkItem"], ctx: "RunContext",
                  template: str | None = None) -> Iterator[tuple["WorkItem", "Example | Exception"]]:
    """Each work item's Example under its condition, built by the runner's ``RunContext.example``
    (interventions fitted once on the manifest); a bad file is an error value, not the end of the run."""
    if ctx.probe is None:  # called outside run_probe
        raise RuntimeError("inside probes get their Examples from the runner: use run_probe (RunContext.set_up)")
    for it in items:
        try:
            yield it, ctx.example(it.utt_id, it.condition)
        except Exception as e:
            yield it, e


def batched(xs: Sequence, n: int) -> Iterator[Sequence]:
    for i in range(0, len(xs), max(1, n)):
        yield xs[i : i + n]


def read_rows(model: "Adapter", data: "Manifest", items: Sequence["WorkItem"], ctx: "RunContext", template: str | None,
              to_rows: Callable[["WorkItem", "Example", Any], list[dict]], **read_kw: Any):
    """The shared ``execute`` loop: examples -> ``inside_read(**read_kw)`` in batches -> rows.

    Yields (item, rows) or (item, Exception): a bad file or a failing batch becomes error rows for
    exactly the units it touched, never the end of the run.
    """
    m = model
    pairs = list(make_examples(model, data, items, ctx, template))
    for it, e in pairs:
        if isinstance(e, Exception):
            yield it, e
    good = [(it, e) for it, e in pairs if not isinstance(e, Exception)]
    for chunk in batched(good, ctx.batch_size):
        try:
            reads = m.inside_read([e for _, e in chunk], **read_kw)
        except Exception as err:
            for it, _ in chunk:
                yield it, err
            continue
        for (it, ex), r in zip(chunk, reads):
            try:
                yield it, to_rows(it, ex, r)
            except Exception as err:
                yield it, err


def label_columns(row: dict) -> dict:
    """The manifest columns every inside row carries, so figures can group without a join."""
    return {c: row.get(c, "") for c in LABEL_COLUMNS}


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    z = np.asarray(x, dtype=np.float64)
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


# ---------------------------------------------------------------------------------- spans
def positions(span) -> np.ndarray:
    """A span as token positions: a half-open ``(start, end)`` pair or an array of positions."""
    if isinstance(span, tuple) and len(span) == 2 and all(isinstance(v, (int, np.integer)) for v in span):
        return np.arange(int(span[0]), int(span[1]))
    return np.asarray(span, dtype=int).reshape(-1)


def with_other(spans: dict, seq_len: int) -> dict[str, np.ndarray]:
    """Span name -> boolean mask [seq_len], plus ``other`` for the positions no span covers.

    Raises on overlapping spans: shares would then be counted twice and not sum to one.
    """
    covered = np.zeros(seq_len, dtype=bool)
    out: dict[str, np.ndarray] = {}
    for name, sp in spans.items():
        pos = positions(sp)
        if len(pos) and (pos.min() < 0 or pos.max() >= seq_len):
            raise ValueError(f"span {name!r} lies outside the sequence of {seq_len} tokens")
        m = np.zeros(seq_len, dtype=bool)
        m[pos] = True
        if (m & covered).any():
            raise ValueError(f"span {name!r} overlaps another span")
        covered |= m
        out[name] = m
    out["other"] = ~covered
    return out


def span_mass(weights: np.ndarray, masks: dict[str, np.ndarray], visible: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Attention mass per span: raw share and share normalised by the span's share of positions.

    weights: [layers, heads, seq] (rows sum to one over the visible keys ``0 .. visible - 1``).
    Returns span -> (share [layers, heads], norm [layers, heads]); ``norm`` = share / (span
    tokens / visible tokens), so 1.0 means "as much as uniform attention would give".
    """
    out = {}
    for name, m in masks.items():
        share = weights[..., m].sum(-1)                                   # [layers, heads]
        n = int(m[:visible].sum())
        norm = share / (n / visible) if n else np.full_like(share, np.nan)
        out[name] = (share, norm)
    return out


# ---------------------------------------------------------------------------------- features on disk
FEATURES = "features"


def unit_file(unit: str) -> str:
    """Relative path of one unit's feature file (stable, shard-safe: named by the unit's hash)."""
    return f"{FEATURES}/units/{hashlib.sha256(unit.encode()).hexdigest()[:24]}.safetensors"


def write_unit_features(run_dir: Path, unit: str, arrays: dict[str, np.ndarray], dtype: str = "float32") -> str:
    """Write one unit's pooled readouts (pool -> [layers, dim]) atomically; returns the relative path.

    safetensors, never pickle: a run folder can be shared and opened without running code.
    """
    from safetensors.numpy import save_file

    rel = unit_file(unit)
    path = Path(run_dir) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({k: np.ascontiguousarray(v, dtype=dtype) for k, v in arrays.items()}, str(tmp))
    os.replace(tmp, path)  # the row that names the file is written after this: a row implies its file
    return rel


def feature_conditions(run_dir: str | Path) -> list[str]:
    """The conditions a feature run holds, ``none`` first."""
    from probes.store import read_rows

    rows = read_rows(Path(run_dir))
    if rows.empty or "condition" not in rows.columns:
        return ["none"]
    conds = sorted(set(rows["condition"].astype(str)))
    return (["none"] if "none" in conds else []) + [c for c in conds if c != "none"]


def read_features(run_dir: str | Path, pool: str, condition: str | None = None):
    """The utterances' pooled readouts of one run (of one ``condition``, or all): (table of rows,
    X [n, layers + 1, dim]).

    The table has one row per unit (utt_id, condition, labels, speaker, sentence_id ...), in the
    order of X. Feature files of shards merged with ``probe merge`` must be copied beside the
    rows (``features/units/``); a missing file raises naming it.
    """
    from safetensors.numpy import load_file

    from probes.store import read_rows

    run_dir = Path(run_dir)
    rows = read_rows(run_dir)
    if rows.empty or "features" not in rows.columns:
        raise FileNotFoundError(f"{run_dir}: no feature rows (run linear-probe or embeddings first)")
    rows = rows.drop_duplicates("unit")
    if condition is not None and "condition" in rows.columns:
        rows = rows[rows["condition"].astype(str) == condition]
        if rows.empty:
            raise KeyError(f"{run_dir}: no feature rows under the condition {condition!r}")
    rows = rows.reset_index(drop=True)
    xs = []
    for rel in rows["features"]:
        p = run_dir / rel
        if not p.exists():
            raise FileNotFoundError(f"{p}: feature file named by a row is missing (copy features/units/ of every shard)")
        z = load_file(str(p))
        if pool not in z:
            raise KeyError(f"{p}: no pool {pool!r}; it has {', '.join(z)}")
        xs.append(z[pool].astype(np.float32))
    return rows, np.stack(xs)                                               # [n, layers + 1, dim]


# ---------------------------------------------------------------------------------- linear probes
@dataclass(frozen=True)
class ProbeScore:
    score: float          # UAR of the out-of-fold predictions (balanced accuracy)
    accuracy: float
    n_scored: int         # items that got an out-of-fold prediction
    n_classes: int
    held_out: str         # what the splits hold out: "speaker+sentence", "sentence", "speaker", "item"


def group_folds(speakers: Sequence[str], sentences: Sequence[str], k: int, seed: int) -> tuple[list[tuple[np.ndarray, np.ndarray]], str]:
    """Train/test index pairs that hold out speakers *and* sentences at once.

    Speakers go into ``k`` folds and sentences into ``k`` folds; for each pair (i, j) the test
    set is the items of speaker fold i and sentence fold j, and the training set is the items
    sharing neither a speaker nor a sentence with them. Every item is tested exactly once over
    the k x k pairs, and no test item's voice or words were seen in training (the prototype
    measured 0.70-0.996 "semantic" scores from memorised sentences: FINDINGS.md lesson 1).
    With fewer than two speakers (or sentences) that side is not held out; with neither, items
    are split at random.
    """
    rng = np.random.default_rng(seed)
    n = len(speakers)

    def fold_of(groups: Sequence[str]) -> tuple[np.ndarray, int]:
        uniq = sorted({str(g) for g in groups})
        if len(uniq) < 2 or "" in uniq:
            return np.zeros(n, dtype=int), 1
        kk = min(k, len(uniq))
        perm = rng.permutation(len(uniq))
        f = {uniq[p]: i % kk for i, p in enumerate(perm)}
        return np.array([f[str(g)] for g in groups]), kk

    fs, ks = fold_of(speakers)
    ft, kt = fold_of(sentences)
    held = "+".join(w for w, kk in (("speaker", ks), ("sentence", kt)) if kk > 1) or "item"
    if held == "item":
        ft, kt = rng.permutation(n) % min(k, n), min(k, n)
    out = []
    for i in range(ks):
        for j in range(kt):
            test = (fs == i) & (ft == j)
            train = (fs != i if ks > 1 else True) & (ft != j if kt > 1 else True)
            if test.any():
                out.append((np.flatnonzero(train), np.flatnonzero(test)))
    return out, held


def fit_probe(X: np.ndarray, y: Sequence[str], speakers: Sequence[str], sentences: Sequence[str], *,
              folds: int = 3, seed: int = 0, C: float = 1.0) -> tuple[ProbeScore, np.ndarray]:
    """Cross-fitted logistic-regression probe: X [n, dim] -> y, splits from ``group_folds``.

    Returns the score and the out-of-fold predictions [n] ("" where a fold could not be fit,
    e.g. its training part held one class only).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from probes.metrics import accuracy, uar

    y = np.asarray([str(v) for v in y], dtype=object)
    pred = np.full(len(y), "", dtype=object)
    pairs, held = group_folds(speakers, sentences, folds, seed)
    for train, test in pairs:
        if len(set(y[train])) < 2:
            continue
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
        clf.fit(X[train], y[train])
        pred[test] = clf.predict(X[test])
    ok = pred != ""
    sc = ProbeScore(score=uar(y[ok], pred[ok]) if ok.any() else float("nan"),
                    accuracy=accuracy(y[ok], pred[ok]) if ok.any() else float("nan"),
                    n_scored=int(ok.sum()), n_classes=len(set(y)), held_out=held)
    return sc, pred


def control_labels(y: Sequence[str], seed: int) -> np.ndarray:
    """The control task: the same labels shuffled across items (class balance kept).

    A probe that scores well on it is measuring its own capacity to fit noise, not content
    (selectivity = target score - control score).
    """
    y = np.asarray([str(v) for v in y], dtype=object)
    return y[np.random.default_rng(seed).permutation(len(y))]


# ---------------------------------------------------------------------------------- pooled-feature probes
def execute_features(probe, model: "Adapter", data: "Manifest", items: Sequence["WorkItem"], ctx: "RunContext",
                     *, pools: Sequence[str], template: str, dtype: str = "float32"):
    """Shared ``execute`` of ``linear-probe`` and ``embeddings``: pooled readouts to files, one row each.

    Each unit's arrays go to ``features/units/<hash>.safetensors`` (pool -> [layers + 1, dim])
    before its row is written, so a resumed run never has a row without its file.
    """
    info = require(model, "hidden", probe.name)
    pools = tuple(pools) or info.pools
    missing = [p for p in pools if p not in info.pools]
    if missing:
        raise ValueError(f"{probe.name}: pools {missing} are not offered by {getattr(model, 'name', '?')} "
                         f"(it has {', '.join(info.pools)}); pass --set pools=[...]")
    if ctx.run_dir is None:
        raise RuntimeError(f"{probe.name} writes feature files and needs the run folder (RunContext.run_dir)")

    def to_rows(it, ex, r):
        arrays = {p: np.asarray(r.pooled[p]) for p in pools}
        rel = write_unit_features(ctx.run_dir, it.unit, arrays, dtype=dtype)
        shapes = {p: list(a.shape) for p, a in arrays.items()}
        return [{"utt_id": it.utt_id, "condition": it.condition, **label_columns(ex.row),
                 "features": rel, "pools": list(pools), "shapes": shapes}]

    yield from read_rows(model, data, items, ctx, template, to_rows, pools=pools)
