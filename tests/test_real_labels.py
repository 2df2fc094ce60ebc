"""Label tokenization under the real Qwen vocabulary: closed-set scoring of multi-token labels,
which answer string is scored, and how far ``sum`` and ``mean`` length normalisation move the
label distribution (on a tiny random-weight Qwen2-Audio whose vocabulary IS the real one)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("dashscope", reason="needs the real-tokenizers extra")
pytest.importorskip("tiktoken")

from tests.fixtures.alm import tone  # noqa: E402

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


def _examples(n=2):
    from probes.adapter import Example

    return [Example(utt_id=f"u{i}", row={}, audio=tone(140.0 + 70 * i, 1.0 + 0.5 * i)) for i in range(n)]


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
    a = real_vocab_qwen2_audio
    ex = _examples()
    for norm in ("sum", "mean"):
        a.length_norm = norm
        try:
            fast, ref = a.label_logprobs(ex), a.label_logprobs_full(ex)
        finally:
            a.length_norm = "sum"
        assert torch.allclose(fast, ref, atol=1e-4), (norm, (fast - ref).abs().max())


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
