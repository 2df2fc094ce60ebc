"""The cue-token library and ``probe cues``: extraction cache, concepts, bins, templates, CLI."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from interventions.concepts import CONCEPT_NAMES, CONCEPTS, CueBins, CueError, render
from interventions.egemaps import cached_count, extract
from tests.fixtures.interventions import voiced, write


def _cli(argv: list[str], capsys) -> tuple[int, str, str]:
    from probes.cli import main

    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def test_loud_high_rendition_is_energy_high_pitch_high(loud_high_quiet_low, cue_cache):
    loud, quiet = loud_high_quiet_low
    feats = extract([loud, quiet], cache_dir=cue_cache, progress=False)          # [2, 88]
    bins = CueBins.fit(feats)
    t_loud, t_quiet = bins.transform(feats)
    assert (t_loud["energy"], t_loud["pitch"]) == ("high", "high")
    assert (t_quiet["energy"], t_quiet["pitch"]) == ("low", "low")
    # the raw features behind the two concepts agree with how the signals were made
    assert feats.loc[0, "loudness_sma3_amean"] > 3 * feats.loc[1, "loudness_sma3_amean"]
    assert feats.loc[0, "F0semitoneFrom27.5Hz_sma3nz_amean"] - feats.loc[1, "F0semitoneFrom27.5Hz_sma3nz_amean"] > 12


def test_cli_json_files_in_order(loud_high_quiet_low, cue_cache, capsys):
    loud, quiet = loud_high_quiet_low
    rc, out, _ = _cli(["cues", str(quiet), str(loud), "--json", "--reference", "self", "--small-reference",
                       "--quiet", "--cache-dir", str(cue_cache)], capsys)
    assert rc == 0
    res = json.loads(out)
    assert [r["file"] for r in res] == [str(quiet), str(loud)]
    assert set(res[0]) == {"file", *CONCEPT_NAMES}
    assert (res[1]["energy"], res[1]["pitch"]) == ("high", "high")
    assert (res[0]["energy"], res[0]["pitch"]) == ("low", "low")
    assert all(r[c] in ("low", "mid", "high") for r in res for c in CONCEPT_NAMES)


def test_cli_bad_file_is_one_error_line(tmp_path, loud_high_quiet_low, cue_cache, capsys):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00not really a wav")
    rc, out, err = _cli(["cues", str(loud_high_quiet_low[0]), str(bad), "--json", "--reference", "self", "--small-reference",
                         "--quiet", "--cache-dir", str(cue_cache)], capsys)
    assert rc != 0 and out == ""
    lines = [ln for ln in err.splitlines() if ln.strip() and "WARNING" not in ln]  # the small-reference warning aside
    assert len(lines) == 1 and "broken.wav" in lines[0] and lines[0].startswith("probe: error:")
    rc, _, err = _cli(["cues", str(tmp_path / "missing.wav"), "--reference", "self", "--small-reference", "--quiet",
                       "--cache-dir", str(cue_cache)], capsys)
    assert rc != 0 and "missing.wav" in err


def test_cli_manifest_bins_roundtrip_and_template(cue_manifest, cue_cache, tmp_path, capsys):
    bins_file, out_file = tmp_path / "bins.json", tmp_path / "tokens.csv"
    rc, _, _ = _cli(["cues", "--data", str(cue_manifest), "--reference", "self", "--small-reference", "--norm", "global",
                     "--out", str(out_file), "--save-bins", str(bins_file), "--quiet", "--cache-dir", str(cue_cache)], capsys)
    assert rc == 0
    import pandas as pd

    tab = pd.read_csv(out_file)
    assert len(tab) == 12 and {"utt_id", "file", *CONCEPT_NAMES} <= set(tab.columns)
    # the saved bins, reloaded, give the same tokens for the same files (here in another order)
    files = list(tab["file"])[::-1]
    rc, out, _ = _cli(["cues", *files, "--bins", str(bins_file), "--json", "--template", "sentence",
                       "--quiet", "--cache-dir", str(cue_cache)], capsys)
    assert rc == 0
    res = json.loads(out)
    expect = tab.set_index("file")
    for r in res:
        assert {c: r[c] for c in CONCEPT_NAMES} == {c: expect.loc[r["file"], c] for c in CONCEPT_NAMES}
        assert r["text"].startswith("The voice has ") and r["text"].endswith(".")
    # --reference: bins from a manifest, tokens for files; equals bins fitted in-process on it
    rc, out, _ = _cli(["cues", files[0], "--reference", str(cue_manifest), "--small-reference", "--json", "--quiet",
                       "--cache-dir", str(cue_cache)], capsys)
    assert rc == 0 and {c: json.loads(out)[0][c] for c in CONCEPT_NAMES} == {c: expect.loc[files[0], c] for c in CONCEPT_NAMES}


def test_bins_json_roundtrip(cue_manifest, cue_cache, tmp_path):
    from probes.data.manifest import Manifest

    m = Manifest.read(cue_manifest)
    feats = extract([m.audio_path(i) for i in range(len(m))], cache_dir=cue_cache, progress=False)
    for per_speaker in (False, True):
        bins = CueBins.fit(feats, speakers=list(m.df["speaker"]), per_speaker=per_speaker)
        back = CueBins.load(bins.save(tmp_path / f"bins{per_speaker}.json"))
        assert back.to_dict() == bins.to_dict()
        assert back.transform(feats, list(m.df["speaker"])) == bins.transform(feats, list(m.df["speaker"]))
    # three levels cut at tertiles: each level holds about a third of the reference set
    counts = Counter(t["energy"] for t in CueBins.fit(feats).transform(feats))
    assert counts == Counter({"low": 4, "mid": 4, "high": 4})
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"kind": "something else"}))
    with pytest.raises(CueError, match="bad.json"):
        CueBins.load(bad)


def test_per_speaker_bins_level_within_speaker(cue_manifest, cue_cache):
    """Per speaker, each speaker's sad rendition is low and angry high, whatever the speaker's range."""
    from probes.data.manifest import Manifest

    m = Manifest.read(cue_manifest)
    feats = extract([m.audio_path(i) for i in range(len(m))], cache_dir=cue_cache, progress=False)
    spk = list(m.df["speaker"])
    toks = CueBins.fit(feats, speakers=spk, per_speaker=True).transform(feats, spk)
    by = dict(zip(m.df["utt_id"], toks))
    for s in ("spk_low", "spk_mid", "spk_high"):
        assert by[f"{s}_sad"]["pitch"] == "low" and by[f"{s}_sad"]["energy"] == "low"
        assert by[f"{s}_angry"]["energy"] == "high"
    with pytest.raises(CueError, match="per speaker"):
        CueBins.fit(feats, speakers=spk, per_speaker=True).transform(feats)


def test_extraction_cache_and_pool(tmp_path, cue_cache):
    files = [write(tmp_path / f"v{i}.wav", voiced(110 + 30 * i, 0.1 + 0.1 * i, seconds=1.0, seed=i)) for i in range(3)]
    cache = tmp_path / "cache"
    assert cached_count(files, cache_dir=cache) == 0
    pooled = extract(files, cache_dir=cache, workers=2, progress=False)          # a process pool
    assert cached_count(files, cache_dir=cache) == 3
    again = extract(files, cache_dir=cache, progress=False)                      # all from the cache
    inproc = extract(files, cache_dir=tmp_path / "cache2", workers=1, progress=False)
    np.testing.assert_allclose(pooled.to_numpy(), again.to_numpy())
    np.testing.assert_allclose(pooled.to_numpy(), inproc.to_numpy(), rtol=1e-6)
    # new content under the same name is a new cache key, never a stale entry
    write(files[0], voiced(300, 0.4, seconds=1.0, seed=9))
    assert cached_count(files, cache_dir=cache) == 2
    fresh = extract(files, cache_dir=cache, workers=1, progress=False)
    assert fresh.loc[0, "F0semitoneFrom27.5Hz_sma3nz_amean"] > pooled.loc[0, "F0semitoneFrom27.5Hz_sma3nz_amean"] + 6
    lld = extract(files[:1], level="lld", cache_dir=cache, progress=False)[0]   # [frames, 25]
    assert lld.shape[1] == 25 and 90 <= len(lld) <= 110


def test_concept_table_and_render():
    assert CONCEPT_NAMES == ("energy", "pitch", "dynamics", "brightness", "formants", "voice_quality")
    for c, terms in CONCEPTS.items():
        assert terms and all(w in (-1.0, 1.0) for _, w in terms)
    toks = dict(zip(CONCEPT_NAMES, ["high", "low", "mid", "mid", "low", "high"]))
    assert render(toks, "brackets") == ("[energy: high] [pitch: low] [dynamics: mid] [brightness: mid] "
                                        "[formants: low] [voice quality: high]")
    s = render(toks, "sentence")
    assert "high energy (loud)" in s and "a low pitch" in s and " and a clear, periodic voice quality." in s
    assert "extremely high energy" in render({**toks, "energy": "extremely high"}, "sentence")
    with pytest.raises(CueError, match="unknown cue template"):
        render(toks, "nope")


def test_single_reference_file_is_mid(loud_high_quiet_low, cue_cache):
    feats = extract([loud_high_quiet_low[0]], cache_dir=cue_cache, progress=False)
    assert set(CueBins.fit(feats).transform(feats)[0].values()) == {"mid"}


def test_espeak_sentence_loud_high_vs_quiet_low(tmp_path, cue_cache, capsys):
    """The same sentence spoken by espeak-ng twice: loud and high, quiet and low (CLI --json)."""
    engine = pytest.importorskip("probes.data.synth.engine")
    from probes.audio import write_wav

    text = "The parcel arrived on the third floor this morning."
    loud = tmp_path / "loud.wav"
    quiet = tmp_path / "quiet.wav"
    write_wav(loud, engine.speak(engine.Request(text, pitch=85, volume=180)))
    write_wav(quiet, engine.speak(engine.Request(text, pitch=15, volume=40)))
    rc, out, _ = _cli(["cues", str(loud), str(quiet), "--json", "--reference", "self", "--small-reference", "--quiet",
                       "--cache-dir", str(cue_cache)], capsys)
    assert rc == 0
    res = json.loads(out)
    assert (res[0]["energy"], res[0]["pitch"]) == ("high", "high")
    assert (res[1]["energy"], res[1]["pitch"]) == ("low", "low")


def test_cli_one_file_refuses_and_points_to_reference(loud_high_quiet_low, cue_cache, tmp_path, capsys):
    """`probe cues one.wav --json` used to fit bins on that one file and answer 'mid' for everything."""
    one = str(loud_high_quiet_low[0])
    rc, out, err = _cli(["cues", one, "--json", "--quiet", "--cache-dir", str(cue_cache)], capsys)
    assert rc == 2 and out == "" and "--reference" in err
    # fitting on the files given must be said, and is still refused below 20 files
    rc, out, err = _cli(["cues", one, "--json", "--reference", "self", "--quiet", "--cache-dir", str(cue_cache)], capsys)
    assert rc == 2 and out == "" and "fewer than 20" in err and "--reference MANIFEST" in err
    # going on anyway is explicit, and warned about
    rc, out, err = _cli(["cues", one, "--json", "--reference", "self", "--small-reference", "--quiet",
                         "--cache-dir", str(cue_cache)], capsys)
    assert rc == 0 and "WARNING" in err and "1 file(s)" in err and len(json.loads(out)) == 1


def test_cli_missing_reference_is_refused_before_extraction(loud_high_quiet_low, tmp_path, capsys):
    cache = tmp_path / "cache"
    rc, out, err = _cli(["cues", str(loud_high_quiet_low[0]), "--reference", str(tmp_path / "nonexistent.csv"),
                         "--json", "--quiet", "--cache-dir", str(cache)], capsys)
    assert rc == 2 and out == "" and "nonexistent.csv" in err and "no such manifest" in err
    assert cached_count([loud_high_quiet_low[0]], cache_dir=cache) == 0   # nothing was extracted


def test_cli_data_defaults_to_train_split_per_speaker(cue_manifest, cue_cache, tmp_path, capsys):
    bins_file = tmp_path / "bins.json"
    rc, _, err = _cli(["cues", "--data", str(cue_manifest), "--small-reference", "--save-bins", str(bins_file),
                       "--out", str(tmp_path / "t.csv"), "--cache-dir", str(cue_cache), "--workers", "1"], capsys)
    assert rc == 0
    bins = CueBins.load(bins_file)
    assert bins.per_speaker and bins.fitted_on["n"] == 8 and "train split" in bins.fitted_on["source"]
    assert "per-speaker" in err and "train split" in err
    import pandas as pd

    nosplit = tmp_path / "nosplit.csv"
    df = pd.read_csv(cue_manifest, dtype=str, keep_default_na=False)
    df.assign(split="", audio_path=[str(cue_manifest.parent / a) for a in df["audio_path"]]).to_csv(nosplit, index=False)
    rc, _, err = _cli(["cues", "--data", str(nosplit), "--small-reference", "--quiet", "--cache-dir", str(cue_cache)], capsys)
    assert rc == 2 and "reference=self" in err


def _outlier_features(n: int = 200, seed: int = 0):
    """Reference functionals with one file whose F0 falling slope is absurd (as EmoDB's 1603)."""
    import pandas as pd

    from interventions.concepts import FEATURES

    rng = np.random.default_rng(seed)
    X = rng.normal(0.0, 1.0, size=(n, len(FEATURES)))
    df = pd.DataFrame(X, columns=list(FEATURES))
    lively = np.linspace(-1.5, 1.5, n)                 # a dynamics factor shared by its six functionals
    for f, _ in CONCEPTS["dynamics"]:
        df[f] = lively + 0.2 * rng.normal(size=n)
    df.loc[0, "F0semitoneFrom27.5Hz_sma3nz_meanFallingSlope"] = 1600.0   # file 0 is otherwise the flattest
    return df


def test_outlying_slope_cannot_decide_dynamics():
    """Robust z (median/MAD, clipped to +-3): one absurd slope does not make its file 'high';
    plain mean/std z (the old behaviour) let that one functional decide the level."""
    from interventions.concepts import Z_CLIP

    feats = _outlier_features()
    bins = CueBins.fit(feats)
    assert bins.scaling == "robust"
    Z = bins.zscores(feats)
    assert np.abs(Z).max() <= Z_CLIP
    dyn = [t["dynamics"] for t in bins.transform(feats)]
    assert dyn[0] == "low"                                    # still the flattest of all, but for one functional
    assert dyn[1:50].count("low") >= 45 and dyn[-50:].count("high") >= 45   # the others keep their order
    old = CueBins.fit(feats, scaling="standard")
    assert [t["dynamics"] for t in old.transform(feats)][0] == "high"   # one functional decided it
    # the choice is saved with the bins; a format-1 file (before robust scaling) loads as standard
    d = bins.to_dict()
    assert d["scaling"] == "robust" and d["z_clip"] == Z_CLIP
    d1 = {**old.to_dict(), "format": 1}
    d1.pop("scaling"), d1.pop("z_clip")
    assert CueBins.from_dict(d1).scaling == "standard"


@pytest.mark.corpus  # the real EmoDB (../shared/data/emodb); 4 of its 10 speakers, ~190 files through opensmile
def test_emodb_per_speaker_bins_do_not_encode_speaker_sex(shared_data):
    """Global bins made EmoDB's pitch and voice-quality tokens say more about the speaker's sex than
    about the emotion (Cramér's V ~0.5, docs/interventions.md); per-speaker bins (the default) must not."""
    import sys

    from probes.registry import CORPORA

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from cues_separability import association

    m = CORPORA["emodb"].load(shared_data / "emodb")
    m = m.subset(m.df["speaker"].isin(["03", "10", "08", "09"]))        # two men, two women
    assert sorted(set(m.df["gender"])) == ["f", "m"]
    feats = extract([m.audio_path(i) for i in range(len(m))], progress=False)   # the default cache: reused across runs
    args = (feats, m.df["acoustic_label"].to_numpy(), m.df["speaker"].to_numpy(), m.df["gender"].to_numpy())
    glob = association(*args, per_speaker=False)
    spk = association(*args, per_speaker=True)
    for c in ("pitch", "voice_quality"):
        assert glob[c]["attribute"] > 0.35                      # global: the tokens tell the speaker's sex
        assert spk[c]["attribute"] < 0.15 < glob[c]["attribute"] - 0.2
    assert spk["pitch"]["emotion"] > 0.5 and spk["pitch"]["emotion"] > spk["pitch"]["attribute"] + 0.4
