"""What the looking-inside probes need from a model, and the pieces they share.

The six probes of ``docs/inside.md`` (``attention-share``, ``linear-probe``,
``activation-patching``, ``logit-lens``, ``attribution``, ``embeddings``) never touch a module
path. They talk to an ``Inspectable``: four methods, in the stable words of DESIGN.md (token
spans ``audio`` / ``prompt`` / ``cues`` / ``answer``, layers counted along the residual stream).
``inspectable(model)`` returns the model itself when it already speaks the protocol, or wraps
it in a bridge that maps the protocol onto the model family's own instrumentation (the ALM
adapters' nnsight methods, FAS's ``fas.instrument``). Adding a model family = adding one bridge
here; no probe changes.

Conventions every bridge must keep (the probes' known-answer tests rely on them):

- *layer* in hidden states, the logit lens and patching is a residual-stream index:
  0 = the input embeddings (after the audio projector has been merged in), ``l + 1`` = the
  output of decoder block ``l``, ``n_layers`` = the output of the last block *before* the final
  norm. Attention rows use the block index ``0 .. n_layers - 1`` (block ``l`` reads residual ``l``).
- *spans* are token positions of the sequence the model saw, as a half-open ``(start, end)`` pair
  or an array of positions (a prompt split by the audio is not contiguous); they do not overlap.
  Positions no span covers (chat-template tokens, BOS) are reported as ``other`` by the probes,
  so span shares always sum to one.
- the *answer position* is the position whose next-token distribution gives the label (the
  last prompt token in closed-set scoring).
- label scores are over ``labels`` in that order; the probes apply ``softmax`` themselves.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol, Sequence, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from probes.adapter import Adapter, Example
    from probes.data.manifest import Manifest
    from probes.probe import RunContext, WorkItem

VOICE_SPANS = ("audio", "acoustic")   # spans that carry the voice; every other span is "text"
LABEL_COLUMNS = ("acoustic_label", "semantic_label", "congruent", "speaker", "sentence_id", "split", "corpus")


# ---------------------------------------------------------------------------------- protocol
@dataclass(frozen=True)
class InsideInfo:
    """What a model can show. Probes check ``supports`` before they start."""

    n_layers: int                         # decoder blocks (residual indices run 0 .. n_layers)
    n_heads: int                          # attention heads per block (FAS: learnable queries)
    pools: tuple[str, ...]                # pooled readouts it can give ("audio-mean", "last", "fused" ...)
    spans: tuple[str, ...]                # span names it reports ("audio", "prompt", "cues", "answer" ...)
    supports: frozenset[str]              # of "attention", "hidden", "lens", "patch", "attribution"
    why_not: dict[str, str] = field(default_factory=dict)  # capability -> reason it is missing


@dataclass
class Readout:
    """One utterance seen from inside. Only what was asked for is filled."""

    utt_id: str
    spans: dict[str, Any]                         # name -> (start, end) or an array of positions
    seq_len: int                                  # tokens the model saw
    answer_pos: int                               # position whose logits give the label
    attention: np.ndarray | None = None           # [n_layers, n_heads, seq_len] from the answer position
    pooled: dict[str, np.ndarray] = field(default_factory=dict)  # pool -> [n_layers + 1, dim]
    lens: np.ndarray | None = None                # [n_layers + 1, n_labels] label logits per residual
    final: np.ndarray | None = None               # [n_labels] the model's own label logits (always filled)


@dataclass
class AttributionInputs:
    """A differentiable view of one utterance for captum.

    ``forward(*inputs)`` -> label scores ``[batch, n_labels]``; ``inputs`` and ``baselines`` are
    tensors with a leading batch dim of 1 (ALM: the merged input embeddings ``[1, seq, dim]``;
    FAS: the two feature streams). ``spans`` maps a span name to ``(input index, positions)``
    along dim 1 of that input (positions as in ``Readout.spans``).
    """

    inputs: tuple[Any, ...]
    baselines: tuple[Any, ...]
    forward: Callable[..., Any]
    spans: dict[str, tuple[int, Any]]


@runtime_checkable
class Inspectable(Protocol):
    labels: tuple[str, ...]

    def inside_info(self) -> InsideInfo: ...

    def inside_read(self, examples: Sequence["Example"], *, attention: bool = False,
                    pools: Sequence[str] = (), lens: bool = False) -> list[Readout]: ...

    def inside_patch(self, target: "Example", source: "Example", *, span: str,
                     layers: Sequence[int]) -> np.ndarray:
        """Label scores [len(layers), n_labels] of ``target`` with ``span``'s residual at each
        layer replaced by ``source``'s (one layer at a time).

        A voice span (``VOICE_SPANS``) whose length differs between the two utterances (two
        recordings never last equally long) is aligned along time: target position ``j`` takes
        the source position nearest to the same fraction of the span,
        ``floor((j + 1/2) * n_source / n_target)`` (``probes.models._alm.time_align``); equal
        lengths give the identity, so an utterance patched into itself is unchanged. Other spans
        must have equal length (else ValueError)."""
        ...

    def inside_attribution(self, example: "Example") -> AttributionInputs: ...


# Bridges: (test on the adapter, factory). Filled as model families gain instrumentation.
BRIDGES: list[tuple[Callable[[Any], bool], Callable[[Any], Inspectable]]] = []


def inspectable(model: "Adapter") -> Inspectable:
    """The model as an Inspectable, or a NotImplementedError that says what is missing."""
    if isinstance(model, Inspectable):
        return model
    for test, make in BRIDGES:
        if test(model):
            return make(model)
    raise NotImplementedError(
        f"model {getattr(model, 'name', type(model).__name__)!r} exposes no internals to the inside probes: "
        "it needs the Inspectable methods (probes/library/_inside.py) or a bridge onto its instrumentation."
    )


def require(model: Inspectable, capability: str, probe: str) -> InsideInfo:
    info = model.inside_info()
    if capability not in info.supports:
        why = info.why_not.get(capability, "the model does not expose it")
        raise NotImplementedError(f"{probe}: {getattr(model, 'name', '?')} cannot give {capability}: {why}")
    return info


# ---------------------------------------------------------------------------------- examples
def make_examples(model: "Adapter", data: "Manifest", items: Sequence["WorkItem"], ctx: "RunContext",
                  template: str = "plain") -> Iterator[tuple["WorkItem", "Example | Exception"]]:
    """One plain Example per work item (audio loaded when the model needs it); errors as values."""
    from probes.adapter import Example

    if hasattr(model, "prepare") and not ctx.cache.get(("inside-prepared", id(model))):
        # e.g. FAS: per-speaker normalisation statistics over the whole manifest, so a readout does
        # not depend on which utterances happen to share its batch (self-patching must be a no-op)
        model.prepare(data)
        ctx.cache[("inside-prepared", id(model))] = True
    for it in items:
        try:
            row = data.row(it.utt_id)
            audio = (ctx.load_audio(data, it.utt_id, model.sample_rate, model.max_seconds)
                     if getattr(model, "needs_audio", True) else None)
            yield it, Example(utt_id=it.utt_id, row=row, audio=audio, sr=model.sample_rate, template=template)
        except Exception as e:  # a bad file is an error row, not the end of the run
            yield it, e


def batched(xs: Sequence, n: int) -> Iterator[Sequence]:
    for i in range(0, len(xs), max(1, n)):
        yield xs[i : i + n]


def read_rows(model: "Adapter", data: "Manifest", items: Sequence["WorkItem"], ctx: "RunContext", template: str,
              to_rows: Callable[["WorkItem", "Example", Any], list[dict]], **read_kw: Any):
    """The shared ``execute`` loop: examples -> ``inside_read(**read_kw)`` in batches -> rows.

    Yields (item, rows) or (item, Exception): a bad file or a failing batch becomes error rows for
    exactly the units it touched, never the end of the run.
    """
    m = inspectable(model)
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


def read_features(run_dir: str | Path, pool: str):
    """All utterances' pooled readouts of one run: (table of rows, X [n, layers + 1, dim]).

    The table has one row per utterance (utt_id, labels, speaker, sentence_id ...), in the
    order of X. Feature files of shards merged with ``probe merge`` must be copied beside the
    rows (``features/units/``); a missing file raises naming it.
    """
    from safetensors.numpy import load_file

    from probes.store import read_rows

    run_dir = Path(run_dir)
    rows = read_rows(run_dir)
    if rows.empty or "features" not in rows.columns:
        raise FileNotFoundError(f"{run_dir}: no feature rows (run linear-probe or embeddings first)")
    rows = rows.drop_duplicates("unit").reset_index(drop=True)
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
    m = inspectable(model)
    info = require(m, "hidden", probe.name)
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


# ---------------------------------------------------------------------------------- bridges
class ALMBridge:
    """The protocol on ``probes.models._alm.ALMAdapter`` (every ALM family), through its own
    instrumentation: ``hidden_states``, ``attention`` (eager, nnsight), ``patch``, ``unembed``,
    ``encode`` / ``forward_embeds`` (captum). Layer names map as residual 0 = ``"input"`` and
    residual ``l + 1`` = block ``l``'s output.

    Label scores are the answer position's logits of each label's *first* token: what the lens
    and patching can read from one position. Two labels sharing a first token would tie; the
    bridge refuses that case rather than report it.
    """

    def __init__(self, alm):
        self.alm = alm
        self.name = alm.name
        self.labels = tuple(alm.labels)
        first = [t[0] for t in alm.label_tokens()]
        if len(set(first)) != len(first):
            raise NotImplementedError(f"{alm.name}: two labels share their first token, so one answer position "
                                      "cannot tell them apart (lens / patching would tie them)")
        self._first = first

    def inside_info(self) -> InsideInfo:
        cfg = self.alm.module("decoder").config
        return InsideInfo(n_layers=self.alm.n_layers, n_heads=int(getattr(cfg, "num_attention_heads", 0) or 0),
                          pools=("audio-mean", "prompt-mean", "last"),
                          spans=("audio", "prompt", "cues", "transcript", "answer"),
                          supports=frozenset({"attention", "hidden", "lens", "patch", "attribution"}))

    @staticmethod
    def _spans(sp: dict) -> dict[str, np.ndarray]:
        # the adapter's "prompt" is every non-audio, non-slot position, the answer position
        # included; the probes want a partition, so the answer is taken out of the prompt
        ans = set(np.asarray(sp["answer"]).tolist())
        out = {k: np.asarray(v, dtype=int) for k, v in sp.items() if len(v)}
        out["prompt"] = np.array([p for p in out.get("prompt", []) if p not in ans], dtype=int)
        return out

    def _scores(self, logits):  # [..., vocab] -> [..., n_labels]
        return logits[..., self._first]

    def inside_read(self, examples, *, attention=False, pools=(), lens=False):
        import torch

        alm = self.alm
        batch = alm.encode(examples)
        with torch.no_grad():
            final = self._scores(alm.answer_logits(examples)).float().numpy()              # [b, n_labels]
        reads = [Readout(utt_id=ex.utt_id, spans=self._spans(sp), seq_len=n, answer_pos=n - 1, final=final[i])
                 for i, (ex, sp, n) in enumerate(zip(examples, batch.spans, batch.lengths))]
        if attention:
            att = alm.attention(examples)
            for i, r in enumerate(reads):
                r.attention = att["weights"][i, :, :, : r.seq_len].numpy()                  # [L, H, seq]
        span_of = {"audio-mean": "audio", "prompt-mean": "prompt", "last": "answer"}
        want = {span_of[p] for p in pools} | ({"answer"} if lens else set())
        if want:
            hs = alm.hidden_states(examples, spans=sorted(want), pool="mean")               # span -> [b, L + 1, d]
            for p in pools:
                for i, r in enumerate(reads):
                    r.pooled[p] = hs[span_of[p]][i].numpy()
            if lens:
                with torch.no_grad():
                    lg = self._scores(alm.unembed(hs["answer"].to(alm.device, alm.dtype), normed=False))
                for i, r in enumerate(reads):
                    r.lens = lg[i].float().numpy()                                          # [L + 1, n_labels]
        return reads

    def inside_patch(self, target, source, *, span, layers):
        if span == "all":
            raise NotImplementedError("ALM adapters patch named spans; 'all' is not one of them")
        out = []
        for l in layers:
            name = "input" if l == 0 else l - 1
            # the audio spans of two recordings differ in length: aligned along time (see Inspectable)
            out.append(self._scores(self.alm.patch([target], [source], name, span, align="time"))[0].float().numpy())
        return np.stack(out)                                                                # [len(layers), n_labels]

    def inside_attribution(self, ex) -> AttributionInputs:
        import torch

        from probes.models._alm import Batch

        alm = self.alm
        b = alm.encode([ex])
        spans = self._spans(b.spans[0])
        # baseline: every content position (audio, prompt words, cue / transcript tokens) holds
        # the pad token's embedding -- "hears nothing, reads padding" -- while the answer
        # position keeps its token so the label is still asked for. An all-zero baseline would
        # sit on RMSNorm's singular point, where the path integral is badly conditioned.
        pad = alm._embed_ids([alm.tokenizer.pad_token_id or 0])[0].detach()                # [d]
        base = b.embeds.detach().clone()
        for name, pos in spans.items():
            if name != "answer":
                base[0, torch.as_tensor(pos)] = pad.to(base.dtype)

        def forward(x):                                                                     # [n, seq, d] -> [n, n_labels]
            n = x.shape[0]
            bb = Batch(x, b.mask.expand(n, -1), b.ids.expand(n, -1), b.spans * n, b.lengths * n, b.utt_ids * n)
            return self._scores(alm.forward_embeds(x, bb)).float()

        return AttributionInputs(inputs=(b.embeds.detach().float(),), baselines=(base.float(),),
                                 forward=lambda x: forward(x.to(alm.dtype)),
                                 spans={k: (0, v) for k, v in spans.items() if k != "answer"})


class FASBridge:
    """The protocol on the FAS adapter (``fas.adapter.FASAdapter``, every arm).

    FAS has no decoder stack: its one "layer" (residual 0) is the fused representation, its
    attention is the learnable queries' cross-attention over the kept tokens (heads = queries,
    spans ``acoustic`` = the k_aco kept acoustic tokens, ``semantic`` = the k_sem semantic
    ones), patching swaps a whole input stream, and attribution is over the two raw streams
    from their training means (as ``fas.instrument`` does). It has no logit lens.
    """

    def __init__(self, fas):
        self.fas = fas
        self.name = fas.name
        self.labels = tuple(fas.labels)
        self.cfg = fas.model.cfg

    def inside_info(self) -> InsideInfo:
        cfg = self.cfg
        queries = cfg.fusion == "queries" and cfg.streams == "both"
        sup = {"hidden", "patch"} | ({"attention"} if queries else set()) | ({"attribution"} if cfg.streams == "both" else set())
        pools = ("fused",) + (("acoustic-mean", "semantic-mean") if cfg.streams == "both" else ())
        return InsideInfo(n_layers=0, n_heads=cfg.n_queries if queries else 0, pools=pools,
                          spans=("acoustic", "semantic") if cfg.streams == "both" else (cfg.streams,),
                          supports=frozenset(sup),
                          why_not={"lens": "FAS has no residual stream read by an unembedding (its head reads the fused embedding)",
                                   "attention": "this arm has no learnable queries",
                                   "attribution": "single-stream arm: there is nothing to split"})

    def _batch(self, examples):
        # FASAdapter builds its streams inside predict; these are the same steps (features from the
        # cache, per-speaker eGeMAPS normalisation, padding)
        from fas.train import collate

        fas = self.fas
        aco, _ = fas._normalise(examples, [fas._features("acoustic", ex) for ex in examples])
        sem = [fas._features("semantic", ex) for ex in examples]
        return collate(aco, sem), aco, sem

    def _spans(self) -> dict[str, tuple[int, int]]:
        c = self.cfg
        if c.fusion == "queries" and c.streams == "both":
            return {"acoustic": (0, c.k_aco), "semantic": (c.k_aco, c.k_aco + c.k_sem)}
        return {"acoustic": (0, 1), "semantic": (1, 2)}  # nominal: one slot per stream

    def inside_read(self, examples, *, attention=False, pools=(), lens=False):
        import torch

        from fas.model import _lengths_mask, masked_mean

        batch, _, _ = self._batch(examples)
        m = self.fas.model.eval()
        with torch.no_grad():
            out = m(**batch)
            means = {}
            if any(p != "fused" for p in pools):
                for which, key in (("aco", "acoustic-mean"), ("sem", "semantic-mean")):
                    f, n = m._stream(batch[which], batch[f"{which}_len"], which)            # [b, T', d]
                    means[key] = masked_mean(f, _lengths_mask(n, f.shape[1]))             # [b, d]
        spans = self._spans()
        L = max(b for _, b in spans.values())
        reads = []
        for i, ex in enumerate(examples):
            r = Readout(utt_id=ex.utt_id, spans=spans, seq_len=L, answer_pos=L - 1, final=out.logits[i].numpy())
            if attention:
                r.attention = out.attn[i][None].numpy()                                     # [1, n_q, L]
            for p in pools:
                r.pooled[p] = (out.fused[i] if p == "fused" else means[p][i]).numpy()[None]  # [1, d]
            reads.append(r)
        return reads

    def inside_patch(self, target, source, *, span, layers):
        import torch

        from fas.train import collate

        if list(layers) != [0]:
            raise ValueError("FAS patches its input streams only (layer 0)")
        _, (at,), (st,) = self._batch([target])
        _, (as_,), (ss,) = self._batch([source])
        aco, sem = {"acoustic": (as_, st), "semantic": (at, ss), "all": (as_, ss)}[span]
        with torch.no_grad():
            return self.fas.model.eval()(**collate([aco], [sem])).logits.numpy()            # [1, n_labels]

    def inside_attribution(self, ex) -> AttributionInputs:
        m = self.fas.model.eval()
        batch, _, _ = self._batch([ex])
        aco, sem = batch["aco"], batch["sem"]
        return AttributionInputs(
            inputs=(aco, sem),
            baselines=(m.mean_aco.expand_as(aco).clone(), m.mean_sem.expand_as(sem).clone()),
            forward=lambda a, s: m(a, s).logits,
            spans={"acoustic": (0, (0, aco.shape[1])), "semantic": (1, (0, sem.shape[1]))})


def _is_alm(model) -> bool:
    return any(c.__module__ == "probes.models._alm" and c.__name__ == "ALMAdapter" for c in type(model).__mro__)


def _is_fas(model) -> bool:
    return any(c.__module__ == "fas.adapter" and c.__name__ == "FASAdapter" for c in type(model).__mro__)


BRIDGES += [(_is_alm, ALMBridge), (_is_fas, FASBridge)]
