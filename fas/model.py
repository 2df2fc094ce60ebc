"""FAS, the Fusion Acoustic-Semantic model, and its comparison arms, in one file.

Two feature streams come in, already computed by frozen encoders (fas/features.py):

    acoustic  [batch, T_aco, D_aco]   e.g. MingTok-Audio (64-d), EnCodec, eGeMAPS frames
    semantic  [batch, T_sem, D_sem]   e.g. Whisper-large encoder (1280-d), MiniLM tokens

FAS (paper section 3.1):
1. patchify: each stream is cut into patches of ``s`` frames, averaged  -> [batch, T/s, D]
2. project each stream to the hidden size d                             -> [batch, T/s, d]
3. score every patch by its L2 norm and keep the top ``k_aco`` / ``k_sem``, in time order
4. concatenate the kept tokens into one context                         -> [batch, k_aco + k_sem, d]
5. ``n_queries`` learnable queries attend to the context (a Q-Former-like block: self-attention
   among the queries, cross-attention into the context, a feed-forward layer)
6. an MLP head over the mean of the fused queries                        -> [batch, n_classes]

The arms of the paper's Table 4 and its single-pathway baselines are the same code under other
``FASConfig`` values (``ARMS``), never copies:
``fusion="concat" | "gated"`` pool each projected stream over time and fuse the two vectors;
``select="random"`` keeps random patches instead of the highest-norm ones (w/o Top-K);
``fusion="pool"`` drops the query block and pools the kept tokens themselves (w/o Q_learn);
``streams="acoustic" | "semantic"`` is the paper's non-LLM baseline protocol: a frozen encoder,
its mean-pooled utterance embedding and a two-layer classifier.

Parameter counts at d=512 with Whisper-large (1280) / MingTok-Audio (64) inputs and 7 classes,
from ``count_parameters`` (paper Table 4 in brackets; docs/fas.md explains the head sizes):
FAS 3.453M (3.45M), concat 1.218M (1.22M), w/o queries 0.822M (0.82M), gated 1.644M (1.65M).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

FUSIONS = ("queries", "pool", "concat", "gated")
SELECTS = ("topk", "random")
STREAMS = ("both", "acoustic", "semantic")


@dataclass(frozen=True)
class FASConfig:
    d_aco: int = 64             # acoustic input dim (MingTok-Audio: 64)
    d_sem: int = 1280           # semantic input dim (Whisper-large encoder: 1280)
    labels: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "fear", "disgust", "surprise")
    d: int = 512                # unified hidden dimension
    patch_aco: int = 5          # s: frames averaged into one acoustic patch
    patch_sem: int = 5          # s for the semantic stream (1 for token streams such as MiniLM)
    k_aco: int = 8              # acoustic tokens kept by Top-K
    k_sem: int = 16             # semantic tokens kept by Top-K
    n_queries: int = 2          # N_q learnable queries
    n_heads: int = 8            # attention heads of the query block
    ffn: int = 512              # feed-forward width of the query block
    head_hidden: int = 256      # hidden width of the FAS / w/o-queries MLP head
    dropout: float = 0.4
    fusion: str = "queries"     # "queries" (FAS) | "pool" (w/o Q_learn) | "concat" | "gated"
    select: str = "topk"        # "topk" | "random" (w/o Top-K)
    streams: str = "both"       # "both" | "acoustic" | "semantic" (single-pathway baselines)
    seed: int = 42              # also seeds the eval-time draw of the "random" selection

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS or self.select not in SELECTS or self.streams not in STREAMS:
            raise ValueError(f"bad FASConfig: fusion={self.fusion!r} select={self.select!r} streams={self.streams!r}")
        object.__setattr__(self, "labels", tuple(self.labels))

    @property
    def n_classes(self) -> int:
        return len(self.labels)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, d: dict) -> "FASConfig":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: (tuple(v) if k == "labels" else v) for k, v in d.items() if k in known})


# The comparison arms: overrides of the FAS defaults. Registered as models by fas/adapter.py.
ARMS: dict[str, dict] = {
    "fas": {},
    "fas-concat": {"fusion": "concat"},
    "fas-gated": {"fusion": "gated"},
    "fas-no-topk": {"select": "random"},
    "fas-no-queries": {"fusion": "pool"},
    "fas-semantic-only": {"streams": "semantic", "fusion": "pool"},
    "fas-acoustic-only": {"streams": "acoustic", "fusion": "pool"},
}


def arm_config(arm: str, **overrides) -> FASConfig:
    if arm not in ARMS:
        raise KeyError(f"unknown FAS arm {arm!r}; known: {', '.join(ARMS)}")
    return FASConfig(**{**ARMS[arm], **overrides})


class FASOutput(NamedTuple):
    logits: torch.Tensor                 # [batch, n_classes]
    fused: torch.Tensor                  # [batch, d] the utterance embedding the head reads
    attn: torch.Tensor | None            # [batch, n_queries, k_aco + k_sem] query attention (heads averaged)
    context_mask: torch.Tensor | None    # [batch, k_aco + k_sem] True where a kept token is real
    kept_aco: torch.Tensor | None        # [batch, k_aco] patch indices kept (time order), -1 = padding
    kept_sem: torch.Tensor | None        # [batch, k_sem]


# ------------------------------------------------------------------------------------------
def patchify(x: torch.Tensor, lengths: torch.Tensor, s: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Average non-overlapping runs of ``s`` valid frames.  [b, T, D] -> [b, ceil(T/s), D], lengths."""
    b, t, dim = x.shape
    pad = (-t) % s
    mask = (torch.arange(t, device=x.device)[None, :] < lengths[:, None]).to(x.dtype)  # [b, T]
    if pad:
        x = F.pad(x, (0, 0, 0, pad))
        mask = F.pad(mask, (0, pad))
    x = (x * mask[..., None]).reshape(b, -1, s, dim).sum(2)                           # [b, T/s, D]
    n = mask.reshape(b, -1, s).sum(2)                                                  # [b, T/s]
    # a last, partial patch is the mean of the frames it has, not diluted by padding
    return x / n.clamp(min=1)[..., None], torch.div(lengths + s - 1, s, rounding_mode="floor")


