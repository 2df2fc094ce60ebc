"""The four cue conditions: each one's defining property, determinism, and the runner path."""

from __future__ import annotations

from collections import Counter

import pytest

from interventions.base import rng_for
from interventions.concepts import CONCEPT_NAMES, OUT_OF_RANGE, profile_distance, render
from interventions.cues import CueBank, CuesAligned, CuesConflicting, CuesCorrupted, CuesShuffled
from probes.adapter import Example
from probes.registry import INTERVENTIONS


@pytest.fixture(scope="module")
def data(cue_manifest):
    from probes.data.manifest import Manifest

    return Manifest.read(cue_manifest)


def _apply_all(iv, data, seed=0, cond="c"):
    out = {}
    for row in data.rows():
        ex = Example(utt_id=row["utt_id"], row=row)
        out[row["utt_id"]] = iv.apply(ex, rng=rng_for(seed, row["utt_id"], cond))
    return out


def _parse(text: str) -> dict[str, str]:
    """Back from the brackets template to {concept: level}."""
    items = [it.strip("[]") for it in text.split("] [")]
    return {k.replace(" ", "_"): v for k, v in (it.split(": ", 1) for it in items)}


def test_registered_names():
    for name, cls in [("cues-aligned", CuesAligned), ("cues-shuffled", CuesShuffled),
                      ("cues-conflicting", CuesConflicting), ("cues-corrupted", CuesCorrupted)]:
        assert INTERVENTIONS[name] is cls and cls.side == "prompt" and not cls.needs_audio


def test_aligned_is_own_tokens(data, cue_cache):
    iv = CuesAligned(cache_dir=str(cue_cache)).fit(data, seed=0)
    out = _apply_all(iv, data)
    bank: CueBank = iv._bank
    for u, ex in out.items():
        assert ex.cues == render(bank.tokens[u], "brackets") == ex.meta["cues"]
        assert ex.meta["cue_source"] == u
    # the voice emotions of the fixture come out where they were made
    assert _parse(out["spk_mid_angry"].cues)["energy"] == "high"
    assert _parse(out["spk_mid_sad"].cues)["energy"] == "low"
    sentence = CuesAligned(template="sentence", cache_dir=str(cue_cache)).fit(data, seed=0)
    assert sentence.apply(Example("spk_mid_sad", data.row("spk_mid_sad")), rng=rng_for(0)).cues.startswith("The voice has low energy")


def test_shuffled_preserves_marginals_and_is_seeded(data, cue_cache):
    aligned = _apply_all(CuesAligned(cache_dir=str(cue_cache)).fit(data, seed=0), data)
    a = _apply_all(CuesShuffled(cache_dir=str(cue_cache)).fit(data, seed=0), data)
    for c in CONCEPT_NAMES:  # per concept, the multiset of levels is exactly that of aligned
        assert Counter(_parse(e.cues)[c] for e in a.values()) == Counter(_parse(e.cues)[c] for e in aligned.values())
    assert Counter(e.cues for e in a.values()) == Counter(e.cues for e in aligned.values())
    donors = {u: e.meta["cue_donor"] for u, e in a.items()}
    assert all(d != u for u, d in donors.items()) and sorted(donors.values()) == sorted(donors)
    assert all(a[u].cues == aligned[d].cues for u, d in donors.items())
    again = _apply_all(CuesShuffled(cache_dir=str(cue_cache)).fit(data, seed=0), data)
    assert {u: e.meta["cue_donor"] for u, e in again.items()} == donors
    other = _apply_all(CuesShuffled(cache_dir=str(cue_cache)).fit(data, seed=1), data)
    assert {u: e.meta["cue_donor"] for u, e in other.items()} != donors
    draw1 = _apply_all(CuesShuffled(draw=1, cache_dir=str(cue_cache)).fit(data, seed=0), data)
    assert {u: e.meta["cue_donor"] for u, e in draw1.items()} != donors


