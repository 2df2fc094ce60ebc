"""The ALM adapters on tiny random-weight instances: prompts, spans, scoring, instrumentation.

Every test loops over the registered ALM families (``tests/fixtures/alm.py``). Known answers:
the adapter's embedding path equals the model's own ``input_ids + input_features`` forward;
shared-prefix scoring equals a plain forward per label; patching the input span of A into B
(same prompt, equal audio length) gives A's logits; patching A into A changes nothing.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from probes.adapter import Edit
from tests.fixtures.alm import alm_examples, alm_names, tone

NAMES = alm_names()


def test_registry_has_the_five_families():
    assert {"qwen2-audio", "qwen2.5-omni", "qwen3-omni", "voxtral", "audio-flamingo-3"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_tiny_is_random_and_described(name, tiny_alm):
    a = tiny_alm(name)
    assert a.weights == "random" and a.describe()["weights"] == "random"
    assert tiny_alm(name) is a  # built once per process
    for stable in ("decoder.blocks", "decoder.norm", "unembed", "audio.blocks", "projector"):
        assert isinstance(a.module(stable), torch.nn.Module)
    assert a.module("decoder.attn", 0) is a.module("decoder.blocks", 0).get_submodule(a.paths["decoder.attn"])
    with pytest.raises(KeyError, match="no stable module"):
        a.module("decoder.mlp")


@pytest.mark.parametrize("name", NAMES)
def test_prompt_spans_and_native_forward(name, tiny_alm):
    a = tiny_alm(name)
    ex = alm_examples(2, seconds=(1.0, 0.75))
    cued = ex[0].with_(utt_id="c", cues="[energy: high] [pitch: low]", transcript="I cannot believe it")
    b = a.encode([ex[0], ex[1], cued])
    for i, sp in enumerate(b.spans):
        n = b.lengths[i]
        parts = np.concatenate([sp[k] for k in ("audio", "cues", "transcript", "prompt", "answer") if k != "answer"])
        assert sorted(parts.tolist()) == list(range(n)), "audio / cues / transcript / prompt partition the prompt"
        assert sp["answer"].tolist() == [n - 1]
        assert (b.ids[i, sp["audio"]] == a.audio_token_id).all()
        assert int((b.ids[i, :n] == a.audio_token_id).sum()) == len(sp["audio"])
    # the slotted strings come back from their spans
    sp = b.spans[2]
    assert "energy" in a.tokenizer.decode(b.ids[2, sp["cues"]].tolist())
    assert "believe" in a.tokenizer.decode(b.ids[2, sp["transcript"]].tolist())
    assert len(b.spans[1]["audio"]) < len(b.spans[0]["audio"]) or name == "voxtral"  # voxtral pads each window
    # the embedding path equals the model's own forward (features merged by the model itself)
    with torch.no_grad():
        for i in (0, 1):
            n = b.lengths[i]
            sub = type(b)(b.embeds[i : i + 1, :n], b.mask[i : i + 1, :n], b.ids[i : i + 1, :n], [b.spans[i]], [n])
            native = a.native_forward(sub, [ex[i].audio])[0, -1]
            mine = a.answer_logits([ex[i]])[0]
            assert torch.allclose(native, mine, atol=1e-4), (native - mine).abs().max()


@pytest.mark.parametrize("name", NAMES)
def test_closed_set_scoring(name, tiny_alm):
    a = tiny_alm(name)
    ex = alm_examples(2, seconds=(1.0, 0.75))
    batch = [ex[0], ex[0].with_(cues="[energy: high]"), ex[1], ex[0].with_(edits=(Edit("ablate", layer=1, mode="mean"),))]
    lp = a.label_logprobs(batch)
    assert lp.shape == (4, len(a.labels))
    assert torch.allclose(lp.exp().sum(-1), torch.ones(4), atol=1e-5)
    ref = a.label_logprobs_full(batch)  # one plain forward per (example, label)
    assert torch.allclose(lp, ref, atol=1e-4), (lp - ref).abs().max()
    one = torch.cat([a.label_logprobs([e]) for e in batch])  # batched == unbatched
    assert torch.allclose(lp, one, atol=1e-4)
    assert not torch.allclose(lp[0], lp[1], atol=1e-6), "the cue tokens must reach the prompt"
    assert not torch.allclose(lp[0], lp[3], atol=1e-6), "an ablation at residual 1 (after block 0) must change the answer"
    preds = a.predict(batch)
    assert all(p.label in a.labels and abs(sum(p.probs.values()) - 1) < 1e-4 for p in preds)


@pytest.mark.parametrize("name", NAMES)
def test_audio_encoding_is_batch_invariant(name, tiny_alm):
    a = tiny_alm(name)
    A, B = alm_examples(2, seconds=(1.0, 0.75))
    with torch.no_grad():
        both = a.encode_audio([A.audio, B.audio])
        alone = a.encode_audio([B.audio])
    assert torch.allclose(both[1], alone[0], atol=1e-5), "a clip's encoding must not depend on its batch"


@pytest.mark.parametrize("name", NAMES)
def test_audio_is_encoded_once_per_waveform(name, tiny_alm):
    a = tiny_alm(name)
    wav = tone(333.0)  # a waveform no other test uses
    from probes.adapter import Example

    ex = Example(utt_id="once", row={}, audio=wav)
    before = a.stats["audio_encoded"]
    a.predict([ex, ex.with_(cues="[pitch: high]"), ex.with_(cues="[pitch: low]"), ex.with_(transcript="hello")])
    a.predict([ex.with_(cues="[energy: low]")])
    assert a.stats["audio_encoded"] - before == 1


@pytest.mark.parametrize("name", NAMES)
def test_audio_dropped_is_caught(name, tiny_alm):
    from probes.models._alm import AudioDroppedError

    a = tiny_alm(name)
    ex = alm_examples(1)[0]
    b = a.encode([ex])
    audio = a.audio_embeds([ex])
    # what a processor that ignored the audio keyword leaves: placeholders holding their own embedding
    b.embeds[0, b.spans[0]["audio"]] = a._embed_ids([a.audio_token_id] * len(b.spans[0]["audio"]))
    with pytest.raises(AudioDroppedError, match="placeholder embedding"):
        a.check_audio_reached(b, audio, [ex.audio])
    # ... or no placeholders at all
    b2 = a.encode([ex])
    b2.ids[0, b2.spans[0]["audio"]] = 0
    with pytest.raises(AudioDroppedError, match="placeholder tokens"):
        a.check_audio_reached(b2, audio, [ex.audio])
    # ... or features that did not vary although the waveform did
    flat = [torch.ones_like(audio[0])]
    b3 = a.encode([ex])
    b3.embeds[0, b3.spans[0]["audio"]] = flat[0]
    with pytest.raises(AudioDroppedError, match="constant"):
        a.check_audio_reached(b3, flat, [ex.audio])
    # silence is not a dropped input: it encodes without complaint
    a.predict([ex.with_(audio=np.zeros_like(ex.audio))])


@pytest.mark.parametrize("name", NAMES)
def test_capture_shapes(name, tiny_alm):
    a = tiny_alm(name)
    ex = alm_examples(2, seconds=(1.0, 0.75))
    d = a.module("decoder").config.hidden_size
    L = a.n_layers
    hs = a.hidden_states(ex, spans=("audio", "answer", "prompt"))
    assert hs["layers"] == list(range(L + 1))  # residual 0 = input embeddings .. L = after the last block
    assert hs["audio"].shape == (2, L + 1, d) and hs["answer"].shape == (2, L + 1, d)
    raw = a.hidden_states(ex, layers=[0], spans=("audio",), pool="none")
    b = a.encode(ex)
    assert [r.shape for r in raw["audio"]] == [(1, len(sp["audio"]), d) for sp in b.spans]
    # residual L (the last block's output) at the answer position, through the final norm + unembedding, is the answer
    lens = a.unembed(hs["answer"][:, -1].to(a.dtype), normed=False)
    assert torch.allclose(lens, a.answer_logits(ex), atol=1e-4)
    att = a.attention(ex)
    heads = a.module("decoder").config.num_attention_heads
    assert att["weights"].shape == (2, L, heads, max(b.lengths))
    assert torch.allclose(att["weights"][1].sum(-1), torch.ones(L, heads), atol=1e-4)
    assert float(att["weights"][1, :, :, b.lengths[1]:].abs().sum()) == 0.0  # nothing on the pads
    assert a.model.config._attn_implementation != "eager", "eager attention is switched off again"
    au = a.audio_hidden_states(ex[:1])
    assert au["pooled"].shape[:2] == (1, len(a.module("audio.blocks")))


@pytest.mark.parametrize("name", NAMES)
def test_ablation_and_patching(name, tiny_alm):
    a = tiny_alm(name)
    A, B = alm_examples(2)  # same prompt, equal durations, different tones
    base = a.answer_logits([A, B])
    assert not torch.allclose(base[0], base[1], atol=1e-5)
    for layer in (0, 1):
        for mode in ("zero", "mean"):
            ab = a.ablate([A], layer, mode=mode)[0]
            assert not torch.allclose(ab, base[0], atol=1e-5), f"ablation at {layer} ({mode}) changed nothing"
            hooked = a.answer_logits([A], [Edit("ablate", layer=layer, mode=mode)])[0]  # the Edit path
            assert torch.allclose(ab, hooked, atol=1e-5)
    last = a.ablate([A], a.n_layers)[0]  # residual L: no later block reads the audio positions' last output
    assert torch.allclose(last, base[0], atol=1e-5)
    # patching: A into B at residual 0 reproduces A; A into A changes nothing at any layer / span
    assert torch.allclose(a.patch([B], [A], 0)[0], base[0], atol=1e-5)
    assert torch.allclose(a.patch([B], [A], 1, span="all")[0], base[0], atol=1e-5)
    for layer in range(a.n_layers + 1):
        assert torch.allclose(a.patch([A], [A], layer)[0], base[0], atol=1e-5)
    moved = a.patch([B], [A], 1)[0]  # the audio span alone after block 0: B moves toward A but is not A
    assert not torch.allclose(moved, base[1], atol=1e-6)
    # predict resolves a patch source through source_loader
    a.source_loader = {"u0": A}.get
    try:
        got = a.label_logprobs([B.with_(edits=(Edit("patch", layer=0, source="u0"),))])
        assert torch.allclose(got, a.label_logprobs([A]), atol=1e-5)
    finally:
        a.source_loader = None
    short = alm_examples(2, seconds=(1.0, 0.5))[1]
    if name != "voxtral":  # voxtral pads every window to the same token count
        with pytest.raises(ValueError, match="equal length"):
            a.patch([short], [A], 0)


def test_generate_mode_counts_invalid():
    from probes.registry import MODELS

    g = MODELS["qwen2-audio"].tiny(answer_mode="generate")
    preds = g.predict(alm_examples(2))
    assert all(isinstance(p.raw, str) for p in preds)
    from probes.labels import parse_answer

    assert all(p.label == parse_answer(p.raw, g.labels) for p in preds)


def test_no_hub_error_is_clear(monkeypatch):
    from probes.models._alm import ModelLoadError
    from probes.registry import MODELS

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # no weights named: refused at once, nothing is downloaded
    with pytest.raises(ModelLoadError, match="needs --model-path.*Qwen/Qwen2-Audio-7B-Instruct.*--tiny"):
        MODELS["qwen2-audio"].from_cli()
    # a hub id on a machine with no hub, and a missing folder: refused by the fast check (probes/models/loading.py)
    with pytest.raises(ModelLoadError, match="qwen2-audio: Qwen/Qwen2-Audio-7B-Instruct: not in the local hub cache"):
        MODELS["qwen2-audio"].from_cli(model_path="Qwen/Qwen2-Audio-7B-Instruct")
    with pytest.raises(ModelLoadError, match="no such folder"):
        MODELS["voxtral"].from_cli(model_path="./no/such/weights")
