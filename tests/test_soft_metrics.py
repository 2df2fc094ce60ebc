"""Distribution metrics against soft labels (probes.metrics, "Distributions against soft labels").

Every expected number below is worked out by hand in the comment beside it (bits, log base 2).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from probes import metrics as M


def test_js_divergence_hand_cases():
    assert M.js_divergence([[1, 0]], [[0, 1]])[0] == pytest.approx(1.0)       # disjoint: 1 bit
    assert M.js_divergence([[0.3, 0.7]], [[0.3, 0.7]])[0] == pytest.approx(0.0)
    # p=[.5,.5], q=[1,0]: m=[.75,.25]; KL(p||m)=.5*log2(.5/.75)+.5*log2(.5/.25)=0.2075187;
    # KL(q||m)=log2(1/.75)=0.4150375; JS = mean of the two = 0.3112781
    assert M.js_divergence([[0.5, 0.5]], [[1, 0]])[0] == pytest.approx(0.3112781, abs=1e-6)
    # symmetric, and unnormalised vote counts are normalised first
    assert M.js_divergence([[1, 0]], [[2, 2]])[0] == pytest.approx(M.js_divergence([[0.5, 0.5]], [[1, 0]])[0])


def test_kl_to_soft_direction_and_floor():
    # KL(soft || pred) with soft=[.5,.5], pred=[.25,.75]: .5*log2(.5/.25) + .5*log2(.5/.75) = 0.5 - 0.2924813
    assert M.kl_to_soft([[0.25, 0.75]], [[0.5, 0.5]])[0] == pytest.approx(0.2075187, abs=1e-6)
    # the other direction would be .25*log2(.25/.5)+.75*log2(.75/.5) = 0.1887219: not what we report
    assert M.kl_to_soft([[0.25, 0.75]], [[0.5, 0.5]])[0] != pytest.approx(0.1887219, abs=1e-4)
    # a zero where the annotators voted: finite, the prediction floored at eps = [1, 1e-6] / (1 + 1e-6):
    # .5*log2(.5*(1+1e-6)) + .5*log2(.5*(1+1e-6)/1e-6) = 8.9657857
    v = M.kl_to_soft([[1.0, 0.0]], [[0.5, 0.5]], eps=1e-6)[0]
    assert math.isfinite(v) and v == pytest.approx(0.5 * math.log2(0.5 * (1 + 1e-6)) + 0.5 * math.log2(0.5 * (1 + 1e-6) / 1e-6))


def test_brier_entropy_top2():
    assert M.brier([[0.7, 0.3]], [[1, 0]])[0] == pytest.approx(0.18)          # .3^2 + .3^2
    assert M.brier([[1, 0]], [[0, 1]])[0] == pytest.approx(2.0)
    assert M.entropy_bits([[0.5, 0.5, 0, 0], [0.25] * 4, [1, 0, 0, 0]]).tolist() == pytest.approx([1.0, 2.0, 0.0])
    pred = [[0.5, 0.3, 0.2], [0.1, 0.6, 0.3], [0.2, 0.5, 0.3]]
    soft = [[0.2, 0.5, 0.3], [0.4, 0.5, 0.1], [0.1, 0.6, 0.3]]
    # top-2 sets: {0,1} vs {1,2}; {1,2} vs {1,0}; {1,2} vs {1,2}
    assert M.top2_agreement(pred, soft).tolist() == [0.0, 0.0, 1.0]
    # predicted top label 0 in {1,2}? no; 1 in {1,0}? yes; 1 in {1,2}? yes
    assert M.top1_in_top2(pred, soft).tolist() == [0.0, 1.0, 1.0]


def test_ece_hand_cases():
    # conf .9 (acc 1) and .6 (acc 0) in separate bins: .5*|.9-1| + .5*|.6-0| = 0.35
    assert M.expected_calibration_error([[0.9, 0.1], [0.6, 0.4]], [[1, 0], [0, 1]]) == pytest.approx(0.35)
    # one bin, conf .8 twice; accuracy = the annotators' share of the predicted label: (1 + .5)/2 = .75
    assert M.expected_calibration_error([[0.8, 0.2], [0.8, 0.2]], [[1, 0], [0.5, 0.5]]) == pytest.approx(0.05)


def test_majority_and_soft_scores():
    labels = ("neutral", "happy", "sad")
    soft = np.array([[2, 1, 0], [1, 1, 0], [np.nan] * 3, [0, 0, 3]], dtype=float)
    assert M.majority_labels(soft, labels) == ["neutral", None, None, "sad"]   # tie -> None; NaN -> None
    pred = np.array([[1, 0, 0], [0.5, 0.5, 0], [0.2, 0.2, 0.6], [np.nan] * 3])
    out = M.soft_scores(pred, soft, labels, pred_labels=["neutral", "happy", "sad", "happy"])
    assert out["n_soft"] == 2                       # rows 0 and 1 have both
    assert out["n_majority"] == 2                   # rows 0 and 3 have a unique majority
    assert out["accuracy_majority"] == pytest.approx(0.5)   # neutral==neutral, happy!=sad
    # row 0: pred [1,0,0] vs soft [2/3,1/3,0]; row 1: equal distributions (JS 0, Brier 0)
    m = np.array([5 / 6, 1 / 6, 0])
    js0 = 0.5 * math.log2(1 / (5 / 6)) + 0.5 * (2 / 3 * math.log2((2 / 3) / (5 / 6)) + 1 / 3 * math.log2((1 / 3) / (1 / 6)))
    assert out["js"] == pytest.approx(js0 / 2, abs=1e-9)
    assert out["brier"] == pytest.approx(((1 / 3) ** 2 + (1 / 3) ** 2) / 2)
    assert out["entropy_pred"] == pytest.approx((0 + 1) / 2)
    h_soft0 = -(2 / 3 * math.log2(2 / 3) + 1 / 3 * math.log2(1 / 3))
    assert out["entropy_soft"] == pytest.approx((h_soft0 + 1) / 2)
    assert out["entropy_gap"] == pytest.approx(h_soft0 / 2)
    assert m.sum() == pytest.approx(1)


def test_soft_labels_from_manifest_columns():
    df = pd.DataFrame({"utt_id": ["a", "b", "c"], "soft_neutral": ["2", "", "0"], "soft_happy": ["1", "", "0.5"],
                       "soft_sad": ["", "", "0.5"]})
    labels, q = M.soft_labels(df)
    assert labels == ("neutral", "happy", "sad")
    assert q[0].tolist() == pytest.approx([2 / 3, 1 / 3, 0])
    assert np.isnan(q[1]).all()                              # no annotation
    assert q[2].tolist() == pytest.approx([0, 0.5, 0.5])
    # a fixed label order; a label without a column counts zero
    labels, q = M.soft_labels(df, ("happy", "neutral", "sad", "angry"))
    assert q[0].tolist() == pytest.approx([1 / 3, 2 / 3, 0, 0])
    bad = df.assign(soft_sad=["x", "", ""])
    with pytest.raises(ValueError, match=r"row 'a', column soft_sad"):
        M.soft_labels(bad)
    with pytest.raises(ValueError, match="negative"):
        M.soft_labels(df.assign(soft_sad=["-1", "", ""]))
    with pytest.raises(ValueError, match="not one of the labels"):
        M.soft_labels(df, ("neutral", "happy"))


def test_manifest_keeps_soft_columns(tmp_path):
    from probes.data.manifest import Manifest

    m = Manifest.from_records([{"utt_id": "a", "audio_path": "a.wav", "acoustic_label": "happy", "soft_happy": "3",
                                "soft_sad": "1"}], tmp_path, check_audio=False)
    assert M.soft_label_columns(m.df) == ["soft_happy", "soft_sad"]


def test_score_soft_run_with_voice_oracle(tiny_manifest, tmp_path):
    """A run of the voice oracle (one-hot on the acoustic label) against hand-set soft labels."""
    from probes.data.manifest import Manifest
    from probes.probe import run_probe
    from probes.registry import MODELS, PROBES

    df = pd.read_csv(tiny_manifest, dtype=str, keep_default_na=False)
    # utt00 happy: soft happy 1.0 -> JS 0; utt01 sad: soft sad .5 / happy .5 -> JS .3112781; others unannotated
    df["soft_happy"] = ["1", "1"] + [""] * 6
    df["soft_sad"] = ["0", "1"] + [""] * 6
    path = tmp_path / "data" / "manifest.csv"
    path.parent.mkdir()
    for w in tiny_manifest.parent.glob("*.wav"):
        (path.parent / w.name).write_bytes(w.read_bytes())
    df.to_csv(path, index=False)
    out = run_probe(PROBES["predict"](), MODELS["voice-oracle"](), Manifest.read(path), tmp_path / "run", progress=False)
    s = M.score_soft_run(out)
    assert s["none"]["n_soft"] == 2
    assert s["none"]["js"] == pytest.approx(0.3112781 / 2, abs=1e-6)
    assert s["none"]["accuracy_majority"] == pytest.approx(1.0) and s["none"]["n_majority"] == 1
    assert "happy" in s["labels"] and "angry" in s["labels"]   # the predictions' labels join the soft ones
    json.dumps(s)  # plain JSON
