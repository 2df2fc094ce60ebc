"""Tiny random-weight builders shared by the ALM adapters (tests and ``--tiny``; no download).

What it builds: a byte-level BPE tokenizer trained offline with ``tokenizers`` on a few
sentences (the prompt templates, the label words, cue-token words) plus a model family's special
tokens, wrapped in ``PreTrainedTokenizerFast``; and a Whisper-style log-mel feature extractor
with a 2 s window so the tiny audio towers see 200 mel frames (their ``max_source_positions``
must be half of that). The model configs themselves live in each adapter file, next to the
real ids they mimic. Nothing here is a result: the weights are random.
"""

from __future__ import annotations

import functools
from typing import Sequence

# What the tiny tokenizer is trained on: enough text that the prompts, labels and cue tokens
# tokenize into a handful of pieces each (it is not meant to be a good tokenizer).
_CORPUS = [
    "What emotion does the speaker express in this recording? Answer with one word from this list:",
    "Using tone of voice only, and ignoring what the words mean, which emotion does the speaker convey?",
    "Acoustic cues measured from the recording: energy high, pitch low, dynamics flat, brightness mid.",
    "formants wide, voice quality breathy, tense, creaky; loudness, rate, jitter, shimmer, harmonics.",
    'Transcript of the recording: "I cannot believe you did that to me again."',
    "Describe the speaker's tone of voice and the content of their words in one sentence each.",
    "neutral, happy, sad, angry, fear, disgust, surprise, other. Answer: neutral",
    "You are a helpful assistant. You are Qwen, a virtual human developed by the Qwen Team.",
    "sentence number 0 1 2 3 4 5 6 7 8 9 the a of and to in is it that was for on are with as",
    "Audio 1: system user assistant",
]
_VOCAB = 640


@functools.lru_cache(maxsize=None)
def tiny_tokenizer(specials: tuple[str, ...], eos: str, pad: str | None = None, bos: str | None = None):
    """A PreTrainedTokenizerFast whose first ids are ``specials`` (in order), trained offline."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=_VOCAB, special_tokens=list(specials),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_CORPUS * 4, trainer)
    named = {"eos_token": eos, "pad_token": pad or eos}
    if bos:
        named["bos_token"] = bos
    extra = [s for s in specials if s not in named.values()]
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, extra_special_tokens=extra, **named)
    fast.padding_side = "right"
    return fast


def tiny_feature_extractor(chunk_seconds: float = 2.0, n_mels: int = 128):
    """Whisper log-mel features over a short window: 100 frames per second, padded to the window."""
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor(feature_size=n_mels, chunk_length=int(chunk_seconds), sampling_rate=16_000)


def text_config(model_type: str = "qwen2", vocab: int = _VOCAB, **over) -> dict:
    """A 2-layer, 32-wide decoder config in the dict form the transformers configs accept."""
    cfg = dict(model_type=model_type, vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, rms_norm_eps=1e-6,
               tie_word_embeddings=False)
    cfg.update(over)
    return cfg


def whisper_encoder_config(**over) -> dict:
    """A 2-layer Whisper-style audio encoder over 200 mel frames (2 s)."""
    cfg = dict(num_mel_bins=128, d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64,
               max_source_positions=100)
    cfg.update(over)
    return cfg


def seed_all(seed: int = 0) -> None:
    import torch

    torch.manual_seed(seed)


def token_ids(tok, names: Sequence[str]) -> dict[str, int]:
    return {n: int(tok.convert_tokens_to_ids(n)) for n in names}
