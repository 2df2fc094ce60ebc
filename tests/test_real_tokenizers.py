"""The real tokenizers built offline (probes/models/tokenizers.py) give the published ids."""

from __future__ import annotations

import pytest

pytest.importorskip("dashscope", reason="needs the real-tokenizers extra (pip install 'dissonance[real-tokenizers]')")
pytest.importorskip("tiktoken")

from probes.models.tokenizers import SPECIALS, qwen_tokenizer  # noqa: E402

SYSTEM = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
SYSTEM_IDS = [151644, 8948, 198, 2610, 525, 264, 10950, 17847, 13, 151645, 198]


@pytest.mark.parametrize("family", sorted(SPECIALS))
def test_qwen_family_system_turn_and_specials(family):
    tok = qwen_tokenizer(family)
    assert tok(SYSTEM)["input_ids"] == SYSTEM_IDS
    for i, s in SPECIALS[family].items():
        assert tok.convert_tokens_to_ids(s) == i
        assert tok(s, add_special_tokens=False)["input_ids"] == [i]   # one piece, never split
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert len(tok) == max(SPECIALS[family]) + 1


def test_audio_specials_at_published_ids():
    assert qwen_tokenizer("qwen2-audio").convert_tokens_to_ids(["<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"]) == [151646, 151647, 151648]
    assert qwen_tokenizer("qwen3-omni").convert_tokens_to_ids(["<|audio_start|>", "<|audio_end|>", "<|audio_pad|>"]) == [151669, 151670, 151675]
    assert qwen_tokenizer("audio-flamingo3").convert_tokens_to_ids("<sound>") == 151669


def test_label_words_under_the_real_vocabulary():
    tok = qwen_tokenizer("qwen2-audio")
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    assert enc("happy") == [56521] and enc("sad") == [82114] and enc("neutral") == [59568]
    assert len(enc("angry")) == 2 and len(enc("fear")) == 2 and len(enc("disgust")) == 3 and len(enc("surprise")) == 2
    assert enc(" happy") == [6247]
    assert tok.decode(enc("fear")[:1]) == "f"


def test_unknown_family_is_one_clear_error():
    with pytest.raises(ValueError, match="known: audio-flamingo-3"):
        qwen_tokenizer("gemma")


def test_tekken_has_the_mistral_controls():
    pytest.importorskip("mistral_common")
    from probes.models.tokenizers import tekken_tokenizer

    tk = tekken_tokenizer().instruct_tokenizer.tokenizer
    assert tk.n_words == 131072
    assert [tk.get_special_token(s) for s in ("<s>", "</s>", "[INST]", "[/INST]")] == [1, 2, 3, 4]


def test_first_token_rule_under_the_real_vocabulary():
    from probes.models.tokenizers import first_token_report

    labels = ("neutral", "happy", "sad", "angry", "fear", "disgust", "surprise")
    tok = qwen_tokenizer("qwen2-audio")
    bare = first_token_report(tok, labels)
    assert not bare["rule_holds"] and bare["first_unique"]      # distinct first tokens, but not whole labels
    assert bare["pieces"]["fear"] == ["f", "ear"] and bare["multi_token"] == ["angry", "disgust", "fear", "surprise"]
    spaced = first_token_report(tok, labels, prefix=" ")
    assert spaced["rule_holds"] and spaced["multi_token"] == []   # " fear", " angry", ... are one token each
