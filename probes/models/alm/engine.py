"""The one edit engine of the ALM adapters: every activation read or write goes through ``hooked``.

A *site* is where a value is read or written: ``("resid", i)`` the residual stream at index
``i`` (0 = the input embeddings with the audio merged in, ``i`` = the input of decoder block
``i``, ``L`` = the output of the last block; TransformerLens' ``resid_pre``), ``("attn", i)``
the attention weights of block ``i`` (eager attention only), ``("audio", i)`` the output of
audio-encoder block ``i``. An ``Op`` is a site and a function of the tensor found there
(``[b, seq, d]`` for the residual): it returns a replacement, or None to leave it (a read).

``hooked(adapter, ops)`` registers one plain PyTorch hook per site for the duration of a
``with`` block and removes them afterwards, whatever happens: a forward *pre*-hook on block
``i`` for residual ``i < L`` (so residual 0 is what block 0 receives, after any scaling the
decoder applies to its embeddings), a forward hook on the last block for residual ``L``, a
forward hook on the attention module or the audio block otherwise. Predictions with edits,
ablation, patching, capture, hidden states, attention and audio-tower states all use it.

Why plain hooks and not nnsight (the project's declared engine), measured in
``benchmarks/alm_conditions.py`` and docs/models.md: a hooked forward that keeps every residual
costs about what a plain forward costs, an nnsight trace more; nnsight reads the source text of
each ``with`` block at run time, which broke every trace of a process whose adapter file was
saved during a run (the fix wrote into nnsight's private source cache); and the KV-cached
prefix pass of ``predict`` (one pass per distinct audio, edits on some rows only) runs the
decoder module directly, where hooks apply as they are.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch


@dataclass(frozen=True)
class Op:
    site: tuple[str, int]                                   # ("resid" | "attn" | "audio", index)
    fn: Callable[[torch.Tensor], torch.Tensor | None]       # value -> replacement, or None (read only)


def _first(o):
    return o[0] if isinstance(o, tuple) else o


def _apply(fns, h: torch.Tensor) -> torch.Tensor | None:
    changed = None
    for fn in fns:
        new = fn(h if changed is None else changed)
        if new is not None:
            changed = new
    return changed


@contextlib.contextmanager
def hooked(adapter, ops: Sequence[Op]) -> Iterator[None]:
    """Register the hooks ``ops`` need on ``adapter``'s modules; always removed on exit."""
    by_site: dict[tuple[str, int], list] = {}
    for op in ops:
        by_site.setdefault(op.site, []).append(op.fn)
    L = adapter.n_layers
    handles = []
    try:
        for (kind, i), fns in by_site.items():
            if kind == "resid":
                if not 0 <= i <= L:
                    raise ValueError(f"{adapter.name}: residual layer {i} does not exist; use 0 .. {L} "
                                     f"(0 = the input embeddings, {L} = after the last block)")
                if i < L:
                    handles.append(adapter.module("decoder.blocks", i).register_forward_pre_hook(
                        _pre_hook(fns), with_kwargs=True))
                else:
                    handles.append(adapter.module("decoder.blocks", L - 1).register_forward_hook(_post_hook(fns, 0)))
            elif kind == "attn":
                if not 0 <= i < L:
                    raise ValueError(f"{adapter.name}: block {i} does not exist; attention is per block 0 .. {L - 1}")
                handles.append(adapter.module("decoder.attn", i).register_forward_hook(_post_hook(fns, 1)))
            elif kind == "audio":
                handles.append(adapter.module("audio.blocks", i).register_forward_hook(_post_hook(fns, 0)))
            else:
                raise ValueError(f"unknown site {kind!r}")
        yield
    finally:
        for h in handles:
            h.remove()


def _pre_hook(fns):
    def hook(mod, args, kwargs):
        if args:
            new = _apply(fns, args[0])
            return None if new is None else ((new, *args[1:]), kwargs)
        new = _apply(fns, kwargs["hidden_states"])
        return None if new is None else (args, {**kwargs, "hidden_states": new})
    return hook


def _post_hook(fns, index: int):
    def hook(mod, args, out):
        if isinstance(out, tuple):
            new = _apply(fns, out[index])
            return None if new is None else (*out[:index], new, *out[index + 1:])
        if index:
            raise RuntimeError("this module returned no attention weights (eager attention is needed)")
        return _apply(fns, out)
    return hook


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids from a padding mask: 0.. over real tokens, pads get 0. # [b, s]"""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def time_align(n_target: int, n_source: int) -> torch.Tensor:
    """Source position for each target position of two spans along the same time axis. # [n_target]

    Nearest neighbour with the spans' ends aligned: target position ``j`` covers the fraction
    ``(j + 1/2) / n_target`` of its span and takes the source position nearest to that fraction,
    ``floor((j + 1/2) * n_source / n_target)``. The identity when the lengths are equal; every
    value is a real source activation (no blend of two positions, which a residual stream need
    not contain).
    """
    if n_target < 0 or n_source <= 0:
        raise ValueError(f"time_align: cannot map {n_source} source positions onto {n_target}")
    j = torch.arange(n_target)
    return ((2 * j + 1) * n_source) // (2 * n_target)


@contextlib.contextmanager
def eager_attention(model) -> Iterator[None]:
    """Switch a transformers model to eager attention (the only kind that returns weights) and
    back, whatever happens inside; eager is slower, so only reads of attention use it."""
    old = getattr(model.config, "_attn_implementation", None) or "sdpa"
    if old != "eager":
        model.set_attn_implementation("eager")
    try:
        yield
    finally:
        if old != "eager":
            model.set_attn_implementation(old)
