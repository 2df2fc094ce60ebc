"""Wrapping a model that needs its authors' code (SALMONN, DeSTA2, ...) as a workbench Adapter.

Two halves, as in real life:

1. ``ToySALMONN`` stands for the authors' repository: plain torch, its own prompt format
   (``USER: <Speech><SpeechHere></Speech> {prompt}\\nASSISTANT:``), its own character tokenizer, a
   speech encoder, a window-level Q-Former bridge (learned queries cross-attending to each window
   of encoder frames, as SALMONN does over Whisper + BEATs frames) and a small causal decoder. Its
   public interface is what such repositories offer: ``encode_speech``, ``prompt_ids``,
   ``forward(speech_embeds, before_ids, after_ids, output_attentions=)``. Nothing in it knows the
   workbench. Random weights: nothing it outputs is a result.

2. ``WrappedToySALMONN`` is the user's side: an ``Adapter`` (probes/adapter.py) registered as
   ``toy-salmonn`` that calls only that interface and adds the workbench contract: ``predict``
   (closed-set label scores), ``inside_info``, ``inside_read`` (attention from the answer
   position, pooled residuals) and ``inside_patch`` (activation patching of the speech span),
   with layers counted as everywhere in the workbench (residual 0 = decoder input, i = input of
   block i, L = after the last block). Reads and writes are plain forward hooks on the authors'
   blocks, removed on exit. The logit lens and attribution are left out on purpose: the inside
   probes that need them refuse with the reason in ``why_not``.

Run it (the module registers the adapter, then hands the rest of the command line to ``probe``)::

    python examples/wrap_custom_alm.py run predict --model toy-salmonn --tiny --data MANIFEST --out runs/toy
    python examples/wrap_custom_alm.py run attention-share --model toy-salmonn --tiny --data MANIFEST --out runs/toy-att

docs/wrapping.md explains each step; tests/test_alm_families_new.py runs both commands and checks
that the wrapper's sequence equals the authors' own forward.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Sequence

import numpy as np
import torch
from torch import nn

from probes.adapter import Adapter, Example, InsideInfo, Prediction, Readout
from probes.registry import MODELS


# =============================================================== 1. "the authors' code"
class ToySALMONN(nn.Module):
    """A stand-in for an authors'-code speech LLM: encoder -> window Q-Former -> causal decoder."""

    SPECIALS = ("<pad>", "<Speech>", "</Speech>", "<SpeechHere>")
    TEMPLATE = "USER: <Speech><SpeechHere></Speech> {prompt}\nASSISTANT:"

    def __init__(self, d: int = 32, n_layers: int = 2, n_heads: int = 4, window: int = 8, n_query: int = 2):
        super().__init__()
        self.vocab = list(self.SPECIALS) + [chr(i) for i in range(32, 127)] + ["\n"]
        self.index = {t: i for i, t in enumerate(self.vocab)}
        self.window, self.n_query = window, n_query
        self.mel = nn.Linear(201, d)                                      # |STFT| bins -> encoder width
        self.encoder = nn.ModuleList([nn.TransformerEncoderLayer(d, n_heads, 2 * d, dropout=0.0, batch_first=True)
                                      for _ in range(2)])
        self.query = nn.Parameter(torch.randn(1, n_query, d) * 0.5)        # the Q-Former's learned queries
        self.qformer = nn.MultiheadAttention(d, n_heads, batch_first=True)
        self.proj = nn.Linear(d, d)                                        # bridge -> decoder space
        self.embed = nn.Embedding(len(self.vocab), d)
        self.blocks = nn.ModuleList([_Block(d, n_heads) for _ in range(n_layers)])
        self.norm = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, len(self.vocab), bias=False)

    # --- the interface a user calls
    def tokenize(self, text: str) -> list[int]:
        out, i = [], 0
        while i < len(text):
            for s in self.SPECIALS:
                if text.startswith(s, i):
                    out.append(self.index[s]); i += len(s); break
            else:
                out.append(self.index.get(text[i], self.index["?"])); i += 1
        return out

    def prompt_ids(self, prompt: str) -> tuple[list[int], list[int]]:
        """Token ids before and after the speech slot of the authors' template."""
        before, after = self.TEMPLATE.format(prompt=prompt).split("<SpeechHere>")
        return self.tokenize(before), self.tokenize(after)

    def encode_speech(self, wav: torch.Tensor) -> torch.Tensor:
        """16 kHz waveform [samples] -> speech embeddings [n_windows * n_query, d]."""
        spec = torch.stft(wav, 400, 160, window=torch.hann_window(400), return_complex=True).abs()  # [201, frames]
        h = self.mel(torch.log1p(spec.T))[None]                           # [1, frames, d]
        for layer in self.encoder:
            h = layer(h)
        n = -(-h.shape[1] // self.window)
        h = nn.functional.pad(h, (0, 0, 0, n * self.window - h.shape[1])).reshape(n, self.window, -1)
        q, _ = self.qformer(self.query.expand(n, -1, -1), h, h)           # [n, n_query, d]
        return self.proj(q.reshape(n * self.n_query, -1))

    def forward(self, speech: torch.Tensor, before: list[int], after: list[int], output_attentions: bool = False):
        """Logits [seq, vocab] (and per-block attention [heads, seq, seq]) for one example."""
        x = torch.cat([self.embed(torch.tensor(before)), speech, self.embed(torch.tensor(after))])[None]
        return self.decode(x, output_attentions)

    def decode(self, x: torch.Tensor, output_attentions: bool = False):
        attn = []
        for block in self.blocks:
            x, w = block(x, output_attentions)
            attn.append(w)
        logits = self.lm_head(self.norm(x))[0]
        return (logits, attn) if output_attentions else logits


class _Block(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

    def forward(self, x, output_attentions=False):
        n = x.shape[1]
        causal = torch.triu(torch.ones(n, n, dtype=torch.bool), 1)
        h = self.ln1(x)
        a, w = self.attn(h, h, h, attn_mask=causal, need_weights=output_attentions, average_attn_weights=False)
        x = x + a
        return x + self.mlp(self.ln2(x)), (w[0] if output_attentions else None)


# =============================================================== 2. the user's wrapper
@MODELS.register("toy-salmonn")
class WrappedToySALMONN(Adapter):
    """A wrapped authors'-code speech LLM (example): speech encoder, window Q-Former, causal decoder."""

    weights = "random"

    def __init__(self, model: ToySALMONN, weights: str = "random"):
        self.model = model.eval()
        self.weights = weights  # type: ignore[misc]

    @classmethod
    def from_cli(cls, model_path: str | None = None, tiny: bool = False, **_) -> "WrappedToySALMONN":
        torch.manual_seed(0)
        model = ToySALMONN()
        if model_path:  # the authors' weights, saved as safetensors (never a pickle)
            from safetensors.torch import load_file

            model.load_state_dict(load_file(model_path))
            return cls(model, weights="real")
        if not tiny:
            raise FileNotFoundError("toy-salmonn needs --model-path FILE.safetensors, or --tiny for random weights")
        return cls(model)

    def describe(self) -> dict:
        return {**super().describe(), "class": "ToySALMONN (authors' code, wrapped)"}

    # --- the sequence, built with the authors' own pieces; spans come from the piece lengths
    def _pieces(self, ex: Example):
        from interventions.prompts import render

        if ex.sr != self.sample_rate:
            raise ValueError(f"{ex.utt_id}: audio at {ex.sr} Hz, toy-salmonn expects {self.sample_rate} Hz")
        text = render(ex.template or "plain", self.labels, cues=ex.cues, transcript=ex.transcript)
        before, after = self.model.prompt_ids(text)
        speech = self.model.encode_speech(torch.as_tensor(np.asarray(ex.audio, dtype=np.float32)))
        return before, speech, after

    def _embeds(self, ex: Example):
        before, speech, after = self._pieces(ex)
        m = self.model
        x = torch.cat([m.embed(torch.tensor(before)), speech, m.embed(torch.tensor(after))])[None]   # [1, seq, d]
        spans = {"audio": np.arange(len(before), len(before) + len(speech))}
        spans["prompt"] = np.setdiff1d(np.arange(x.shape[1]), spans["audio"])
        return x, spans

    @contextmanager
    def _hooks(self, read: dict | None = None, write: dict | None = None):
        """Residual ``i`` = input of block ``i`` (pre-hook), ``L`` = output of the last block (hook).
        ``read[i] = []`` collects the residual; ``write[i] = fn(h) -> h`` replaces it."""
        blocks, L, handles = self.model.blocks, len(self.model.blocks), []

        def pre(i):
            def fn(mod, args):
                h = args[0]
                if write and i in write:
                    h = write[i](h)
                if read is not None and i in read:
                    read[i].append(h.detach())
                return (h, *args[1:])
            return fn

        def post(mod, args, out):
            h, w = out
            if write and L in write:
                h = write[L](h)
            if read is not None and L in read:
                read[L].append(h.detach())
            return h, w

        try:
            handles = [b.register_forward_pre_hook(pre(i)) for i, b in enumerate(blocks)]
            handles.append(blocks[-1].register_forward_hook(post))
            yield
        finally:
            for h in handles:
                h.remove()

    def _label_scores(self, x: torch.Tensor, write: dict | None = None) -> np.ndarray:
        """Closed-set scores: per label, the summed log-probability of its characters after the prompt.
        Edits in ``write`` touch prompt positions only (the label tokens come after them). # [n_labels]"""
        m, out = self.model, []
        n = x.shape[1]
        for lab in self.labels:
            ids = m.tokenize(" " + lab)  # the authors' template ends with "ASSISTANT:"; answers follow a space
            full = torch.cat([x, m.embed(torch.tensor(ids))[None]], 1)
            with torch.no_grad(), self._hooks(write=write):
                lp = torch.log_softmax(m.decode(full), -1)                 # [seq, vocab]
            out.append(float(sum(lp[n - 1 + k, t] for k, t in enumerate(ids))))
        return np.array(out)

    # --- the contract
    def predict(self, examples: Sequence[Example]) -> list[Prediction]:
        preds = []
        for ex in examples:
            with torch.no_grad():
                x, _ = self._embeds(ex)
            s = self._label_scores(x)
            p = np.exp(s - s.max()); p /= p.sum()
            preds.append(Prediction(label=self.labels[int(p.argmax())], probs=dict(zip(self.labels, map(float, p)))))
        return preds

    def inside_info(self) -> InsideInfo:
        heads = self.model.blocks[0].attn.num_heads
        return InsideInfo(n_layers=len(self.model.blocks), n_heads=heads, pools=("audio-mean", "last"),
                          spans=("audio", "prompt"), supports=frozenset({"attention", "hidden", "patch"}),
                          why_not={"lens": "the wrapper does not expose the authors' final norm + LM head as a lens",
                                   "attribution": "the wrapper gives no differentiable forward for captum"})

    def inside_read(self, examples, *, attention=False, pools=(), lens=False) -> list[Readout]:
        if lens:
            raise self.missing("logit lens", self.inside_info().why_not["lens"])
        out = []
        for ex in examples:
            with torch.no_grad():
                x, spans = self._embeds(ex)
                read = {i: [] for i in range(len(self.model.blocks) + 1)}
                with self._hooks(read=read):
                    _, attn = self.model.decode(x, output_attentions=True)
            n = x.shape[1]
            r = Readout(utt_id=ex.utt_id, spans=spans, seq_len=n, answer_pos=n - 1, final=self._label_scores(x))
            if attention:
                r.attention = torch.stack([w[:, -1, :] for w in attn]).numpy()   # [layers, heads, seq]
            res = torch.stack([read[i][0][0] for i in sorted(read)])            # [L+1, seq, d]
            for p in pools:
                if p == "audio-mean":
                    r.pooled[p] = res[:, spans["audio"]].mean(1).numpy()
                elif p == "last":
                    r.pooled[p] = res[:, -1].numpy()
                else:
                    raise self.missing(f"pool {p!r}", "toy-salmonn gives audio-mean and last")
            out.append(r)
        return out

    def inside_patch(self, target, source, *, span, layers) -> np.ndarray:
        from probes.models.alm.engine import time_align

        with torch.no_grad():
            xt, st = self._embeds(target)
            xs, ss = self._embeds(source)
            read = {i: [] for i in layers}
            with self._hooks(read=read):
                self.model.decode(xs)
        pt, ps = st[span], ss[span]
        rows = []
        for layer in layers:
            src = read[layer][0][0, ps]                                         # [n_src, d]
            if len(ps) != len(pt):
                if span != "audio":
                    raise ValueError(f"span {span!r}: equal length needed ({len(pt)} vs {len(ps)})")
                src = src[time_align(len(pt), len(ps))]

            def put(h, src=src):
                h = h.clone()
                h[0, pt] = src
                return h

            rows.append(self._label_scores(xt, write={layer: put}))
        return np.stack(rows)


if __name__ == "__main__":  # the adapter is registered now: the rest is the ordinary `probe` command line
    from probes.cli import main

    sys.exit(main(sys.argv[1:]))
