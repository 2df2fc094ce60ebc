"""The synthetic conflict corpus: bank, design and splits, determinism, files, CLI, bad input."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from probes.data.manifest import COLUMNS, Manifest
from probes.data.synth import build
from probes.data.synth.design import EXTRA, MAIN, DesignError, full_design, load_bank, select
from probes.data.synth.engine import Request, SynthError, get_engine
from probes.data.synth.voices import MILD_INTENSITY, PROFILES, SPEAKERS, draw, render, spoken_text

# ------------------------------------------------------------------------------ sentence bank
def test_bank_sizes_and_explicitness():
    bank = load_bank()
    by = Counter((s.emotion, s.explicitness) for s in bank)
    assert by[("neutral", "neutral")] >= 30
    # about 30 sentences per emotion before a text pathway generalises to held-out sentences (FINDINGS 5)
    for e in ("happy", "sad", "angry", "fear", "disgust", "surprise"):
        assert by[(e, "explicit")] + by[(e, "implicit")] >= 30
        assert by[(e, "explicit")] == by[(e, "implicit")]
    ids = [s.sentence_id for s in bank]
    assert len(set(ids)) == len(ids)
    assert len({s.text.lower() for s in bank}) == len(bank)
    # ids are stable names, not positions: prefix = emotion, letter = explicitness
    for s in bank:
        assert re.fullmatch(r"[a-z]{3}-[nei]\d{2}", s.sentence_id), s.sentence_id
        assert s.sentence_id[:3] == s.emotion[:3] and s.sentence_id[4] == s.explicitness[0]


@pytest.mark.corpus
def test_bank_shares_no_sentence_with_emis(shared_data):
    """Our sentences are our own: none equals an EMIS sentence or shares a 4-word run with one."""
    import csv

    path = shared_data / "emis-predictions" / "emotion_sentences_dataset.csv"
    emis = [c for k, row in enumerate(csv.reader(path.open(encoding="utf-8"))) if k for c in row if c.strip()]
    assert len(emis) > 100

    def grams(s: str) -> set[tuple[str, ...]]:
        w = re.findall(r"[a-z']+", s.lower().replace("\u2019", "'"))
        return {tuple(w[i:i + 4]) for i in range(len(w) - 3)}

    theirs = set().union(*(grams(e) for e in emis))
    for s in load_bank():
        assert not grams(s.text) & theirs, s.text


# ------------------------------------------------------------------------------ design and splits
def _check_splits(df: pd.DataFrame) -> None:
    tr, te = df[df["split"] == "train"], df[df["split"] == "test"]
    assert not set(tr["speaker"]) & set(te["speaker"])
    assert not set(tr["sentence_id"]) & set(te["sentence_id"])
    # dev = the sides disagree: a train speaker with a test sentence, or the other way round
    train_spk, test_spk = set(tr["speaker"]), set(te["speaker"])
    train_sen, test_sen = set(tr["sentence_id"]), set(te["sentence_id"])
    for r in df[df["split"] == "dev"].itertuples():
        both_train = r.speaker in train_spk and r.sentence_id in train_sen
        both_test = r.speaker in test_spk and r.sentence_id in test_sen
        assert not (both_train or both_test), r.utt_id


def test_full_design_splits_and_crossing():
    items = full_design(0)
    df = pd.DataFrame([{"utt_id": it.utt_id, "speaker": it.speaker, "sentence_id": it.sentence.sentence_id,
                        "split": it.split, "a": it.voice_emotion, "s": it.sentence.emotion} for it in items])
    assert 1000 <= len(df) <= 1300
    assert df["utt_id"].is_unique
    _check_splits(df)
    for split in ("train", "test"):
        part = df[df["split"] == split]
        assert set(part["a"]) == set(MAIN + EXTRA) == set(part["s"])
    assert set(df["split"]) == {"train", "dev", "test"}
    # every voice emotion meets every text emotion, each conflict cell equally often
    cells = df.groupby(["a", "s"]).size()
    assert len(cells) == 49
    assert cells[[a != s for a, s in cells.index]].nunique() == 1
    # balanced labels: as many items per voice emotion and per text emotion
    assert df["a"].value_counts().nunique() == 1 and df["s"].value_counts().nunique() == 1
    # hundreds of congruent training items (not one hundred), and a majority of conflict items overall
    congruent = df["a"] == df["s"]
    assert (congruent & (df["split"] == "train")).sum() >= 250
    assert 0.5 < (~congruent).mean() < 0.7
    # every sentence is spoken congruently at least twice, by different speakers
    twice = df[congruent].groupby("sentence_id")["speaker"].agg(["size", "nunique"])
    assert (twice["size"] >= 2).all()
    # every speaker is on exactly one side, and both sides have several speakers
    tr_spk = set(df[df.split == "train"]["speaker"])
    te_spk = set(df[df.split == "test"]["speaker"])
    assert tr_spk | te_spk == {s.id for s in SPEAKERS} and len(tr_spk) >= 3 and len(te_spk) >= 2


def test_other_seed_other_design_same_shape():
    a, b = full_design(0), full_design(1)
    assert len(a) == len(b)
    assert [it.utt_id for it in a] != [it.utt_id for it in b]


@pytest.mark.parametrize("n", [20, 40, 150])
def test_subsample_is_deterministic_and_populated(n):
    a, b = select(0, n), select(0, n)
    assert [it.utt_id for it in a] == [it.utt_id for it in b]
    assert len(a) == n
    splits = Counter(it.split for it in a)
    assert splits["train"] > 0 and splits["test"] > 0
    if n >= 40:
        assert splits["dev"] > 0
        for split in ("train", "test"):
            assert {it.voice_emotion for it in a if it.split == split} == set(MAIN + EXTRA)


@pytest.mark.parametrize("rate", [0.0, 0.25, 0.5, 1.0])
def test_conflict_rate(rate):
    items = select(0, 200, rate)
    assert len(items) == 200
    share = sum(not it.congruent for it in items) / len(items)
    assert share == pytest.approx(rate, abs=0.005)
    assert len({it.utt_id for it in items}) == len(items)


def test_conflict_rate_default_size_and_bad_values():
    assert len(select(0, None, 0.0)) > 0 and all(it.congruent for it in select(0, None, 0.0))
    with pytest.raises(DesignError, match="between 0 and 1"):
        select(0, 50, 1.5)
    with pytest.raises(DesignError, match="at least 1"):
        select(0, 0)


# ------------------------------------------------------------------------------ the built corpus
def test_small_corpus_fixture(synth_corpus):
    m = Manifest.read(synth_corpus)
    df = m.df
    assert 60 <= len(m) <= 100
    assert list(df.columns[: len(COLUMNS)]) == list(COLUMNS)
    for extra in ("explicitness", "voice", "p_pitch", "p_rate", "p_volume", "p_ending", "p_intensity", "duration_s"):
        assert extra in df.columns
    assert set(df["p_intensity"].astype(float)) <= {1.0, MILD_INTENSITY} and (df["p_intensity"].astype(float) < 1).any()
    assert set(df["split"]) == {"train", "dev", "test"}
    assert set(df["congruent"]) == {"true", "false"}
    assert df["acoustic_label"].nunique() >= 4 and df["speaker"].nunique() >= 6
    assert set(df["corpus"]) == {"synth"} and set(df["language"]) == {"en"}
    assert (df["congruent"] == "true").eq(df["acoustic_label"] == df["semantic_label"]).all()
    _check_splits(df)
    for i in range(0, len(m), 9):
        info = sf.info(str(m.audio_path(i)))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert 1.0 < info.duration < 10.0
        assert not Path(df["audio_path"][i]).is_absolute()


def _build_in_fresh_process(out: Path, seed: int, n: int) -> Path:
    import subprocess
    import sys

    code = f"from probes.data.synth import build; build({str(out)!r}, seed={seed}, n={n}, progress=False)"
    subprocess.run([sys.executable, "-c", code], check=True)
    return out / "manifest.csv"


def test_same_seed_same_bytes_and_rebuild_is_safe(tmp_path):
    # Same arguments, same bytes, for builds in fresh processes (what `make demo` and every user run
    # are). Within one process espeak-ng keeps oscillator state across utterances (docs/synthetic-corpus.md),
    # so a second build in the same process may differ by a sub-sample phase: not tested here.
    a = _build_in_fresh_process(tmp_path / "a", 3, 12)
    b = _build_in_fresh_process(tmp_path / "b", 3, 12)
    assert a.read_bytes() == b.read_bytes()
    ma = Manifest.read(a)
    for i in range(len(ma)):
        name = ma.df["audio_path"][i]
        assert (a.parent / name).read_bytes() == (b.parent / name).read_bytes(), name
    c = build(tmp_path / "c", seed=4, n=12, progress=False)
    assert c.read_bytes() != a.read_bytes()
    # rebuilding smaller in the same folder: the manifest stays valid, stale wavs go, no partials
    again = build(tmp_path / "a", seed=3, n=6, progress=False, force=True)
    m = Manifest.read(again)
    assert len(m) == 6
    assert sorted(p.name for p in (tmp_path / "a" / "wav").iterdir()) == sorted(Path(p).name for p in m.df["audio_path"])


def test_cli_synth(tmp_path, capsys):
    """`probe data synth --out DIR --n 40` (in process: the console script is probes.cli:main)."""
    from probes.cli import main

    out = tmp_path / "cli"
    assert main(["data", "synth", "--out", str(out), "--n", "40", "--quiet"]) == 0
    assert "manifest.csv" in capsys.readouterr().out
    m = Manifest.read(out / "manifest.csv")
    assert len(m) == 40 and {"train", "test"} <= set(m.df["split"])


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("text", ["", "   ", "?!.", "\n"])
def test_unspeakable_text_is_a_clear_error(text):
    with pytest.raises(SynthError, match="no letters or digits"):
        spoken_text(text, ".")
    with pytest.raises(SynthError, match="no letters or digits"):
        get_engine().speak(Request(text))


def test_unknown_emotion_is_a_clear_error():
    with pytest.raises(SynthError, match="no prosody profile"):
        draw("bored", np.random.default_rng(0))
    assert set(PROFILES) == set(MAIN + EXTRA)


# ------------------------------------------------------------------------------ intensity (mild takes)
def test_mild_takes_move_every_knob_toward_neutral_and_keep_the_draws():
    from probes.data.synth.voices import MILD_INTENSITY, MILD_SHARE, expressed, intensity_for

    for emo, p in PROFILES.items():
        assert expressed(p, 1.0) == p
        flat = expressed(p, 0.0)
        assert (flat.pitch, flat.range, flat.rate, flat.volume) == (1.0, 1.0, 1.0, 1.0)
        assert (flat.breath, flat.tremolo, flat.rough, flat.tilt, flat.wordgap) == (0.0, 0.0, 0.0, 0.0, 0.0)
        assert dict(flat.endings).get(".", 0) == pytest.approx(1.0) and sum(w for _, w in flat.endings) == pytest.approx(1.0)
        mild = expressed(p, MILD_INTENSITY)
        for knob in ("pitch", "range", "rate", "volume"):  # between neutral and the full profile (log scale)
            full, m = getattr(p, knob), getattr(mild, knob)
            assert min(1.0, full) <= m <= max(1.0, full)
        assert abs(mild.tilt) <= abs(p.tilt) and mild.breath <= p.breath
        # the same rng state gives the same random draws whatever the intensity: a mild take of
        # a full-profile emotion differs only by its means
        a = draw(emo, np.random.default_rng(7), intensity=1.0)
        b = draw(emo, np.random.default_rng(7), intensity=MILD_INTENSITY)
        assert b.intensity == MILD_INTENSITY and a.intensity == 1.0
        for knob in ("pitch", "range", "rate", "volume"):
            assert getattr(b, knob) / getattr(a, knob) == pytest.approx(getattr(mild, knob) / getattr(p, knob))
    with pytest.raises(SynthError, match="intensity"):
        expressed(PROFILES["sad"], 1.5)
    # a seeded share of the full design is mild, spread over every voice emotion and split
    items = full_design(0)
    mild = [it for it in items if intensity_for(0, it.utt_id) < 1.0]
    assert abs(len(mild) / len(items) - MILD_SHARE) < 0.05
    for e in MAIN + EXTRA:
        share = np.mean([intensity_for(0, it.utt_id) < 1.0 for it in items if it.voice_emotion == e])
        assert 0.35 < share < 0.65, (e, share)
    assert {it.split for it in mild} == {"train", "dev", "test"}


def test_voice_reliability_of_the_design_on_dev():
    """Regression check on the voice's reliability (no audio: the drawn prosody itself).

    A logistic regression on the drawn knobs of the congruent train items names the voice emotion
    of the dev items with accuracy 0.85 with the mild takes (docs/synthetic-corpus.md) and 0.93
    without them; the rendered audio (eGeMAPS) is far less separable than the knobs. The band
    [0.78, 0.90] fails if the mild takes are dropped or made much milder.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from probes.data.synth.design import rng_for
    from probes.data.synth.voices import intensity_for

    items = full_design(0)
    x = []
    for it in items:
        p = draw(it.voice_emotion, rng_for(0, "prosody", it.utt_id), intensity=intensity_for(0, it.utt_id))
        x.append([np.log(p.pitch), np.log(p.range), np.log(p.rate), np.log(p.volume), p.breath, p.tremolo, p.rough,
                  p.tilt, p.wordgap, p.ending == "!", p.ending == "?"])
    x = np.asarray(x, dtype=float)
    y = np.array([it.voice_emotion for it in items])
    split = np.array([it.split for it in items])
    tr = (split == "train") & np.array([it.congruent for it in items])
    sc = StandardScaler().fit(x[tr])
    clf = LogisticRegression(max_iter=2000).fit(sc.transform(x[tr]), y[tr])
    dev = split == "dev"
    acc = float((clf.predict(sc.transform(x[dev])) == y[dev]).mean())
    assert 0.78 <= acc <= 0.90, acc