def test_conflicting_never_aligned_and_farthest(data, cue_cache):
    iv = CuesConflicting(cache_dir=str(cue_cache)).fit(data, seed=0)
    bank: CueBank = iv._bank
    levels = bank.bins.levels
    out = _apply_all(iv, data)
    for u, ex in out.items():
        assert _parse(ex.cues) != bank.tokens[u]
        own = ex.row["acoustic_label"]
        assert ex.meta["cue_class"] != own
        if ex.meta["cue_conflict"] == "farthest-class":
            dist = {c: profile_distance(bank.profiles[own], p, levels) for c, p in bank.profiles.items() if c != own}
            assert dist[ex.meta["cue_class"]] == max(dist.values())
            assert _parse(ex.cues) == bank.profiles[ex.meta["cue_class"]]
    # on this fixture sad's opposite is a loud, high class
    assert out["spk_mid_sad"].meta["cue_class"] in ("angry", "happy")
    assert _apply_all(iv, data) == out  # deterministic


def test_conflicting_fallbacks_never_equal_aligned(data, cue_cache):
    """When every other class's profile equals the utterance's tokens, the mirror is used."""
    iv = CuesConflicting(cache_dir=str(cue_cache)).fit(data, seed=0)
    real: CueBank = iv._bank
    own = real.tokens["spk_mid_neutral"]
    fake = CueBank(bins=real.bins, tokens=dict(real.tokens), labels=real.labels,
                   profiles={"neutral": dict(own), "sad": dict(own), "angry": dict(own)})
    object.__setattr__(iv, "_bank", fake)
    for seed in range(5):
        ex = iv.apply(Example("spk_mid_neutral", data.row("spk_mid_neutral")), rng=rng_for(seed, "x"))
        got = _parse(ex.cues)
        assert ex.meta["cue_conflict"] == "mirrored" and got != own
        assert all((got[c] == "high") == (own[c] == "low") for c in CONCEPT_NAMES if own[c] != "mid")
    # one other class equal to own, one different: the different one is chosen
    other = {c: ("low" if own[c] != "low" else "high") for c in CONCEPT_NAMES}
    fake.profiles.update(angry=dict(own), happy=other)
    ex = iv.apply(Example("spk_mid_neutral", data.row("spk_mid_neutral")), rng=rng_for(0))
    assert _parse(ex.cues) == other and ex.meta["cue_class"] == "happy"


@pytest.mark.parametrize("fraction,k", [(0.0, 0), (1 / 6, 1), (0.5, 3), (0.75, 5), (1.0, 6)])
@pytest.mark.parametrize("mode", ["random", "out-of-range"])
def test_corrupted_changes_exactly_the_fraction(data, cue_cache, fraction, k, mode):
    iv = CuesCorrupted(fraction=fraction, mode=mode, cache_dir=str(cue_cache)).fit(data, seed=0)
    bank: CueBank = iv._bank
    out = _apply_all(iv, data)
    for u, ex in out.items():
        got, own = _parse(ex.cues), bank.tokens[u]
        changed = [c for c in CONCEPT_NAMES if got[c] != own[c]]
        assert len(changed) == k and changed == ex.meta["cue_corrupted"]
        for c in changed:
            assert got[c] in (bank.bins.levels if mode == "random" else OUT_OF_RANGE)
            if mode == "out-of-range" and own[c] != "mid":
                assert got[c] == ("extremely high" if own[c] == "low" else "extremely low")
    assert _apply_all(iv, data, seed=0) == out
    if 0 < k < 6:
        assert _apply_all(iv, data, seed=1) != out


def test_corrupted_rejects_bad_settings():
    with pytest.raises(ValueError, match="fraction"):
        CuesCorrupted(fraction=1.5)
    with pytest.raises(ValueError, match="mode"):
        CuesCorrupted(mode="shuffle")


def test_apply_before_fit_and_unknown_utterance(data, cue_cache):
    with pytest.raises(RuntimeError, match="fit"):
        CuesAligned().apply(Example("x", {}), rng=rng_for(0))
    iv = CuesAligned(cache_dir=str(cue_cache)).fit(data, seed=0)
    with pytest.raises(KeyError, match="not in the manifest"):
        iv.apply(Example("nobody", {}), rng=rng_for(0))


