"""Shared code of the test-time-scaling probes (``tts-*``, issue 14): decoding, voting, budgets.

The strategies spend more inference compute on one utterance and see whether the answer moves:
chain-of-thought (``tts-cot``), self-consistency (``tts-self-consistency``), best-of-N with the
model's own likelihood or an external verifier as the judge (``tts-best-of-n``, ``weighted``
for votes weighted by the verifier's score) and beam search over the answer (``tts-beam``).

How an answer is decoded. The ALM adapters' own ``predict`` gives one greedy answer; the
strategies need N sampled answers, their likelihoods, and beams. This module decodes with the
adapter's public contract only: ``encode`` (the prompt with the audio merged in, no forward
pass), ``forward_embeds`` (the next-token logits at the last position of given input
embeddings) and the decoder's input embedding (``module("decoder").get_input_embeddings()``)
for the generated tokens, plus the adapter's ``tokenizer`` and ``stop_tokens``. There is no KV
cache: each new token is one forward over the whole sequence, the N samples (or beams) of an
utterance batched together. That is slower than the adapter's cached greedy decoding, but it
is exact (a forward over the full sequence is the reference the cached paths are tested
against) and works for every ALM family without touching the engine. Activation edits
(``Example.edits``) are not applied by ``forward_embeds``: a condition that carries them is
refused.

Budget, per row: ``n`` (samples), ``beam_width``, ``max_new_tokens`` (asked), and what was
spent: ``tokens_generated`` (sampled tokens, stop tokens included), ``forward_passes`` (calls of
the decoder, one per generation step), ``sequences_forwarded`` (rows over all those calls),
``verifier_calls`` and ``wall_s``. Everything but ``wall_s`` is deterministic under the run
seed: the sampler's generator is seeded from (seed, utterance, condition, key), so a row does not
depend on the batch it ran in or on the order of the run.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

from probes.probe import Conditions, PredictionProbe, prediction_row

if TYPE_CHECKING:
    import torch

    from probes.adapter import Adapter, Example, Prediction

BUDGET_KEYS = ("tokens_generated", "forward_passes", "sequences_forwarded", "verifier_calls", "wall_s")
_ANSWER = re.compile(r"answer\s*[:\-]\s*", re.IGNORECASE)


# ---------------------------------------------------------------------------------- answers
def final_answer(text: str, *, reasoning: bool = False) -> str:
    """The part of a generation that holds the answer: what follows the last ``Answer:``; without
    one, the whole text (a one-word answer) or, after reasoning, its last non-empty line."""
    text = text or ""
    parts = _ANSWER.split(text)
    if len(parts) > 1:
        return parts[-1].strip().splitlines()[0].strip() if parts[-1].strip() else ""
    if reasoning:
        lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
        return lines[-1] if lines else ""
    return text.strip()


def parse(text: str, labels: Sequence[str], *, reasoning: bool = False) -> str | None:
    from probes.labels import parse_answer

    return parse_answer(final_answer(text, reasoning=reasoning), labels)


# ---------------------------------------------------------------------------------- decoding
@dataclass
class Candidate:
    """One decoded answer: its tokens, text, parsed label and the model's log-likelihood of it."""

    tokens: list[int]
    text: str
    label: str | None
    logprob: float          # sum of log p(token) at temperature 1, the stop token included when reached
    n_scored: int           # tokens in that sum
    stopped: bool

    @property
    def mean_logprob(self) -> float:
        return self.logprob / max(self.n_scored, 1)


@dataclass
class Budget:
    tokens_generated: int = 0
    forward_passes: int = 0
    sequences_forwarded: int = 0
    verifier_calls: int = 0
    wall_s: float = 0.0

    def as_row(self) -> dict:
        return {k: (round(getattr(self, k), 4) if k == "wall_s" else getattr(self, k)) for k in BUDGET_KEYS}


def seeded_generator(seed: int, *parts: Any) -> "torch.Generator":
    """A CPU torch generator from the run seed and the unit's parts (utterance, condition, key)."""
    import torch

    h = hashlib.sha256("|".join(map(str, (seed, *parts))).encode()).hexdigest()
    return torch.Generator().manual_seed(int(h[:15], 16))


