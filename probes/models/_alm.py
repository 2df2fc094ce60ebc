"""The shared base of the audio-language-model (ALM) adapters: prompts, scoring, instrumentation.

What it loads: nothing itself. Each family file (``qwen2_audio.py``, ...) subclasses
``ALMAdapter`` and says how to load the weights (hub id or local folder, or a tiny random-weight
instance), how its chat prompt looks, and how its audio tower + projector turn a waveform into
the embeddings that replace the audio placeholder tokens.

How a forward pass is built (the same for every family): the audio is encoded once per distinct
waveform (cached by a hash of its bytes) into ``[n_audio_tokens, hidden]``; the prompt is
tokenized piece by piece (head, audio placeholders, the user text split at the cue and
transcript boundaries, the assistant header), so every stable span is exact by construction;
the text embeddings and the audio embeddings are joined into ``inputs_embeds`` and run through
the decoder stack and the unembedding. Feeding embeddings rather than ``input_ids +
input_features`` is what lets five cue-token conditions share one audio encoding, and it skips
the processor, whose audio keyword differs between versions (a wrong keyword silently drops the
audio); ``check_audio_reached`` asserts that the audio really got in.

What it measures (``predict``): one Prediction per Example.
- closed mode: the log-probability of each label's token sequence after the prompt; the label
  distribution is softmax over labels of the SUMMED token log-probabilities (``length_norm =
  "sum"``: the probability of the whole label string, which is what greedy decoding compares;
  ``"mean"`` divides by the number of tokens instead). One prefix pass per distinct audio,
  shared by all its conditions and labels (KV cache: prefix -> per-condition suffix -> label
  continuations), batched;
- generate mode: greedy decoding of up to ``max_new_tokens`` tokens, mapped to a label by
  ``probes.labels.parse_answer`` (an answer that names no label or several is invalid).

Stable names (probes never see raw paths): token spans ``audio`` (the placeholder positions),
``cues`` and ``transcript`` (the text an intervention slotted in), ``prompt`` (every other
position before the answer), ``answer`` (the last prompt position, whose output is the
distribution of the answer's first token); modules ``decoder`` (the text model),
``decoder.blocks``, ``decoder.attn`` (relative to one block), ``decoder.norm``, ``unembed``,
``audio.blocks``, ``projector`` through each family's ``paths`` table.

The instrumentation API (hidden states, attention from the answer position, ablation,
patching, logit lens, a captum entry point) is documented in docs/models.md and in the
methods below. Layer convention everywhere: ``"input"`` = the input embeddings, ``i`` = the
output of decoder block ``i`` (0-based).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterator, Sequence

import numpy as np
import torch

from probes.adapter import Adapter, Edit, Example, Prediction


class ModelLoadError(FileNotFoundError):
    """Weights that cannot be loaded; the message says what to pass instead.

    A FileNotFoundError so that the CLI prints it as one line (it catches that type)."""


class AudioDroppedError(RuntimeError):
    """The audio did not reach the model (no placeholders, no features, or constant features)."""


NO_HUB = "no model hub here: pass --model-path DIR with the weights, or --tiny"

# nnsight runs a ``with nm.trace(...)`` block by reading the block's source text and looking it up
# at the line number of the running frame. It reads a file's text lazily, at the first trace in
# the process, and never again. If this file is saved between the import and that first trace
# (an edit while a run is starting), the running code's line numbers are looked up in a different
# text and every trace of the process fails with ``WithBlockNotFoundError``. So the text is read
# here, at import, when it is the text the running code was compiled from, and handed to nnsight
# before each trace (``_pin_trace_source``): the traces keep working whatever happens on disk.
_TRACE_FILE = (lambda: None).__code__.co_filename
try:
    _TRACE_SOURCE: str | None = Path(_TRACE_FILE).read_text(encoding="utf-8")
except OSError:  # no source on disk (a zip, bytecode only): nnsight will say so itself
    _TRACE_SOURCE = None


def _pin_trace_source() -> None:
    """Make nnsight read this module's traces from the source it was imported from (see above)."""
    if _TRACE_SOURCE is None:
        return
    try:
        from nnsight.tracing.globals import SOURCES
    except ImportError:  # an nnsight without the cache reads the file itself
        return
    SOURCES[_TRACE_FILE] = _TRACE_SOURCE


@dataclass
class Batch:
    """Full sequences (prompt only) for a batch of examples, right-padded.

    Right padding keeps every real token at the position it would have alone; the pads sit after
    the answer position, and causal attention never lets a real token see them.
    """

    embeds: torch.Tensor            # [b, seq, hidden]
    mask: torch.Tensor              # [b, seq] 1 = real token
    ids: torch.Tensor               # [b, seq] token ids (audio positions hold the placeholder id)
    spans: list[dict[str, np.ndarray]]  # per row: span name -> positions
    lengths: list[int]              # real tokens per row
    utt_ids: list[str] = field(default_factory=list)

    @property
    def answer(self) -> torch.Tensor:
        """Index of the answer position per row. # [b]"""
        return torch.tensor([n - 1 for n in self.lengths])

    def span_mask(self, span: str) -> torch.Tensor:
        """Boolean mask of a span's positions. # [b, seq]"""
        m = torch.zeros(self.mask.shape, dtype=torch.bool)
        for i, sp in enumerate(self.spans):
            if span not in sp:
                raise KeyError(f"span {span!r} unknown; spans: {', '.join(sorted(sp))}")
            m[i, torch.as_tensor(sp[span], dtype=torch.long)] = True
        return m


@dataclass
class _Prompt:
    """One example's prompt as token pieces, before the audio is joined in."""

    head: list[int]        # tokens before the audio placeholders
    n_audio: int
    tail: list[int]        # tokens after the audio, up to and including the assistant header
    tail_spans: dict[str, tuple[int, int]]  # cues / transcript ranges inside ``tail``
    audio_key: str
    split: int             # tokens of ``tail`` shared by every prompt of this family (markers)


def wav_key(wav: np.ndarray, sr: int) -> str:
    return hashlib.sha1(np.ascontiguousarray(wav, dtype=np.float32).tobytes() + str(sr).encode()).hexdigest()


