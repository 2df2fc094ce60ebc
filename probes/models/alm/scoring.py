"""How an ALM adapter answers: closed-set label scoring (shared prefixes, KV cache) and generation.

- closed mode (``predict`` / ``label_logprobs``): the log-probability of each label's token
  sequence after the prompt; the label distribution is softmax over labels of the SUMMED token
  log-probabilities (``length_norm = "sum"``: the probability of the whole label string, which
  is what greedy decoding compares; ``"mean"`` divides by the number of tokens instead). One
  prefix pass per distinct (audio, edits), shared by all its conditions and labels (KV cache:
  prefix -> per-condition suffix -> label continuations), batched;
- generate mode: greedy decoding of up to ``max_new_tokens`` tokens, mapped to a label by
  ``probes.labels.parse_answer`` (an answer that names no label or several is invalid).

Activation edits (``Example.edits``) are applied by the one edit engine (``engine.hooked``)
during the prefix pass, on the rows that carry them.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from probes.adapter import Example, Prediction
from probes.models.alm.engine import Op, hooked, positions
from probes.models.alm.prompt import Batch, left_aligned


class Scoring:
    """Closed-set scoring and generation, mixed into ``ALMAdapter``."""

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
                                          "use adapter.run_with_edits(examples, edits) for other spans")
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
            pos1 = positions(m1)
            edits = [examples[i].edits for i in reps]
            ops = self.edit_ops(pre_batch, [(e, [g for g, es in enumerate(edits) if e in es])
                                            for e in sorted({e for es in edits for e in es}, key=repr)])
            with hooked(self, ops):
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
            scores = self.label_string_scores(first_lp, cache, mfull2, base[:, 0] + last + 1).cpu()
        return torch.log_softmax(scores, -1)

    def label_string_scores(self, first_lp: torch.Tensor, cache, mask: torch.Tensor, next_pos: torch.Tensor, *,
                            lens_first: torch.Tensor | None = None, lens_layers: Sequence[int] = ()):
        """Each label's whole-string score after a prompt already run with ``use_cache=True``.

        ``first_lp`` [n, vocab]: log-probabilities of the answer's first token (the answer
        position's output); ``cache``: the prompt's KV cache, one row per row of ``first_lp``
        (reordered in place); ``mask`` [n, P] its padding mask; ``next_pos`` [n] the position the
        first label token takes. One pass over every multi-token label's tokens but the last adds
        the rest of the string. The score is the sum of the token log-probabilities, or their mean
        under ``length_norm = "mean"`` (the run's policy). Whatever edits made the cache apply to
        the prompt only, as in a plain forward over prompt + label with the same edits.
        No ``torch.no_grad`` inside, so attribution can differentiate through it. # -> [n, n_labels]

        With ``lens_first`` [n, len(lens_layers), vocab] (the logit lens of the answer position at
        those residual layers, log-softmaxed) it also returns the logit lens of the whole string:
        at residual layer ``l`` each label token is read through the final norm + unembedding of
        layer ``l``'s residual at the position before it, i.e. the label's score under the model cut
        after block ``l`` (the early-exit model; at ``l = L`` it is the model's own score).
        # -> ([n, n_labels], [n, len(lens_layers), n_labels])
        """
        labels = self.label_tokens()
        n, K = first_lp.shape[0], len(labels)
        first = torch.tensor([t[0] for t in labels], device=first_lp.device)
        scores = first_lp.float()[:, first]                                       # [n, K]
        lens = lens_first.float()[:, :, first] if lens_first is not None else None  # [n, nl, K]
        multi = [(i, k) for i in range(n) for k, t in enumerate(labels) if len(t) > 1]
        if multi:
            T = max(len(labels[k]) - 1 for _, k in multi)
            ids = torch.zeros(len(multi), T, dtype=torch.long)
            m = torch.zeros(len(multi), T, dtype=torch.long)
            tgt = torch.zeros(len(multi), T, dtype=torch.long)                    # the token each position predicts
            for r, (i, k) in enumerate(multi):
                t = labels[k]
                ids[r, : len(t) - 1] = torch.tensor(t[:-1])
                tgt[r, : len(t) - 1] = torch.tensor(t[1:])
                m[r, : len(t) - 1] = 1
            rows = torch.tensor([i for i, _ in multi])
            cache.reorder_cache(rows.to(self.device))
            emb = self.module("decoder").get_input_embeddings()(ids.to(self.device))
            pos = next_pos.cpu()[rows, None] + torch.arange(T)[None]
            got: dict = {}

            def reader(l):
                return lambda h: got.__setitem__(l, h) or None
            with hooked(self, [Op(("resid", int(l)), reader(l)) for l in (lens_layers if lens is not None else ())]):
                h, _ = self._decode(emb, torch.cat([mask.cpu()[rows], m], 1), pos, cache=cache, use_cache=True)
            gi, gk = rows.to(scores.device), torch.tensor([k for _, k in multi], device=scores.device)
            mm = m.to(scores.device).float()

            def rest(hh, normed):                                                 # [R] sum over the label's later tokens
                lp = torch.log_softmax(self.unembed(hh, normed=normed), -1)       # [R, T, vocab]
                return (lp.gather(-1, tgt.to(lp.device)[..., None])[..., 0].float() * mm).sum(-1)
            scores = scores.index_put((gi, gk), rest(h, True), accumulate=True)
            if lens is not None:
                lens = torch.stack([lens[:, j].index_put((gi, gk), rest(got[l], False), accumulate=True)
                                    for j, l in enumerate(lens_layers)], 1)
        if self.length_norm == "mean":
            counts = torch.tensor([len(t) for t in labels], dtype=torch.float, device=scores.device)
            scores = scores / counts
            lens = lens / counts if lens is not None else None
        elif self.length_norm != "sum":
            raise ValueError(f"length_norm {self.length_norm!r}: use 'sum' or 'mean'")
        return scores if lens is None else (scores, lens)

    def label_logprobs_full(self, examples: Sequence[Example]) -> torch.Tensor:
        """Reference for ``label_logprobs``: one plain forward per (example, label). Slow; tests only."""
        labels = self.label_tokens()
        out = torch.zeros(len(examples), len(labels))
        for i, ex in enumerate(examples):
            batch = self.encode([ex])
            with torch.no_grad():
                for k, t in enumerate(labels):
                    extra = self.module("decoder").get_input_embeddings()(torch.tensor(t, device=self.device))[None]
                    emb = torch.cat([batch.embeds, extra], 1)
                    m = torch.ones(1, emb.shape[1], dtype=torch.long)
                    with hooked(self, self.edit_ops(batch, [(e, [0]) for e in ex.edits])):
                        h, _ = self._decode(emb, m, positions(m))
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
            emb = batch.embeds
            # left-pad so that every row's last real token is the last column
            L = emb.shape[1]
            emb_l = torch.zeros_like(emb)
            m_l = torch.zeros_like(batch.mask)
            for i, ln in enumerate(batch.lengths):
                emb_l[i, L - ln :] = emb[i, :ln]
                m_l[i, L - ln :] = 1
            ops = self.edit_ops(left_aligned(batch, L), [(e, range(n)) for e in examples[0].edits])
            with hooked(self, ops):
                h, cache = self._decode(emb_l, m_l, positions(m_l), use_cache=True)
            mask = m_l
            nxt_pos = positions(m_l)[:, -1:] + 1
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

