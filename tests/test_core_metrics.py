"""Metrics against hand-computed cases and against scikit-learn / scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from probes import metrics as M


def test_hand_computed_case():
    # 6 items; conflict items are 2, 3, 5 (acoustic != semantic)
    acoustic = ["happy", "sad", "angry", "sad", "happy", "neutral"]
    semantic = ["happy", "sad", "happy", "angry", "happy", "sad"]
    pred = ["happy", "angry", "happy", "sad", "I have no idea", "sad"]
    s = M.score(acoustic, semantic, pred)
    assert s["n"] == 6 and s["invalid"] == 1
    assert s["accuracy"] == pytest.approx(2 / 6)
    # recalls: happy 1/2, sad 1/2, angry 0/1, neutral 0/1
    assert s["uar"] == pytest.approx((0.5 + 0.5 + 0 + 0) / 4)
    assert s["n_conflict"] == 3
    # conflict preds: item2 happy (= semantic), item3 sad (= acoustic), item5 sad (= semantic)
    assert s["follows_voice"] == pytest.approx(1 / 3)
    assert s["follows_text"] == pytest.approx(2 / 3)
    assert s["text_dominance"] == pytest.approx(2 / 3)
    assert s["other_rate"] == pytest.approx(0.0)


def test_against_sklearn():
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

    rng = np.random.default_rng(0)
    labels = ["neutral", "happy", "sad", "angry"]
    t = list(rng.choice(labels, 200))
    p = list(rng.choice(labels + ["bogus"], 200))
    pv = [x if x in labels else "" for x in p]
    assert M.accuracy(t, pv) == pytest.approx(accuracy_score(t, pv))
    assert M.uar(t, pv) == pytest.approx(balanced_accuracy_score(t, pv))
    assert M.macro_f1(t, pv) == pytest.approx(f1_score(t, pv, labels=sorted(set(t)), average="macro", zero_division=0))


def test_cramers_v_against_scipy():
    from scipy.stats.contingency import association, crosstab

    rng = np.random.default_rng(1)
    x = rng.choice(["a", "b", "c"], 300)
    y = np.where(rng.random(300) < 0.6, x, rng.choice(["a", "b", "c", "d"], 300))
    table = crosstab(x, y).count
    assert M.cramers_v(x, y) == pytest.approx(association(table, method="cramer"))
    assert M.cramers_v(x, x) == pytest.approx(1.0)


def test_mcnemar_exact_and_chi2():
    from scipy.stats import binomtest, chi2

    a = [True] * 10 + [False] * 3 + [True] * 20
    b = [False] * 10 + [True] * 3 + [True] * 20
    r = M.mcnemar(a, b)
    assert (r["b"], r["c"], r["method"]) == (10, 3, "exact")
    assert r["p_value"] == pytest.approx(binomtest(10, 13, 0.5).pvalue)
    a = [True] * 40 + [False] * 10
    b = [False] * 40 + [True] * 10
    r = M.mcnemar(a, b)
    assert r["method"] == "chi2-cc"
    assert r["statistic"] == pytest.approx((abs(40 - 10) - 1) ** 2 / 50)
    assert r["p_value"] == pytest.approx(chi2.sf(r["statistic"], 1))
    assert M.mcnemar([True, False], [True, False])["p_value"] == 1.0


def test_bootstrap_interval_contains_estimate_and_narrows():
    rng = np.random.default_rng(2)
    t = rng.choice(["a", "b"], 400)
    p = np.where(rng.random(400) < 0.7, t, rng.choice(["a", "b"], 400))
    lo, hi = M.bootstrap_ci(M.accuracy, t, p, n_boot=300)
    est = M.accuracy(t, p)
    assert lo <= est <= hi and hi - lo < 0.12
    lo2, hi2 = M.bootstrap_ci(M.accuracy, t[:40], p[:40], n_boot=300)
    assert (hi2 - lo2) > (hi - lo)


def test_invalid_answers_counted_and_parsed():
    assert M.normalize_pred("Angry.") == "angry"
    assert M.normalize_pred("the audio conveys a neutral emotion") == "neutral"
    assert M.normalize_pred("angry or maybe sad") is None
    assert M.normalize_pred(float("nan")) is None
    s = M.score(["sad", "sad"], ["happy", "happy"], ["xyz", None])
    assert s["invalid"] == 2 and s["accuracy"] == 0 and s["follows_text"] == 0
    assert math.isnan(s["text_dominance"])


def test_entropy_collapse():
    assert M.prediction_entropy(["sad"] * 10) == pytest.approx(0.0)
    assert M.prediction_entropy(["a", "b", "c", "d"]) == pytest.approx(2.0)


def test_confusion_counts():
    m = M.confusion(["a", "a", "b"], ["a", "zzz", "a"], labels=["a", "b"])
    assert m.loc["a", "a"] == 1 and m.loc["a", "invalid"] == 1 and m.loc["b", "a"] == 1


def test_fast_bootstrap_matches_the_plain_one():
    """score_with_ci's vectorised statistic gives the intervals of resampling score() itself
    (same scipy bootstrap, same seed, same sorted items: the same resamples)."""
    rng = np.random.default_rng(3)
    labels = ["neutral", "happy", "sad", "angry"]
    a = rng.choice(labels, 120)
    s = rng.choice(labels, 120)
    p = np.where(rng.random(120) < 0.5, a, np.where(rng.random(120) < 0.5, s, rng.choice(labels, 120)))
    fast = M.score_with_ci(list(a), list(s), list(p), n_boot=200, seed=7)
    for key in M._CI_KEYS:
        slow = M.bootstrap_ci(lambda x, y, z, k=key: M.score(x, y, z)[k], a, s, p, n_boot=200, seed=7)
        assert fast[f"{key}_ci"] == pytest.approx(list(slow), abs=1e-9), key
        assert fast[f"{key}_ci"][0] <= fast[key] <= fast[f"{key}_ci"][1]


def test_intervals_on_groups_with_disjoint_label_sets():
    """Regression: a group whose words' labels no voice carries (EMIS grouped by wav_emo) got
    follows-text intervals of [0, 0] around estimates of 0.5-0.86."""
    rng = np.random.default_rng(4)
    n = 200
    a = ["sad"] * n                                   # one voice label
    s = list(rng.choice(["happy", "angry"], n))      # words' labels the voice never carries
    p = [w if rng.random() < 0.7 else "sad" for w in s]
    r = M.score_with_ci(a, s, p, n_boot=300)
    for key in ("follows_text", "text_dominance", "follows_text_emotional_conflict", "follows_voice"):
        lo, hi = r[f"{key}_ci"]
        assert lo < r[key] < hi, (key, r[key], lo, hi)
    assert 0.5 < r["follows_text"] < 0.85


def test_bootstrap_is_order_independent_so_shards_merge_exactly():
    import pandas as pd

    rng = np.random.default_rng(5)
    labels = ["neutral", "happy", "sad", "angry"]
    df = pd.DataFrame({"utt_id": [f"u{i:03d}" for i in range(150)], "acoustic_label": rng.choice(labels, 150),
                       "semantic_label": rng.choice(labels, 150), "pred": rng.choice(labels + ["I am not sure"], 150)})
    one = M.score_frame(df, ci=True, n_boot=200)
    shards = pd.concat([df.iloc[1::2], df.iloc[::2]])          # what a merge of two shards holds
    shuffled = df.sample(frac=1.0, random_state=1)
    assert M.score_frame(shards, ci=True, n_boot=200) == one
    assert M.score_frame(shuffled, ci=True, n_boot=200) == one


def test_conflict_types_scored_apart():
    acoustic = ["angry", "sad", "angry", "happy", "neutral", "neutral", "sad"]
    semantic = ["happy", "happy", "neutral", "neutral", "sad", "happy", "sad"]
    pred = ["happy", "sad", "neutral", "neutral", "sad", "neutral", "sad"]
    assert [M.conflict_type(a, s) for a, s in zip(acoustic, semantic)] == [
        "emotional-conflict", "emotional-conflict", "neutral-text", "neutral-text", "neutral-voice",
        "neutral-voice", "congruent"]
    assert M.conflict_type("sad", "") == ""
    r = M.score(acoustic, semantic, pred)
    assert r["n_conflict"] == 6  # pooled, as before
    assert (r["n_emotional_conflict"], r["n_neutral_text"], r["n_neutral_voice"]) == (2, 2, 2)
    assert r["follows_text_emotional_conflict"] == 0.5 and r["follows_voice_emotional_conflict"] == 0.5
    assert r["text_dominance_emotional_conflict"] == 0.5
    assert r["neutral_pull"] == 1.0                     # both neutral-text items answered neutral
    assert r["follows_text_neutral_voice"] == 0.5 and r["follows_voice_neutral_voice"] == 0.5
    assert r["n_emotional_words"] == 4 and r["follows_text_emotional_words"] == 0.5
    # pooled follows-text counts the neutral answers to neutral words as following the words
    assert r["follows_text"] == pytest.approx(4 / 6)


def test_parse_policies():
    echoed = "sad (sadness filled me as i packed my things)"
    assert M.normalize_pred(echoed, parse="lenient") == "sad"
    assert M.normalize_pred(echoed, parse="strict") is None
    assert M.normalize_pred("sadness", parse="strict") is None
    assert M.normalize_pred(" Sad. ", parse="strict") == "sad"
    r = M.score(["happy", "happy"], ["sad", "sad"], [echoed, "happy"], parse="strict")
    assert r["invalid"] == 1 and r["follows_text"] == 0.0 and r["parse"] == "strict"
    assert M.score(["happy", "happy"], ["sad", "sad"], [echoed, "happy"])["follows_text"] == 0.5
    with pytest.raises(ValueError, match="parse policy"):
        M.normalize_pred("sad", parse="loose")


def test_extra_labels_are_valid_answers_scored_as_their_canonical_label():
    a, s, p = ["other", "other", "sad"], ["neutral"] * 3, ["bored", "I think the speaker is bored", "sad"]
    plain = M.score(a, s, p)
    assert plain["invalid"] == 2
    r = M.score(a, s, p, extra_labels={"bored": "other"})
    assert r["invalid"] == 0 and r["accuracy"] == 1.0
    assert M.normalize_pred("boredom", extra_labels={"bored": "other"}) == "other"
    assert M.normalize_pred("bored", extra_labels={"bored": "other"}, parse="strict") == "other"


def test_compare_conditions_paired_deltas_and_mcnemar():
    import pandas as pd

    rows = []
    for i in range(40):
        a, s = "sad", "happy"
        rows.append({"utt_id": f"u{i}", "condition": "none", "acoustic_label": a, "semantic_label": s, "pred": s})
        rows.append({"utt_id": f"u{i}", "condition": "cues", "acoustic_label": a, "semantic_label": s,
                     "pred": a if i < 30 else s})
    c = M.compare_conditions(pd.DataFrame(rows))["none"]["cues"]
    assert c["n"] == 40 and c["n_conflict"] == 40
    assert c["delta_accuracy"] == pytest.approx(0.75)
    assert c["delta_follows_voice"] == pytest.approx(0.75) and c["delta_follows_text"] == pytest.approx(-0.75)
    assert (c["mcnemar"]["b"], c["mcnemar"]["c"], c["mcnemar"]["method"]) == (0, 30, "chi2-cc")
    assert c["mcnemar_text"]["b"] == 30


def test_probe_score_prints_each_conflict_type_with_invalid_counts(tmp_path, capsys):
    import pandas as pd

    from probes.cli import main

    rows = [{"txt_emo": t, "txt_cond": "x", "wav_emo": w, "pred_emo": p, "slm": "m"} for t, w, p in [
        ("happy", "angry", "happy"), ("sad", "angry", "angry"), ("neutral", "sad", "neutral"),
        ("happy", "neutral", "happy"), ("sad", "sad", "sadness"), ("happy", "happy", "happy (i am happy)")]]
    pd.DataFrame(rows).to_csv(tmp_path / "t.csv", index=False)
    assert main(["score", str(tmp_path / "t.csv"), "--preset", "emis"]) == 0
    out = capsys.readouterr().out
    for title in ("emotional-conflict", "neutral-text", "neutral-voice", "pooled"):
        assert title in out
    assert out.count("invalid") >= 4 and "parsed 'strict'" in out
    assert main(["score", str(tmp_path / "t.csv"), "--preset", "emis", "--json"]) == 0
    r = __import__("json").loads(capsys.readouterr().out)["m"]
    assert r["invalid"] == 2 and r["parse"] == "strict"  # "sadness" and the echo are not one label word
    assert (r["follows_text_emotional_conflict"], r["neutral_pull"], r["follows_text_neutral_voice"]) == (0.5, 1.0, 1.0)
    assert main(["score", str(tmp_path / "t.csv"), "--preset", "emis", "--parse", "lenient", "--json"]) == 0
    assert __import__("json").loads(capsys.readouterr().out)["m"]["invalid"] == 0


@pytest.mark.corpus
def test_emis_reproduces_the_study_valid_count_and_issue_figures(shared_data):
    import pandas as pd

    df = pd.read_csv(shared_data / "emis-predictions" / "aggregated_results_v4_fullLabel.csv", dtype=str, keep_default_na=False)
    df = M.apply_preset(df, "emis")
    strict = M.score_frame(df, group="model", parse="strict")
    assert sum(r["n"] - r["invalid"] for r in strict.values()) == 4978
    lenient = M.score_frame(df, group="model", parse="lenient")
    assert {m: round(r["follows_text_emotional_words"], 3) for m, r in lenient.items()} == \
        {"desta2": 0.922, "flamingo3": 0.852, "qwen": 0.842, "salmonn": 0.536}
    assert round(strict["flamingo3"]["neutral_pull"], 2) == 0.76 and round(strict["salmonn"]["neutral_pull"], 2) == 0.82


def test_merged_shards_score_exactly_like_the_unsharded_run(tmp_path, tiny_manifest):
    """Through the real runner and store: two shards merged give the metrics.json of one run."""
    from probes.data.manifest import Manifest
    from probes.probe import run_probe
    from probes.registry import MODELS, PROBES
    from probes.store import merge_runs

    data = Manifest.read(tiny_manifest)
    whole = run_probe(PROBES["predict"](), MODELS["dummy"](), data, tmp_path / "whole", progress=False)
    shards = [run_probe(PROBES["predict"](), MODELS["dummy"](), data, tmp_path / f"s{i}", shard=(i, 2), progress=False)
              for i in (1, 0)]
    merged = merge_runs(shards, tmp_path / "merged")
    a, b = M.score_run(whole, n_boot=200), M.score_run(merged, n_boot=200)
    assert a["conditions"] == b["conditions"]
    assert a["conditions"]["none"]["accuracy_ci"][0] is not None