class ALMAdapter(Adapter):
    """Base of every audio-language-model adapter; subclasses fill in the family's specifics."""

    name: ClassVar[str] = "alm"
    hub_id: ClassVar[str] = ""
    hub_ids: ClassVar[tuple[str, ...]] = ()       # other checkpoints the adapter loads
    paths: ClassVar[dict[str, str]] = {}          # stable name -> real module path
    audio_token: ClassVar[str] = ""
    stop_tokens: ClassVar[tuple[str, ...]] = ()   # end-of-answer tokens for generation
    max_seconds: ClassVar[float | None] = 30.0
    single_window: ClassVar[bool] = True          # the feature extractor pads / cuts to one window
    length_norm: str = "sum"
    max_new_tokens: int = 12
    cache_size: int = 64                          # distinct waveforms kept encoded

    def __init__(self, model, tokenizer, feature_extractor, *, weights: str = "real", source: str = "",
                 answer_mode: str = "closed", template_default: str = "plain"):
        if answer_mode not in ("closed", "generate"):
            raise ValueError(f"answer_mode must be 'closed' or 'generate', got {answer_mode!r}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.fe = feature_extractor
        self.weights = weights  # type: ignore[misc]  (instance value overrides the class default)
        self.source = source
        self.answer_mode = answer_mode
        self.template_default = template_default
        self._audio_cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._tok_cache: dict[str, list[int]] = {}
        self._nn = None
        self.source_loader = None   # utt_id -> Example, for Edit(kind="patch") inside predict
        self.stats = {"audio_encoded": 0, "audio_cache_hits": 0, "tokens_forwarded": 0}
        self.audio_token_id = int(tokenizer.convert_tokens_to_ids(self.audio_token))
        for stable in ("decoder", "decoder.blocks", "unembed"):
            self.module(stable)  # fail at load time, not in the middle of a run

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_cli(cls, model_path: str | None = None, tiny: bool = False, device: str | None = None,
                 dtype: str | None = None, trust_remote_code: bool = False, answer_mode: str | None = None,
                 **_: Any) -> "ALMAdapter":
        answer_mode = answer_mode or "closed"
        if tiny:
            return cls.tiny(answer_mode=answer_mode)
        if not model_path:
            # Nothing downloads unless the user names the weights: the hub id is a suggestion only.
            raise ModelLoadError(
                f"{cls.name} needs --model-path: a local folder with the weights, or a hub id such as "
                f"{cls.hub_id} (downloads only where a hub is reachable); --tiny gives a random-weight test instance"
            )
        path = model_path
        local = Path(path).expanduser()
        kw = _load_kwargs(device, dtype, trust_remote_code)
        try:
            return cls.load(str(local) if local.is_dir() else path, kw, answer_mode=answer_mode)
        except (OSError, ValueError) as e:
            if local.is_dir():
                raise ModelLoadError(f"{path}: cannot load {cls.name} weights from this folder ({e})") from None
            raise ModelLoadError(f"{path}: not a local folder and {NO_HUB} (tried: {type(e).__name__})") from None

    @classmethod
    def load(cls, path: str, kw: dict, *, answer_mode: str) -> "ALMAdapter":
        raise NotImplementedError

    @classmethod
    def tiny(cls, *, answer_mode: str = "closed") -> "ALMAdapter":
        """A tiny random-weight instance of the real class, built once per process."""
        key = (cls, answer_mode)
        if key not in _TINY:
            model, tok, fe = cls.build_tiny()
            a = cls(model, tok, fe, weights="random", source="tiny", answer_mode=answer_mode)
            if cls.single_window:  # longer audio would be cut silently by the feature extractor
                a.max_seconds = float(fe.chunk_length)
            _TINY[key] = a
        return _TINY[key]

    @classmethod
    def build_tiny(cls):
        raise NotImplementedError

    def describe(self) -> dict:
        cfg = getattr(self.model, "config", None)
        return {"name": self.name, "weights": self.weights, "source": self.source or self.hub_id,
                "class": type(self.model).__name__, "labels": list(self.labels), "answer_mode": self.answer_mode,
                "length_norm": self.length_norm, "n_layers": self.n_layers,
                "dtype": str(next(self.model.parameters()).dtype), "hub_id": self.hub_id,
                "transformers_config": getattr(cfg, "model_type", None)}

    # ------------------------------------------------------------------ family hooks
    def chat(self, user_text: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]], list[tuple[str, str]]]:
        """(head, mid, end): pieces before the audio, between audio and user text, after it.

        A piece is ("tok", special_token) or ("text", string). ``head`` ends with the audio-start
        marker, ``mid`` starts with the audio-end marker, ``end`` closes the user turn and opens
        the assistant's.
        """
        raise NotImplementedError

    def encode_audio(self, wavs: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """Waveforms (16 kHz mono) -> audio embeddings in the decoder's space. # each [n_i, hidden]"""
        raise NotImplementedError

    def audio_features(self, wavs: Sequence[np.ndarray]) -> dict:
        """The feature extractor's output for ``wavs``: by default one Whisper-style window per clip,
        padded to the window with its frame mask. Families that cut long audio into several
        windows (Audio Flamingo 3, Voxtral) override this."""
        return self.fe(list(wavs), sampling_rate=self.sample_rate, return_attention_mask=True,
                       padding="max_length", return_tensors="pt")

    # ------------------------------------------------------------------ stable names
    def module(self, stable: str, index: int | None = None) -> torch.nn.Module:
        """The real module behind a stable name; ``index`` picks one block. Fails loudly."""
        if stable == "decoder.attn":
            if index is None:
                raise ValueError("decoder.attn needs a layer index")
            return self.module("decoder.blocks", index).get_submodule(self.paths["decoder.attn"])
        if stable not in self.paths:
            raise KeyError(f"{self.name}: no stable module {stable!r}; known: {', '.join(sorted(self.paths))}")
        try:
            mod = self.model.get_submodule(self.paths[stable])
        except AttributeError as e:
            raise KeyError(f"{self.name}: module path {self.paths[stable]!r} for {stable!r} is missing "
                           f"from {type(self.model).__name__} ({e}); the paths table is out of date") from None
        return mod[index] if index is not None else mod

    def envoy(self, nm, stable: str, index: int | None = None):
        """The nnsight Envoy of a stable name inside ``nm = self.nnsight()``."""
        path = self.paths[stable] if stable != "decoder.attn" else self.paths["decoder.blocks"]
        env = nm
        for part in path.split("."):
            env = env[int(part)] if part.isdigit() else getattr(env, part)
        if stable == "decoder.attn":
            env = env[index]
            for part in self.paths["decoder.attn"].split("."):
                env = getattr(env, part)
            return env
        return env[index] if index is not None else env

    @property
    def n_layers(self) -> int:
        return len(self.module("decoder.blocks"))

    @property
    def device(self) -> torch.device:
        return self.module("unembed").weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.module("unembed").weight.dtype

    def nnsight(self):
        """The model wrapped once in ``nnsight.NNsight``; trace it with ``**self.forward_kwargs(batch)``.

        Every trace of this module is opened right after this call, which pins the module's source
        for nnsight (``_pin_trace_source``), so an edit of the file during a run cannot break them.
        """
        if self._nn is None:
            from nnsight import NNsight

            self._nn = NNsight(self.model)
        _pin_trace_source()
        return self._nn

    # ------------------------------------------------------------------ audio
    def audio_embeds(self, examples: Sequence[Example]) -> list[torch.Tensor]:
        """Encoded audio per example, from the cache when the waveform was seen. # each [n_i, hidden]"""
        keys = [self._key(ex) for ex in examples]
        todo: dict[str, np.ndarray] = {}
        for k, ex in zip(keys, examples):
            if k in self._audio_cache:
                self._audio_cache.move_to_end(k)
            elif k not in todo:
                todo[k] = np.asarray(ex.audio, dtype=np.float32)
        self.stats["audio_cache_hits"] += len(set(keys)) - len(todo)
        if todo:
            with torch.no_grad():
                enc = self.encode_audio(list(todo.values()))
            self.stats["audio_encoded"] += len(todo)
            for (k, wav), e in zip(todo.items(), enc):
                self._check_features(wav, e)
                self._audio_cache[k] = e.detach()
        out = [self._audio_cache[k] for k in keys]
        while len(self._audio_cache) > max(self.cache_size, len(set(keys))):
            self._audio_cache.popitem(last=False)
        return out

    def _key(self, ex: Example) -> str:
        if ex.audio is None:
            raise AudioDroppedError(f"{ex.utt_id}: the example carries no audio; {self.name} needs the waveform")
        if ex.sr != self.sample_rate:
            raise AudioDroppedError(f"{ex.utt_id}: audio at {ex.sr} Hz, {self.name} expects {self.sample_rate} Hz")
        return wav_key(ex.audio, ex.sr)

    def _check_features(self, wav: np.ndarray, emb: torch.Tensor) -> None:
        if emb.ndim != 2 or emb.shape[0] == 0:
            raise AudioDroppedError(f"{self.name}: the audio tower returned no frames for a {len(wav) / 16000:.2f} s waveform")
        if not torch.isfinite(emb).all():
            raise AudioDroppedError(f"{self.name}: the audio embeddings hold NaN/inf")

    def check_audio_reached(self, batch: Batch, audio: Sequence[torch.Tensor], wavs: Sequence[np.ndarray]) -> None:
        """Assert the audio got into the sequence: placeholders present, embeddings written, features alive.

        A processor called with the wrong audio keyword returns text-only inputs without
        complaint and every answer becomes the same; this is the check that catches it.
        """
        placeholder = self.module("decoder").get_input_embeddings()(torch.tensor([self.audio_token_id], device=self.device))[0]
        for i, (a, wav) in enumerate(zip(audio, wavs)):
            pos = batch.spans[i]["audio"]
            n_ph = int((batch.ids[i] == self.audio_token_id).sum())
            if len(pos) == 0 or n_ph != len(pos) or n_ph != a.shape[0]:
                raise AudioDroppedError(f"{batch.utt_ids[i]}: {n_ph} audio placeholder tokens for {a.shape[0]} audio "
                                        "frames; the audio did not reach the model")
            got = batch.embeds[i, torch.as_tensor(pos)]
            if torch.allclose(got, placeholder.expand_as(got).to(got.dtype)):
                raise AudioDroppedError(f"{batch.utt_ids[i]}: the audio positions still hold the placeholder embedding")
            if float(np.std(wav)) > 1e-6 and a.shape[0] > 1 and float(a.float().std(0).max()) == 0.0:
                raise AudioDroppedError(f"{batch.utt_ids[i]}: the waveform varies but its audio embeddings are constant "
                                        "over time; the features did not reach the encoder")

    # ------------------------------------------------------------------ prompts
    def user_text(self, ex: Example) -> str:
        from interventions.prompts import render

        return render(ex.template or self.template_default, self.labels, cues=ex.cues, transcript=ex.transcript)

    def _pieces(self, pieces: Sequence[tuple[str, str]]) -> list[int]:
        out: list[int] = []
        for kind, s in pieces:
            if kind == "tok":
                i = self.tokenizer.convert_tokens_to_ids(s)
                if i is None or i == self.tokenizer.unk_token_id:
                    raise ModelLoadError(f"{self.name}: the tokenizer has no special token {s!r}")
                out.append(int(i))
            elif s:
                ids = self._tok_cache.get(s)
                if ids is None:  # the same template text recurs in every condition: tokenize it once
                    ids = self.tokenizer.encode(s, add_special_tokens=False)
                    if len(self._tok_cache) > 4096:
                        self._tok_cache.clear()
                    self._tok_cache[s] = ids
                out.extend(ids)
        return out

    def prompt(self, ex: Example, n_audio: int) -> _Prompt:
        """Tokenize one example's prompt; the cue / transcript spans are found in the rendered text."""
        text = self.user_text(ex)
        head, mid, end = self.chat(text)
        # split the user text at the slotted strings so their token ranges are exact
        cuts = []
        for name, s in (("cues", ex.cues), ("transcript", ex.transcript)):
            if s and s in text:
                k = text.index(s)
                cuts.append((k, k + len(s), name))
        cuts.sort()
        tail = self._pieces(mid)
        n_mid = len(tail)
        spans, at = {}, 0
        for a, b, name in cuts:
            tail += self._pieces([("text", text[at:a])])
            start = len(tail)
            tail += self._pieces([("text", text[a:b])])
            spans[name] = (start, len(tail))
            at = b
        tail += self._pieces([("text", text[at:])]) + self._pieces(end)
        return _Prompt(self._pieces(head), n_audio, tail, spans, self._key(ex), n_mid)

    def _row_spans(self, p: _Prompt) -> dict[str, np.ndarray]:
        h, n = len(p.head), p.n_audio
        total = h + n + len(p.tail)
        sp = {"audio": np.arange(h, h + n)}
        for name, (a, b) in p.tail_spans.items():
            sp[name] = np.arange(h + n + a, h + n + b)
        taken = np.zeros(total, dtype=bool)
        for v in sp.values():
            taken[v] = True
        sp["prompt"] = np.flatnonzero(~taken)
        sp["answer"] = np.array([total - 1])
        sp.setdefault("cues", np.arange(0))
        sp.setdefault("transcript", np.arange(0))
        return sp

    def _embed_ids(self, ids: list[int]) -> torch.Tensor:
        emb = self.module("decoder").get_input_embeddings()
        return emb(torch.tensor(ids, dtype=torch.long, device=self.device))  # [n, hidden]

    def encode(self, examples: Sequence[Example]) -> Batch:
        """Full prompt sequences with the audio joined in, right-padded, with spans. No forward pass."""
        audio = self.audio_embeds(examples)
        prompts = [self.prompt(ex, a.shape[0]) for ex, a in zip(examples, audio)]
        lengths = [len(p.head) + p.n_audio + len(p.tail) for p in prompts]
        L, d = max(lengths), audio[0].shape[1]
        pad = self.tokenizer.pad_token_id or 0
        embeds = torch.zeros(len(examples), L, d, dtype=self.dtype, device=self.device)
        ids = torch.full((len(examples), L), pad, dtype=torch.long)
        mask = torch.zeros(len(examples), L, dtype=torch.long)
        with torch.no_grad():
            for i, (p, a) in enumerate(zip(prompts, audio)):
                row = p.head + [self.audio_token_id] * p.n_audio + p.tail
                ids[i, : len(row)] = torch.tensor(row)
                mask[i, : len(row)] = 1
                h = len(p.head)
                embeds[i, :h] = self._embed_ids(p.head)
                embeds[i, h : h + p.n_audio] = a.to(self.device, self.dtype)
                embeds[i, h + p.n_audio : len(row)] = self._embed_ids(p.tail)
        batch = Batch(embeds, mask, ids, [self._row_spans(p) for p in prompts], lengths, [ex.utt_id for ex in examples])
        self.check_audio_reached(batch, audio, [ex.audio for ex in examples])
        return batch

    # ------------------------------------------------------------------ forward passes
    def forward_kwargs(self, batch: Batch) -> dict:
        """Keyword arguments of the model's own forward for a Batch (for nnsight and plain calls)."""
        return {"inputs_embeds": batch.embeds, "attention_mask": batch.mask.to(self.device), "use_cache": False}

    def _decode(self, embeds, mask_full, pos, cache=None, use_cache=False):
        """The text model over embeddings. # -> [b, s, hidden] last hidden state, cache"""
        self.stats["tokens_forwarded"] += int(embeds.shape[0] * embeds.shape[1])
        out = self.module("decoder")(inputs_embeds=embeds, attention_mask=mask_full.to(self.device),
                                     position_ids=pos.to(self.device), past_key_values=cache, use_cache=use_cache)
        return out.last_hidden_state, out.past_key_values

    def unembed(self, hidden: torch.Tensor, *, normed: bool = True) -> torch.Tensor:
        """Logits from residual-stream vectors: final norm (unless ``normed``) then the unembedding.

        ``normed=True`` means ``hidden`` already went through the final norm (the decoder's own
        output); the logit lens passes block outputs with ``normed=False``. # [..., hidden] -> [..., vocab]
        """
        if not normed:
            hidden = self.module("decoder.norm")(hidden)
        return self.module("unembed")(hidden).float()

    def answer_logits(self, examples: Sequence[Example], edits: Sequence[Edit] = (), *,
                      sources: dict[str, Example] | None = None) -> torch.Tensor:
        """Next-token logits at the answer position under activation edits. # [b, vocab]"""
        batch = self.encode(examples)
        with torch.no_grad():
            embeds = self._edit_input(batch, edits, sources)
            with self._edit_hooks(batch, [e for e in edits if e.layer != "input"], sources):
                h, _ = self._decode(embeds, batch.mask, _positions(batch.mask))
            return self.unembed(h[torch.arange(len(examples)), batch.answer])

    def forward_embeds(self, embeds: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Answer-position logits from given input embeddings (captum's entry point). # [b, seq, d] -> [b, vocab]"""
        h, _ = self._decode(embeds, batch.mask, _positions(batch.mask))
        return self.unembed(h[torch.arange(embeds.shape[0]), batch.answer])

    # ------------------------------------------------------------------ edits
    def _span_values(self, batch: Batch, i: int, span: str, cur: torch.Tensor, e: Edit,
                     sources: dict[str, Example] | None, layer_out: dict | None) -> torch.Tensor:
        """Replacement rows for one row's span under one edit. # [n_span, hidden]"""
        if e.kind == "ablate":
            if e.mode == "zero":
                return torch.zeros_like(cur)
            if e.mode == "mean":  # keep the span's average, remove what varies along it
                return cur.mean(0, keepdim=True).expand_as(cur)
            raise ValueError(f"ablation mode {e.mode!r}: use 'zero' or 'mean'")
        if e.kind == "patch":
            src = layer_out[(e.source, e.layer, span)]
            if src.shape != cur.shape:
                raise ValueError(f"cannot patch span {span!r} of {e.source} ({src.shape[0]} tokens) into "
                                 f"{batch.utt_ids[i]} ({cur.shape[0]} tokens): spans must have equal length"
                                 + (" (adapter.patch(..., align='time') resamples it along time)" if span == "audio" else ""))
            return src.to(cur.dtype)
        raise NotImplementedError(f"{self.name}: edit kind {e.kind!r} is not implemented by ALM adapters")

    def _sources_for(self, edits, sources) -> dict:
        """Capture the activations patch edits need from their source examples."""
        need = [e for e in edits if e.kind == "patch"]
        out = {}
        for e in need:
            src = (sources or {}).get(e.source)
            if src is None and self.source_loader is not None:
                src = self.source_loader(e.source)
            if src is None:
                raise NotImplementedError(
                    f"patch from {e.source!r}: the adapter has no way to get that utterance; pass sources= to "
                    "answer_logits()/patch(), or set adapter.source_loader = fn(utt_id) -> Example")
            out[(e.source, e.layer, e.span)] = self.capture([src], layer=e.layer, span=e.span)[0]
        return out

    def _edit_input(self, batch: Batch, edits, sources) -> torch.Tensor:
        embeds = batch.embeds
        todo = [e for e in edits if e.layer == "input"]
        if not todo:
            return embeds
        caps = self._sources_for(todo, sources)
        embeds = embeds.clone()
        for e in todo:
            for i in range(embeds.shape[0]):
                pos = _span_pos(batch, i, e.span)
                embeds[i, pos] = self._span_values(batch, i, e.span, embeds[i, pos], e, sources, caps)
        return embeds

    @contextlib.contextmanager
    def _edit_hooks(self, batch: Batch, edits: Sequence[Edit], sources, rows: Sequence[int] | None = None) -> Iterator[None]:
        """Forward hooks replacing span positions of decoder block outputs; always removed.

        ``rows`` maps the rows of the batch the hooked pass runs on to rows of ``batch`` (the
        prefix pass of ``predict`` runs one row per distinct audio).
        """
        caps = self._sources_for(edits, sources)
        handles = []

        def make(e: Edit):
            def hook(mod, args, out):
                h = out[0] if isinstance(out, tuple) else out  # [b, s, hidden]
                h = h.clone()
                for r in range(h.shape[0]):
                    i = rows[r] if rows is not None else r
                    pos = _span_pos(batch, i, e.span)
                    pos = pos[pos < h.shape[1]]
                    h[r, pos] = self._span_values(batch, i, e.span, h[r, pos], e, sources, caps)
                return (h, *out[1:]) if isinstance(out, tuple) else h
            return hook

        try:
            for e in edits:
                if not isinstance(e.layer, int) or not 0 <= e.layer < self.n_layers:
                    raise ValueError(f"edit layer {e.layer!r}: use 'input' or 0..{self.n_layers - 1}")
                handles.append(self.module("decoder.blocks", e.layer).register_forward_hook(make(e)))
            yield
        finally:
            for h in handles:
                h.remove()

    # ------------------------------------------------------------------ instrumentation (nnsight)
    @contextlib.contextmanager
    def eager_attention(self) -> Iterator[None]:
        """Switch to eager attention (the only kind that returns weights) and back; it is slower."""
        old = getattr(self.model.config, "_attn_implementation", None) or "sdpa"
        if old != "eager":
            self.model.set_attn_implementation("eager")
        try:
            yield
        finally:
            if old != "eager":
                self.model.set_attn_implementation(old)

    def _layers(self, layers) -> list:
        return ["input", *range(self.n_layers)] if layers is None else list(layers)

    def hidden_states(self, examples: Sequence[Example], layers: Sequence | None = None,
                      spans: Sequence[str] = ("audio", "answer"), pool: str = "mean") -> dict:
        """Residual stream at chosen spans and layers, through an nnsight trace.

        Returns ``{"layers": [...], span: tensor}``: with ``pool="mean"`` each span is
        ``[b, n_layers, hidden]`` (mean over the span's positions; a row with an empty span gets
        zeros), with ``pool="none"`` a list per row of ``[n_layers, n_span, hidden]``.
        Only the requested positions are kept, so memory is ``b x layers x span``.
        """
        layers = self._layers(layers)
        batch = self.encode(examples)
        nm = self.nnsight()
        idx = {s: [_span_pos(batch, i, s) for i in range(len(batch.spans))] for s in spans}
        saved: dict = {}
        with torch.no_grad():
            with nm.trace(**self.forward_kwargs(batch)):
                import nnsight

                got = nnsight.save([])
                for l in layers:
                    if l == "input":
                        continue
                    got.append(self.envoy(nm, "decoder.blocks", l).output)
        blocks = dict(zip([l for l in layers if l != "input"], got))
        for s in spans:
            per_row = []
            for i in range(len(examples)):
                rows = [(batch.embeds if l == "input" else _first(blocks[l]))[i, idx[s][i]] for l in layers]
                per_row.append(torch.stack(rows).float())  # [n_layers, n_span, hidden]
            if pool == "mean":
                saved[s] = torch.stack([r.mean(1) if r.shape[1] else torch.zeros(r.shape[0], r.shape[2]) for r in per_row])
            elif pool == "none":
                saved[s] = per_row
            else:
                raise ValueError(f"pool {pool!r}: use 'mean' or 'none'")
        saved["layers"] = layers
        return saved

    def attention(self, examples: Sequence[Example], layers: Sequence[int] | None = None) -> dict:
        """Per-layer, per-head attention weights from the answer position over the sequence.

        Returns ``{"weights": [b, n_layers, heads, seq] (zeros past a row's length), "layers",
        "spans", "lengths"}``. Eager attention is switched on for this call only.
        """
        layers = list(range(self.n_layers)) if layers is None else list(layers)
        batch = self.encode(examples)
        nm = self.nnsight()
        with torch.no_grad(), self.eager_attention():
            with nm.trace(**self.forward_kwargs(batch)):
                import nnsight

                got = nnsight.save([])
                for l in layers:
                    got.append(self.envoy(nm, "decoder.attn", l).output[1])
        rows = torch.arange(len(examples))
        w = torch.stack([g[rows, :, batch.answer, :] for g in got], 1).float()  # [b, layers, heads, seq]
        w = w * batch.mask[:, None, None, :].to(w.dtype)
        return {"weights": w, "layers": layers, "spans": batch.spans, "lengths": batch.lengths}

    def capture(self, examples: Sequence[Example], layer: int | str, span: str = "audio") -> list[torch.Tensor]:
        """One layer's activations at one span, per example. # each [n_span, hidden]"""
        hs = self.hidden_states(examples, layers=[layer], spans=[span], pool="none")
        return [r[0] for r in hs[span]]

    def ablate(self, examples: Sequence[Example], layer: int | str, span: str = "audio", mode: str = "zero") -> torch.Tensor:
        """Answer-position logits with a span zeroed / mean-replaced at a layer, through nnsight. # [b, vocab]"""
        return self._traced_edit(examples, Edit(kind="ablate", span=span, layer=layer, mode=mode), None)

    def patch(self, target: Sequence[Example], source: Sequence[Example], layer: int | str, span: str = "audio",
              *, align: str = "exact") -> torch.Tensor:
        """Answer-position logits of ``target`` with ``span`` at ``layer`` copied from ``source`` (paired rows).

        ``align="exact"``: the spans must have equal length (equal-duration audio for the
        ``audio`` span), else ValueError. ``align="time"``: an ``audio`` span of another length
        is resampled along time onto the target's, nearest neighbour with the spans' ends aligned
        (``time_align``; the identity when the lengths are equal, so A into A stays exact); text
        spans must still match. # [b, vocab]
        """
        if len(target) != len(source):
            raise ValueError("patch: target and source must pair up row by row")
        if align not in ("exact", "time"):
            raise ValueError(f"patch align {align!r}: use 'exact' or 'time'")
        caps = self.capture(source, layer, span)
        return self._traced_edit(target, Edit(kind="patch", span=span, layer=layer, source="__paired__"), caps,
                                 align_time=align == "time" and span == "audio")

    def _traced_edit(self, examples, e: Edit, caps, *, align_time: bool = False) -> torch.Tensor:
        batch = self.encode(examples)
        pos = [_span_pos(batch, i, e.span) for i in range(len(batch.spans))]
        if caps and align_time:
            caps = [c if c.shape[0] in (len(p), 0) else c[time_align(len(p), c.shape[0])] for c, p in zip(caps, pos)]
        kw = self.forward_kwargs(batch)
        if e.layer == "input":
            emb = batch.embeds.clone()
            for i, p in enumerate(pos):
                cap = {("__paired__", e.layer, e.span): caps[i]} if caps else None
                emb[i, p] = self._span_values(batch, i, e.span, emb[i, p], e, None, cap)
            kw["inputs_embeds"] = emb
            with torch.no_grad():
                logits = self.model(**kw).logits
        else:
            nm = self.nnsight()
            with torch.no_grad():
                with nm.trace(**kw):
                    env = self.envoy(nm, "decoder.blocks", e.layer)
                    h = _first(env.output).clone()
                    for i, p in enumerate(pos):
                        cap = {("__paired__", e.layer, e.span): caps[i]} if caps else None
                        h[i, p] = self._span_values(batch, i, e.span, h[i, p], e, None, cap)
                    env.output = h
                    logits = nm.output.logits.save()
        return logits[torch.arange(len(examples)), batch.answer].float()

    def audio_hidden_states(self, examples: Sequence[Example], layers: Sequence[int] | None = None) -> dict:
        """Audio-encoder block outputs, mean-pooled over time (frames of padding included where the
        family pads to a fixed window). # {"layers", "pooled": [b, n_layers, d_audio]}"""
        blocks = self.module("audio.blocks")
        layers = list(range(len(blocks))) if layers is None else list(layers)
        got: dict[int, list] = {l: [] for l in layers}
        handles = []
        try:
            for l in layers:
                handles.append(blocks[l].register_forward_hook(
                    lambda m, a, o, l=l: got[l].append(_first(o).detach().float())))
            with torch.no_grad():
                self.encode_audio([np.asarray(ex.audio, dtype=np.float32) for ex in examples])
        finally:
            for h in handles:
                h.remove()
        pooled = []
        for l in layers:
            x = torch.cat(got[l], 0) if got[l][0].ndim == 3 else torch.cat(got[l], 0)[None]
            pooled.append(x.mean(-2) if x.ndim == 3 else x.mean(0, keepdim=True))
        return {"layers": layers, "pooled": torch.stack(pooled, 1)}

    # ------------------------------------------------------------------ predict
    def predict(self, examples: Sequence[Example]) -> list[Prediction]:
        if not examples:
            return []
        if self.answer_mode == "generate":
            return self._generate(examples)
        lp = self.label_logprobs(examples)
        out = []
        for row in lp:
            p = torch.softmax(row, 0)
            probs = {l: float(v) for l, v in zip(self.labels, p)}
            out.append(Prediction(label=self.labels[int(p.argmax())], probs=probs))
        return out

    def label_tokens(self) -> list[list[int]]:
        """Token ids of each label as the answer would start (the word as listed in the prompt)."""
        return [self.tokenizer.encode(l, add_special_tokens=False) for l in self.labels]

    def label_logprobs(self, examples: Sequence[Example]) -> torch.Tensor:
        """Per example, the length-normalised log-probability of each label string. # [b, n_labels]

        Shared-prefix evaluation: (1) one pass per distinct (audio, activation edits) over the
        prompt head and the audio, caching keys and values; (2) one pass per example over the
        rest of its prompt on a copy of its group's cache; (3) one pass per (example, label with
        more than one token) over the label's tokens but the last. Positions and attention masks
        are passed explicitly, so the numbers equal a plain forward over each full sequence
        (``tests/test_alm_adapters.py`` checks this).
        """
        for ex in examples:
            bad = [e for e in ex.edits if e.span != "audio"]
            if bad:
                raise NotImplementedError(f"{ex.utt_id}: predict() edits only the audio span (got {bad[0].span!r}); "
                                          "use adapter.answer_logits(examples, edits) for other spans")
        audio = self.audio_embeds(examples)
        prompts = [self.prompt(ex, a.shape[0]) for ex, a in zip(examples, audio)]
        # (1) groups: same audio, same edits, same head -> one prefix
        gkey = [(p.audio_key, ex.edits, tuple(p.head), tuple(p.tail[: p.split])) for p, ex in zip(prompts, examples)]
        groups: dict = {}
        for i, k in enumerate(gkey):
            groups.setdefault(k, []).append(i)
        gidx = {k: g for g, k in enumerate(groups)}
        reps = [g[0] for g in groups.values()]
        pre_tokens = [prompts[i].head + [self.audio_token_id] * prompts[i].n_audio + prompts[i].tail[: prompts[i].split] for i in reps]
        P = max(map(len, pre_tokens))
        G, d = len(reps), audio[0].shape[1]
        emb1 = torch.zeros(G, P, d, dtype=self.dtype, device=self.device)
        m1 = torch.zeros(G, P, dtype=torch.long)
        ids1 = torch.zeros(G, P, dtype=torch.long)
        spans1 = []
        with torch.no_grad():
            for g, i in enumerate(reps):  # left-padded: the prefixes end together
                p, n = prompts[i], len(pre_tokens[g])
                off = P - n
                h = len(p.head)
                emb1[g, off : off + h] = self._embed_ids(p.head)
                emb1[g, off + h : off + h + p.n_audio] = audio[i].to(self.device, self.dtype)
                emb1[g, off + h + p.n_audio : P] = self._embed_ids(p.tail[: p.split])
                m1[g, off:] = 1
                ids1[g, off:] = torch.tensor(pre_tokens[g])
                spans1.append({"audio": np.arange(off + h, off + h + p.n_audio)})
            pre_batch = Batch(emb1, m1, ids1, spans1, [P] * G, [examples[i].utt_id for i in reps])
            self.check_audio_reached(pre_batch, [audio[i] for i in reps], [examples[i].audio for i in reps])
            pos1 = _positions(m1)
            edits = [examples[i].edits for i in reps]
            emb1 = self._edit_input_rows(pre_batch, edits)
            with contextlib.ExitStack() as st:
                for e in sorted({e for es in edits for e in es if e.layer != "input"}, key=repr):
                    rows = [g for g, es in enumerate(edits) if e in es]
                    st.enter_context(self._edit_hooks_rows(pre_batch, e, rows))
                _, cache = self._decode(emb1, m1, pos1, use_cache=True)
            # (2) each example's own suffix on its group's cache
            row_g = [gidx[k] for k in gkey]
            cache.reorder_cache(torch.tensor(row_g, device=self.device))
            suf = [p.tail[p.split :] for p in prompts]
            S = max(map(len, suf))
            n = len(examples)
            ids2 = torch.zeros(n, S, dtype=torch.long)
            m2 = torch.zeros(n, S, dtype=torch.long)
            for i, s in enumerate(suf):
                ids2[i, : len(s)] = torch.tensor(s)
                m2[i, : len(s)] = 1
            emb2 = self.module("decoder").get_input_embeddings()(ids2.to(self.device))
            base = pos1[row_g, -1:] + 1                           # [n, 1] next position after the prefix
            pos2 = base + torch.arange(S)[None]
            mfull2 = torch.cat([m1[row_g], m2], 1)
            h2, cache = self._decode(emb2, mfull2, pos2, cache=cache, use_cache=True)
            last = torch.tensor([len(s) - 1 for s in suf])
            first_lp = torch.log_softmax(self.unembed(h2[torch.arange(n), last]), -1)  # [n, vocab]
            labels = self.label_tokens()
            scores = torch.zeros(n, len(labels))
            counts = torch.tensor([len(t) for t in labels], dtype=torch.float)
            for k, t in enumerate(labels):
                scores[:, k] = first_lp[:, t[0]]
            # (3) the remaining tokens of multi-token labels
            multi = [(i, k) for i in range(n) for k, t in enumerate(labels) if len(t) > 1]
            if multi:
                T = max(len(labels[k]) - 1 for _, k in multi)
                ids3 = torch.zeros(len(multi), T, dtype=torch.long)
                m3 = torch.zeros(len(multi), T, dtype=torch.long)
                for r, (i, k) in enumerate(multi):
                    t = labels[k][:-1]
                    ids3[r, : len(t)] = torch.tensor(t)
                    m3[r, : len(t)] = 1
                rows = torch.tensor([i for i, _ in multi])
                cache.reorder_cache(rows.to(self.device))
                emb3 = self.module("decoder").get_input_embeddings()(ids3.to(self.device))
                pos3 = (base[rows] + last[rows, None] + 1) + torch.arange(T)[None]
                mfull3 = torch.cat([mfull2[rows], m3], 1)
                h3, _ = self._decode(emb3, mfull3, pos3, cache=cache, use_cache=True)
                lp3 = torch.log_softmax(self.unembed(h3), -1)  # [rows, T, vocab]
                for r, (i, k) in enumerate(multi):
                    nxt = labels[k][1:]
                    scores[i, k] += lp3[r, torch.arange(len(nxt)), torch.tensor(nxt)].sum()
        if self.length_norm == "mean":
            scores = scores / counts[None]
        elif self.length_norm != "sum":
            raise ValueError(f"length_norm {self.length_norm!r}: use 'sum' or 'mean'")
        return torch.log_softmax(scores, -1)

    def _edit_input_rows(self, pre_batch: Batch, edits_per_row) -> torch.Tensor:
        emb = pre_batch.embeds
        if not any(e.layer == "input" for es in edits_per_row for e in es):
            return emb
        emb = emb.clone()
        for g, es in enumerate(edits_per_row):
            sub = Batch(emb[g : g + 1], pre_batch.mask[g : g + 1], pre_batch.ids[g : g + 1], [pre_batch.spans[g]],
                        [pre_batch.lengths[g]], [pre_batch.utt_ids[g]])
            emb[g : g + 1] = self._edit_input(sub, [e for e in es if e.layer == "input"], None)
        return emb

    @contextlib.contextmanager
    def _edit_hooks_rows(self, pre_batch: Batch, e: Edit, rows: list[int]) -> Iterator[None]:
        """One layer edit applied to some rows of the prefix pass only."""
        caps = self._sources_for([e], None)

        def hook(mod, args, out):
            h = (out[0] if isinstance(out, tuple) else out).clone()
            for g in rows:
                pos = _span_pos(pre_batch, g, e.span)
                h[g, pos] = self._span_values(pre_batch, g, e.span, h[g, pos], e, None, caps)
            return (h, *out[1:]) if isinstance(out, tuple) else h

        if not isinstance(e.layer, int) or not 0 <= e.layer < self.n_layers:
            raise ValueError(f"edit layer {e.layer!r}: use 'input' or 0..{self.n_layers - 1}")
        handle = self.module("decoder.blocks", e.layer).register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()

    def label_logprobs_full(self, examples: Sequence[Example]) -> torch.Tensor:
        """Reference for ``label_logprobs``: one plain forward per (example, label). Slow; tests only."""
        labels = self.label_tokens()
        out = torch.zeros(len(examples), len(labels))
        for i, ex in enumerate(examples):
            batch = self.encode([ex])
            with torch.no_grad():
                for k, t in enumerate(labels):
                    extra = self.module("decoder").get_input_embeddings()(torch.tensor(t, device=self.device))[None]
                    emb = self._edit_input(batch, [e for e in ex.edits if e.layer == "input"], None)
                    emb = torch.cat([emb, extra], 1)
                    m = torch.ones(1, emb.shape[1], dtype=torch.long)
                    with self._edit_hooks(batch, [e for e in ex.edits if e.layer != "input"], None):
                        h, _ = self._decode(emb, m, _positions(m))
                    lp = torch.log_softmax(self.unembed(h[0]), -1)  # [seq, vocab]
                    L = batch.lengths[0]
                    out[i, k] = sum(lp[L - 1 + j, t[j]] for j in range(len(t)))
        if self.length_norm == "mean":
            out = out / torch.tensor([len(t) for t in labels], dtype=torch.float)[None]
        return torch.log_softmax(out, -1)

    def _generate(self, examples: Sequence[Example]) -> list[Prediction]:
        """Greedy decoding with the KV cache; the answer text is mapped by parse_answer."""
        from probes.labels import parse_answer

        batch = self.encode(examples)
        # left-align for decoding: each row continues right after its own answer position
        n = len(examples)
        stop = {int(self.tokenizer.convert_tokens_to_ids(t)) for t in self.stop_tokens}
        if self.tokenizer.eos_token_id is not None:
            stop.add(int(self.tokenizer.eos_token_id))
        with torch.no_grad():
            edits = [e for ex in examples for e in ex.edits]
            if edits and any(ex.edits != examples[0].edits for ex in examples):
                return [self._generate([ex])[0] for ex in examples]
            emb = self._edit_input(batch, [e for e in examples[0].edits if e.layer == "input"], None)
            # left-pad so that every row's last real token is the last column
            L = emb.shape[1]
            emb_l = torch.zeros_like(emb)
            m_l = torch.zeros_like(batch.mask)
            for i, ln in enumerate(batch.lengths):
                emb_l[i, L - ln :] = emb[i, :ln]
                m_l[i, L - ln :] = 1
            with self._edit_hooks(_left(batch, L), [e for e in examples[0].edits if e.layer != "input"], None):
                h, cache = self._decode(emb_l, m_l, _positions(m_l), use_cache=True)
            mask = m_l
            nxt_pos = _positions(m_l)[:, -1:] + 1
            toks = [[] for _ in range(n)]
            done = torch.zeros(n, dtype=torch.bool)
            last = h[:, -1]
            for _ in range(self.max_new_tokens):
                t = self.unembed(last).argmax(-1)  # [b]
                for i in range(n):
                    if not done[i]:
                        if int(t[i]) in stop:
                            done[i] = True
                        else:
                            toks[i].append(int(t[i]))
                if bool(done.all()):
                    break
                mask = torch.cat([mask, torch.ones(n, 1, dtype=mask.dtype)], 1)
                e = self.module("decoder").get_input_embeddings()(t[:, None].to(self.device))
                h, cache = self._decode(e, mask, nxt_pos, cache=cache, use_cache=True)
                nxt_pos = nxt_pos + 1
                last = h[:, -1]
        out = []
        for tk in toks:
            text = self.tokenizer.decode(tk, skip_special_tokens=True).strip()
            out.append(Prediction(label=parse_answer(text, self.labels), raw=text))
        return out


_TINY: dict = {}


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids from a padding mask: 0.. over real tokens, pads get 0. # [b, s]"""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def _span_pos(batch: Batch, i: int, span: str) -> torch.Tensor:
    """Positions of a span in row ``i``; ``"all"`` = every real token (for whole-sequence patching). # [n]"""
    if span == "all":
        return torch.arange(batch.lengths[i])
    sp = batch.spans[i]
    if span not in sp:
        raise KeyError(f"span {span!r} unknown; spans: all, {', '.join(sorted(sp))}")
    return torch.as_tensor(sp[span], dtype=torch.long)


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


def _first(o):
    return o[0] if isinstance(o, tuple) else o


def _left(batch: Batch, L: int) -> Batch:
    """The same batch's spans shifted for left padding to length L."""
    spans = [{k: v + (L - n) for k, v in sp.items()} for sp, n in zip(batch.spans, batch.lengths)]
    return Batch(batch.embeds, batch.mask, batch.ids, spans, batch.lengths, batch.utt_ids)


def _load_kwargs(device: str | None, dtype: str | None, trust_remote_code: bool) -> dict:
    kw: dict = {"trust_remote_code": bool(trust_remote_code)}
    if dtype:
        if dtype not in ("float32", "bfloat16", "float16"):
            raise ModelLoadError(f"--dtype {dtype}: use float32, bfloat16 or float16")
        kw["dtype"] = getattr(torch, dtype)
    if device == "auto":
        kw["device_map"] = "auto"
    elif device:
        kw["device_map"] = {"": device}
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        kw["local_files_only"] = True
    return kw
