"""Label tokenization under the real Qwen vocabulary: closed-set scoring of multi-token labels,
which answer string is scored, and how far ``sum`` and ``mean`` length normalisation move the
label distribution (on a tiny random-weight Qwen2-Audio whose vocabulary IS the real one)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("dashscope", reason="needs the real-tokenizers extra")
pytest.importorskip("tiktoken")

from tests.fixtures.alm import assert_scores_whole_label_sequences, label_examples as _examples  # noqa: E402

LABELS = ("neutral", "happy", "sad", "angry", "fear", "disgust", "surprise")


@pytest.fixture(scope="module")
def real_vocab_qwen2_audio():
    """Qwen2-Audio with 2-layer, 32-wide towers but the real 151,649-token vocabulary and tokenizer."""
    from transformers import Qwen2AudioConfig, Qwen2AudioForConditionalGeneration

    from probes.models._tiny import seed_all, text_config, tiny_feature_extractor, whisper_encoder_config
    from probes.models.qwen2_audio import Qwen2Audio
    from probes.models.tokenizers import qwen_tokenizer

    tok = qwen_tokenizer("qwen2-audio")
    cfg = Qwen2AudioConfig(audio_config=whisper_encoder_config(max_source_positions=400),
                           text_config=text_config(vocab=len(tok), initializer_range=0.2),
                           audio_token_id=tok.convert_tokens_to_ids("<|AUDIO|>"))
    seed_all(0)
    model = Qwen2AudioForConditionalGeneration(cfg).eval()
    a = Qwen2Audio(model, tok, tiny_feature_extractor(8.0), weights="random", source="tiny+real-vocab")
    a.max_seconds = 8.0
    assert tuple(a.labels) == LABELS
    return a


def test_scored_strings_are_the_bare_label_words(real_vocab_qwen2_audio):
    """The scored answer is the label as listed in the prompt: lower case, no leading space (the
    answer begins a new line after 'assistant\\n', where a written word carries no space)."""
    a = real_vocab_qwen2_audio
    toks = a.label_tokens()
    assert [a.tokenizer.decode(t) for t in toks] == list(LABELS)
    counts = dict(zip(LABELS, map(len, toks)))
    assert counts == {"neutral": 1, "happy": 1, "sad": 1, "angry": 2, "fear": 2, "disgust": 3, "surprise": 2}
    # the same words with a leading space are mostly single tokens: not what is scored here
    spaced = [len(a.tokenizer.encode(" " + l, add_special_tokens=False)) for l in LABELS]
    assert spaced.count(1) >= 5


def test_multi_token_labels_score_their_whole_sequence(real_vocab_qwen2_audio):
    """The shared-prefix KV-cache scorer equals one plain forward per (example, label) with every
    token of the label counted, under both normalisations."""
    assert_scores_whole_label_sequences(real_vocab_qwen2_audio)


def test_sum_and_mean_distributions_differ_measurably(real_vocab_qwen2_audio):
    """Record the size of the sum/mean shift on the real token counts (random weights: the size is a
    property of this instance, printed for docs/real-models.md; the test checks its consistency)."""
    a = real_vocab_qwen2_audio
    ex = _examples()
    ps = a.label_logprobs(ex).exp()
    a.length_norm = "mean"
    try:
        pm = a.label_logprobs(ex).exp()
    finally:
        a.length_norm = "sum"
    tv = 0.5 * (ps - pm).abs().sum(-1)              # total variation per example
    print(f"\nsum vs mean: total variation {tv.numpy().round(3)}; argmax agree {(ps.argmax(-1) == pm.argmax(-1)).tolist()}")
    assert torch.allclose(ps.sum(-1), torch.ones(len(ex)), atol=1e-5)
    # single-token labels keep their sum/mean score; only the multi-token ones move
    single = [k for k, t in enumerate(a.label_tokens()) if len(t) == 1]
    ratio_s, ratio_m = ps[:, single], pm[:, single]
    np.testing.assert_allclose((ratio_s / ratio_s.sum(-1, keepdim=True)).numpy(),
                               (ratio_m / ratio_m.sum(-1, keepdim=True)).numpy(), atol=1e-5)
    assert float(tv.max()) > 0.0


def _brute_force(a, target, *, patch=None, lens_layer=None):
    """Per label one plain forward over prompt + the label's tokens, the patch (span, layer, source
    activations) applied to the prompt positions only; the label's score is the sum (or mean) of
    its tokens' log-probabilities read at the last block, or, with ``lens_layer``, through the final
    norm + unembedding of that residual layer. # -> [n_labels] log-softmaxed over the labels"""
    from probes.models.alm.engine import Op, hooked, positions
    from probes.models.alm.prompt import span_pos

    batch = a.encode([target])
    L0 = batch.lengths[0]
    out = []
    for t in a.label_tokens():
        extra = a.module("decoder").get_input_embeddings()(torch.tensor(t, device=a.device))[None]
        emb = torch.cat([batch.embeds, extra], 1)
        m = torch.ones(1, emb.shape[1], dtype=torch.long)
        ops, got = [], {}
        if patch is not None:
            span, layer, src = patch
            pos = torch.as_tensor(span_pos(batch, 0, span))

            def put(h, pos=pos, src=src):
                h = h.clone()
                h[0, pos] = src.to(h.dtype)
                return h
            ops.append(Op(("resid", layer), put))
        if lens_layer is not None:
            ops.append(Op(("resid", lens_layer), lambda h: got.update(h=h.clone())))   # None: a read
        with torch.no_grad(), hooked(a, ops):
            h, _ = a._decode(emb, m, positions(m))
            h = a.unembed(got["h"][0], normed=False) if lens_layer is not None else a.unembed(h[0])
        lp = torch.log_softmax(h, -1)
        s = sum(float(lp[L0 - 1 + j, t[j]]) for j in range(len(t)))
        out.append(s / len(t) if a.length_norm == "mean" else s)
    return torch.log_softmax(torch.tensor(out), -1).numpy()


