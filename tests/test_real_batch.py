"""Batch invariance at realistic padding, with the real tokenizer: batch size 1, 8 and mixed audio
lengths give the same label distributions on each Qwen-based family's tiny instance.

Why: a user report on the Qwen-Audio repository measured emotion accuracy falling from 0.55 at
batch size 1 to 0.07 at batch size 8 because of padding. Here every family's tiny model carries
the real Qwen vocabulary (its build_tiny with the real tokenizer in place of the trained one), the
prompts are the real ones (with-transcript: long text, real BPE), and the audio lengths differ
(0.4-1.9 s), so both the audio and the text are padded differently per row.

Tolerance: 1e-4 absolute on log-probabilities (float32; measured differences are ~1e-6).
Voxtral is covered in tests/test_real_voxtral.py (a v7 Tekken built offline from mistral-common's
bundled vocabulary plus Voxtral's published audio specials); Granite Speech and Phi-4-multimodal
in tests/test_alm_families_new.py.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("dashscope", reason="needs the real-tokenizers extra")
pytest.importorskip("tiktoken")

from tests.fixtures.alm import mixed_examples  # noqa: E402

FAMILIES = ["qwen2-audio", "qwen2.5-omni", "qwen3-omni", "audio-flamingo-3"]
TOL = 1e-4


def real_vocab_tiny(family: str, monkeypatch):
    import probes.models._tiny as tiny
    from probes.models.tokenizers import qwen_tokenizer
    from probes.registry import MODELS

    real = qwen_tokenizer(family)
    monkeypatch.setattr(tiny, "tiny_tokenizer", lambda *a, **k: real)
    cls = MODELS[family]
    model, tok, fe = cls.build_tiny()
    assert tok is real and model.get_input_embeddings().weight.shape[0] >= len(real)
    a = cls(model, tok, fe, weights="random", source="tiny+real-tokenizer")
    if cls.single_window:
        a.max_seconds = float(fe.chunk_length)
    return a


def _examples():
    return mixed_examples()


@pytest.mark.parametrize("family", FAMILIES)
def test_batch_1_and_8_with_mixed_lengths_agree(family, monkeypatch):
    a = real_vocab_tiny(family, monkeypatch)
    ex = _examples()
    batched = a.label_logprobs(ex)                                   # [8, labels], mixed lengths
    single = torch.cat([a.label_logprobs([e]) for e in ex])          # batch size 1 each
    diff = float((batched - single).abs().max())
    print(f"\n{family}: max |batch 8 - batch 1| = {diff:.2e}")
    assert diff < TOL
    # a reordered batch gives each row the same numbers (no row leaks into another)
    perm = [3, 0, 7, 5, 1, 6, 2, 4]
    again = a.label_logprobs([ex[i] for i in perm])
    assert float((again - batched[perm]).abs().max()) < TOL
    # and the distributions are not all the same (the audio reached the model)
    assert float((batched[0] - batched[1]).abs().max()) > 1e-6