def check_decodable(model: "Adapter", strategy: str) -> None:
    """One clear line when ``model`` cannot be decoded token by token here."""
    from probes.adapter import Adapter

    lacking = [m for m in ("encode", "forward_embeds") if getattr(type(model), m, None) is getattr(Adapter, m)]
    if lacking or not hasattr(model, "tokenizer") or not hasattr(model, "module"):
        raise model.missing(f"answer decoding (for {strategy})",
                            "the test-time-scaling probes sample answers token by token through encode + "
                            "forward_embeds and a tokenizer; run them on an audio-language model (probe list models)")


class Decoder:
    """Token-by-token decoding of one example's answer through the adapter's public contract."""

    def __init__(self, model: "Adapter", ex: "Example", budget: Budget, *, closed: bool = False,
                 kv_cache: bool = False):
        import torch

        if ex.edits:
            raise NotImplementedError(f"{ex.utt_id}: the test-time-scaling probes decode through forward_embeds, which "
                                      "does not apply activation edits; run them on conditions without edits")
        self.model, self.ex, self.budget = model, ex, budget
        self.labels = tuple(model.labels)
        with torch.no_grad():
            self.batch = model.encode([ex])
        n = self.batch.lengths[0]
        self.prefix = self.batch.embeds[0, :n]            # [L, d]
        self.prefix_ids = self.batch.ids[0, :n]
        self.embed = model.module("decoder").get_input_embeddings()
        tok = model.tokenizer
        stop = {int(tok.convert_tokens_to_ids(t)) for t in getattr(model, "stop_tokens", ())}
        if getattr(tok, "eos_token_id", None) is not None:
            stop.add(int(tok.eos_token_id))
        self.stop = stop
        self.trie = LabelTrie.of(model, stop) if closed else None
        if kv_cache and not (callable(getattr(model, "_decode", None)) and callable(getattr(model, "unembed", None))):
            raise ValueError(f"{model.name}: kv_cache=true needs the ALM adapters' cached decoder (_decode, unembed); "
                             "drop kv_cache for this model")
        self.kv_cache = kv_cache

    def _mask(self, logp: "torch.Tensor", seqs: Sequence[Sequence[int]]) -> "torch.Tensor":
        """``logp`` with every token that continues no label set to -inf (closed decoding only)."""
        import torch

        if self.trie is None:
            return logp
        keep = torch.full_like(logp, -math.inf)
        for r, s in enumerate(seqs):
            ids = sorted(self.trie.allowed(s))
            keep[r, ids] = 0.0
        return logp + keep

    def logprobs(self, seqs: Sequence[Sequence[int]]) -> "torch.Tensor":
        """Next-token log-probabilities (temperature 1) after the prompt + each of ``seqs`` (all the
        same length). One forward pass. # [len(seqs), vocab]"""
        import torch

        n, t = len(seqs), len(seqs[0])
        L = self.prefix.shape[0] + t
        with torch.no_grad():
            emb = self.prefix[None].expand(n, -1, -1)
            ids = self.prefix_ids[None].expand(n, -1)
            if t:
                new = torch.tensor([list(s) for s in seqs], dtype=torch.long)
                emb = torch.cat([emb, self.embed(new.to(self.prefix.device)).to(emb.dtype)], 1)
                ids = torch.cat([ids, new.to(ids.device)], 1)
            b = replace(self.batch, embeds=emb, mask=torch.ones(n, L, dtype=torch.long), ids=ids,
                        spans=[self.batch.spans[0]] * n, lengths=[L] * n, utt_ids=[self.ex.utt_id] * n)
            logits = self.model.forward_embeds(emb, b)
        self.budget.forward_passes += 1
        self.budget.sequences_forwarded += n
        return torch.log_softmax(logits.float(), -1)

    def candidate(self, tokens: list[int], logprob: float, n_scored: int, stopped: bool, *, reasoning: bool) -> Candidate:
        text = self.model.tokenizer.decode(tokens, skip_special_tokens=True).strip()
        return Candidate(tokens, text, parse(text, self.labels, reasoning=reasoning), logprob, n_scored, stopped)

    def sample(self, n: int, *, max_new_tokens: int, temperature: float = 1.0, top_k: int = 0,
               generator: "torch.Generator | None" = None, reasoning: bool = False) -> list[Candidate]:
        """``n`` answers: sampled at ``temperature`` (0 = greedy) from the top ``top_k`` tokens (0 = all)."""
        import torch

        toks: list[list[int]] = [[] for _ in range(n)]
        lp = [0.0] * n
        done = [False] * n
        scored = [0] * n
        cached = _Cached(self, n) if self.kv_cache else None
        for _ in range(max_new_tokens):
            live = [i for i in range(n) if not done[i]]
            if not live:
                break
            if cached is not None:
                logp = cached.step(live, toks)                  # [live, vocab]
            else:
                logp = self.logprobs([toks[i] for i in live])  # [live, vocab]
            choose = self._mask(logp, [toks[i] for i in live])  # closed: only label continuations
            if temperature <= 0:
                nxt = choose.argmax(-1)
            else:
                scaled = choose / temperature
                if top_k and top_k < scaled.shape[-1]:
                    kth = scaled.topk(top_k, -1).values[:, -1:]
                    scaled = scaled.masked_fill(scaled < kth, -math.inf)
                nxt = torch.multinomial(torch.softmax(scaled, -1), 1, generator=generator)[:, 0]
            for r, i in enumerate(live):
                t = int(nxt[r])
                lp[i] += float(logp[r, t])          # the model's own log-probability, unmasked
                scored[i] += 1
                self.budget.tokens_generated += 1
                if t in self.stop:
                    done[i] = True
                else:
                    toks[i].append(t)
                    if self.trie is not None and self.trie.complete(toks[i]):
                        done[i] = True          # a whole label and nothing longer: the answer is given
        return [self.candidate(toks[i], lp[i], scored[i], done[i], reasoning=reasoning) for i in range(n)]

    def beam(self, width: int, *, max_new_tokens: int, length_norm: str = "sum", reasoning: bool = False) -> list[Candidate]:
        """Beam search: the ``width`` best answers by summed log-likelihood (``length_norm="mean"``:
        per token), best first. Width 1 is greedy decoding."""
        if width < 1:
            raise ValueError(f"beam width {width}: at least 1")
        if self.kv_cache:
            raise NotImplementedError("kv_cache applies to sampling (self-consistency, best-of-n, cot); beam search "
                                      "decodes uncached (the cache would need reordering by beam parents)")

        def key(b):
            s, n = b[1], b[2]
            return s / max(n, 1) if length_norm == "mean" else s

        beams: list[tuple[list[int], float, int, bool]] = [([], 0.0, 0, False)]  # tokens, logprob, n scored, stopped
        for _ in range(max_new_tokens):
            live = [b for b in beams if not b[3]]
            if not live:
                break
            logp = self._mask(self.logprobs([b[0] for b in live]), [b[0] for b in live])
            pool = [b for b in beams if b[3]]
            top = logp.topk(min(width, logp.shape[-1]), -1)
            for r, b in enumerate(live):
                for v, t in zip(top.values[r].tolist(), top.indices[r].tolist()):
                    if v == -math.inf:         # closed decoding: fewer continuations than the width
                        continue
                    self.budget.tokens_generated += 1
                    stopped = t in self.stop
                    new = b[0] if stopped else b[0] + [t]
                    stopped = stopped or (self.trie is not None and self.trie.complete(new))
                    pool.append((new, b[1] + v, b[2] + 1, stopped))
            pool.sort(key=key, reverse=True)   # stable: ties keep the order of the lower token id
            beams = pool[:width]
        beams.sort(key=key, reverse=True)
        return [self.candidate(t, s, n, st, reasoning=reasoning) for t, s, n, st in beams]


