"""Ambiguous synthetic items by design (probes/data/synth/ambiguous.py): a voice blended between
two emotions at a stated ratio, its intended soft label, read by the distribution metrics."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from probes.cli import main
from probes.data.synth import ambiguous as amb


def test_design_states_ratios_and_soft_labels_sum_to_one():
    from probes.data.synth.design import TEST_SPEAKERS, load_bank, sentence_split

    items = amb.design(0, 90)
    assert len({(i.a, i.b, i.ratio, i.words) for i in items}) == 90        # every cell once per round
    split = sentence_split(load_bank(), 0)
    for it in items:
        s = it.soft
        assert sum(s.values()) == pytest.approx(1.0)
        assert s[it.a] == pytest.approx(it.ratio) and s[it.b] == pytest.approx(1 - it.ratio)
        assert sum(v > 0 for v in s.values()) == 2
        assert it.ratio in amb.RATIOS and (it.a, it.b) in amb.PAIRS
        assert it.sentence_emotion == {"a": it.a, "b": it.b, "neutral": "neutral"}[it.words]
        assert it.speaker in TEST_SPEAKERS and split[it.sentence_id] == "test"   # unseen by train-split models
        assert it.majority == (it.a if it.ratio >= 0.5 else it.b)
    assert amb.design(0, 20) == items[:20] and amb.design(0, 20) != amb.design(1, 20)
    assert len(amb.design(0, 100)) == 100
    with pytest.raises(amb.AmbiguousError, match="positive"):
        amb.design(0, 0)


def test_blend_interpolates_the_two_draws():
    from probes.data.synth.design import rng_for
    from probes.data.synth.voices import draw

    for a, b in amb.PAIRS:
        pa, pb = draw(a, rng_for(3, "k")), draw(b, rng_for(3, "k"))
        assert amb.blend(a, b, 1.0, rng_for(3, "k")).pitch == pytest.approx(pa.pitch)
        assert amb.blend(a, b, 0.0, rng_for(3, "k")).volume == pytest.approx(pb.volume)
        prev = None
        for r in (0.2, 0.5, 0.8):
            p = amb.blend(a, b, r, rng_for(3, "k"))
            for k in ("pitch", "range", "rate", "volume", "breath", "tremolo", "rough", "tilt"):
                lo, hi = sorted((getattr(pa, k), getattr(pb, k)))
                assert lo - 1e-9 <= getattr(p, k) <= hi + 1e-9, (a, b, r, k)
            assert p.pitch == pytest.approx(pa.pitch ** r * pb.pitch ** (1 - r))
            assert p.tilt == pytest.approx(r * pa.tilt + (1 - r) * pb.tilt)
            if prev is not None and pa.pitch != pb.pitch:   # monotone in r, toward A
                assert (p.pitch - prev.pitch) * (pa.pitch - pb.pitch) > 0
            prev = p
    with pytest.raises(amb.AmbiguousError, match="within 0..1"):
        amb.blend("sad", "fear", 1.5, rng_for(0, "k"))


def test_egemaps_of_a_blend_lies_between_the_two_emotions():
    """Measured, not assumed: on the same sentence, speaker and jitter, eGeMAPS mean F0 and loudness
    at r = 0.5 lie between the pure emotions' (r = 1: A, r = 0: B), for every pair whose profiles
    differ in that knob by more than 15 %."""
    import opensmile

    from probes.data.synth.voices import PROFILES

    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02, feature_level=opensmile.FeatureLevel.Functionals)
    feats = {"pitch": "F0semitoneFrom27.5Hz_sma3nz_amean", "volume": "loudness_sma3_amean"}
    base = amb.design(0, 2)
    checked = 0
    for a, b in amb.PAIRS:
        knobs = [k for k in feats if abs(np.log(getattr(PROFILES[a], k) / getattr(PROFILES[b], k))) > np.log(1.15)]
        if not knobs:
            continue
        for it in base:
            vals = {}
            for r in (0.0, 0.5, 1.0):
                wav, _ = amb.render_item(replace(it, a=a, b=b, ratio=r), 0)
                f = smile.process_signal(wav, 16000)
                vals[r] = {k: float(f[feats[k]].iloc[0]) for k in knobs}
            for k in knobs:
                lo, hi = sorted((vals[0.0][k], vals[1.0][k]))
                assert lo < vals[0.5][k] < hi, (a, b, it.utt_id, k, vals)
                if k == "pitch":   # F0 follows the pitch knob's side (loudness also moves with tilt, breath...)
                    assert (vals[1.0][k] > vals[0.0][k]) == (PROFILES[a].pitch > PROFILES[b].pitch)
                checked += 1
    assert checked >= 8


def test_cli_builds_a_deterministic_manifest_the_soft_metrics_read(tmp_path):
    from probes.data.manifest import Manifest
    from probes.metrics import soft_labels

    import subprocess
    import sys

    one, two = tmp_path / "one", tmp_path / "two"
    # two fresh processes: espeak-ng's klatt noise (breathy variants) alternates between consecutive
    # utterances of one process (see the report of issue 14), so audio repeats per process and build order
    for out in (one, two):
        subprocess.run([sys.executable, "-m", "probes.cli", "data", "synth", "--out", str(out), "--ambiguous", "5",
                        "--with-corpus", "4", "--quiet"], check=True)
    m = Manifest.read(one)
    df = m.df
    assert (df["corpus"] == "synth-ambiguous").sum() == 5 and (df["corpus"] == "synth").sum() == 4
    assert (one / "manifest.csv").read_bytes() == (two / "manifest.csv").read_bytes()
    for p in df["audio_path"]:
        assert (one / p).read_bytes() == (two / p).read_bytes()
    labels, soft = soft_labels(df)
    a = df["corpus"] == "synth-ambiguous"
    assert np.isnan(soft[~a.to_numpy()]).all()                          # the default corpus: no soft label
    s = soft[a.to_numpy()]
    assert np.allclose(s.sum(1), 1.0)
    for row, dist in zip(df[a].itertuples(), s):
        assert dist[labels.index(row.blend_a)] == pytest.approx(float(row.mix_ratio))
        assert dist[labels.index(row.blend_b)] == pytest.approx(1 - float(row.mix_ratio))
    # the default corpus rows are the default build's, unchanged
    base = pd.read_csv(one / "base" / "manifest.csv", dtype=str, keep_default_na=False)
    assert base["utt_id"].tolist() == df.loc[~a, "utt_id"].tolist()
    # rebuilding in place is allowed; a foreign folder and mixed-up options are refused
    assert main(["data", "synth", "--out", str(one), "--ambiguous", "3", "--quiet"]) == 0
    assert len(list((one / "wav").glob("amb*.wav"))) == 3
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    assert main(["data", "synth", "--out", str(tmp_path / "foreign"), "--ambiguous", "3", "--quiet"]) != 0
    assert main(["data", "synth", "--out", str(tmp_path / "x"), "--ambiguous", "3", "--n", "4", "--quiet"]) != 0
    assert main(["data", "synth", "--out", str(tmp_path / "y"), "--with-corpus", "4", "--quiet"]) != 0
    assert main(["data", "synth", "--out", str(tmp_path / "z"), "--ambiguous", "0", "--quiet"]) != 0
