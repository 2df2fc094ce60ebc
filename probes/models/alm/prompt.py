"""How an ALM adapter turns an Example into the decoder's input: prompt pieces, audio, spans.

The audio is encoded once per distinct waveform (cached by a hash of its bytes) into
``[n_audio_tokens, hidden]``; the prompt is tokenized piece by piece (head, audio placeholders,
the user text split at the cue and transcript boundaries, the assistant header), so every stable
span is exact by construction; the text embeddings and the audio embeddings are joined into
``inputs_embeds`` (``encode`` -> ``Batch``). Feeding embeddings rather than ``input_ids +
input_features`` lets five cue-token conditions share one audio encoding and skips the
processor, whose audio keyword differs between versions (a wrong keyword silently drops the
audio); ``check_audio_reached`` asserts that the audio really got in.

Spans: ``audio`` (the placeholder positions), ``cues`` and ``transcript`` (the text an
intervention slotted in), ``prompt`` (every other position before the answer), ``answer`` (the
last prompt position, whose output is the distribution of the answer's first token).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from probes.adapter import Example


class ModelLoadError(FileNotFoundError):
    """Weights that cannot be loaded; the message says what to pass instead.

    A FileNotFoundError so that the CLI prints it as one line (it catches that type)."""


class AudioDroppedError(RuntimeError):
    """The audio did not reach the model (no placeholders, no features, or constant features)."""


NO_HUB = "no model hub here: pass --model-path DIR with the weights, or --tiny"

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
class Prompt:
    """One example's prompt as token pieces, before the audio is joined in."""

    head: list[int]        # tokens before the audio placeholders
    n_audio: int
    tail: list[int]        # tokens after the audio, up to and including the assistant header
    tail_spans: dict[str, tuple[int, int]]  # cues / transcript ranges inside ``tail``
    audio_key: str
    split: int             # tokens of ``tail`` shared by every prompt of this family (markers)


def wav_key(wav: np.ndarray, sr: int) -> str:
    return hashlib.sha1(np.ascontiguousarray(wav, dtype=np.float32).tobytes() + str(sr).encode()).hexdigest()


class PromptBuilding:
    """Prompt building and audio encoding, mixed into ``ALMAdapter`` (which supplies ``chat``,
    ``encode_audio``, ``module``, ``tokenizer``, ``device``, ``dtype``)."""

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

    def prompt(self, ex: Example, n_audio: int) -> Prompt:
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
        # The user text (with any plain text that ends ``mid``) is tokenized in ONE call, as the real
        # chat template + tokenizer do: cutting it at the slots changed the BPE merges at the cut
        # (e.g. '."' + '\n' is one Qwen token). Span = the tokens whose characters overlap the slot.
        lead = ""
        while mid and mid[-1][0] == "text":
            lead = mid[-1][1] + lead
            mid = mid[:-1]
        tail = self._pieces(mid)
        n_mid = len(tail)
        spans = {}
        full = lead + text
        if cuts and getattr(self.tokenizer, "is_fast", False):
            enc = self.tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
            ids, offs = enc["input_ids"], enc["offset_mapping"]
            for a, b, name in cuts:
                a, b = a + len(lead), b + len(lead)
                over = [k for k, (s, e) in enumerate(offs) if s < b and e > a]
                spans[name] = (len(tail) + over[0], len(tail) + over[-1] + 1)
            tail += list(ids)
        elif cuts:  # slow tokenizer without offsets: cut at the slots (exact only if no merge crosses a cut)
            at = 0
            full_cuts = [(a + len(lead), b + len(lead), name) for a, b, name in cuts]
            for a, b, name in full_cuts:
                tail += self._pieces([("text", full[at:a])])
                start = len(tail)
                tail += self._pieces([("text", full[a:b])])
                spans[name] = (start, len(tail))
                at = b
            tail += self._pieces([("text", full[at:])])
        else:
            tail += self._pieces([("text", full)])
        lead_ids = self._pieces([("text", lead)])
        if lead_ids and tail[n_mid:n_mid + len(lead_ids)] == lead_ids:
            n_mid += len(lead_ids)
        tail += self._pieces(end)
        return Prompt(self._pieces(head), n_audio, tail, spans, self._key(ex), n_mid)

    def _row_spans(self, p: Prompt) -> dict[str, np.ndarray]:
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



_Prompt = Prompt  # the name it had in _alm.py


def span_pos(batch: Batch, i: int, span: str) -> torch.Tensor:
    """Positions of a span in row ``i``; ``"all"`` = every real token (for whole-sequence patching). # [n]"""
    if span == "all":
        return torch.arange(batch.lengths[i])
    sp = batch.spans[i]
    if span not in sp:
        raise KeyError(f"span {span!r} unknown; spans: all, {', '.join(sorted(sp))}")
    return torch.as_tensor(sp[span], dtype=torch.long)


def left_aligned(batch: Batch, L: int) -> Batch:
    """The same batch's spans shifted for left padding to length L."""
    spans = [{k: v + (L - n) for k, v in sp.items()} for sp, n in zip(batch.spans, batch.lengths)]
    return Batch(batch.embeds, batch.mask, batch.ids, spans, batch.lengths, batch.utt_ids)
