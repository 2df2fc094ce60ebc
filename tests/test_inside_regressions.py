"""Regressions found by running the inside probes on a tiny Qwen2-Audio over the synthetic corpus.

1. ``activation-patching`` wrote no rows: two recordings of one sentence never last equally long,
   so their audio spans differ in length (61 vs 53 tokens) and every pair failed with "spans must
   have equal length". The source's audio span is now aligned onto the target's along time
   (``probes.models.alm.engine.time_align``: nearest neighbour, span ends aligned); equal lengths give
   the identity, so A into A stays exact.
2. ``linear-probe`` failed on every unit with nnsight's ``WithBlockNotFoundError``: nnsight reads
   a trace's source text at run time and the adapter file had been saved during the run. The
   adapters now read and write activations through plain hooks (``probes/models/alm/engine.py``),
   which read no source; the test here checks that the hooks never outlive a call.

Random weights: the numbers mean nothing; what is asserted holds for any weights.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from probes.data.manifest import Manifest
from probes.probe import RunContext, run_probe
from probes.registry import MODELS, PROBES
from probes.store import read_errors, read_rows
from tests.fixtures.alm import alm_examples


@pytest.fixture(scope="module")
def qwen():
    return MODELS["qwen2-audio"].tiny()


# ---------------------------------------------------------------------------------- time alignment
def test_time_align_known_values():
    from probes.models._alm import time_align

    for n in (1, 5, 61):
        assert time_align(n, n).tolist() == list(range(n))                   # equal lengths: the identity
    assert time_align(4, 2).tolist() == [0, 0, 1, 1]                          # stretch: each source twice
    assert time_align(2, 4).tolist() == [1, 3]                                # shrink: centres 0.25, 0.75 -> 1.5, 3.5
    assert time_align(3, 1).tolist() == [0, 0, 0]
    for nt, ns in ((53, 61), (61, 53), (7, 100), (100, 7)):
        idx = time_align(nt, ns).numpy()
        assert len(idx) == nt and idx.min() >= 0 and idx.max() <= ns - 1
        assert (np.diff(idx) >= 0).all()                                      # time order kept
        # nearest: no source position is closer to the target position's fraction of the span
        frac = (np.arange(nt) + 0.5) / nt * ns - 0.5
        best = np.abs(np.arange(ns)[None] - frac[:, None]).min(1)
        assert np.allclose(np.abs(idx - frac), best)
    with pytest.raises(ValueError):
        time_align(3, 0)


def test_patch_unequal_audio_aligned_in_time(qwen):
    from probes.models._alm import time_align

    A, short = alm_examples(2, seconds=(1.0, 0.5))
    bA, bS = qwen.encode([A]), qwen.encode([short])
    pa, ps = bA.spans[0]["audio"], bS.spans[0]["audio"]
    assert len(pa) != len(ps), "the fixture must give audio spans of different lengths"
    with pytest.raises(ValueError, match="equal length"):                     # the strict default stays
        qwen.patch([short], [A], 0)
    # known answer at the input: the target's audio positions hold A's audio embeddings, resampled
    emb = bS.embeds.clone()
    emb[0, torch.as_tensor(ps)] = bA.embeds[0, torch.as_tensor(pa)][time_align(len(ps), len(pa))]
    with torch.no_grad():
        want = qwen.forward_embeds(emb, bS)[0]
    got = qwen.patch([short], [A], 0, align="time")[0]
    assert torch.allclose(got, want, atol=1e-5)
    base = qwen.answer_logits([short])[0]
    assert not torch.allclose(got, base, atol=1e-5)
    # A into A (and short into short) changes nothing at any layer
    for ex in (A, short):
        clean = qwen.answer_logits([ex])[0]
        for layer in range(qwen.n_layers + 1):
            assert torch.allclose(qwen.patch([ex], [ex], layer, align="time")[0], clean, atol=1e-5)
    # both directions at a block run (longer into shorter and shorter into longer)
    for t, s in ((short, A), (A, short)):
        assert torch.isfinite(qwen.patch([t], [s], 1, align="time")).all()
    with pytest.raises(ValueError, match="align"):
        qwen.patch([A], [A], 0, align="linear")


# ---------------------------------------------------------------------------------- the probes on real speech
@pytest.fixture(scope="module")
def unequal_pairs(synth_corpus):
    """Two sentences, two voices each (different voice labels), every pair of unequal duration."""
    m = Manifest.read(synth_corpus)
    keep = []
    for _, g in m.df.sort_values("utt_id").groupby("sentence_id"):
        rows = list(g.itertuples())
        pair = next(((a.utt_id, b.utt_id) for k, a in enumerate(rows) for b in rows[k + 1:]
                     if a.acoustic_label != b.acoustic_label and abs(float(a.duration_s) - float(b.duration_s)) > 0.25),
                    None)
        if pair:
            keep.append(pair)
        if len(keep) == 2:
            break
    assert len(keep) == 2, "the synthetic corpus should hold such pairs"
    ids = [u for pair in keep for u in pair]
    return m.subset(m.df["utt_id"].isin(ids))


def test_unequal_pairs_have_unequal_audio_spans(qwen, unequal_pairs):
    from probes.adapter import Example

    ctx = RunContext()
    n_audio = {}
    for u in unequal_pairs.df["utt_id"]:
        wav = ctx.load_audio(unequal_pairs, u, qwen.sample_rate, qwen.max_seconds)
        ex = Example(utt_id=u, row=unequal_pairs.row(u), audio=wav, sr=qwen.sample_rate)
        n_audio[u] = len(qwen.encode([ex]).spans[0]["audio"])
    for _, g in unequal_pairs.df.groupby("sentence_id"):
        a, b = g["utt_id"]
        assert n_audio[a] != n_audio[b]


def test_activation_patching_on_unequal_durations(qwen, unequal_pairs, tmp_path):
    run = run_probe(PROBES["activation-patching"](self_patch=True), qwen, unequal_pairs, tmp_path / "ap",
                    progress=False, strict=True)
    assert read_errors(run).empty
    df = read_rows(run)
    assert set(df["condition"]) == {"none"}                                  # the condition; the pair kind is in "pair"
    pat = df[df["pair"] == "patch"]
    assert pat["utt_id"].nunique() == 4                                      # every utterance got its partner
    assert {"audio", "prompt", "answer"} <= set(pat["span"])
    layers = set(range(qwen.n_layers + 1))
    for (_, span), g in pat.groupby(["utt_id", "span"]):
        assert set(g["layer"]) == layers
    assert np.isfinite(pat[pat["metric"] == "tv_to_source"]["value"].astype(float)).all()
    self_rows = df[(df["pair"] == "self") & df["metric"].isin(["shift", "tv_to_source"])]
    assert len(self_rows) and self_rows["value"].abs().max() < 1e-6         # A into A changes nothing


def test_linear_probe_on_unequal_durations(qwen, unequal_pairs, tmp_path):
    # one batch holding utterances of four different lengths (right padding inside the trace)
    run = run_probe(PROBES["linear-probe"](), qwen, unequal_pairs, tmp_path / "lp", progress=False, strict=True,
                    batch_size=4)
    assert read_errors(run).empty
    rows = read_rows(run)
    assert sorted(rows["utt_id"]) == sorted(unequal_pairs.df["utt_id"])
    for f, shapes in zip(rows["features"], rows["shapes"]):
        assert (run / f).exists()
        assert all(s[0] == qwen.n_layers + 1 for s in shapes.values())


# ---------------------------------------------------------------------------------- the edit engine leaves nothing behind
def test_hooks_removed_after_an_error(qwen):
    """The one edit engine registers plain hooks for a call and removes them whatever happens:
    a failing patch (unequal spans) must leave the model exactly as it was (issue 9 replaced the
    nnsight traces, whose source-text lookup broke when _alm.py was saved during a run)."""
    from probes.models.alm.engine import Op, hooked

    A, short = alm_examples(2, seconds=(1.0, 0.5))
    mods = [qwen.module("decoder.blocks", i) for i in range(qwen.n_layers)]
    mods += [qwen.module("decoder.attn", i) for i in range(qwen.n_layers)]

    def n_hooks():
        return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in mods)

    before, clean = n_hooks(), qwen.answer_logits([A])[0]
    with pytest.raises(ValueError, match="equal length"):
        qwen.patch([short], [A], 1)
    with pytest.raises(RuntimeError, match="boom"):
        with hooked(qwen, [Op(("resid", 1), lambda h: h * 0), Op(("attn", 0), lambda w: None)]):
            raise RuntimeError("boom")
    with pytest.raises(ValueError, match="residual layer"):
        with hooked(qwen, [Op(("resid", qwen.n_layers + 1), lambda h: None)]):
            pass
    assert n_hooks() == before
    assert torch.equal(qwen.answer_logits([A])[0], clean)
