"""What an ALM adapter lets a probe see and change inside it, all through the one edit engine.

Layers are residual indices (``probes.adapter``): 0 = the input embeddings with the audio merged
in, ``i`` = the input of decoder block ``i``, ``L = n_layers`` = the output of the last block
before the final norm. Attention belongs to block ``i`` (0 .. L-1), which reads residual ``i``.

- ``run_with_edits`` (``answer_logits``): answer-position logits under ``Edit``s;
- ``hidden_states`` / ``capture``: the residual stream at spans and layers;
- ``attention``: per block and head, the answer position's attention weights (eager attention
  switched on for the call);
- ``ablate`` / ``patch``: one edit at one layer, as logits;
- ``audio_hidden_states``: the audio encoder's block outputs, pooled over time;
- ``unembed`` (the logit lens) and ``forward_embeds`` (captum);
- the inside-probe instruments ``inside_info`` / ``inside_read`` / ``inside_patch`` /
  ``inside_attribution`` (``probes.adapter``), built on the above: ``inside_read`` encodes a
  batch once and runs one forward for everything asked.

Label scores of the inside instruments (``Readout.final``, ``Readout.lens``, ``inside_patch``,
``inside_attribution``) score each label's WHOLE token string, as closed-set scoring does
(``Scoring.label_string_scores``: the sum of the token log-probabilities, or their mean under
``length_norm = "mean"``): under the real Qwen vocabulary ``fear`` is ``f`` + ``ear``, and the
first token alone would be the probability of any f-word. The edits apply to the prompt; the
label's tokens follow on the edited prompt's KV cache. The logit lens scores the string under
the model cut after each residual layer (every label token read through the final norm +
unembedding of that layer's residual), so its last layer is the model's own score.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from probes.adapter import AttributionInputs, Edit, Example, InsideInfo, Readout
from probes.models.alm.engine import Op, hooked, positions, time_align
from probes.models.alm.prompt import Batch, span_pos

POOL_SPANS = {"audio-mean": "audio", "prompt-mean": "prompt", "last": "answer"}


class Instruments:
    """Instrumentation, mixed into ``ALMAdapter``."""

    source_loader: Callable[[str], Example] | None = None  # utt_id -> Example, for Edit(kind="patch") in predict
    # recorded in every run's manifest (describe()): how the inside probes read a label
    LABEL_READOUT = ("whole label string (sum of its tokens' log-probabilities, divided by the token count under "
                     "length_norm=mean) for predict, patching, attribution and the logit lens; the lens reads every "
                     "label token from the same residual layer (the model cut after that layer)")

    # ------------------------------------------------------------------ forward passes
    def forward_kwargs(self, batch: Batch) -> dict:
        """Keyword arguments of the model's own forward for a Batch (plain calls, benchmarks)."""
        return {"inputs_embeds": batch.embeds, "attention_mask": batch.mask.to(self.device), "use_cache": False}

    def _decode(self, embeds, mask_full, pos, cache=None, use_cache=False):
        """The text model over embeddings. # -> [b, s, hidden] last hidden state (after the final norm), cache"""
        self.stats["tokens_forwarded"] += int(embeds.shape[0] * embeds.shape[1])
        out = self.module("decoder")(inputs_embeds=embeds, attention_mask=mask_full.to(self.device),
                                     position_ids=pos.to(self.device), past_key_values=cache, use_cache=use_cache)
        return out.last_hidden_state, out.past_key_values

    def _forward(self, batch: Batch, ops: Sequence[Op] = (), embeds: torch.Tensor | None = None) -> torch.Tensor:
        """One forward of a full batch under ``ops``. # -> [b, s, hidden] (after the final norm)"""
        with hooked(self, ops):
            h, _ = self._decode(batch.embeds if embeds is None else embeds, batch.mask, positions(batch.mask))
        return h

    def _label_scores(self, batch: Batch, ops: Sequence[Op] = (), embeds: torch.Tensor | None = None, *,
                      lens_hidden: torch.Tensor | None = None):
        """Whole-string label scores of a full batch under ``ops`` (applied to the prompt only).

        One forward over the prompt with a KV cache, then the labels' continuations on it
        (``label_string_scores``). With ``lens_hidden`` [b, n_layers + 1, d] (each residual at
        the answer position, read during that forward by the caller's ops) it also returns the
        whole-string lens.
        # -> [b, n_labels] log-softmaxed over the labels (and [b, L + 1, n_labels])
        """
        with hooked(self, ops):
            h, cache = self._decode(batch.embeds if embeds is None else embeds, batch.mask, positions(batch.mask),
                                    use_cache=True)
        n = h.shape[0]
        first_lp = torch.log_softmax(self.unembed(h[torch.arange(n), batch.answer]), -1)
        if lens_hidden is None:
            return torch.log_softmax(self.label_string_scores(first_lp, cache, batch.mask, batch.answer + 1), -1)
        lf = torch.log_softmax(self.unembed(lens_hidden.to(self.device, self.dtype), normed=False), -1)
        sc, lens = self.label_string_scores(first_lp, cache, batch.mask, batch.answer + 1, lens_first=lf,
                                            lens_layers=range(self.n_layers + 1))
        return torch.log_softmax(sc, -1), torch.log_softmax(lens, -1)

    def unembed(self, hidden: torch.Tensor, *, normed: bool = True) -> torch.Tensor:
        """Logits from residual-stream vectors: final norm (unless ``normed``) then the unembedding.

        ``normed=True`` means ``hidden`` already went through the final norm (the decoder's own
        output); the logit lens passes residuals with ``normed=False``. # [..., hidden] -> [..., vocab]
        """
        if not normed:
            hidden = self.module("decoder.norm")(hidden)
        return self.module("unembed")(hidden).float()

    def forward_embeds(self, embeds: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Answer-position logits from given input embeddings (captum's entry point). # [b, seq, d] -> [b, vocab]"""
        h, _ = self._decode(embeds, batch.mask, positions(batch.mask))
        return self.unembed(h[torch.arange(embeds.shape[0]), batch.answer])

    # ------------------------------------------------------------------ edits
    def edit_ops(self, batch: Batch, edits_rows: Sequence[tuple[Edit, Sequence[int]]],
                 sources: dict[str, Example] | None = None) -> list[Op]:
        """The engine's ops for ``Edit``s, each applied to some rows of ``batch``."""
        ops = []
        for e, rows in edits_rows:
            rows = list(rows)
            if not rows:
                continue
            if e.kind == "ablate":
                if e.mode not in ("zero", "mean"):
                    raise ValueError(f"ablation mode {e.mode!r}: use 'zero' or 'mean'")
                values = (lambda r, cur: torch.zeros_like(cur)) if e.mode == "zero" else \
                         (lambda r, cur: cur.mean(0, keepdim=True).expand_as(cur))
            elif e.kind == "patch":
                src = self._source_values(e, sources)
                values = (lambda r, cur, src=src, e=e: self._patch_values(batch, r, e.span, cur, src, e.source))
            else:
                raise NotImplementedError(f"{self.name}: edit kind {e.kind!r} is not implemented by ALM adapters "
                                          "(they apply 'ablate' and 'patch')")
            ops.append(self.span_op(batch, e.layer, e.span, rows, values))
        return ops

    def example_ops(self, batch: Batch, examples: Sequence[Example]) -> list[Op]:
        """The ops of the examples' own ``Edit``s (activation interventions), each on the rows carrying it."""
        edits = sorted({e for ex in examples for e in ex.edits}, key=repr)
        return self.edit_ops(batch, [(e, [i for i, ex in enumerate(examples) if e in ex.edits]) for e in edits])

    def span_op(self, batch: Batch, layer: int, span: str, rows: Sequence[int],
                values: Callable[[int, torch.Tensor], torch.Tensor]) -> Op:
        """An op replacing ``span`` at residual ``layer`` in ``rows`` by ``values(row, current)``."""
        def fn(h):
            h = h.clone()
            for r in rows:
                pos = span_pos(batch, r, span)
                pos = pos[pos < h.shape[1]]
                h[r, pos] = values(r, h[r, pos]).to(h.dtype)
            return h
        return Op(("resid", int(layer)), fn)

    def _patch_values(self, batch: Batch, r: int, span: str, cur: torch.Tensor, src: torch.Tensor, source) -> torch.Tensor:
        if src.shape != cur.shape:
            raise ValueError(f"cannot patch span {span!r} of {source} ({src.shape[0]} tokens) into "
                             f"{batch.utt_ids[r] if batch.utt_ids else r} ({cur.shape[0]} tokens): spans must have "
                             "equal length" + (" (adapter.patch(..., align='time') resamples it along time)"
                                               if span == "audio" else ""))
        return src

    def _source_values(self, e: Edit, sources: dict[str, Example] | None) -> torch.Tensor:
        """The source activations a patch edit copies in. # [n_span, hidden]"""
        src = (sources or {}).get(e.source)
        if src is None and self.source_loader is not None:
            src = self.source_loader(e.source)
        if src is None:
            raise NotImplementedError(
                f"patch from {e.source!r}: the adapter has no way to get that utterance; pass sources= to "
                "run_with_edits()/patch(), or set adapter.source_loader = fn(utt_id) -> Example "
                "(the runner sets it for `probe run`)")
        return self.capture([src], layer=e.layer, span=e.span)[0]

    def run_with_edits(self, examples: Sequence[Example], edits: Sequence[Edit] = (), *,
                       sources: dict[str, Example] | None = None) -> torch.Tensor:
        """Next-token logits at the answer position with ``edits`` on every row. # [b, vocab]"""
        batch = self.encode(examples)
        rows = range(len(examples))
        ops = self.example_ops(batch, examples) + self.edit_ops(batch, [(e, rows) for e in edits], sources)
        with torch.no_grad():
            h = self._forward(batch, ops)
            return self.unembed(h[torch.arange(len(examples)), batch.answer])

    answer_logits = run_with_edits

    def ablate(self, examples: Sequence[Example], layer: int, span: str = "audio", mode: str = "zero") -> torch.Tensor:
        """Answer-position logits with a span zeroed / mean-replaced at a residual layer. # [b, vocab]"""
        return self.run_with_edits(examples, [Edit(kind="ablate", span=span, layer=layer, mode=mode)])

    def patch(self, target: Sequence[Example], source: Sequence[Example], layer: int, span: str = "audio",
              *, align: str = "exact") -> torch.Tensor:
        """Answer-position logits of ``target`` with ``span`` at residual ``layer`` copied from ``source``
        (paired rows).

        ``align="exact"``: the spans must have equal length (equal-duration audio for the
        ``audio`` span), else ValueError. ``align="time"``: an ``audio`` span of another length
        is resampled along time onto the target's (``time_align``: the identity when the lengths
        are equal, so A into A stays exact); text spans must still match. # [b, vocab]
        """
        if len(target) != len(source):
            raise ValueError("patch: target and source must pair up row by row")
        if align not in ("exact", "time"):
            raise ValueError(f"patch align {align!r}: use 'exact' or 'time'")
        Edit(kind="patch", span=span, layer=layer)  # validates the layer
        caps = self.capture(source, layer, span)
        batch = self.encode(target)
        if align == "time" and span == "audio":
            caps = [c if c.shape[0] in (len(p), 0) else c[time_align(len(p), c.shape[0])]
                    for c, p in zip(caps, (span_pos(batch, i, span) for i in range(len(target))))]
        op = self.span_op(batch, layer, span, range(len(target)),
                          lambda r, cur: self._patch_values(batch, r, span, cur, caps[r], source[r].utt_id))
        with torch.no_grad():
            h = self._forward(batch, [op])
            return self.unembed(h[torch.arange(len(target)), batch.answer])

    # ------------------------------------------------------------------ reads
    def eager_attention(self):
        """Eager attention (the only kind that returns weights) for the duration of a ``with``."""
        from probes.models.alm.engine import eager_attention

        return eager_attention(self.model)

    def _read_ops(self, batch: Batch, layers: Sequence[int], spans: Sequence[str], got: dict) -> list[Op]:
        """Ops saving ``got[(layer, span)]`` = per row the residual at the span. # each [n_span, hidden]"""
        idx = {s: [span_pos(batch, i, s) for i in range(len(batch.lengths))] for s in spans}

        def reader(l):
            def fn(h):
                for s in spans:
                    got[(l, s)] = [h[i, idx[s][i]].detach().float() for i in range(h.shape[0])]
                return None
            return fn
        return [Op(("resid", int(l)), reader(l)) for l in layers]

    def _attn_ops(self, batch: Batch, layers: Sequence[int], got: dict) -> list[Op]:
        rows = torch.arange(len(batch.lengths))

        def reader(l):
            def fn(w):                                             # [b, heads, q, k]
                got[("attn", l)] = w[rows, :, batch.answer, :].detach().float()   # [b, heads, k]
                return None
            return fn
        return [Op(("attn", int(l)), reader(l)) for l in layers]

    def _layers(self, layers) -> list[int]:
        return list(range(self.n_layers + 1)) if layers is None else [int(Edit("ablate", layer=l).layer) for l in layers]

    def hidden_states(self, examples: Sequence[Example], layers: Sequence[int] | None = None,
                      spans: Sequence[str] = ("audio", "answer"), pool: str = "mean") -> dict:
        """Residual stream at chosen spans and residual layers (default 0 .. L), one forward.

        Returns ``{"layers": [...], span: tensor}``: with ``pool="mean"`` each span is
        ``[b, n_layers, hidden]`` (mean over the span's positions; a row with an empty span gets
        zeros), with ``pool="none"`` a list per row of ``[n_layers, n_span, hidden]``.
        Only the requested positions are kept, so memory is ``b x layers x span``.
        """
        if pool not in ("mean", "none"):
            raise ValueError(f"pool {pool!r}: use 'mean' or 'none'")
        layers = self._layers(layers)
        batch = self.encode(examples)
        got: dict = {}
        with torch.no_grad():  # the examples' own edits first, then the reads see their result
            self._forward(batch, self.example_ops(batch, examples) + self._read_ops(batch, layers, spans, got))
        return {"layers": layers, **_stack(got, layers, spans, len(examples), pool)}

    def capture(self, examples: Sequence[Example], layer: int, span: str = "audio") -> list[torch.Tensor]:
        """One residual layer's activations at one span, per example. # each [n_span, hidden]"""
        hs = self.hidden_states(examples, layers=[layer], spans=[span], pool="none")
        return [r[0] for r in hs[span]]

    def attention(self, examples: Sequence[Example], layers: Sequence[int] | None = None) -> dict:
        """Per block, per head attention weights from the answer position over the sequence.

        Returns ``{"weights": [b, n_blocks, heads, seq] (zeros past a row's length), "layers",
        "spans", "lengths"}``. Eager attention is switched on for this call only.
        """
        layers = list(range(self.n_layers)) if layers is None else list(layers)
        batch = self.encode(examples)
        got: dict = {}
        with torch.no_grad(), self.eager_attention():
            self._forward(batch, self.example_ops(batch, examples) + self._attn_ops(batch, layers, got))
        w = torch.stack([got[("attn", l)] for l in layers], 1)              # [b, layers, heads, seq]
        w = w * batch.mask[:, None, None, :].to(w.dtype)
        return {"weights": w, "layers": layers, "spans": batch.spans, "lengths": batch.lengths}

    def audio_hidden_states(self, examples: Sequence[Example], layers: Sequence[int] | None = None) -> dict:
        """Audio-encoder block outputs, mean-pooled over time (frames of padding included where the
        family pads to a fixed window). # {"layers", "pooled": [b, n_layers, d_audio]}"""
        layers = list(range(len(self.module("audio.blocks")))) if layers is None else list(layers)
        got: dict[int, list] = {l: [] for l in layers}

        def reader(l):
            return lambda o: got[l].append(o.detach().float())  # returns None: a read
        with torch.no_grad(), hooked(self, [Op(("audio", l), reader(l)) for l in layers]):
            self.encode_audio([np.asarray(ex.audio, dtype=np.float32) for ex in examples])
        pooled = []
        for l in layers:
            x = torch.cat(got[l], 0) if got[l][0].ndim == 3 else torch.cat(got[l], 0)[None]
            pooled.append(x.mean(-2) if x.ndim == 3 else x.mean(0, keepdim=True))
        return {"layers": layers, "pooled": torch.stack(pooled, 1)}

    # ------------------------------------------------------------------ inside-probe instruments
    def _check_label_strings(self) -> None:
        toks = [tuple(t) for t in self.label_tokens()]
        if not all(toks) or len(set(toks)) != len(toks):
            raise ValueError(f"{self.name}: labels {list(self.labels)} tokenize to {toks}: an empty or repeated "
                             "token string cannot be scored apart from the others")

    def inside_info(self) -> InsideInfo:
        cfg = self.module("decoder").config
        return InsideInfo(n_layers=self.n_layers, n_heads=int(getattr(cfg, "num_attention_heads", 0) or 0),
                          pools=tuple(POOL_SPANS), spans=("audio", "prompt", "cues", "transcript", "answer"),
                          supports=frozenset({"attention", "hidden", "lens", "patch", "attribution"}))

    @staticmethod
    def _inside_spans(sp: dict) -> dict[str, np.ndarray]:
        # the adapter's "prompt" is every non-audio, non-slot position, the answer position
        # included; the probes want a partition, so the answer is taken out of the prompt
        ans = set(np.asarray(sp["answer"]).tolist())
        out = {k: np.asarray(v, dtype=int) for k, v in sp.items() if len(v)}
        out["prompt"] = np.array([p for p in out.get("prompt", []) if p not in ans], dtype=int)
        return out

    def inside_read(self, examples: Sequence[Example], *, attention: bool = False, pools: Sequence[str] = (),
                    lens: bool = False) -> list[Readout]:
        """One encode and one forward for everything asked (final label scores, attention, pools, lens),
        plus one short pass over the multi-token labels' continuations (whole-string scores)."""
        self._check_label_strings()
        batch = self.encode(examples)
        spans = [self._inside_spans(sp) for sp in batch.spans]
        bad = [p for p in pools if p not in POOL_SPANS]
        if bad:
            raise ValueError(f"{self.name}: pools {bad} unknown; it offers {', '.join(POOL_SPANS)}")
        want = sorted({POOL_SPANS[p] for p in pools})
        # "prompt" for pooling is the partition's prompt (answer taken out)
        pb = Batch(batch.embeds, batch.mask, batch.ids, [{**sp, **s} for sp, s in zip(batch.spans, spans)],
                   batch.lengths, batch.utt_ids)
        layers = list(range(self.n_layers + 1))
        got: dict = {}
        ops = self.example_ops(batch, examples)  # an activation intervention of the condition, if any
        ops += self._read_ops(pb, layers, want, got) if want else []
        if attention:
            ops += self._attn_ops(batch, list(range(self.n_layers)), got)
        with torch.no_grad(), (self.eager_attention() if attention else contextlib.nullcontext()):
            if lens:  # the answer row of every residual is read during the prompt's forward
                ans = torch.zeros(len(examples), len(layers), self.module("decoder").config.hidden_size)

                def keep(h, l):
                    ans[:, l] = h[torch.arange(h.shape[0]), batch.answer].detach().float().cpu()
                final, lg = self._label_scores(batch, ops + [Op(("resid", l), lambda h, l=l: keep(h, l)) for l in layers],
                                               lens_hidden=ans)
                lg = lg.float().cpu().numpy()                                       # [b, L + 1, n_labels]
            else:
                final = self._label_scores(batch, ops)
            final = final.float().cpu().numpy()                                     # [b, n_labels]
        reads = [Readout(utt_id=ex.utt_id, spans=sp, seq_len=n, answer_pos=n - 1, final=final[i])
                 for i, (ex, sp, n) in enumerate(zip(examples, spans, batch.lengths))]
        if attention:
            w = torch.stack([got[("attn", l)] for l in range(self.n_layers)], 1)   # [b, L, heads, seq]
            for i, r in enumerate(reads):
                r.attention = w[i, :, :, : r.seq_len].numpy()                       # [L, H, seq]
        if want:
            hs = _stack(got, layers, want, len(examples), "mean")                  # span -> [b, L + 1, d]
            for p in pools:
                for i, r in enumerate(reads):
                    r.pooled[p] = hs[POOL_SPANS[p]][i].numpy()
        if lens:
            for i, r in enumerate(reads):
                r.lens = lg[i]                                                      # [L + 1, n_labels]
        return reads

    def inside_patch(self, target: Example, source: Example, *, span: str, layers: Sequence[int]) -> np.ndarray:
        """All layers in one forward: the target repeated once per layer, row k edited at layers[k].
        A voice span of another length is aligned along time (``time_align``). # [len(layers), n_labels]"""
        self._check_label_strings()
        layers = [int(l) for l in layers]
        caps = self.hidden_states([source], layers=sorted(set(layers)), spans=[span], pool="none")[span][0]
        at = {l: k for k, l in enumerate(sorted(set(layers)))}
        batch = self.encode([target] * len(layers))
        n_t = len(span_pos(batch, 0, span))
        ops = self.example_ops(batch, [target] * len(layers))  # the target's own edits, then the patch
        for k, l in enumerate(layers):
            src = caps[at[l]]                                                       # [n_source, d]
            if span == "audio" and src.shape[0] not in (n_t, 0):
                src = src[time_align(n_t, src.shape[0])]
            ops.append(self.span_op(batch, l, span, [k],
                                    lambda r, cur, src=src: self._patch_values(batch, r, span, cur, src, source.utt_id)))
        with torch.no_grad():
            return self._label_scores(batch, ops).float().cpu().numpy()

    def inside_attribution(self, ex: Example) -> AttributionInputs:
        self._check_label_strings()
        b = self.encode([ex])
        spans = self._inside_spans(b.spans[0])
        # baseline: every content position (audio, prompt words, cue / transcript tokens) holds
        # the pad token's embedding -- "hears nothing, reads padding" -- while the answer
        # position keeps its token so the label is still asked for. An all-zero baseline would
        # sit on RMSNorm's singular point, where the path integral is badly conditioned.
        pad = self._embed_ids([self.tokenizer.pad_token_id or 0])[0].detach()        # [d]
        base = b.embeds.detach().clone()
        for name, pos in spans.items():
            if name != "answer":
                base[0, torch.as_tensor(pos)] = pad.to(base.dtype)

        def forward(x):                                                             # [n, seq, d] -> [n, n_labels]
            n = x.shape[0]
            bb = Batch(x, b.mask.expand(n, -1), b.ids.expand(n, -1), b.spans * n, b.lengths * n, b.utt_ids * n)
            # the example's own edits hold along the path; each label's whole string is scored
            return self._label_scores(bb, self.example_ops(bb, [ex] * n), x.to(self.dtype)).float()

        return AttributionInputs(inputs=(b.embeds.detach().float(),), baselines=(base.float(),), forward=forward,
                                 spans={k: (0, v) for k, v in spans.items() if k != "answer"})


def _stack(got: dict, layers: Sequence[int], spans: Sequence[str], n: int, pool: str) -> dict:
    out = {}
    for s in spans:
        per_row = [torch.stack([got[(l, s)][i] for l in layers]) for i in range(n)]  # each [n_layers, n_span, d]
        if pool == "mean":
            out[s] = torch.stack([r.mean(1) if r.shape[1] else torch.zeros(r.shape[0], r.shape[2]) for r in per_row])
        else:
            out[s] = per_row
    return out