class _Cached:
    """Sampling with the decoder's KV cache: one pass over the prompt (shared by the ``n`` samples),
    then one pass per step over the new token of each live sample. Same budget accounting as the
    uncached path (one forward pass per step; rows = the rows of each call: 1 for the prompt)."""

    def __init__(self, dec: Decoder, n: int):
        self.dec, self.n = dec, n
        self.cache = None
        self.rows: list[int] = []       # sample index of each row in the cache

    def step(self, live: list[int], toks: list[list[int]]) -> "torch.Tensor":
        import torch

        from probes.models.alm.engine import positions

        dec, model = self.dec, self.dec.model
        L = dec.prefix.shape[0]
        with torch.no_grad():
            if self.cache is None:
                mask = torch.ones(1, L, dtype=torch.long)
                h, cache = model._decode(dec.prefix[None], mask, positions(mask), use_cache=True)
                cache.batch_repeat_interleave(self.n)
                self.cache, self.rows = cache, list(range(self.n))
                dec.budget.forward_passes += 1
                dec.budget.sequences_forwarded += 1
                return torch.log_softmax(model.unembed(h[:, -1]).float(), -1).expand(len(live), -1)
            if live != self.rows:       # drop the samples that stopped
                keep = [self.rows.index(i) for i in live]
                self.cache.batch_select_indices(torch.tensor(keep, device=dec.prefix.device))
                self.rows = list(live)
            t = len(toks[live[0]])      # every live sample has generated as many tokens
            new = torch.tensor([[toks[i][-1]] for i in live], dtype=torch.long, device=dec.prefix.device)
            emb = dec.embed(new).to(dec.prefix.dtype)
            mask = torch.ones(len(live), L + t, dtype=torch.long)
            pos = torch.full((len(live), 1), L + t - 1, dtype=torch.long)
            h, self.cache = model._decode(emb, mask, pos, cache=self.cache, use_cache=True)
            dec.budget.forward_passes += 1
            dec.budget.sequences_forwarded += len(live)
            return torch.log_softmax(model.unembed(h[:, -1]).float(), -1)


