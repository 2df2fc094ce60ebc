"""The test-time-scaling probes (``tts-*``, probes/library/tts_*.py, shared code in _tts.py).

Tiny random-weight Qwen2-Audio instances: the answers mean nothing, so the tests check what
must hold whatever the weights: determinism under the seed, budget accounting (tokens,
forward passes, rows forwarded), votes summing to N, beam width 1 equal to greedy decoding
(and to the adapter's own cached greedy generation), the verifier hook choosing by the
verifier, clear refusals. Budgets are kept small (the CPU is shared).
"""

from __future__ import annotations

import json
import math

import pytest

from probes.cli import main
from probes.library import _tts
from probes.store import read_rows

MODEL = "qwen2-audio"


def _run(probe, manifest, out, *sets, seed=0, limit=2):
    args = ["run", probe, "--model", MODEL, "--tiny", "--data", str(manifest), "--out", str(out), "--quiet",
            "--strict", "--seed", str(seed), "--limit", str(limit)]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    return read_rows(out), json.loads((out / "metrics.json").read_text())


def _same_but_time(a, b):
    cols = [c for c in a.columns if c != "wall_s"]
    return a[cols].to_dict("records") == b[cols].to_dict("records")


# ---------------------------------------------------------------------------------- pure parts
def test_final_answer_and_parse():
    labels = ("neutral", "happy", "sad", "angry")
    assert _tts.final_answer("The voice is low.\nThe words are calm.\nAnswer: sad.") == "sad."
    assert _tts.parse("Tone: shaky. Words: about loss. answer - Sad", labels) == "sad"
    assert _tts.parse("angry", labels) == "angry"
    # reasoning without an Answer: line: the last line is read, not a label named on the way
    assert _tts.parse("It sounds angry at first.\nbut mostly sad", labels, reasoning=True) == "sad"
    assert _tts.parse("It sounds angry at first.\nbut mostly sad", labels) is None   # names two labels


def _cand(label, lp=-1.0, n=1):
    return _tts.Candidate([1] * n, label or "??", label, lp, n, True)


def test_vote_counts_ties_and_invalid():
    labels = ("neutral", "happy", "sad")
    cands = [_cand("sad"), _cand(None), _cand("happy"), _cand("happy"), _cand("sad")]
    label, probs, votes = _tts.vote(cands, labels)
    assert sum(votes.values()) == len(cands) and votes["invalid"] == 1
    assert label == "sad"                           # tie 2-2: the label voted first
    assert probs == {"neutral": 0.0, "happy": 0.5, "sad": 0.5}
    assert _tts.vote([_cand(None)] * 3, labels)[:2] == (None, None)
    # weighted votes: softmax of log-scores -1 and -2 -> e^-1 / (e^-1 + e^-2) = 0.7310586 for happy
    w = _tts.softmax_weights([-2.0, -1.0])
    label, probs, _ = _tts.vote([_cand("sad"), _cand("happy")], labels, w)
    assert label == "happy" and probs["happy"] == pytest.approx(0.7310586, abs=1e-6)


class _StubDecoder:
    """Stands in for the Decoder: fixed candidates, a budget."""

    def __init__(self, cands):
        self.cands, self.budget = cands, _tts.Budget()

    def sample(self, n, **kw):
        return self.cands[:n]


class _Labels:
    labels = ("neutral", "happy", "sad", "angry")


def test_best_of_n_own_likelihood_and_external_verifier():
    from probes.adapter import Example
    from probes.library.tts_best_of_n import TTSBestOfN
    from probes.probe import RunContext

    ex = Example("u1", row={"acoustic_label": "sad", "semantic_label": "happy"})
    # own likelihood per token: happy -1.0, sad -3.0, invalid -0.5 (never chosen while a valid one exists)
    cands = [_cand("happy", -2.0, 2), _cand("sad", -3.0, 1), _cand(None, -0.5, 1)]
    pred, _, extra = TTSBestOfN(n=3).decide(_Labels(), ex, _StubDecoder(cands), None, RunContext())
    assert pred.label == "happy" and extra["chosen"] == 0 and extra["verifier"] == "self"
    pred, _, _ = TTSBestOfN(n=3, score="sum").decide(_Labels(), ex, _StubDecoder(cands), None, RunContext())
    assert pred.label == "happy"                    # -2 > -3 also summed
    # the voice oracle as the verifier picks the candidate with the acoustic label, once per utterance
    dec = _StubDecoder(cands)
    pred, _, extra = TTSBestOfN(n=3, verifier="voice-oracle").decide(_Labels(), ex, dec, None, RunContext())
    assert pred.label == "sad" and extra["verifier"] == "voice-oracle" and dec.budget.verifier_calls == 1
    # weighted, own likelihood: weights softmax(-1, -3, -0.5) over candidates; invalid's weight is not in probs
    pred, _, extra = TTSBestOfN(n=3, weighted=True).decide(_Labels(), ex, _StubDecoder(cands), None, RunContext())
    e = [math.exp(-1.0), math.exp(-3.0), math.exp(-0.5)]
    assert pred.label == "happy" and pred.probs["happy"] == pytest.approx(e[0] / (e[0] + e[1]))
    assert sum(extra["votes"].values()) == pytest.approx(1.0, abs=1e-5)


