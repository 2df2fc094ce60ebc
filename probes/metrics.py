"""Metrics for emotion predictions, and for the text-over-voice bias on conflict items.

All functions take plain sequences of labels; ``None`` or any string outside the label set is
an *invalid* answer. Invalid answers are counted (``invalid``) and count as wrong; they are
never dropped, except where a statistic needs a label (Cramer's V uses the valid answers).

- accuracy, UAR (unweighted average recall = balanced accuracy, over the classes present in
  the reference) and macro-F1 (over the same classes), all against the acoustic label;
- on conflict items (acoustic != semantic, both known): follows-voice rate (pred == acoustic),
  follows-text rate (pred == semantic), other rate (neither), and the text-dominance ratio
  follows-text / (follows-text + follows-voice);
- Cramer's V between prediction and the acoustic label, and between prediction and the
  semantic label (no bias correction), over valid answers of all items;
- bootstrap 95% intervals (percentile, items resampled with replacement);
- McNemar's test between two conditions on the same utterances (exact binomial below 25
  discordant pairs, chi-square with continuity correction above).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from probes.labels import CANONICAL, SYNONYMS, parse_answer

SCORE_KEYS = ("n", "invalid", "accuracy", "uar", "macro_f1", "follows_voice", "follows_text",
              "text_dominance", "other_rate", "n_conflict", "cramers_v_acoustic", "cramers_v_semantic")


def normalize_pred(x: object, labels: Iterable[str] = CANONICAL) -> str | None:
    """A prediction cell -> canonical label or None (invalid). Free text goes through parse_answer."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    s = str(x).strip().lower()
    if not s or s in ("nan", "none", "invalid"):
        return None
    labels = tuple(labels)
    if s in SYNONYMS and SYNONYMS[s] in labels:
        return SYNONYMS[s]
    return parse_answer(s, labels)


def _arr(x: Sequence) -> np.ndarray:
    return np.array([("" if v is None else str(v)) for v in x], dtype=object)


def accuracy(y_true: Sequence, y_pred: Sequence) -> float:
    t, p = _arr(y_true), _arr(y_pred)
    return float(np.mean(t == p)) if len(t) else float("nan")


def recalls(y_true: Sequence, y_pred: Sequence) -> dict[str, float]:
    t, p = _arr(y_true), _arr(y_pred)
    return {c: float(np.mean(p[t == c] == c)) for c in sorted(set(t))}


def uar(y_true: Sequence, y_pred: Sequence) -> float:
    r = recalls(y_true, y_pred)
    return float(np.mean(list(r.values()))) if r else float("nan")


def macro_f1(y_true: Sequence, y_pred: Sequence) -> float:
    """Mean F1 over the classes present in ``y_true`` (as sklearn with labels=those classes)."""
    t, p = _arr(y_true), _arr(y_pred)
    f1s = []
    for c in sorted(set(t)):
        tp = float(np.sum((t == c) & (p == c)))
        fp = float(np.sum((t != c) & (p == c)))
        fn = float(np.sum((t == c) & (p != c)))
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s)) if f1s else float("nan")


def confusion(y_true: Sequence, y_pred: Sequence, labels: Sequence[str] | None = None):
    """Counts as a DataFrame: rows = reference, columns = prediction (+ ``invalid``)."""
    import pandas as pd

    t, p = _arr(y_true), _arr(y_pred)
    labels = list(labels) if labels is not None else sorted(set(t) | (set(p) - {""}))
    cols = labels + (["invalid"] if np.any(~np.isin(p, labels)) else [])
    m = pd.DataFrame(0, index=labels, columns=cols)
    for a, b in zip(t, p):
        if a in labels:
            m.loc[a, b if b in labels else "invalid"] += 1
    return m


def cramers_v(x: Sequence, y: Sequence) -> float:
    """Cramer's V of the contingency table of x and y (no bias correction)."""
    x, y = _arr(x), _arr(y)
    if len(x) == 0:
        return float("nan")
    xs, ys = sorted(set(x)), sorted(set(y))
    if len(xs) < 2 or len(ys) < 2:
        return 0.0
    table = np.zeros((len(xs), len(ys)))
    xi = {v: i for i, v in enumerate(xs)}
    yi = {v: i for i, v in enumerate(ys)}
    for a, b in zip(x, y):
        table[xi[a], yi[b]] += 1
    n = table.sum()
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / n
    chi2 = float(np.sum((table - expected) ** 2 / expected))
    return math.sqrt(chi2 / (n * (min(table.shape) - 1)))