def select_tokens(
    f: torch.Tensor, lengths: torch.Tensor, k: int, *, how: str = "topk", generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep k tokens per sequence, in time order.  f: [b, T, d] -> tokens [b, k, d], idx [b, k], mask [b, k].

    ``topk`` keeps the k highest L2 norms (the paper's saliency score); ``random`` keeps k random
    valid tokens. Sequences shorter than k keep all their tokens; the rest is padding (idx -1).
    """
    b, t, _ = f.shape
    valid = torch.arange(t, device=f.device)[None, :] < lengths[:, None]             # [b, T]
    if how == "topk":
        score = f.norm(dim=-1)
    elif how == "random":
        score = torch.rand(b, t, generator=generator).to(f.device)
    else:
        raise ValueError(f"unknown selection {how!r}")
    score = score.masked_fill(~valid, float("-inf"))
    if t < k:  # fewer patches than k: pad the score so topk can still return k slots
        score = F.pad(score, (0, k - t), value=float("-inf"))
        f = F.pad(f, (0, 0, 0, k - t))
    top = score.topk(k, dim=1).indices                                                 # [b, k]
    keep = torch.gather(score, 1, top) > float("-inf")                                 # [b, k]
    # time order: sort kept indices, padding slots go last
    order_key = torch.where(keep, top, top.new_full(top.shape, 1 << 30))
    order_key, perm = order_key.sort(dim=1)
    top, keep = torch.gather(top, 1, perm), torch.gather(keep, 1, perm)
    tokens = torch.gather(f, 1, top[..., None].expand(-1, -1, f.shape[-1])) * keep[..., None]
    return tokens, torch.where(keep, top, torch.full_like(top, -1)), keep


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over time of valid positions.  x [b, T, d], mask [b, T] -> [b, d]"""
    m = mask.to(x.dtype)[..., None]
    return (x * m).sum(1) / m.sum(1).clamp(min=1)


def lengths_mask(lengths: torch.Tensor, t: int) -> torch.Tensor:
    """[b] lengths -> [b, t] boolean mask of the valid positions."""
    return torch.arange(t, device=lengths.device)[None, :] < lengths[:, None]


_lengths_mask = lengths_mask  # the older private name


class Attention(nn.Module):
    """Multi-head attention with the weights returned (heads averaged, before dropout).

    Written out rather than nn.MultiheadAttention: same parameters (4 d x d + 4 d), but its
    key-padding check imports sympy on first use in torch 2.13 (seconds on a busy CPU), and
    the attention weights are the instrument FAS is read by, so they are kept in plain sight.
    """

    def __init__(self, d: int, n_heads: int, dropout: float):
        super().__init__()
        if d % n_heads:
            raise ValueError(f"d={d} is not divisible by n_heads={n_heads}")
        self.h = n_heads
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor, mask: torch.Tensor | None = None):
        """x [b, n, d] attends to ctx [b, L, d]; mask [b, L] True = real -> out [b, n, d], weights [b, n, L]"""
        b, n, d = x.shape
        split = lambda t: t.reshape(b, t.shape[1], self.h, d // self.h).transpose(1, 2)  # [b, h, *, d/h]
        q, k, v = split(self.q(x)), split(self.k(ctx)), split(self.v(ctx))
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // self.h)                         # [b, h, n, L]
        if mask is not None:
            scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
        w = scores.softmax(-1)
        out = (self.drop(w) @ v).transpose(1, 2).reshape(b, n, d)
        return self.o(out), w.mean(1)


class QueryBlock(nn.Module):
    """Learnable queries interrogate the context (eq. 4), Q-Former style, post-norm."""

    def __init__(self, cfg: FASConfig):
        super().__init__()
        d = cfg.d
        self.queries = nn.Parameter(torch.randn(cfg.n_queries, d) * 0.02)             # [n_q, d]
        self.self_attn = Attention(d, cfg.n_heads, cfg.dropout)
        self.cross_attn = Attention(d, cfg.n_heads, cfg.dropout)
        self.ffn = nn.Sequential(nn.Linear(d, cfg.ffn), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(cfg.ffn, d))
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, context: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """context [b, L, d], mask [b, L] (True = real) -> fused queries [b, n_q, d], attn [b, n_q, L]"""
        q = self.queries[None].expand(context.shape[0], -1, -1)
        q = self.norm1(q + self.drop(self.self_attn(q, q)[0]))
        a, w = self.cross_attn(q, context, mask)
        q = self.norm2(q + self.drop(a))
        q = self.norm3(q + self.drop(self.ffn(q)))
        return q, w


def _mlp(d_in: int, hidden: int, n_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, n_out))


class FAS(nn.Module):
    """The fusion model and its arms (see the module docstring)."""

    def __init__(self, cfg: FASConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d
        use_aco, use_sem = cfg.streams in ("both", "acoustic"), cfg.streams in ("both", "semantic")
        self.proj_aco = nn.Linear(cfg.d_aco, d) if use_aco else None
        self.proj_sem = nn.Linear(cfg.d_sem, d) if use_sem else None
        # dataset means of the raw streams, for stream-ablate mode "mean" (filled by training)
        self.register_buffer("mean_aco", torch.zeros(cfg.d_aco))
        self.register_buffer("mean_sem", torch.zeros(cfg.d_sem))
        self.block = QueryBlock(cfg) if cfg.fusion == "queries" and cfg.streams == "both" else None
        if cfg.streams != "both":
            # non-LLM baseline protocol: mean-pooled embedding -> two-layer classifier
            self.head = _mlp(d, d, cfg.n_classes, cfg.dropout)
        elif cfg.fusion == "concat":
            self.head = _mlp(2 * d, d, cfg.n_classes, cfg.dropout)
        elif cfg.fusion == "gated":
            # gated multimodal unit: z = sigmoid(W_z [x_aco; x_sem]) mixes tanh(proj) of the two streams
            self.gate = nn.Linear(cfg.d_aco + cfg.d_sem, d)
            self.head = _mlp(d, d, cfg.n_classes, cfg.dropout)
        else:
            self.head = _mlp(d, cfg.head_hidden, cfg.n_classes, cfg.dropout)
        self.drop = nn.Dropout(cfg.dropout)

    # -- helpers -------------------------------------------------------------------------
    def _ablate(self, x: torch.Tensor, which: str, mode: str | None) -> torch.Tensor:
        if mode is None:
            return x
        if mode == "zero":
            return torch.zeros_like(x)
        if mode == "mean":
            return getattr(self, f"mean_{which}").to(x.dtype).expand_as(x).clone()
        raise ValueError(f"stream-ablate mode {mode!r}: use 'zero' or 'mean'")

    def stream(self, x, lengths, which: str):
        """raw [b, T, D] -> projected patches [b, T', d], patch lengths [b] (``which``: "aco" | "sem")"""
        s = self.cfg.patch_aco if which == "aco" else self.cfg.patch_sem
        p, n = patchify(x, lengths, s)
        return getattr(self, f"proj_{which}")(p), n

    _stream = stream  # the older private name

    def pooled(self, x, lengths, which: str) -> torch.Tensor:
        """raw [b, T, D] -> the masked mean of the projected patches [b, d], computed as the
        projection of the masked mean of the patches: the same number (the projection is affine
        and the weights of a mean sum to one) without projecting every frame, which made the
        pooled arms train ~20x slower than they need to on CPU."""
        s = self.cfg.patch_aco if which == "aco" else self.cfg.patch_sem
        p, n = patchify(x, lengths, s)
        return getattr(self, f"proj_{which}")(masked_mean(p, lengths_mask(n, p.shape[1])))

    def _generator(self) -> torch.Generator | None:
        if self.cfg.select != "random" or self.training:
            return None  # training draws fresh random tokens each step
        return torch.Generator().manual_seed(self.cfg.seed)  # eval: the same draw every call

    # -- forward -------------------------------------------------------------------------
    def forward(
        self,
        aco: torch.Tensor,
        sem: torch.Tensor,
        aco_len: torch.Tensor | None = None,
        sem_len: torch.Tensor | None = None,
        ablate: dict[str, str] | None = None,
    ) -> FASOutput:
        """aco [b, T_a, D_a], sem [b, T_s, D_s], lengths [b] (None = full); ablate {"acoustic": "zero"|"mean", ...}"""
        cfg, ablate = self.cfg, ablate or {}
        b = aco.shape[0] if aco is not None else sem.shape[0]
        if aco_len is None and aco is not None:
            aco_len = torch.full((b,), aco.shape[1], dtype=torch.long, device=aco.device)
        if sem_len is None and sem is not None:
            sem_len = torch.full((b,), sem.shape[1], dtype=torch.long, device=sem.device)
        if aco is not None:
            aco_len = aco_len.clamp(min=1, max=aco.shape[1])
        if sem is not None:
            sem_len = sem_len.clamp(min=1, max=sem.shape[1])
        if cfg.streams != "both":
            which = "aco" if cfg.streams == "acoustic" else "sem"
            x, n = (aco, aco_len) if which == "aco" else (sem, sem_len)
            x = self._ablate(x, which, ablate.get("acoustic" if which == "aco" else "semantic"))
            fused = self.pooled(x, n, which)                                        # [b, d]
            return FASOutput(self.head(self.drop(fused)), fused, None, None, None, None)

        aco = self._ablate(aco, "aco", ablate.get("acoustic"))
        sem = self._ablate(sem, "sem", ablate.get("semantic"))
        if cfg.fusion in ("concat", "gated"):
            pa = self.pooled(aco, aco_len, "aco")                                   # [b, d]
            ps = self.pooled(sem, sem_len, "sem")
            if cfg.fusion == "concat":
                fused = torch.cat([pa, ps], -1)                                     # [b, 2d]
            else:
                raw = torch.cat([masked_mean(aco, _lengths_mask(aco_len, aco.shape[1])),
                                 masked_mean(sem, _lengths_mask(sem_len, sem.shape[1]))], -1)
                z = torch.sigmoid(self.gate(raw))                                   # [b, d]
                fused = z * torch.tanh(pa) + (1 - z) * torch.tanh(ps)
            return FASOutput(self.head(self.drop(fused)), fused, None, None, None, None)

        fa, na = self._stream(aco, aco_len, "aco")                                  # [b, Ta', d]
        fs, ns = self._stream(sem, sem_len, "sem")                                  # [b, Ts', d]
        gen = self._generator()
        ta, ia, ma = select_tokens(fa, na, cfg.k_aco, how=cfg.select, generator=gen)  # [b, k_aco, d]
        ts, is_, ms = select_tokens(fs, ns, cfg.k_sem, how=cfg.select, generator=gen)  # [b, k_sem, d]
        context = torch.cat([ta, ts], 1)                                            # [b, k_aco + k_sem, d]
        mask = torch.cat([ma, ms], 1)                                               # [b, L]
        if cfg.fusion == "pool":
            fused, attn = masked_mean(context, mask), None
        else:
            q, attn = self.block(context, mask)                                     # [b, n_q, d], [b, n_q, L]
            fused = q.mean(1)
        return FASOutput(self.head(self.drop(fused)), fused, attn, mask, ia, is_)

    @torch.no_grad()
    def set_stream_means(self, mean_aco: torch.Tensor | None, mean_sem: torch.Tensor | None) -> None:
        if mean_aco is not None:
            self.mean_aco.copy_(mean_aco)
        if mean_sem is not None:
            self.mean_sem.copy_(mean_sem)


def count_parameters(model_or_cfg: nn.Module | FASConfig) -> int:
    """Trainable parameters (buffers such as the stream means are not counted)."""
    m = FAS(model_or_cfg) if isinstance(model_or_cfg, FASConfig) else model_or_cfg
    return sum(p.numel() for p in m.parameters() if p.requires_grad)


def paper_counts(d_aco: int = 64, d_sem: int = 1280, n_classes: int = 7) -> dict[str, int]:
    """Parameter count of every arm at the paper's dims (Table 4 compares these)."""
    labels = tuple(f"c{i}" for i in range(n_classes))
    return {arm: count_parameters(arm_config(arm, d_aco=d_aco, d_sem=d_sem, labels=labels)) for arm in ARMS}