class LabelTrie:
    """The label words as token sequences (closed decoding): which tokens may come next."""

    def __init__(self, seqs: Sequence[Sequence[int]], stop: set[int]):
        self.next: dict[tuple, set[int]] = {}
        self.ends: set[tuple] = set()
        self.stop = set(stop)
        for s in seqs:
            s = tuple(int(t) for t in s)
            if not s:
                raise ValueError("closed decoding: a label encodes to no tokens")
            for i in range(len(s)):
                self.next.setdefault(s[:i], set()).add(s[i])
            self.ends.add(s)

    @classmethod
    def of(cls, model: "Adapter", stop: set[int]) -> "LabelTrie":
        if hasattr(model, "label_tokens"):
            seqs = model.label_tokens()
        else:
            seqs = [model.tokenizer.encode(l, add_special_tokens=False) for l in model.labels]
        return cls(seqs, stop)

    def allowed(self, seq: Sequence[int]) -> set[int]:
        """Tokens that continue some label after ``seq``; the stop tokens where ``seq`` is a label."""
        key = tuple(seq)
        out = set(self.next.get(key, ()))
        if key in self.ends:
            out |= self.stop
        if not out:
            raise ValueError(f"closed decoding: {list(seq)} is no prefix of any label")
        return out

    def complete(self, seq: Sequence[int]) -> bool:
        """``seq`` is a whole label that no longer label extends (decoding ends there)."""
        key = tuple(seq)
        return key in self.ends and key not in self.next


# ---------------------------------------------------------------------------------- votes
def vote(cands: Sequence[Candidate], labels: Sequence[str], weights: Sequence[float] | None = None) -> tuple[str | None, dict | None, dict]:
    """(label, probs, votes): the most voted valid label (ties: the one voted first), the vote
    shares over ``labels`` (None when no candidate is valid) and the raw vote counts / weights
    (``invalid`` included)."""
    w = [1.0] * len(cands) if weights is None else [float(x) for x in weights]
    votes: dict[str, float] = {}
    first: dict[str, int] = {}
    for i, (c, x) in enumerate(zip(cands, w)):
        k = c.label if c.label is not None else "invalid"
        votes[k] = votes.get(k, 0.0) + x
        first.setdefault(k, i)
    valid = {k: v for k, v in votes.items() if k != "invalid"}
    total = sum(valid.values())
    if not valid or total <= 0:
        return None, None, votes
    best = max(valid, key=lambda k: (valid[k], -first[k]))
    return best, {l: valid.get(l, 0.0) / total for l in labels}, votes


def softmax_weights(scores: Sequence[float]) -> list[float]:
    m = max(scores)
    if m == -math.inf:
        return [0.0] * len(scores)
    e = [math.exp(s - m) for s in scores]
    z = sum(e)
    return [x / z for x in e]