def test_refuses_a_model_it_cannot_decode(tiny_manifest, tmp_path):
    from probes.adapter import MissingInstrument
    from probes.data.manifest import Manifest
    from probes.probe import run_probe
    from probes.registry import MODELS, PROBES

    with pytest.raises(MissingInstrument, match="answer decoding"):
        run_probe(PROBES["tts-self-consistency"](), MODELS["voice-oracle"](), Manifest.read(tiny_manifest),
                  tmp_path / "r", progress=False, strict=True)


# ---------------------------------------------------------------------------------- on a tiny ALM
def test_beam_width_one_is_greedy():
    from probes.registry import MODELS
    from tests.fixtures.alm import alm_examples

    closed = MODELS[MODEL].tiny()
    gen = MODELS[MODEL].tiny(answer_mode="generate")
    ex = alm_examples(1)[0]
    k = gen.max_new_tokens
    b1, b2 = _tts.Budget(), _tts.Budget()
    (beam,) = _tts.Decoder(closed, ex, b1).beam(1, max_new_tokens=k)
    (greedy,) = _tts.Decoder(closed, ex, b2).sample(1, max_new_tokens=k, temperature=0.0)
    assert beam.tokens == greedy.tokens and beam.logprob == pytest.approx(greedy.logprob, abs=1e-4)
    # ... and equal to the adapter's own greedy generation (KV cache, left padding)
    assert gen.predict([ex])[0].raw == greedy.text
    # budget: one forward per generated token, one row each
    assert b2.forward_passes == b2.tokens_generated == b2.sequences_forwarded == len(greedy.tokens) + int(greedy.stopped)
    assert b1.forward_passes == b2.forward_passes


def test_beam_budget_accounting():
    from probes.registry import MODELS
    from tests.fixtures.alm import alm_examples

    b = _tts.Budget()
    beams = _tts.Decoder(MODELS[MODEL].tiny(), alm_examples(1)[0], b).beam(3, max_new_tokens=3)
    assert len(beams) == 3
    assert b.tokens_generated == 3 * b.sequences_forwarded      # each forwarded beam expands 3 continuations
    assert b.forward_passes <= 3 and b.sequences_forwarded <= 1 + 3 + 3
    assert [x.logprob for x in beams] == sorted((x.logprob for x in beams), reverse=True)


def test_self_consistency_seeded_votes_and_budget(tiny_manifest, tmp_path):
    sets = ("n=3", "max_new_tokens=4", "temperature=1.0")
    a, m = _run("tts-self-consistency", tiny_manifest, tmp_path / "a", *sets)
    b, _ = _run("tts-self-consistency", tiny_manifest, tmp_path / "b", *sets)
    c, _ = _run("tts-self-consistency", tiny_manifest, tmp_path / "c", *sets, seed=1)
    assert len(a) == 2 and _same_but_time(a, b)                 # same seed: the same rows
    assert [r["candidates"] for r in a.to_dict("records")] != [r["candidates"] for r in c.to_dict("records")]
    for r in a.to_dict("records"):
        assert sum(r["votes"].values()) == r["n"] == 3 == len(r["candidates"])
        spent = sum(x["tokens"] + int(x["stopped"]) for x in r["candidates"])
        assert r["tokens_generated"] == spent == r["sequences_forwarded"]
        assert r["forward_passes"] == max(x["tokens"] + int(x["stopped"]) for x in r["candidates"]) <= 4
        assert r["wall_s"] > 0 and r["strategy"] == "self-consistency" and r["max_new_tokens"] == 4
        if isinstance(r["pred"], str):
            assert sum(r["probs"].values()) == pytest.approx(1.0, abs=1e-5)
            assert r["votes"][r["pred"]] == max(v for k, v in r["votes"].items() if k != "invalid")
    assert m["budget"]["none"]["n"] == 3 and m["strategy"] == "self-consistency"
    assert m["budget"]["none"]["tokens_generated"] == pytest.approx(a["tokens_generated"].mean())