def test_bank_is_shared_across_conditions(data, cue_cache):
    a = CuesAligned(cache_dir=str(cue_cache)).fit(data, seed=0)
    b = CuesCorrupted(cache_dir=str(cue_cache)).fit(data, seed=3)
    assert a._bank is b._bank


def test_reference_split_bins(data, cue_cache):
    """Bins and profiles from the train split (8 files); tokens for all 12."""
    iv = CuesAligned(reference="train", cache_dir=str(cue_cache)).fit(data, seed=0)
    assert iv._bank.bins.fitted_on["n"] == 8 and len(iv._bank.tokens) == 12


def test_runner_records_cues_in_rows(data, cue_cache, tmp_path):
    """Through PredictionProbe and run_probe: one row per (utterance, condition) with the cue text."""
    from dataclasses import dataclass

    from probes.models.oracles import VoiceOracle
    from probes.probe import PredictionProbe, run_probe
    from probes.store import read_rows

    @dataclass(frozen=True)
    class _CueProbe(PredictionProbe):
        name = "cue-test"

        def summarize(self, run_dir):  # scoring is tested elsewhere; its bootstrap is slow on 2 cores
            return {}

        def conditions(self):
            c = str(cue_cache)
            return {"none": [], "aligned": [CuesAligned(cache_dir=c)], "shuffled": [CuesShuffled(cache_dir=c)],
                    "conflicting": [CuesConflicting(cache_dir=c)], "corrupted": [CuesCorrupted(cache_dir=c)]}

    out = run_probe(_CueProbe(), VoiceOracle(), data, tmp_path / "run", progress=False)
    rows = read_rows(out)
    assert len(rows) == 12 * 5
    by = rows.set_index(["utt_id", "condition"])
    import pandas as pd

    for u in data.df["utt_id"]:
        assert pd.isna(by.loc[(u, "none"), "cues"])
        assert by.loc[(u, "aligned"), "cues"] != by.loc[(u, "conflicting"), "cues"]
        assert by.loc[(u, "shuffled"), "cue_donor"] != u


def test_a_broken_file_fails_only_its_utterance(cue_manifest, cue_cache, tmp_path):
    """One unreadable wav: its utterance raises AudioError naming it; the others get their tokens."""
    import shutil

    import pandas as pd

    from probes.audio import AudioError
    from probes.data.manifest import Manifest

    src = cue_manifest.parent
    for f in src.glob("*.wav"):
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "spk_mid_happy.wav").write_bytes(b"RIFF0000WAVEjunk")
    pd.read_csv(cue_manifest, dtype=str, keep_default_na=False).to_csv(tmp_path / "manifest.csv", index=False)
    data = Manifest.read(tmp_path / "manifest.csv")
    iv = CuesShuffled(reference="self", cache_dir=str(cue_cache)).fit(data, seed=0)
    with pytest.raises(AudioError, match="spk_mid_happy.wav"):
        iv.apply(Example("spk_mid_happy", data.row("spk_mid_happy")), rng=rng_for(0))
    out = [iv.apply(Example(r["utt_id"], r), rng=rng_for(0)) for r in data.rows() if r["utt_id"] != "spk_mid_happy"]
    assert len(out) == 11 and all(e.meta["cue_donor"] != "spk_mid_happy" for e in out)
    assert iv._bank.bins.fitted_on["n"] == 11


def test_default_bins_per_speaker_on_the_train_split_and_recorded(data, cue_cache):
    """Defaults: per-speaker z (the manifest names speakers), bins fitted on the train split only;
    what they were fitted on is in every row and in describe() (the run manifest)."""
    iv = CuesAligned(cache_dir=str(cue_cache)).fit(data, seed=0)
    info = iv.describe()["fitted"]
    assert info["per_speaker"] is True and info["norm"] == "per-speaker"
    assert info["reference_kind"] == "split" and info["n_reference"] == 8 and "train split" in info["reference"]
    assert info["n_evaluated"] == 12 and info["n_evaluated_in_reference"] == 8
    assert iv._bank.bins.per_speaker and iv._bank.bins.fitted_on["n"] == 8
    out = _apply_all(iv, data)
    for u, ex in out.items():
        split = data.row(u)["split"]
        assert ex.meta["cue_in_reference"] is (split == "train")
        assert ex.meta["cue_norm"] == "per-speaker" and ex.meta["cue_reference"] == info["reference"]
        assert ex.meta["cue_placement"] == "after"
    # global bins stay available, explicitly
    assert CuesAligned(per_speaker=False, cache_dir=str(cue_cache)).fit(data).describe()["fitted"]["norm"] == "global"


