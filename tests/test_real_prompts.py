"""Prompt equality: the ids an adapter builds piece by piece equal what the real tokenizer and the
real chat template give for the same messages (templates and ids: probes/models/configs/*.json)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("dashscope", reason="needs the real-tokenizers extra")
pytest.importorskip("tiktoken")

from tests.fixtures.alm import PROMPT_CASES as CASES, prompt_example  # noqa: E402

QWEN_FAMILIES = ["qwen2-audio", "qwen2.5-omni", "qwen3-omni", "audio-flamingo-3"]
N_AUDIO = 7


def real_adapter(family: str):
    """The family's adapter class around its tiny model, but with the REAL tokenizer (prompts only)."""
    from probes.models.tokenizers import qwen_tokenizer
    from probes.registry import MODELS

    cls = MODELS[family]
    model, _, fe = cls.build_tiny()
    return cls(model, qwen_tokenizer(family), fe, weights="random", source="tiny+real-tokenizer")


@pytest.fixture(scope="module", params=QWEN_FAMILIES)
def fam_adapter(request):
    return request.param, real_adapter(request.param)


def _example(case: dict):
    return prompt_example(case)


@pytest.mark.parametrize("case", CASES, ids=[c["template"] for c in CASES])
def test_adapter_prompt_equals_the_real_template(fam_adapter, case):
    from probes.models.tokenizers import reference_prompt

    family, a = fam_adapter
    ex = _example(case)
    p = a.prompt(ex, N_AUDIO)
    built = p.head + [a.audio_token_id] * N_AUDIO + p.tail
    text, want = reference_prompt(family, a.user_text(ex), N_AUDIO, system=a.system or None)
    assert built == want, (f"{family}: adapter prompt differs from the real template\n"
                           f"adapter:  {a.tokenizer.decode(built)!r}\nreference: {text!r}")


@pytest.mark.parametrize("case", CASES[2:4], ids=["transcript", "cues"])
def test_spans_land_on_the_right_ids(fam_adapter, case):
    family, a = fam_adapter
    ex = _example(case)
    p = a.prompt(ex, N_AUDIO)
    sp = a._row_spans(p)
    row = np.array(p.head + [a.audio_token_id] * N_AUDIO + p.tail)
    assert (row[sp["audio"]] == a.audio_token_id).all() and len(sp["audio"]) == N_AUDIO
    assert (row == a.audio_token_id).sum() == N_AUDIO
    name = "transcript" if "transcript" in case else "cues"
    got = a.tokenizer.decode(row[sp[name]].tolist())
    # the span is the tokens overlapping the slot: it holds the slot text, plus at most the
    # characters a BPE merge glued on at each edge (under the Qwen vocabulary '"I' and '."\n')
    assert case[name] in got, f"{family}: span {name} decodes to {got!r}"
    assert len(got) - len(case[name]) <= 4, f"{family}: span {name} decodes to {got!r}"
    inner = a.tokenizer.decode(row[sp[name]][1:-1].tolist())
    assert inner in case[name], f"{family}: span {name} reaches beyond its slot: {got!r}"
    # the answer row is the last prompt token (the newline after 'assistant')
    assert a.tokenizer.decode(row[sp["answer"]].tolist()) == "\n"