# ---------------------------------------------------------------------------------- verifiers
def load_verifier(name: str, *, tiny: bool = False, model_path: str | None = None) -> "Adapter":
    """Any registered adapter, built as the CLI would (``--model NAME [--tiny] [--model-path P]``)."""
    from probes.registry import MODELS

    return MODELS[name].from_cli(model_path=model_path, tiny=tiny)


def verifier_scores(verifier: "Adapter", ex: "Example", cands: Sequence[Candidate], budget: Budget) -> list[float]:
    """Each candidate's log-score under ``verifier``: log of the verifier's probability of the
    candidate's label (one ``predict`` per utterance, shared by all candidates; a verifier that
    gives no distribution scores its own answer 0 and others -inf). Invalid candidates: -inf."""
    if verifier.needs_audio and ex.sr != verifier.sample_rate:
        raise ValueError(f"verifier {verifier.name} reads audio at {verifier.sample_rate} Hz, the example is at {ex.sr} Hz")
    p = verifier.predict([ex])[0]
    budget.verifier_calls += 1
    out = []
    for c in cands:
        if c.label is None:
            out.append(-math.inf)
        elif p.probs is not None:
            v = float(p.probs.get(c.label, 0.0))
            out.append(math.log(v) if v > 0 else -math.inf)
        else:
            out.append(0.0 if c.label == p.label else -math.inf)
    return out


# ---------------------------------------------------------------------------------- the probes' base
def _positive(name):
    from probes.options import positive

    return positive(name)


@dataclass(frozen=True)
class TTSProbe(Conditions, PredictionProbe):
    """Shared by the ``tts-*`` probes: budget options, seeding, the rows and the summary."""

    strategy: ClassVar[str] = "tts"
    reasoning: ClassVar[bool] = False
    template: str = field(default="plain", metadata={"help": "prompt template (interventions/prompts.json)"})
    max_new_tokens: int = field(default=12, metadata={"help": "tokens generated per answer at most", "validate": lambda v: _positive("max_new_tokens")(v)})
    keep_candidates: bool = field(default=True, metadata={"help": "write every candidate's text, label and log-likelihood into the row"})
    closed: bool = field(default=False, metadata={"help": "closed decoding: only tokens that spell a label word are sampled (every answer is valid; log-likelihoods stay the model's own)"})
    kv_cache: bool = field(default=False, metadata={"help": "sample with the decoder's KV cache (one pass over the prompt, then one token per step; ALM adapters; not tts-beam)"})

    def decide(self, model: "Adapter", ex: "Example", dec: Decoder, gen: "torch.Generator", ctx) -> tuple["Prediction", list[Candidate], dict]:
        raise NotImplementedError

    def budget_asked(self) -> dict:
        return {"n": 1, "beam_width": 1, "max_new_tokens": self.max_new_tokens}

    def execute(self, model, data, items, ctx):
        check_decodable(model, self.name)
        if self.closed and (self.reasoning or self.template.startswith("reason")):
            raise ValueError(f"{self.name}: closed=true decodes label words only, so there is no room for reasoning; "
                             "drop closed or use a template without reasoning")
        if self.kv_cache and self.strategy == "beam":
            raise NotImplementedError("tts-beam: kv_cache applies to sampling (self-consistency, best-of-n, cot); beam "
                                      "search decodes uncached (the cache would need reordering by beam parents)")
        for it in items:
            try:
                ex = self.make_example(model, data, it, ctx)
                budget = Budget()
                t0 = time.perf_counter()
                dec = Decoder(model, ex, budget, closed=self.closed, kv_cache=self.kv_cache)
                gen = seeded_generator(ctx.seed, it.utt_id, it.condition, *it.key)
                pred, cands, extra = self.decide(model, ex, dec, gen, ctx)
                budget.wall_s = time.perf_counter() - t0
                row = prediction_row(ex, it.condition, pred)
                row.update(strategy=self.strategy, **self.budget_asked(), **budget.as_row(), closed=self.closed, **extra)
                if self.keep_candidates:
                    row["candidates"] = [{"text": c.text, "label": c.label, "logprob": round(c.logprob, 5),
                                          "tokens": len(c.tokens), "stopped": c.stopped} for c in cands]
                yield it, [row]
            except Exception as e:  # one utterance's failure is an error row, not the end of the run
                yield it, e

    def summarize(self, run_dir: Path) -> dict:
        from probes.metrics import score_run, score_soft_run
        from probes.store import read_rows

        out = score_run(run_dir)
        df = read_rows(run_dir)
        if not df.empty and "condition" in df:
            out["budget"] = {str(c): {**{k: float(g[k].mean()) for k in BUDGET_KEYS if k in g},
                                      **{k: int(g[k].iloc[0]) for k in ("n", "beam_width", "max_new_tokens") if k in g}}
                             for c, g in df.groupby("condition")}
        try:
            soft = score_soft_run(run_dir)
        except (OSError, ValueError) as e:  # the manifest moved or its soft columns are bad: say so, keep the rest
            soft = {"error": f"{type(e).__name__}: {e}"}
        if soft:
            out["soft"] = soft
        out["strategy"] = self.strategy
        return out