def test_cot_and_verifier_runs_from_the_cli(tiny_manifest, tmp_path):
    rows, _ = _run("tts-cot", tiny_manifest, tmp_path / "cot", "max_new_tokens=5", limit=1)
    r = rows.iloc[0]
    assert r["raw"] == _tts.final_answer(r["generation"], reasoning=True) and r["tokens_generated"] <= 5
    rows, _ = _run("tts-best-of-n", tiny_manifest, tmp_path / "bon", "n=2", "max_new_tokens=3", "verifier=voice-oracle",
                   limit=1)
    r = rows.iloc[0]
    assert r["verifier"] == "voice-oracle" and r["verifier_calls"] == 1 and len(r["candidates"]) == 2
    labels = [x["label"] for x in r["candidates"]]
    if r["acoustic_label"] in labels:
        assert r["pred"] == r["acoustic_label"]


def test_budget_table_and_plot(tiny_manifest, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    runs = []
    for i, w in enumerate((1, 2)):
        out = tmp_path / f"beam{w}"
        _run("tts-beam", tiny_manifest, out, f"beam_width={w}", "max_new_tokens=2", limit=1)
        runs.append(out)
    t = _tts.budget_table(runs)
    assert list(t["beam_width"]) == [1, 2] and set(t["strategy"]) == {"beam"}
    assert t["tokens_generated"].iloc[1] > t["tokens_generated"].iloc[0]   # wider beams spend more
    ax = _tts.plot_budget(runs, metric="invalid_share")
    assert "RANDOM" in ax.get_title() and len(ax.lines) == 1
    assert set(t["model"]) == {"qwen2-audio"}
    # runs of two models (e.g. two organisms): one line per model and strategy
    import shutil

    other = tmp_path / "beam1-organism"
    shutil.copytree(runs[0], other)
    man = json.loads((other / "manifest.json").read_text())
    man["model"] = {**man["model"], "organism": {"name": "voice-reliant"}}
    (other / "manifest.json").write_text(json.dumps(man))
    assert set(_tts.budget_table([*runs, other])["model"]) == {"qwen2-audio", "qwen2-audio/voice-reliant"}
    ax = _tts.plot_budget([*runs, other], metric="invalid_share")
    assert sorted(line.get_label() for line in ax.lines) == ["qwen2-audio/voice-reliant: beam", "qwen2-audio: beam"]
    with pytest.raises(KeyError, match="metric"):
        _tts.plot_budget(runs, metric="nope")


def test_unknown_verifier_fails_when_options_are_read():
    from probes.library.tts_best_of_n import TTSBestOfN
    from probes.options import OptionError, build_probe

    with pytest.raises(OptionError, match="voice-oracle"):
        build_probe(TTSBestOfN, {"verifier": "voice-orcle"})
    assert build_probe(TTSBestOfN, {"verifier": "voice-oracle", "n": "3"}).n == 3


def test_soft_scores_in_metrics_when_the_manifest_has_soft_labels(tiny_manifest, tmp_path):
    import pandas as pd

    df = pd.read_csv(tiny_manifest, dtype=str, keep_default_na=False)
    df["soft_happy"] = ["3", "1"] + [""] * 6
    df["soft_sad"] = ["1", "3"] + [""] * 6
    data = tmp_path / "data"
    data.mkdir()
    for w in tiny_manifest.parent.glob("*.wav"):
        (data / w.name).write_bytes(w.read_bytes())
    df.to_csv(data / "manifest.csv", index=False)
    rows, m = _run("tts-beam", data / "manifest.csv", tmp_path / "run", "beam_width=2", "max_new_tokens=2")
    soft = m["soft"]["none"]
    assert soft["n_majority"] == 2                              # both annotated rows have a unique top label
    valid = sum(isinstance(p, dict) for p in rows["probs"]) if "probs" in rows else 0
    assert soft["n_soft"] == valid                              # rows with a distribution are the ones scored
    assert "happy" in m["soft"]["labels"] and "sad" in m["soft"]["labels"]


# ---------------------------------------------------------------------------------- closed decoding
def test_label_trie():
    trie = _tts.LabelTrie([[5, 6], [5, 7, 8], [9]], stop={0})
    assert trie.allowed([]) == {5, 9} and trie.allowed([5]) == {6, 7}
    assert trie.complete([5, 6]) and trie.complete([9]) and not trie.complete([5, 7])
    both = _tts.LabelTrie([[5], [5, 6]], stop={0})          # a label that prefixes another: stop or go on
    assert both.allowed([5]) == {0, 6} and not both.complete([5]) and both.complete([5, 6])
    with pytest.raises(ValueError, match="no prefix"):
        trie.allowed([6])


def test_closed_decoding_answers_labels_and_wide_beam_equals_label_scoring():
    """Closed decoding samples only label words (random weights: every answer valid); a beam as wide
    as the label set is an exhaustive search over it, so its beams' log-likelihoods are the
    adapter's own closed-set label scores (summed token log-probabilities)."""
    import torch

    from probes.registry import MODELS
    from tests.fixtures.alm import alm_examples

    model = MODELS[MODEL].tiny()
    ex = alm_examples(1)[0]
    b = _tts.Budget()
    cands = _tts.Decoder(model, ex, b, closed=True).sample(6, max_new_tokens=8, temperature=1.0,
                                                           generator=torch.Generator().manual_seed(0))
    assert all(c.label in model.labels and c.stopped for c in cands)
    assert b.tokens_generated == sum(len(c.tokens) for c in cands) == sum(c.n_scored for c in cands)
    k = len(model.labels)
    beams = _tts.Decoder(model, ex, _tts.Budget(), closed=True).beam(k, max_new_tokens=8)
    assert sorted(x.label for x in beams) == sorted(model.labels)
    assert model.length_norm == "sum"
    # label_logprobs renormalises over the labels (log-softmax of the summed scores): compare so
    ref = dict(zip(model.labels, model.label_logprobs([ex])[0].tolist()))
    z = torch.logsumexp(torch.tensor([x.logprob for x in beams]), 0).item()
    for x in beams:
        assert x.logprob - z == pytest.approx(ref[x.label], abs=1e-3)
    assert beams[0].label == max(ref, key=ref.get)


def test_closed_runs_from_the_cli_and_refuses_reasoning(tiny_manifest, tmp_path):
    rows, m = _run("tts-self-consistency", tiny_manifest, tmp_path / "sc", "n=3", "closed=true")
    assert (rows["n_invalid"] == 0).all() and rows["closed"].all()
    for r in rows.to_dict("records"):
        assert sum(r["probs"].values()) == pytest.approx(1.0, abs=1e-4) and r["votes"][r["pred"]] == max(r["votes"].values())
    with pytest.raises(ValueError, match="closed"):
        main(["run", "tts-cot", "--model", MODEL, "--tiny", "--data", str(tiny_manifest), "--out", str(tmp_path / "c"),
              "--quiet", "--strict", "--limit", "1", "--set", "closed=true"])


# ---------------------------------------------------------------------------------- KV cache
def test_kv_cache_sampling_equals_the_uncached_decoder():
    """The cached sampler gives the same tokens and log-likelihoods as the full-sequence reference,
    greedy and sampled, with samples stopping at different steps (closed decoding: labels of
    different lengths), and the same number of forward passes; the prompt is forwarded once."""
    import torch

    from probes.registry import MODELS
    from tests.fixtures.alm import alm_examples

    model = MODELS[MODEL].tiny()
    gen = MODELS[MODEL].tiny(answer_mode="generate")
    ex = alm_examples(1)[0]
    for temp, closed in ((0.0, False), (1.0, False), (1.0, True)):
        out = []
        for kv in (False, True):
            b = _tts.Budget()
            c = _tts.Decoder(model, ex, b, closed=closed, kv_cache=kv).sample(
                6, max_new_tokens=6, temperature=temp, generator=torch.Generator().manual_seed(3))
            out.append((c, b))
        (ref, b0), (got, b1) = out
        assert [x.tokens for x in got] == [x.tokens for x in ref]
        assert [x.logprob for x in got] == pytest.approx([x.logprob for x in ref], abs=1e-4)
        assert (b1.forward_passes, b1.tokens_generated) == (b0.forward_passes, b0.tokens_generated)
        assert b1.sequences_forwarded == b0.sequences_forwarded - 5      # the prompt once, not 6 times
        if closed:
            assert len({len(x.tokens) for x in got}) > 1, "want samples that stop at different steps"
    (c,) = _tts.Decoder(model, ex, _tts.Budget(), kv_cache=True).sample(1, max_new_tokens=gen.max_new_tokens,
                                                                       temperature=0.0)
    assert gen.predict([ex])[0].raw == c.text              # and the adapter's own cached greedy generation
    with pytest.raises(NotImplementedError, match="beam"):
        _tts.Decoder(model, ex, _tts.Budget(), kv_cache=True).beam(2, max_new_tokens=2)
