"""The text controls of benchmarks/synth_separability.py tell the design from a leak.

On a corpus with many congruent items, features that carry only the voice name the text emotion
above chance (on congruent items the text is the voice); the conflict-only control must then sit
at or below chance. Features that carry the words themselves must score high on it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

LABELS = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")


@pytest.fixture(scope="module")
def design(tmp_path_factory):
    import soundfile as sf

    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("sep")
    rows = []
    for k in range(700):
        text = LABELS[k % 7]
        voice = text if rng.random() < 0.4 else rng.choice([l for l in LABELS if l != text])
        path = folder / f"u{k}.wav"
        sf.write(path, np.zeros(int(1600 * (1 + rng.random())), dtype=np.float32), 16000)
        rows.append({"utt_id": f"u{k}", "speaker": f"s{k % 4}", "split": "train" if k % 10 < 6 else "test",
                     "semantic_label": text, "acoustic_label": voice, "text": "word " * (3 + k % 5), "path": path})
    return pd.DataFrame(rows), rng


def _controls(df, x):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from synth_separability import text_controls, uar, fit_predict

    tr, te = (df["split"] == "train").to_numpy(), (df["split"] == "test").to_numpy()
    ys = df["semantic_label"].to_numpy()
    allv = uar(ys[te], fit_predict(x[tr], ys[tr], x[te]))
    res = text_controls(x, df, list(df["path"]), tr, te)
    return allv, res


def test_voice_only_features_pass_the_control_once_congruent_items_are_left_out(design):
    df, rng = design
    onehot = np.eye(7)[[LABELS.index(v) for v in df["acoustic_label"]]]
    allv, res = _controls(df, onehot * 2 + rng.normal(size=onehot.shape))
    assert allv > 0.25                                         # the plain control: well above 1/7
    assert res["congruent share of the test items"] == pytest.approx(
        (df[df["split"] == "test"]["semantic_label"] == df[df["split"] == "test"]["acoustic_label"]).mean())
    conflict = next(v for k, v in res.items() if k.startswith("text UAR from eGeMAPS on the conflict"))
    assert conflict < 1 / 7                                    # no leak: at or below chance


def test_features_that_carry_the_words_fail_it(design):
    df, rng = design
    onehot = np.eye(7)[[LABELS.index(t) for t in df["semantic_label"]]]
    _, res = _controls(df, onehot * 2 + rng.normal(size=onehot.shape))
    conflict = next(v for k, v in res.items() if k.startswith("text UAR from eGeMAPS on the conflict"))
    assert conflict > 0.5
