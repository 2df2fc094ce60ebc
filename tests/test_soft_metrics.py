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


# ---------------------------------------------------------------------------------- importers
def test_iemocap_soft_labels_from_evaluator_lines(tmp_path):
    from probes.registry import CORPORA
    from tests.fixtures import corpora as fake

    root = fake.make_iemocap(tmp_path / "iemocap")
    f = root / "Session1" / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt"
    # M001 (exc -> happy): E1 names two categories (half a vote each), E2 one, the actor's self-evaluation one
    f.write_text(f.read_text().replace(
        "[14.8872", "C-E1:\tExcited; Frustration;\t()\nC-E2:\tHappiness;\t(joy)\nC-M1:\tSadness;\t()\n"
                    "A-E1:\tval 3; act 2; dom  2;\t()\n[14.8872"))
    df = CORPORA["iemocap"].load(root).df.set_index("utt_id")
    r = df.loc["Ses01F_impro01_F000"]          # C-E2, C-E3 Neutral in the fixture
    assert (r["soft_neutral"], r["soft_happy"], r["n_soft_votes"]) == ("2", "0", "2")
    r = df.loc["Ses01F_impro01_M001"]          # happy 0.5 (exc) + 1 (hap); fru 0.5 dropped in 4 classes; self left out
    assert (r["soft_happy"], r["soft_sad"], r["n_soft_votes"], r["n_soft_dropped"]) == ("1.5", "0", "1.5", "0.5")
    assert df.loc["Ses05M_script01_1_F000", "soft_angry"] == ""   # no evaluator lines: no soft label
    labels, q = M.soft_labels(df.reset_index())
    assert q[list(df.index).index("Ses01F_impro01_M001"), labels.index("happy")] == pytest.approx(1.0)
    with_self = CORPORA["iemocap"].load(root, soft_self=True, classes=5).df.set_index("utt_id")
    r = with_self.loc["Ses01F_impro01_M001"]
    assert (r["soft_happy"], r["soft_other"], r["soft_sad"], r["n_soft_votes"]) == ("1.5", "0.5", "1", "3")
    off = CORPORA["iemocap"].load(root, soft_labels=False).df
    assert not M.soft_label_columns(off)
    f.write_text(f.read_text().replace("Happiness", "Boredom"))
    with pytest.raises(Exception, match="Boredom"):
        CORPORA["iemocap"].load(root)


def test_crema_d_soft_labels_from_tabulated_votes(tmp_path):
    from probes.registry import CORPORA
    from tests.fixtures import corpora as fake

    root = fake.make_crema_d(tmp_path / "crema")
    (root / "processedResults").mkdir()
    (root / "processedResults" / "tabulatedVotes.csv").write_text(
        ",clipNum,fileName,A,D,F,H,N,S,numResponses,agreement,emoVote\n"
        "100001,1,1001_DFA_ANG_XX,6,1,0,0,3,0,10,0.6,A\n"       # voice only
        "300001,1,1001_DFA_ANG_XX,9,0,0,0,1,0,10,0.9,A\n"       # audiovisual
        "100002,2,1001_IEO_HAP_HI,0,0,0,8,2,0,10,0.8,H\n")
    df = CORPORA["crema-d"].load(root).df.set_index("utt_id")
    r = df.loc["1001_DFA_ANG_XX"]
    assert (r["soft_angry"], r["soft_disgust"], r["soft_neutral"], r["n_soft_votes"]) == ("6", "1", "3", "10")
    assert df.loc["1002_TSI_NEU_XX", "soft_neutral"] == ""
    av = CORPORA["crema-d"].load(root, soft_mode="audiovisual").df.set_index("utt_id")
    assert av.loc["1001_DFA_ANG_XX", "soft_angry"] == "9" and av.loc["1001_IEO_HAP_HI", "soft_happy"] == ""
    (root / "processedResults" / "tabulatedVotes.csv").write_text(",clipNum,fileName,A\n100001,1,x,1\n")
    with pytest.raises(Exception, match="no column"):
        CORPORA["crema-d"].load(root)


def _make_msp(root):
    from tests.fixtures.corpora import tone

    for n in ("MSP-PODCAST_0001_0008", "MSP-PODCAST_0001_0010", "MSP-PODCAST_0002_0001"):
        tone(root / "Audios" / f"{n}.wav")
    (root / "Labels").mkdir(parents=True)
    (root / "Labels" / "labels_consensus.json").write_text(json.dumps({
        "MSP-PODCAST_0001_0008.wav": {"EmoClass": "A", "EmoAct": "5.2", "EmoVal": "2.0", "EmoDom": "4.8",
                                      "SpkrID": "127", "Gender": "Male", "Split_Set": "Train"},
        "MSP-PODCAST_0001_0010.wav": [{"EmoClass_Major": "N", "SpkrID": "Unknown", "Gender": "Female",
                                       "Split_Set": "Test1"}],
        "MSP-PODCAST_0002_0001.wav": {"EmoClass": "X", "SpkrID": "3", "Gender": "Female", "Split_Set": "Development"},
    }))
    (root / "Labels" / "labels_detailed.json").write_text(json.dumps({
        "MSP-PODCAST_0001_0008.wav": {"WORKER1": {"EmoClass_Major": "Angry"}, "WORKER2": {"EmoClass_Major": "Angry"},
                                      "WORKER3": {"EmoClass_Major": "Contempt"}, "WORKER4": {"EmoClass_Major": "Sad"}},
    }))
    return root


def test_msp_podcast_consensus_and_detailed(tmp_path):
    from probes.registry import CORPORA

    root = _make_msp(tmp_path / "msp")
    df = CORPORA["msp-podcast"].load(root).df.set_index("utt_id")
    assert list(df.index) == ["MSP-PODCAST_0001_0008", "MSP-PODCAST_0001_0010"]   # X (no agreement) dropped
    r = df.loc["MSP-PODCAST_0001_0008"]
    assert (r["acoustic_label"], r["split"], r["speaker"], r["gender"]) == ("angry", "train", "msp127", "m")
    assert (r["soft_angry"], r["soft_other"], r["soft_sad"], r["n_soft_votes"]) == ("2", "1", "1", "4")  # contempt -> other
    r = df.loc["MSP-PODCAST_0001_0010"]
    assert (r["acoustic_label"], r["split"], r["speaker"], r["soft_neutral"]) == ("neutral", "test", "", "")
    labels, q = M.soft_labels(df.reset_index())
    assert q[0, labels.index("angry")] == pytest.approx(0.5)
    with pytest.raises(Exception, match="does not look like"):
        CORPORA["msp-podcast"].load(tmp_path / "msp" / "Audios")
