"""How well does the synthetic corpus' voice carry its emotion, and does the voice leak the words?

Builds (or reads) a synthetic corpus, extracts eGeMAPSv02 functionals (opensmile, 88 features)
per utterance, z-normalises them per speaker, and fits a logistic regression:

- voice emotion, train split -> test split (speakers *and* sentences held out): the target is a
  UAR near 0.8, not 1.0, so that the words have room to matter;
- voice emotion, leave-one-speaker-out over the whole corpus, 7 classes and the 4 main ones;
- text emotion from the same acoustic features, train -> test (a control: should be near chance,
  1/7 with 7 classes; well above it would mean the prosody leaks the words).

Usage: .venv/bin/python benchmarks/synth_separability.py [--data DIR] [--seed N] [--n N]
(without --data it builds the default corpus into a temporary folder). Numbers go into
docs/synthetic-corpus.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def features(paths: list[Path]) -> np.ndarray:
    import opensmile
    from tqdm.auto import tqdm

    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02, feature_level=opensmile.FeatureLevel.Functionals)
    return np.stack([smile.process_file(str(p)).to_numpy()[0] for p in tqdm(paths, desc="egemaps", unit="file")])  # [utt, 88]


def per_speaker_z(x: np.ndarray, speakers: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    for s in np.unique(speakers):
        m = speakers == s
        out[m] = (x[m] - x[m].mean(0)) / (x[m].std(0) + 1e-8)
    return out


def uar(y_true, y_pred) -> float:
    from sklearn.metrics import balanced_accuracy_score

    return float(balanced_accuracy_score(y_true, y_pred))


def fit_predict(xtr, ytr, xte):
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(max_iter=3000, C=1.0)
    return clf.fit(xtr, ytr).predict(xte)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="corpus folder (built with `probe data synth`); default: build one now")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, default=None)
    args = ap.parse_args(argv)

    from probes.data.manifest import Manifest

    tmp = None
    if args.data:
        folder = Path(args.data)
    else:
        from probes.data.synth import build

        tmp = tempfile.TemporaryDirectory(prefix="synth-sep-")
        folder = Path(tmp.name)
        t = time.time()
        build(folder, seed=args.seed, n=args.n)
        print(f"built {folder} in {time.time() - t:.1f} s", file=sys.stderr)
    m = Manifest.read(folder)
    df = m.df
    x = features([m.audio_path(i) for i in range(len(m))])
    x = np.nan_to_num(per_speaker_z(x, df["speaker"].to_numpy()))
    ya, ys = df["acoustic_label"].to_numpy(), df["semantic_label"].to_numpy()
    spk, split = df["speaker"].to_numpy(), df["split"].to_numpy()
    tr, te = split == "train", split == "test"
    k = len(set(ya))

    res = {}
    res["voice UAR, train->test (held-out speakers+sentences)"] = uar(ya[te], fit_predict(x[tr], ya[tr], x[te]))
    pred = np.empty_like(ya)
    for s in np.unique(spk):  # leave one speaker out
        pred[spk == s] = fit_predict(x[spk != s], ya[spk != s], x[spk == s])
    res[f"voice UAR, leave-one-speaker-out, {k} classes"] = uar(ya, pred)
    main4 = np.isin(ya, ["neutral", "happy", "sad", "angry"])
    pred4 = np.empty_like(ya)
    for s in np.unique(spk):
        trm, tem = main4 & (spk != s), main4 & (spk == s)
        if tem.any():
            pred4[tem] = fit_predict(x[trm], ya[trm], x[tem])
    res["voice UAR, leave-one-speaker-out, 4 main classes"] = uar(ya[main4], pred4[main4])
    res[f"text UAR from eGeMAPS, train->test (control; chance {1 / len(set(ys)):.3f})"] = uar(ys[te], fit_predict(x[tr], ys[tr], x[te]))

    from sklearn.metrics import confusion_matrix, recall_score

    labels = sorted(set(ya))
    print(f"corpus {folder}: {len(df)} utterances, train {tr.sum()}, test {te.sum()}, speakers {len(set(spk))}")
    for name, v in res.items():
        print(f"{name:70s} {v:.3f}")
    print("per-class recall (leave-one-speaker-out): " + ", ".join(
        f"{lab}={r:.2f}" for lab, r in zip(labels, recall_score(ya, pred, labels=labels, average=None))))
    print("confusion (rows = voice emotion, cols = predicted; order " + ", ".join(labels) + ")")
    print(confusion_matrix(ya, pred, labels=labels))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
