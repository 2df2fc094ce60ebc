"""Do the six acoustic concept tokens separate the synthetic corpus's voice emotions?

Builds the synthetic corpus (``probes.data.synth.build(out, seed=0)``) unless ``--data`` names a
manifest, extracts eGeMAPSv02 functionals (cached), and for each held-out speaker
(leave-one-speaker-out):

1. fits the cue bins on the training speakers only (global z, or per-speaker z with
   ``per_speaker``; a held-out speaker is normalised with its own statistics, as the bins do for
   any unseen speaker),
2. one-hot encodes the six level tokens of every utterance (6 concepts x 3 levels = 18 inputs),
3. trains a logistic regression on the training speakers' tokens -> acoustic label,
4. predicts the held-out speaker.

Predictions of all folds are pooled; prints UAR (balanced accuracy) and accuracy against chance
(1 / number of classes), beside the same classifier on the 88 raw functionals (z-scored the same
way) as a ceiling for what the features hold.

    .venv/bin/python benchmarks/cues_separability.py [--out runs/data/synth] [--data MANIFEST]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def _one_hot(tokens: list[dict[str, str]], levels: tuple[str, ...]) -> np.ndarray:
    from interventions.concepts import CONCEPT_NAMES

    X = np.zeros((len(tokens), len(CONCEPT_NAMES) * len(levels)))     # [n, 6 * n_levels]
    for i, t in enumerate(tokens):
        for j, c in enumerate(CONCEPT_NAMES):
            X[i, j * len(levels) + levels.index(t[c])] = 1.0
    return X


def evaluate(feats, labels: np.ndarray, speakers: np.ndarray, *, per_speaker: bool, seed: int = 0) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, recall_score

    from interventions.concepts import CueBins

    pred_tok = np.empty(len(labels), dtype=object)
    pred_raw = np.empty(len(labels), dtype=object)
    for spk in sorted(set(speakers)):
        te, tr = speakers == spk, speakers != spk
        ftr, fte = feats[tr].reset_index(drop=True), feats[te].reset_index(drop=True)
        bins = CueBins.fit(ftr, speakers=list(speakers[tr]), per_speaker=per_speaker)
        Xtr = _one_hot(bins.transform(ftr, list(speakers[tr])), bins.levels)
        Xte = _one_hot(bins.transform(fte, list(speakers[te])), bins.levels)
        clf = LogisticRegression(max_iter=2000, random_state=seed).fit(Xtr, labels[tr])
        pred_tok[te] = clf.predict(Xte)
        # the ceiling: every functional, z-scored like the concepts (global or within speaker)
        Ztr, Zte = _z_all(ftr, speakers[tr], per_speaker), _z_all(fte, speakers[te], per_speaker, ref=ftr)
        raw = LogisticRegression(max_iter=4000, C=0.5, random_state=seed).fit(Ztr, labels[tr])
        pred_raw[te] = raw.predict(Zte)
    classes = sorted(set(labels))
    return {
        "per_speaker": per_speaker,
        "n": int(len(labels)), "n_speakers": int(len(set(speakers))), "classes": classes,
        "chance_uar": 1.0 / len(classes),
        "tokens_uar": float(balanced_accuracy_score(labels, pred_tok)),
        "tokens_accuracy": float(accuracy_score(labels, pred_tok)),
        "tokens_recall": dict(zip(classes, map(float, recall_score(labels, pred_tok, labels=classes, average=None)))),
        "egemaps88_uar": float(balanced_accuracy_score(labels, pred_raw)),
    }


def _z_all(f, speakers: np.ndarray, per_speaker: bool, ref=None) -> np.ndarray:
    X = np.nan_to_num(f.to_numpy(dtype=float))                        # [n, 88]
    if per_speaker:
        out = np.zeros_like(X)
        for s in set(speakers):
            m = speakers == s
            out[m] = (X[m] - X[m].mean(0)) / np.where(X[m].std(0) > 1e-12, X[m].std(0), 1.0)
        return out
    R = X if ref is None else np.nan_to_num(ref.to_numpy(dtype=float))
    return (X - R.mean(0)) / np.where(R.std(0) > 1e-12, R.std(0), 1.0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/data/synth", help="where the synthetic corpus is (or will be) built")
    p.add_argument("--data", help="use this manifest instead of building the synthetic corpus")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", help="eGeMAPS cache (default $DISSONANCE_CACHE/egemaps or .cache/dissonance/egemaps)")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)

    from interventions.egemaps import extract
    from probes.data.manifest import Manifest

    t0 = time.time()
    if args.data:
        path = Path(args.data)
    else:
        out = Path(args.out)
        path = out / "manifest.csv"
        if not path.exists():
            try:
                from probes.data.synth import build
            except ImportError as e:
                print(f"cues_separability: the synthetic corpus builder is not available ({e}); pass --data MANIFEST.", file=sys.stderr)
                return 2
            path = Path(build(out, seed=args.seed))
    data = Manifest.read(path)
    print(f"corpus: {data.source} ({len(data)} utterances, {data.df['speaker'].nunique()} speakers, "
          f"labels {({k: int(v) for k, v in data.df['acoustic_label'].value_counts().sort_index().items()})})")
    feats = extract([data.audio_path(i) for i in range(len(data))], cache_dir=args.cache_dir)
    labels = data.df["acoustic_label"].to_numpy()
    speakers = data.df["speaker"].to_numpy()
    results = [evaluate(feats, labels, speakers, per_speaker=ps, seed=args.seed) for ps in (False, True)]
    print("leave-one-speaker-out, logistic regression on the six concept tokens (one-hot):")
    for r in results:
        norm = "per-speaker z" if r["per_speaker"] else "global z    "
        print(f"  {norm}: tokens UAR {r['tokens_uar']:.3f} (acc {r['tokens_accuracy']:.3f})   "
              f"chance {r['chance_uar']:.3f}   88 eGeMAPS functionals UAR {r['egemaps88_uar']:.3f}")
        print("      token recall per class: " + ", ".join(f"{c} {v:.2f}" for c, v in r["tokens_recall"].items()))
    print(f"({time.time() - t0:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps({"manifest": str(data.source), "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