def conflict_rates(acoustic: Sequence, semantic: Sequence, pred: Sequence) -> dict[str, float]:
    a, s, p = _arr(acoustic), _arr(semantic), _arr(pred)
    m = (a != "") & (s != "") & (a != s)
    n = int(m.sum())
    if n == 0:
        return {"n_conflict": 0, "follows_voice": float("nan"), "follows_text": float("nan"),
                "other_rate": float("nan"), "text_dominance": float("nan")}
    fv = float(np.mean(p[m] == a[m]))
    ft = float(np.mean(p[m] == s[m]))
    return {"n_conflict": n, "follows_voice": fv, "follows_text": ft, "other_rate": 1.0 - fv - ft,
            "text_dominance": ft / (ft + fv) if (ft + fv) > 0 else float("nan")}


def score(acoustic: Sequence, semantic: Sequence, pred: Sequence, labels: Iterable[str] | None = None) -> dict:
    """Every headline number for one set of predictions (see the module docstring)."""
    labels = tuple(labels) if labels is not None else CANONICAL
    p = [normalize_pred(x, labels) for x in pred]
    a = [str(x) if x is not None else "" for x in acoustic]
    s = [str(x) if x is not None and str(x) != "nan" else "" for x in semantic]
    valid = np.array([x is not None for x in p])
    pa = ["" if x is None else x for x in p]
    out = {"n": len(p), "invalid": int((~valid).sum()),
           "accuracy": accuracy(a, pa), "uar": uar(a, pa), "macro_f1": macro_f1(a, pa)}
    out.update(conflict_rates(a, s, pa))
    pv = [x for x, v in zip(pa, valid) if v]
    out["cramers_v_acoustic"] = cramers_v(pv, [x for x, v in zip(a, valid) if v])
    sv = [(x, y) for x, y, v in zip(pa, s, valid) if v and y]
    out["cramers_v_semantic"] = cramers_v([x for x, _ in sv], [y for _, y in sv]) if sv else float("nan")
    return {k: out[k] for k in SCORE_KEYS}


def bootstrap_ci(
    fn: Callable[..., float], *columns: Sequence, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float]:
    """Percentile interval of ``fn(*columns)`` over item resamples."""
    cols = [np.asarray(c, dtype=object) for c in columns]
    n = len(cols[0])
    if n == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        v = fn(*[c[idx] for c in cols])
        if not (isinstance(v, float) and math.isnan(v)):
            vals.append(v)
    if not vals:
        return (float("nan"), float("nan"))
    return (float(np.quantile(vals, alpha / 2)), float(np.quantile(vals, 1 - alpha / 2)))


_CI_KEYS = ("accuracy", "uar", "macro_f1", "follows_voice", "follows_text", "text_dominance")


def _rates_from_codes(a: np.ndarray, s: np.ndarray, p: np.ndarray, k: int) -> np.ndarray:
    """The six CI'd rates from integer codes (a in 0..k-1; p = -1 for anything else; s = -1 unknown)."""
    acc = float(np.mean(a == p))
    tp = np.bincount(a[a == p], minlength=k).astype(float)
    support = np.bincount(a, minlength=k).astype(float)
    pred_n = np.bincount(p[p >= 0], minlength=k).astype(float)
    present = support > 0
    rec = tp[present] / support[present]
    denom = (support + pred_n)[present]
    f1 = np.where(tp[present] > 0, 2 * tp[present] / np.maximum(denom, 1), 0.0)
    m = (s >= 0) & (s != a)
    if m.any():
        fv, ft = float(np.mean(p[m] == a[m])), float(np.mean(p[m] == s[m]))
        td = ft / (ft + fv) if ft + fv > 0 else np.nan
    else:
        fv = ft = td = np.nan
    return np.array([acc, rec.mean(), f1.mean(), fv, ft, td])


