"""How well does the synthetic corpus' voice carry its emotion, and does the voice leak the words?

Builds (or reads) a synthetic corpus, extracts eGeMAPSv02 functionals (opensmile, 88 features)
per utterance, z-normalises them per speaker, and fits a logistic regression:

- voice emotion, train split -> test split (speakers *and* sentences held out): the target is a
  UAR near 0.8, not 1.0, so that the words have room to matter;
- voice emotion, leave-one-speaker-out over the whole corpus, 7 classes and the 4 main ones;
- text emotion from the same acoustic features, train -> test (a control: should be near chance,
  1/7 with 7 classes; well above it would mean the prosody leaks the words), and what explains
  it: the text emotion from the utterance's duration alone (log seconds, z-normalised per
  speaker), from the sentence's length in characters alone, from the functionals with the
  duration regressed out (a linear fit of each functional on the duration, on the train split),
  and on the conflict test items only (where the text emotion is not the voice's, so the
  design's congruent items cannot carry it).

With ``--fusion`` it also asks the question the corpus's voice reliability was chosen by, on the
non-test items only (train + dev; the test split is never read): cross-validation over 4 speaker
folds x 3 sentence folds, every item predicted by models trained on the congruent items of the
*other* speakers and the *other* sentences, logistic regression on (a) the eGeMAPS functionals,
(b) mean-pooled MiniLM of the true text, (c) both concatenated; it reports the voice's and the
words' accuracy on congruent items and how often (c) follows the words on emotional-conflict
items (emotional words, another emotional voice). ``--jitter``, ``--mild-share`` and
``--mild-intensity`` override the constants of ``probes/data/synth/voices.py`` for the build.

Usage: .venv/bin/python benchmarks/synth_separability.py [--data DIR] [--seed N] [--n N] [--fusion]
  [--jitter J] [--mild-share S] [--mild-intensity K]
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


def minilm_means(texts: list[str]) -> np.ndarray:
    """Mean-pooled MiniLM (the packaged all-MiniLM-L6-v2) of each distinct text."""
    import torch

    from fas.features import _minilm

    torch.set_num_threads(1)
    tok, model = _minilm(None)
    cache: dict[str, np.ndarray] = {}
    for t in texts:
        if t not in cache:
            with torch.no_grad():
                cache[t] = model(**tok(t, return_tensors="pt")).last_hidden_state[0].mean(0).numpy()
    return np.stack([cache[t] for t in texts])  # [utt, 384]


def fusion_cv(x: np.ndarray, df, seed: int) -> dict[str, float]:
    """Cross-validated voice / words / fusion on the non-test items (see the module docstring)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from probes.data.synth.design import unit

    keep = (df["split"] != "test").to_numpy()
    x, d = x[keep], df[keep].reset_index(drop=True)
    s = minilm_means(list(d["text"]))
    ya, ys = d["acoustic_label"].to_numpy(), d["semantic_label"].to_numpy()
    cong = ya == ys
    spk_f = {k: i % 4 for i, k in enumerate(sorted(set(d["speaker"]), key=lambda k: unit(seed, "cv-speaker", k)))}
    sen_f = {k: i % 3 for i, k in enumerate(sorted(set(d["sentence_id"]), key=lambda k: unit(seed, "cv-sentence", k)))}
    fa, fb = d["speaker"].map(spk_f).to_numpy(), d["sentence_id"].map(sen_f).to_numpy()
    feats = {"voice": x, "words": s, "both": np.hstack([x, s])}
    pred = {k: np.empty(len(d), dtype=object) for k in feats}
    for a in range(4):
        for b in range(3):
            te, tr = (fa == a) & (fb == b), (fa != a) & (fb != b) & cong
            if not te.any():
                continue
            for k, f in feats.items():
                sc = StandardScaler().fit(f[tr])
                clf = LogisticRegression(max_iter=3000).fit(sc.transform(f[tr]), ya[tr])
                pred[k][te] = clf.predict(sc.transform(f[te]))
    emo = ~cong & (ys != "neutral") & (ya != "neutral")
    return {
        "voice (eGeMAPS) accuracy, congruent items": float((pred["voice"] == ya)[cong].mean()),
        "words (MiniLM) accuracy, congruent items": float((pred["words"] == ya)[cong].mean()),
        "both: accuracy, congruent items": float((pred["both"] == ya)[cong].mean()),
        f"both: follows-voice, emotional-conflict items (n={int(emo.sum())})": float((pred["both"] == ya)[emo].mean()),
        f"both: follows-text, emotional-conflict items (n={int(emo.sum())})": float((pred["both"] == ys)[emo].mean()),
    }


