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
    """score_with_ci's integer-code resampling gives the same intervals as resampling score()."""
    rng = np.random.default_rng(3)
    labels = ["neutral", "happy", "sad", "angry"]
    a = rng.choice(labels, 120)
    s = rng.choice(labels, 120)
    p = np.where(rng.random(120) < 0.5, a, np.where(rng.random(120) < 0.5, s, rng.choice(labels + ["zzz"], 120)))
    fast = M.score_with_ci(list(a), list(s), list(p), n_boot=200, seed=7)
    for key in ("accuracy", "uar", "macro_f1", "follows_voice", "follows_text", "text_dominance"):
        slow = M.bootstrap_ci(lambda x, y, z, k=key: M.score(x, y, z)[k], a, s, p, n_boot=200, seed=7)
        assert fast[f"{key}_ci"] == pytest.approx(list(slow), abs=1e-9), key
        assert fast[f"{key}_ci"][0] <= fast[key] <= fast[f"{key}_ci"][1]