def test_patching_scores_whole_label_strings(real_vocab_qwen2_audio):
    """Activation patching reads each label's whole token string (``fear`` = ``f`` + ``ear``): the
    patched score equals one plain forward per label with the same patch, at every layer, under both
    length normalisations; patching an utterance into itself changes nothing."""
    a = real_vocab_qwen2_audio
    t, s = _examples()
    layers = list(range(a.n_layers + 1))
    for norm in ("sum", "mean"):
        a.length_norm = norm
        try:
            got = a.inside_patch(t, s, span="audio", layers=layers)             # [L + 1, n_labels]
            caps = a.hidden_states([s], layers=layers, spans=["audio"], pool="none")["audio"][0]
            from probes.models.alm.engine import time_align
            n_t = len(a.encode([t]).spans[0]["audio"])
            for k, l in enumerate(layers):
                src = caps[k][time_align(n_t, caps[k].shape[0])]
                ref = _brute_force(a, t, patch=("audio", l, src))
                np.testing.assert_allclose(got[k], ref, atol=1e-4, err_msg=f"{norm} layer {l}")
            clean = a.inside_read([t])[0].final
            np.testing.assert_allclose(clean, _brute_force(a, t), atol=1e-4)
            assert np.abs(got[0] - clean).max() > 1e-3          # the patch at the input moves the answer
            same = a.inside_patch(t, t, span="audio", layers=layers)
            np.testing.assert_allclose(same, np.repeat(clean[None], len(layers), 0), atol=1e-5)
        finally:
            a.length_norm = "sum"


def test_lens_scores_whole_label_strings(real_vocab_qwen2_audio):
    """The logit lens scores each label's whole string under the model cut at each residual layer
    (every label token read through the final norm + unembedding of that layer); the last layer is
    the model's own closed-set distribution."""
    a = real_vocab_qwen2_audio
    ex = _examples()
    reads = a.inside_read(ex, lens=True)
    lp = a.label_logprobs(ex).numpy()
    for i, r in enumerate(reads):
        assert r.lens.shape == (a.n_layers + 1, len(LABELS))
        np.testing.assert_allclose(r.final, lp[i], atol=1e-4)
        np.testing.assert_allclose(r.lens[-1], r.final, atol=1e-4)
        for l in range(a.n_layers + 1):
            np.testing.assert_allclose(r.lens[l], _brute_force(a, ex[i], lens_layer=l), atol=1e-4, err_msg=f"layer {l}")
