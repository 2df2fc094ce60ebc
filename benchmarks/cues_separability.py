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

``--association COLUMN`` measures instead what each concept's tokens are associated with:
Cramér's V (uncorrected, ``scipy.stats.contingency.association``) between the tokens and the
emotion (``acoustic_label``), and between the tokens and a speaker attribute such as sex
(EmoDB's importer writes ``gender``), with bins fitted on the whole manifest, global vs
per-speaker z, for both scalings (``standard`` = mean/std, the old default; ``robust``).
Per-speaker bins should leave the tokens saying little about who speaks.

    .venv/bin/python benchmarks/cues_separability.py [--out runs/data/synth] [--data MANIFEST]
    .venv/bin/python benchmarks/cues_separability.py --data runs/data/emodb/manifest.csv --association gender
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np


def _one_hot(tokens: list[dict[str, str]], levels: tuple[str, ...]) -> np.ndarray:
    from interventions.concepts import CONCEPT_NAMES

    X = np.zeros((len(tokens), len(CONCEPT_NAMES) * len(levels)))     # [n, 6 * n_levels]
    for i, t in enumerate(tokens):
        for j, c in enumerate(CONCEPT_NAMES):
            X[i, j * len(levels) + levels.index(t[c])] = 1.0
    return X


def evaluate(feats, labels: np.ndarray, speakers: np.ndarray, *, per_speaker: bool, seed: int = 0,
             scaling: str = "robust") -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, recall_score

    from interventions.concepts import CueBins

    pred_tok = np.empty(len(labels), dtype=object)
    pred_raw = np.empty(len(labels), dtype=object)
    for spk in sorted(set(speakers)):
        te, tr = speakers == spk, speakers != spk
        ftr, fte = feats[tr].reset_index(drop=True), feats[te].reset_index(drop=True)
        bins = CueBins.fit(ftr, speakers=list(speakers[tr]), per_speaker=per_speaker, scaling=scaling)
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
        "per_speaker": per_speaker, "scaling": scaling,
        "n": int(len(labels)), "n_speakers": int(len(set(speakers))), "classes": classes,
        "chance_uar": 1.0 / len(classes),
        "tokens_uar": float(balanced_accuracy_score(labels, pred_tok)),
        "tokens_accuracy": float(accuracy_score(labels, pred_tok)),
        "tokens_recall": dict(zip(classes, map(float, recall_score(labels, pred_tok, labels=classes, average=None)))),
        "egemaps88_uar": float(balanced_accuracy_score(labels, pred_raw)),
    }


def cramers_v(a, b) -> float:
    """Cramér's V between two categorical sequences (no bias correction); 0 when either is constant."""
    import pandas as pd
    from scipy.stats.contingency import association as _assoc

    tab = pd.crosstab(np.asarray(a), np.asarray(b)).to_numpy()
    if min(tab.shape) < 2:
        return 0.0
    return float(_assoc(tab, method="cramer"))


def association(feats, labels: np.ndarray, speakers: np.ndarray, attribute: np.ndarray, *,
                per_speaker: bool, scaling: str = "robust") -> dict[str, dict[str, float]]:
    """concept -> {"attribute": V(tokens, attribute), "emotion": V(tokens, labels)}; bins fitted on all rows."""
    from interventions.concepts import CONCEPT_NAMES, CueBins

    spk = [str(s) for s in speakers]
    bins = CueBins.fit(feats, speakers=spk, per_speaker=per_speaker, scaling=scaling)
    L = bins.level_index(feats, spk)                                   # [n, 6]
    return {c: {"attribute": cramers_v(L[:, j], attribute), "emotion": cramers_v(L[:, j], labels)}
            for j, c in enumerate(CONCEPT_NAMES)}


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


def _concepts() -> tuple[str, ...]:
    from interventions.concepts import CONCEPT_NAMES

    return CONCEPT_NAMES


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/data/synth", help="where the synthetic corpus is (or will be) built")
    p.add_argument("--data", help="use this manifest instead of building the synthetic corpus")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", help="eGeMAPS cache (default $DISSONANCE_CACHE/egemaps or .cache/dissonance/egemaps)")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--scaling", choices=("robust", "standard"), default="robust",
                   help="cue feature z-scores for the separability test (robust: the default of the bins)")
    p.add_argument("--association", metavar="COLUMN",
                   help="instead: Cramér's V of each concept's tokens with this manifest column (e.g. gender) vs with the emotion")
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
    if args.association and args.association not in data.df.columns:
        print(f"cues_separability: {data.source} has no column {args.association!r}; "
              f"columns: {', '.join(data.df.columns)}", file=sys.stderr)
        return 2
    feats = extract([data.audio_path(i) for i in range(len(data))], cache_dir=args.cache_dir)
    labels = data.df["acoustic_label"].to_numpy()
    speakers = data.df["speaker"].to_numpy()
    if args.association:
        attr = data.df[args.association].astype(str).to_numpy()
        out = {}
        print(f"Cramér's V of each concept's tokens with {args.association!r} "
              f"({dict(sorted(Counter(attr).items()))}) and with the emotion; bins fitted on all {len(data)} files:")
        print(f"  {'scaling':9s} {'normalisation':13s} " + "  ".join(f"{c:>17s}" for c in _concepts()))
        print(f"  {'':9s} {'':13s} " + "  ".join(f"{args.association[:7] + ' / emo':>17s}" for _ in _concepts()))
        for scaling in ("standard", "robust"):
            for ps in (False, True):
                r = association(feats, labels, speakers, attr, per_speaker=ps, scaling=scaling)
                out[f"{scaling}/{'per-speaker' if ps else 'global'}"] = r
                print(f"  {scaling:9s} {'per-speaker' if ps else 'global':13s} "
                      + "  ".join(f"{r[c]['attribute']:>8.2f} / {r[c]['emotion']:<5.2f}" for c in _concepts()))
        print(f"({time.time() - t0:.0f} s)")
        if args.json:
            Path(args.json).write_text(json.dumps({"manifest": str(data.source), "attribute": args.association,
                                                   "cramers_v": out}, indent=1))
        return 0
    results = [evaluate(feats, labels, speakers, per_speaker=ps, seed=args.seed, scaling=args.scaling) for ps in (False, True)]
    print(f"leave-one-speaker-out, logistic regression on the six concept tokens (one-hot; {args.scaling} z):")
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
