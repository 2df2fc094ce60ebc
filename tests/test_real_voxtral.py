"""Voxtral prompt equality offline: mistral-common (1.13) encodes Voxtral's audio request itself, with a
v7 Tekken built from its bundled Tekken vocabulary plus Voxtral's published audio specials and audio
section (probes/models/configs/voxtral.json, ``tekken_v7``); the adapter's piece-by-piece ids, with
the same vocabulary through transformers' Tekken converter, must equal them."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

pytest.importorskip("mistral_common", reason="needs the real-tokenizers extra")

from tests.fixtures.alm import PROMPT_CASES as CASES, tone  # noqa: E402


SECONDS = 2.0


@pytest.fixture(scope="module")
def tekken_v7(tmp_path_factory) -> str:
    """A v7 tekken.json: the bundled Tekken vocabulary (v3 file), the deprecated specials at 0-19, the
    published audio specials, <SPECIAL_i> elsewhere, and the published audio section."""
    import mistral_common
    from mistral_common.tokens.tokenizers.tekken import Tekkenizer

    from probes.models.tokenizers import real_config

    rec = real_config("voxtral")["tekken_v7"]
    src = json.load(open(os.path.join(os.path.dirname(mistral_common.__file__), "data", "tekken_240911.json")))
    specials = {s["rank"]: str(getattr(s["token_str"], "value", s["token_str"])) for s in Tekkenizer.DEPRECATED_SPECIAL_TOKENS}
    specials.update({i: name for name, i in rec["special_ids"].items()})
    n_special = src["config"]["default_num_special_tokens"]
    out = {"config": {**src["config"], "version": "v7"}, "vocab": src["vocab"],
           "special_tokens": [{"rank": i, "token_str": specials.get(i, f"<SPECIAL_{i}>"), "is_control": True}
                              for i in range(n_special)],
           "audio": rec["audio"]}
    path = tmp_path_factory.mktemp("voxtral") / "tekken.json"
    path.write_text(json.dumps(out))
    return str(path)


@pytest.fixture(scope="module")
def mistral(tekken_v7):
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

    return MistralTokenizer.from_file(tekken_v7)


@pytest.fixture(scope="module")
def adapter(tekken_v7):
    """The Voxtral adapter class around its tiny model, with the v7 Tekken as a transformers tokenizer."""
    from transformers.integrations.mistral.tokenizer import convert_tekken_tokenizer

    from probes.registry import MODELS

    cls = MODELS["voxtral"]
    model, _, fe = cls.build_tiny()
    return cls(model, convert_tekken_tokenizer(tekken_v7), fe, weights="random", source="tiny+tekken-v7")


def reference(mistral, text: str, wav: np.ndarray) -> list[int]:
    """mistral-common's own encoding of [user: audio, text] (no system prompt: Voxtral's usage)."""
    from mistral_common.protocol.instruct.chunk import AudioChunk, TextChunk
    from mistral_common.protocol.instruct.messages import UserMessage
    from mistral_common.protocol.instruct.request import ChatCompletionRequest
    from mistral_common.tokens.tokenizers.audio import Audio

    chunk = AudioChunk.from_audio(Audio(audio_array=wav, sampling_rate=16_000, format="wav"))
    req = ChatCompletionRequest(messages=[UserMessage(content=[chunk, TextChunk(text=text)])])
    return mistral.encode_chat_completion(req).tokens


def test_mistral_common_builds_the_audio_request(mistral):
    """The request is <s>[INST][BEGIN_AUDIO][AUDIO] x 375 (a 30 s chunk at 12.5 tokens/s) text [/INST]."""
    ids = reference(mistral, "Which emotion?", tone(180.0, SECONDS))
    assert ids[:3] == [1, 3, 25] and ids[-1] == 4
    assert ids.count(24) == 375 and ids[3:3 + 375] == [24] * 375


@pytest.mark.parametrize("case", CASES, ids=[c["template"] for c in CASES])
def test_adapter_prompt_equals_mistral_common(adapter, mistral, case):
    from probes.adapter import Example

    ex = Example(utt_id="u0", row={}, audio=tone(180.0, SECONDS), **case)
    want = reference(mistral, adapter.user_text(ex), ex.audio)
    n = want.count(24)
    p = adapter.prompt(ex, n)
    built = p.head + [adapter.audio_token_id] * n + p.tail
    assert adapter.audio_token_id == 24
    assert built == want, (f"voxtral: adapter prompt differs from mistral-common's request encoding\n"
                           f"adapter:  {built[:4]}...{built[4 + n - 1:]}\nreference: {want[:4]}...{want[4 + n - 1:]}")


@pytest.mark.parametrize("case", CASES[2:4], ids=["transcript", "cues"])
def test_spans_land_on_the_right_ids(adapter, case):
    from probes.adapter import Example

    ex = Example(utt_id="u0", row={}, audio=tone(180.0, SECONDS), **case)
    p = adapter.prompt(ex, 375)
    sp = adapter._row_spans(p)
    row = np.array(p.head + [adapter.audio_token_id] * 375 + p.tail)
    assert (row[sp["audio"]] == 24).all() and len(sp["audio"]) == 375 and (row == 24).sum() == 375
    name = "transcript" if "transcript" in case else "cues"
    got = adapter.tokenizer.decode(row[sp[name]].tolist())
    assert case[name] in got and len(got) - len(case[name]) <= 4, got
    assert row[sp["answer"]].tolist() == [4]                     # the answer row is [/INST]


def test_batch_invariance_with_the_real_vocabulary(tekken_v7, monkeypatch):
    """Voxtral's tiny instance rebuilt on the 131,072-id Tekken (as tests/test_real_batch.py does for the
    Qwen families): batch of 8 with mixed audio lengths and transcripts = batch size 1 per example, and a
    reordered batch gives each row its numbers (1e-4 on log-probabilities)."""
    import torch
    from transformers.integrations.mistral.tokenizer import convert_tekken_tokenizer

    import probes.models._tiny as tiny
    from probes.adapter import Example
    from probes.registry import MODELS

    real = convert_tekken_tokenizer(tekken_v7)
    monkeypatch.setattr(tiny, "tiny_tokenizer", lambda *a, **k: real)
    cls = MODELS["voxtral"]
    model, tok, fe = cls.build_tiny()
    assert tok is real and model.get_input_embeddings().weight.shape[0] == len(real) == 131072
    a = cls(model, tok, fe, weights="random", source="tiny+tekken-v7")
    assert a.audio_token_id == 24 and [len(t) for t in a.label_tokens()] != [1] * 7   # real Tekken label pieces
    seconds = (0.4, 1.9, 0.7, 1.3, 1.0, 1.6, 0.55, 1.15)
    ex = [Example(utt_id=f"u{i}", row={}, audio=tone(120.0 + 35 * i, s), template="with-transcript",
                  transcript=("I cannot believe you did that to me again." if i % 2 else "Fine, thanks."))
          for i, s in enumerate(seconds)]
    batched = a.label_logprobs(ex)
    single = torch.cat([a.label_logprobs([e]) for e in ex])
    diff = float((batched - single).abs().max())
    print(f"\nvoxtral: max |batch 8 - batch 1| = {diff:.2e}; label tokens {[len(t) for t in a.label_tokens()]}")
    assert diff < 1e-4
    perm = [3, 0, 7, 5, 1, 6, 2, 4]
    assert float((a.label_logprobs([ex[i] for i in perm]) - batched[perm]).abs().max()) < 1e-4
    assert float((batched[0] - batched[1]).abs().max()) > 1e-6