def test_evaluating_on_the_fitted_data_is_an_explicit_choice(data, cue_cache, tmp_path):
    """No train split: refused, naming the ways out; reference=self is allowed and recorded."""
    from interventions.concepts import CueError
    from probes.data.manifest import Manifest

    nosplit = Manifest(data.df.assign(split=""), root=data.root, source="nosplit.csv")
    with pytest.raises(CueError, match="reference=self"):
        CuesAligned(cache_dir=str(cue_cache)).fit(nosplit)
    iv = CuesAligned(reference="self", cache_dir=str(cue_cache)).fit(nosplit)
    assert iv.describe()["fitted"]["reference_kind"] == "self"
    assert iv.describe()["fitted"]["n_evaluated_in_reference"] == 12
    assert all(ex.meta["cue_in_reference"] for ex in _apply_all(iv, nosplit).values())
    # the default's train split evaluated too: said (warning + rows), and silent once it is chosen explicitly
    import warnings

    whole = Manifest(data.df.assign(corpus="whole"), root=data.root, source="whole.csv")
    with pytest.warns(UserWarning, match="cue_in_reference"):
        CuesAligned(cache_dir=str(cue_cache)).fit(whole)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        CuesAligned(reference="train", cache_dir=str(cue_cache)).fit(Manifest(data.df.assign(corpus="w2"), root=data.root))
    assert not [w for w in caught if "cue_in_reference" in str(w.message)]
    # another manifest as reference: the same audio files count as in the reference set
    ref = tmp_path / "ref.csv"
    data.split("train").df.assign(audio_path=[str(data.audio_path(u)) for u in data.split("train").df["utt_id"]]).to_csv(ref, index=False)
    iv = CuesAligned(reference=str(ref), cache_dir=str(cue_cache)).fit(nosplit)
    info = iv.describe()["fitted"]
    assert info["reference_kind"] == "manifest" and info["reference"] == str(ref) and info["n_evaluated_in_reference"] == 8


def test_a_missing_reference_or_bad_setting_is_refused_before_any_work(tmp_path):
    from interventions.concepts import CueError

    with pytest.raises(CueError, match="nonexistent.csv.*no such manifest"):
        CuesAligned(reference=str(tmp_path / "nonexistent.csv"))
    with pytest.raises(CueError, match="bins"):
        CuesShuffled(bins=str(tmp_path / "nobins.json"))
    with pytest.raises(CueError, match="placement"):
        CuesConflicting(placement="middle")
    with pytest.raises(CueError, match="per_speaker"):
        CuesAligned(per_speaker="sometimes")
    assert CuesAligned(per_speaker="auto").per_speaker is None


def test_token_probe_with_missing_reference_fails_before_the_run(tiny_manifest, tmp_path):
    """`--set reference=/nonexistent.csv` on a token probe: refused before the run folder is written."""
    from interventions.concepts import CueError
    from probes.data.manifest import Manifest
    from probes.models.oracles import VoiceOracle
    from probes.probe import run_probe
    from probes.registry import PROBES

    out = tmp_path / "run"
    probe = PROBES["token-aligned"](reference=str(tmp_path / "nonexistent.csv"))
    with pytest.raises(CueError, match="nonexistent.csv"):
        run_probe(probe, VoiceOracle(), Manifest.read(tiny_manifest), out, progress=False)
    assert not (out / "manifest.json").exists() and not (out / "rows.jsonl").exists()