def text_controls(x: np.ndarray, df, paths: list[Path], tr: np.ndarray, te: np.ndarray) -> dict[str, float]:
    """Where does the text control come from?

    Two candidate sources. The design: on congruent items the text emotion *is* the voice
    emotion, so any feature that names the voice names the text there (0.41 of the default
    corpus' items are congruent, 0.14 of the earlier 784-item design's). And the sentences: those of one text
    emotion are not all the same length, and a longer sentence takes longer to speak. Controls on
    the train -> test split: the text emotion on the conflict test items only (classifier trained
    on all train items, so it may learn congruence but cannot use it), from the duration alone
    (log seconds, z-normalised per speaker as the functionals are), from the sentence's length in
    characters alone, and from the functionals after a linear fit on the duration (fitted on
    train) is taken out of each."""
    import soundfile as sf

    ys = df["semantic_label"].to_numpy()
    dur = np.log([sf.info(str(p)).duration for p in paths])[:, None]
    dz = per_speaker_z(dur, df["speaker"].to_numpy())
    nch = df["text"].str.len().to_numpy(dtype=float)[:, None]
    nch = (nch - nch[tr].mean()) / nch[tr].std()
    a = np.hstack([dz[tr], np.ones((int(tr.sum()), 1))])
    coef, *_ = np.linalg.lstsq(a, x[tr], rcond=None)  # [2, features]
    resid = x - np.hstack([dz, np.ones((len(x), 1))]) @ coef
    chance = 1 / len(set(ys))
    is_conflict = df["acoustic_label"].to_numpy() != ys
    conflict, conflict_tr = te & is_conflict, tr & is_conflict
    return {
        "congruent share of the test items": float(1 - conflict.sum() / te.sum()),
        f"text UAR from eGeMAPS on the conflict test items only (chance {chance:.3f})": uar(
            ys[conflict], fit_predict(x[tr], ys[tr], x[conflict])),
        # on conflict items the text is never the voice: a perfect voice reader that answers any
        # other emotion scores 1/(k-1), the fair chance line for this row
        f"text UAR, conflict items in train and test (line: 1/(k-1) = {1 / (len(set(ys)) - 1):.3f})": uar(
            ys[conflict], fit_predict(x[conflict_tr], ys[conflict_tr], x[conflict])),
        f"text UAR from the duration alone, train->test (chance {chance:.3f})": uar(ys[te], fit_predict(dz[tr], ys[tr], dz[te])),
        f"text UAR from the sentence length in characters alone (chance {chance:.3f})": uar(ys[te], fit_predict(nch[tr], ys[tr], nch[te])),
        f"text UAR from eGeMAPS, duration regressed out (chance {chance:.3f})": uar(ys[te], fit_predict(resid[tr], ys[tr], resid[te])),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="corpus folder (built with `probe data synth`); default: build one now")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--fusion", action="store_true", help="also the cross-validated voice / words / fusion check (non-test items)")
    ap.add_argument("--jitter", type=float, default=None, help="override voices.JITTER for the build")
    ap.add_argument("--mild-share", type=float, default=None, help="override voices.MILD_SHARE for the build")
    ap.add_argument("--mild-intensity", type=float, default=None, help="override voices.MILD_INTENSITY for the build")
    args = ap.parse_args(argv)
    from probes.data.synth import voices

    for name, v in (("JITTER", args.jitter), ("MILD_SHARE", args.mild_share), ("MILD_INTENSITY", args.mild_intensity)):
        if v is not None:
            if args.data:
                ap.error(f"--{name.lower().replace('_', '-')} changes the build; it cannot apply to --data {args.data}")
            setattr(voices, name, v)

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
    import hashlib

    cache = Path(__file__).resolve().parents[1] / ".cache" / "dissonance" / "separability" / (
        hashlib.sha256((folder / "manifest.csv").read_bytes()).hexdigest()[:16] + ".npy")
    if cache.exists():  # the functionals of this exact manifest, from an earlier run (plain float array)
        x = np.load(cache, allow_pickle=False)
    else:
        x = features([m.audio_path(i) for i in range(len(m))])
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, x, allow_pickle=False)
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

    res.update(text_controls(x, df, [m.audio_path(i) for i in range(len(m))], tr, te))

    if args.fusion:
        res.update(fusion_cv(x, df, args.seed))

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