def score_with_ci(acoustic, semantic, pred, labels=None, *, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> dict:
    """``score`` plus ``<key>_ci`` = [lo, hi] (bootstrap percentile intervals) for the rates.

    The resampling works on integer codes, so 1000 resamples of a few thousand items take well
    under a second; the point estimates come from ``score`` itself.
    """
    out = score(acoustic, semantic, pred, labels)
    labels = tuple(labels) if labels is not None else CANONICAL
    a = [str(x) if x is not None else "" for x in acoustic]
    classes = sorted(set(a))
    code = {c: i for i, c in enumerate(classes)}
    ac = np.array([code[x] for x in a])
    pc = np.array([code.get(normalize_pred(x, labels) or "", -1) for x in pred])
    # a semantic label outside the acoustic classes still defines a conflict item: give it its own code
    extra = {}
    sc = []
    for x in semantic:
        x = "" if x is None or str(x) == "nan" else str(x)
        if not x:
            sc.append(-1)
        elif x in code:
            sc.append(code[x])
        else:
            sc.append(extra.setdefault(x, len(classes) + len(extra)))
    sc = np.array(sc)
    rng = np.random.default_rng(seed)
    n = len(ac)
    boots = np.array([_rates_from_codes(ac[i], sc[i], pc[i], len(classes)) for i in (rng.integers(0, n, n) for _ in range(n_boot))]) if n else np.empty((0, 6))
    for j, key in enumerate(_CI_KEYS):
        col = boots[:, j] if len(boots) else np.array([])
        col = col[~np.isnan(col)]
        out[f"{key}_ci"] = [float(np.quantile(col, alpha / 2)), float(np.quantile(col, 1 - alpha / 2))] if len(col) else [None, None]
    return out


def mcnemar(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> dict:
    """McNemar's test on paired correctness of two conditions over the same items."""
    from scipy import stats

    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    n01 = int(np.sum(a & ~b))  # right under A only
    n10 = int(np.sum(~a & b))  # right under B only
    d = n01 + n10
    if d == 0:
        return {"b": n01, "c": n10, "statistic": 0.0, "p_value": 1.0, "method": "none"}
    if d < 25:
        p = float(stats.binomtest(n01, d, 0.5).pvalue)
        return {"b": n01, "c": n10, "statistic": float(min(n01, n10)), "p_value": p, "method": "exact"}
    stat = (abs(n01 - n10) - 1) ** 2 / d
    return {"b": n01, "c": n10, "statistic": float(stat), "p_value": float(stats.chi2.sf(stat, 1)), "method": "chi2-cc"}


def prediction_entropy(pred: Sequence) -> float:
    """Entropy (bits) of the distribution of predicted labels: near 0 means collapse onto one label."""
    vals, counts = np.unique(_arr(pred), return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def score_frame(df, *, pred: str = "pred", acoustic: str = "acoustic_label", semantic: str = "semantic_label",
                group: str | None = None, labels=None, ci: bool = False, n_boot: int = 1000) -> dict:
    """Score a DataFrame of predictions, overall (``"all"``) or per value of ``group``."""
    fn = (lambda a, s, p: score_with_ci(a, s, p, labels, n_boot=n_boot)) if ci else (lambda a, s, p: score(a, s, p, labels))
    if semantic not in df.columns:
        df = df.assign(**{semantic: ""})
    groups = {"all": df} if group is None else {str(k): g for k, g in df.groupby(group, sort=True)}
    return {k: _clean(fn(g[acoustic].tolist(), g[semantic].fillna("").tolist(), g[pred].tolist())) for k, g in groups.items()}


def score_run(run_dir: str | Path, *, ci: bool = True, n_boot: int = 500) -> dict:
    """metrics.json of a prediction run: per condition, with intervals and error count."""
    from probes.store import count_errors, read_rows

    df = read_rows(run_dir)
    out: dict = {"errors": count_errors(run_dir)}
    if df.empty or "pred" not in df.columns:
        out["conditions"] = {}
        return out
    out["conditions"] = score_frame(df, group="condition", ci=ci, n_boot=n_boot)
    return out


def _clean(d: dict) -> dict:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}