@pytest.mark.slow  # ~80 espeak files through opensmile: 10-30 s on 2 shared cores
def test_on_the_synthetic_corpus(synth_corpus, cue_cache):
    """Real espeak speech: loud voice emotions get higher energy tokens; the perturbations hold."""
    from probes.data.manifest import Manifest

    data = Manifest.read(synth_corpus)
    iv = CuesAligned(per_speaker=True, cache_dir=str(cue_cache)).fit(data, seed=0)
    bank: CueBank = iv._bank
    idx = {lv: i for i, lv in enumerate(bank.bins.levels)}
    mean_level = lambda emo, c: sum(idx[bank.tokens[u][c]] for u, y in bank.labels.items() if y == emo) / max(  # noqa: E731
        1, sum(1 for y in bank.labels.values() if y == emo))
    assert mean_level("angry", "energy") > mean_level("sad", "energy") + 0.5
    conf = CuesConflicting(per_speaker=True, cache_dir=str(cue_cache)).fit(data, seed=0)
    shuf = CuesShuffled(per_speaker=True, cache_dir=str(cue_cache)).fit(data, seed=0)
    a, c, s = _apply_all(iv, data), _apply_all(conf, data), _apply_all(shuf, data)
    assert all(c[u].cues != a[u].cues for u in a)
    assert Counter(e.cues for e in s.values()) == Counter(e.cues for e in a.values())


def test_placement_is_applied_and_recorded(data, cue_cache):
    from interventions.prompts import render as render_prompt

    row = data.row("spk_mid_sad")
    after = CuesAligned(cache_dir=str(cue_cache)).fit(data).apply(Example("spk_mid_sad", row), rng=rng_for(0))
    before = CuesAligned(placement="before", cache_dir=str(cue_cache)).fit(data).apply(Example("spk_mid_sad", row), rng=rng_for(0))
    assert (after.meta["cue_placement"], before.meta["cue_placement"]) == ("after", "before")
    assert after.template == "plain+cues-after" and before.template == "plain+cues-before"
    a, b = render_prompt(after.template, ["sad"], cues=after.cues), render_prompt(before.template, ["sad"], cues=before.cues)
    assert a.split("\n")[-1].endswith(after.cues) and b.split("\n")[0].endswith(before.cues)
    # the five conditions of a sweep share every prompt token before the cue line when it comes last
    texts = [render_prompt(e.template, ["sad"], cues=e.cues) for e in (after, Example("spk_mid_sad", row))]
    assert texts[0].startswith(texts[1])
    # a token probe passes its cue_placement through, and the probe config (the run manifest) records it
    from probes.registry import PROBES

    probe = PROBES["token-aligned"](cue_placement="before")
    assert probe.config()["cue_placement"] == "before"
    assert probe.conditions()["aligned"][0].placement == "before"


def test_saved_bins_are_recorded_as_the_source_of_the_levels(data, cue_cache, tmp_path):
    iv = CuesAligned(reference="self", per_speaker=False, cache_dir=str(cue_cache)).fit(data)
    path = iv._bank.bins.save(tmp_path / "bins.json")
    again = CuesAligned(bins=str(path), reference="train", cache_dir=str(cue_cache)).fit(data)
    info = again.describe()["fitted"]
    assert info["reference"].startswith(f"bins {path} fitted on") and "class profiles from train split" in info["reference"]
    assert info["bins_fitted_on"]["n"] == 12 and info["norm"] == "global" and info["bins_file"] == str(path)
    assert again._bank.tokens == iv._bank.tokens


def test_fitted_cue_reference_reaches_the_run_manifest(tiny_manifest, tmp_path):
    """What the cue bins were fitted on is recorded in the run's manifest.json (issue 10)."""
    import json

    from probes.data.manifest import Manifest
    from probes.probe import run_probe
    from probes.registry import MODELS, PROBES

    run = run_probe(PROBES["predict"](conditions="none,cues-aligned"), MODELS["dummy"](), Manifest.read(tiny_manifest),
                    tmp_path / "run", progress=False)
    man = json.loads((run / "manifest.json").read_text())
    (desc,) = man["interventions"]["cues-aligned"]
    assert "train" in json.dumps(desc)   # the default reference: the train split, named
    assert "none" not in man["interventions"]