# ---------------------------------------------------------------------------------- metric against budget
def budget_table(run_dirs: Sequence[str | Path]) -> "Any":
    """One row per (run, condition) of tts-* runs: strategy, the budget asked (``n``,
    ``beam_width``, ``max_new_tokens``), the compute spent per utterance (means of the budget
    columns), the hard scores (accuracy, UAR, invalid share, follows-voice on conflict items)
    and, where the manifest had soft labels, the distribution scores (``js``, ``brier``, ...).
    Read from each run's metrics.json (``probe run`` writes it)."""
    import json

    import pandas as pd

    recs = []
    for d in run_dirs:
        d = Path(d)
        m = json.loads((d / "metrics.json").read_text())
        man = json.loads((d / "manifest.json").read_text())
        strategy = m.get("strategy") or man.get("probe", "?")
        info = man.get("model") if isinstance(man.get("model"), dict) else {"name": man.get("model")}
        org = info.get("organism") if isinstance(info.get("organism"), dict) else None
        model = str(info.get("name")) + (f"/{org['name']}" if org and org.get("name") else "")
        for cond, sc in (m.get("conditions") or {}).items():
            b = (m.get("budget") or {}).get(cond, {})
            soft = (m.get("soft") or {}).get(cond, {})
            n = sc.get("n") or 0
            recs.append({"run": str(d), "strategy": strategy, "model": model, "condition": cond, "weights": man.get("weights"),
                         **{k: b.get(k) for k in ("n", "beam_width", "max_new_tokens", *BUDGET_KEYS)},
                         "accuracy": sc.get("accuracy"), "uar": sc.get("uar"),
                         "invalid_share": (sc.get("invalid") or 0) / n if n else None,
                         "follows_voice": sc.get("follows_voice"),
                         **{k: soft.get(k) for k in ("js", "kl_to_soft", "brier", "ece", "top2_agreement",
                                                     "accuracy_majority")}})
    return pd.DataFrame.from_records(recs)


def plot_budget(run_dirs: Sequence[str | Path], *, metric: str = "accuracy", x: str = "tokens_generated",
                condition: str = "none", ax=None, title: str | None = None):
    """A metric against compute (``x``: tokens_generated, forward_passes, wall_s, n ...), one line
    per strategy (per model and strategy when the runs come from several models, e.g. organisms),
    from tts-* run folders. Runs with random weights are said so in the title."""
    import matplotlib.pyplot as plt

    t = budget_table(run_dirs)
    if t.empty:
        raise ValueError("plot_budget: no scored conditions in these run folders")
    if metric not in t or x not in t:
        raise KeyError(f"plot_budget: metric {metric!r} / x {x!r} not in {', '.join(t.columns)}")
    t = t[t["condition"] == condition]
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    by = ["model", "strategy"] if t["model"].nunique() > 1 else ["strategy"]
    for key, g in t.groupby(by):
        g = g.sort_values(x)
        ax.plot(g[x], g[metric], marker="o", label=": ".join(map(str, key)) if len(by) > 1 else str(key[0]))
    ax.set_xlabel(x.replace("_", " ") + " per utterance")
    ax.set_ylabel(metric.replace("_", " "))
    random = (t["weights"] == "random").any()
    ax.set_title((title or f"{metric} against compute") + ("\n(RANDOM weights: not results)" if random else ""))
    ax.legend(fontsize=8)
    return ax
