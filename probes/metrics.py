"""Metrics for emotion predictions, and for the text-over-voice bias on conflict items.

All functions take plain sequences of labels; ``None`` or any string outside the label set is
an *invalid* answer. Invalid answers are counted (``invalid``) and count as wrong; they are
never dropped, except where a statistic needs a label (Cramer's V uses the valid answers).

- accuracy, UAR (unweighted average recall = balanced accuracy, over the classes present in
  the reference) and macro-F1 (over the same classes), all against the acoustic label;
- conflict items (acoustic != semantic, both known) come in three **conflict types**
  (docs/vocabulary.md), scored apart because a "neutral" answer means different things in each:

  ====================  =====================================  =======================================
  type                  the item                               reported as
  ====================  =====================================  =======================================
  emotional-conflict    emotional words, another emotional     follows-voice, follows-text,
                        voice (happy words, angry voice)       text-dominance: the headline figures
  neutral-text          neutral words, emotional voice         ``neutral_pull``: share answering
                                                               neutral (= following the words)
  neutral-voice         emotional words, neutral voice         follows-text / follows-voice
  ====================  =====================================  =======================================

  The pooled keys (``follows_voice``, ``follows_text``, ``text_dominance``, ``other_rate``,
  ``n_conflict``) keep their old meaning, every conflict item, for old readers; the per-type
  keys are listed in ``TYPE_KEYS``; ``*_emotional_words`` pools the two types whose words are
  emotional (every conflict item but neutral-text);
- Cramer's V between prediction and the acoustic label, and between prediction and the
  semantic label (no bias correction), over valid answers of all items;
- bootstrap 95% intervals: ONE paired percentile bootstrap (``scipy.stats.bootstrap``,
  vectorised) for every metric, over items sorted first so that the same multiset of items
  gives the same interval in any order (merged shards equal unsharded runs exactly);
- ``compare_conditions``: two conditions on the same utterances, paired deltas and McNemar's
  test (exact binomial below 25 discordant pairs, chi-square with continuity correction above);
- ``PRESETS``: the column mapping of foreign prediction tables (the EMIS study's) and of run rows.

Answers are read under a **parse policy** (``PARSE_POLICIES``), recorded in every score:
``strict`` accepts an answer that is exactly one label word (case and surrounding punctuation
aside), anything else is invalid; ``lenient`` also maps known spellings ("sadness") and free text
naming exactly one label ("the speaker sounds sad"), as ``probes.labels.parse_answer`` does. The
EMIS study used the strict reading: 14 of its 4,992 answers are echoed transcripts or "sadness",
and it counts them invalid (4,978 valid answers).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from probes.labels import CANONICAL, EXTRA_SPELLINGS, SYNONYMS, parse_answer

SCORE_KEYS = ("n", "invalid", "accuracy", "uar", "macro_f1", "follows_voice", "follows_text",
              "text_dominance", "other_rate", "n_conflict", "cramers_v_acoustic", "cramers_v_semantic")

NEUTRAL = "neutral"
CONFLICT_TYPES = ("emotional-conflict", "neutral-text", "neutral-voice")
# per-type keys of every score (flat, so tables, metrics.json and figures read them alike)
TYPE_KEYS = (
    "n_emotional_conflict", "follows_voice_emotional_conflict", "follows_text_emotional_conflict",
    "other_rate_emotional_conflict", "text_dominance_emotional_conflict",
    "n_neutral_text", "neutral_pull", "follows_voice_neutral_text",
    "n_neutral_voice", "follows_text_neutral_voice", "follows_voice_neutral_voice",
    "n_emotional_words", "follows_text_emotional_words", "follows_voice_emotional_words",
)
PARSE_POLICIES = ("strict", "lenient")
DEFAULT_PARSE = "lenient"

# Column mappings of prediction tables: one place for ``probe score`` presets and the figures.
PRESETS: dict[str, dict] = {
    # the EMIS result tables (aggregated_results_v*.csv): one row per (utterance, model)
    "emis": {"pred": "pred_emo", "acoustic": "wav_emo", "semantic": "txt_emo", "group": "slm",
             "model": "slm", "text_condition": "txt_cond", "parse": "strict"},
    # a run folder's rows
    "run": {"pred": "pred", "acoustic": "acoustic_label", "semantic": "semantic_label", "group": None,
            "parse": DEFAULT_PARSE},
}


def conflict_type(acoustic: object, semantic: object) -> str:
    """"" (words' label unknown), "congruent", or one of CONFLICT_TYPES."""
    a = "" if acoustic is None else str(acoustic)
    s = "" if semantic is None or str(semantic) == "nan" else str(semantic)
    if not a or not s:
        return ""
    if a == s:
        return "congruent"
    if s == NEUTRAL:
        return "neutral-text"
    if a == NEUTRAL:
        return "neutral-voice"
    return "emotional-conflict"


_EDGE = re.compile(r"^[\s\"'`.,;:!?()\[\]*]+|[\s\"'`.,;:!?()\[\]*]+$")


def normalize_pred(x: object, labels: Iterable[str] = CANONICAL, parse: str = DEFAULT_PARSE,
                   extra_labels: Mapping[str, str] | None = None) -> str | None:
    """A prediction cell -> canonical label or None (invalid), under the parse policy ``parse``.

    ``extra_labels`` ({corpus label: canonical label}, e.g. {"bored": "other"}) widens the answer
    set: an answer naming an extra label is valid and scored as its canonical label.
    """
    if parse not in PARSE_POLICIES:
        raise ValueError(f"parse policy {parse!r}: use one of {', '.join(PARSE_POLICIES)}")
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    s = str(x).strip().lower()
    if not s or s in ("nan", "none", "invalid"):
        return None
    extra = dict(extra_labels or {})
    allowed = tuple(labels) + tuple(k for k in extra if k not in labels)
    if parse == "strict":
        word = _EDGE.sub("", s)
        hit = word if word in allowed else None
    elif s in SYNONYMS and SYNONYMS[s] in allowed:
        hit = SYNONYMS[s]
    else:
        hit = parse_answer(s, allowed)
    if hit is not None and hit in extra:
        return extra[hit] or None
    return hit


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


def _rate(num: float, den: float) -> float:
    return num / den if den > 0 else float("nan")


def conflict_rates(acoustic: Sequence, semantic: Sequence, pred: Sequence) -> dict[str, float]:
    """Pooled follows-* over every conflict item, and the per-type keys of TYPE_KEYS."""
    a, s, p = _arr(acoustic), _arr(semantic), _arr(pred)
    types = np.array([conflict_type(x, y) for x, y in zip(a, s)], dtype=object)
    out: dict[str, float] = {}

    def rates(m: np.ndarray) -> tuple[int, float, float]:
        n = int(m.sum())
        return n, _rate(float(np.sum(p[m] == a[m])), n), _rate(float(np.sum(p[m] == s[m])), n)

    m = np.isin(types, CONFLICT_TYPES)
    n, fv, ft = rates(m)
    out.update({"n_conflict": n, "follows_voice": fv, "follows_text": ft,
                "other_rate": 1.0 - fv - ft if n else float("nan"), "text_dominance": _rate(ft, ft + fv)})
    n, fv, ft = rates(types == "emotional-conflict")
    out.update({"n_emotional_conflict": n, "follows_voice_emotional_conflict": fv,
                "follows_text_emotional_conflict": ft, "other_rate_emotional_conflict": 1.0 - fv - ft if n else float("nan"),
                "text_dominance_emotional_conflict": _rate(ft, ft + fv)})
    n, fv, ft = rates(types == "neutral-text")
    out.update({"n_neutral_text": n, "neutral_pull": ft, "follows_voice_neutral_text": fv})
    n, fv, ft = rates(types == "neutral-voice")
    out.update({"n_neutral_voice": n, "follows_text_neutral_voice": ft, "follows_voice_neutral_voice": fv})
    n, fv, ft = rates(np.isin(types, ("emotional-conflict", "neutral-voice")))
    out.update({"n_emotional_words": n, "follows_text_emotional_words": ft, "follows_voice_emotional_words": fv})
    return out


def score(acoustic: Sequence, semantic: Sequence, pred: Sequence, labels: Iterable[str] | None = None, *,
          parse: str = DEFAULT_PARSE, extra_labels: Mapping[str, str] | None = None) -> dict:
    """Every headline number for one set of predictions (see the module docstring)."""
    labels = tuple(labels) if labels is not None else CANONICAL
    p = [normalize_pred(x, labels, parse, extra_labels) for x in pred]
    a = [str(x) if x is not None else "" for x in acoustic]
    s = [str(x) if x is not None and str(x) != "nan" else "" for x in semantic]
    valid = np.array([x is not None for x in p], dtype=bool)
    pa = ["" if x is None else x for x in p]
    out = {"n": len(p), "invalid": int((~valid).sum()),
           "accuracy": accuracy(a, pa), "uar": uar(a, pa), "macro_f1": macro_f1(a, pa)}
    out.update(conflict_rates(a, s, pa))
    pv = [x for x, v in zip(pa, valid) if v]
    out["cramers_v_acoustic"] = cramers_v(pv, [x for x, v in zip(a, valid) if v])
    sv = [(x, y) for x, y, v in zip(pa, s, valid) if v and y]
    out["cramers_v_semantic"] = cramers_v([x for x, _ in sv], [y for _, y in sv]) if sv else float("nan")
    res = {k: out[k] for k in SCORE_KEYS}
    res.update({k: out[k] for k in TYPE_KEYS})
    res["parse"] = parse
    return res


# ---------------------------------------------------------------------------------- bootstrap
def paired_bootstrap(columns: Sequence[np.ndarray], statistic: Callable[..., np.ndarray], *, n_boot: int = 1000,
                     seed: int = 0, alpha: float = 0.05, batch: int | None = 250) -> list[list[float] | list[None]]:
    """The one bootstrap of the workbench: percentile intervals of a vectorised statistic.

    ``columns`` are equal-length numeric arrays (one per item: codes, values); they are sorted
    together (lexicographically) before resampling, so the interval depends on the multiset of
    items and not on their order. ``statistic(*cols)`` gets each column resampled as
    ``[resamples, n]`` and returns ``[k, resamples]`` (k metrics at once). Items are resampled
    with replacement, all columns with the same indices (paired), by ``scipy.stats.bootstrap``.
    A resample in which a metric is undefined (NaN: no item of its kind drawn) is left out of
    that metric's interval. Fewer than two items: no interval ([None, None]).
    """
    # scipy's bootstrap, measured against the hand-written loop it replaced on one EMIS model (1,248
    # items, 1,000 resamples): 0.52 s for 14 intervals vs 0.87 s for 6 (docs/vocabulary.md).
    from scipy.stats import bootstrap

    cols = [np.asarray(c) for c in columns]
    n = len(cols[0]) if cols else 0
    if n < 2:
        k = len(np.atleast_1d(statistic(*[c[None, :] for c in cols]))) if n else 1
        return [[None, None] for _ in range(k)]
    order = np.lexsort(cols[::-1])  # first column is the primary key
    cols = [c[order] for c in cols]

    def stat(*xs, axis=-1):
        return np.asarray(statistic(*[np.moveaxis(x, axis, -1).reshape(-1, x.shape[axis]) for x in xs]), dtype=float)

    import warnings

    with warnings.catch_warnings():  # scipy warns on a constant metric (every resample 1.0): a valid answer here
        warnings.simplefilter("ignore")
        res = bootstrap(tuple(cols), stat, n_resamples=n_boot, paired=True, vectorized=True, method="percentile",
                        confidence_level=1 - alpha, rng=np.random.default_rng(seed), batch=batch)
    dist = np.atleast_2d(res.bootstrap_distribution)  # [k, n_boot]
    out = []
    for row in dist:
        row = row[~np.isnan(row)]
        out.append([float(np.quantile(row, alpha / 2)), float(np.quantile(row, 1 - alpha / 2))] if len(row) else [None, None])
    return out


def bootstrap_ci(
    fn: Callable[..., float], *columns: Sequence, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float]:
    """Percentile interval of ``fn(*columns)`` over item resamples (any Python function of the
    columns; the same bootstrap as ``paired_bootstrap``, one call of ``fn`` per resample)."""
    cols = [np.asarray(c, dtype=object) for c in columns]
    if not cols or len(cols[0]) == 0:
        return (float("nan"), float("nan"))
    # integer codes per column (sorted distinct values), so any values sort and resample alike
    codes = []
    for c in cols:
        keys = [repr(v) for v in c]
        uniq = {k: i for i, k in enumerate(sorted(set(keys)))}
        codes.append(np.array([uniq[k] for k in keys]))
    back = [np.empty(len(set(map(repr, c))), dtype=object) for c in cols]
    for b, c, cd in zip(back, cols, codes):
        b[cd] = c

    def stat(*xs):
        vals = [fn(*[b[x[i]] for b, x in zip(back, xs)]) for i in range(xs[0].shape[0])]
        return np.array([[np.nan if v is None else float(v) for v in vals]])

    lo, hi = paired_bootstrap(codes, stat, n_boot=n_boot, seed=seed, alpha=alpha)[0]
    return (float("nan"), float("nan")) if lo is None else (lo, hi)


_CI_KEYS = ("accuracy", "uar", "macro_f1", "follows_voice", "follows_text", "text_dominance",
            "follows_voice_emotional_conflict", "follows_text_emotional_conflict", "text_dominance_emotional_conflict",
            "neutral_pull", "follows_voice_neutral_text", "follows_text_neutral_voice", "follows_voice_neutral_voice",
            "follows_text_emotional_words")
_TYPE_CODE = {"": 0, "congruent": 1, "emotional-conflict": 2, "neutral-text": 3, "neutral-voice": 4}


def _rates_statistic(k: int):
    """The statistic of score_with_ci over codes: a, s, p in 0..k-1 (p = -1 invalid, s = -1
    unknown), t = conflict-type code. Every input is [resamples, n]; returns [len(_CI_KEYS), resamples]."""

    def stat(a, s, p, t):
        hit = p == a
        acc = hit.mean(1)
        sup = np.stack([(a == c).sum(1) for c in range(k)])                    # [k, B]
        tp = np.stack([((a == c) & hit).sum(1) for c in range(k)])
        pn = np.stack([(p == c).sum(1) for c in range(k)])
        present = sup > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            rec = np.where(present, tp / np.where(present, sup, 1), np.nan)
            f1 = np.where(present, np.where(tp > 0, 2 * tp / np.maximum(sup + pn, 1), 0.0), np.nan)
            uar_ = np.nanmean(rec, 0)
            f1_ = np.nanmean(f1, 0)

            def rates(m):
                nm = m.sum(1).astype(float)
                fv = np.where(nm > 0, (m & hit).sum(1) / np.maximum(nm, 1), np.nan)
                ft = np.where(nm > 0, (m & (p == s)).sum(1) / np.maximum(nm, 1), np.nan)
                return fv, ft

            conflict = t >= 2
            fv, ft = rates(conflict)
            ec_v, ec_t = rates(t == 2)
            nt_v, nt_t = rates(t == 3)
            nv_v, nv_t = rates(t == 4)
            _, ew_t = rates((t == 2) | (t == 4))
            td = np.where(fv + ft > 0, ft / (fv + ft), np.nan)
            ec_td = np.where(ec_v + ec_t > 0, ec_t / (ec_v + ec_t), np.nan)
        return np.stack([acc, uar_, f1_, fv, ft, td, ec_v, ec_t, ec_td, nt_t, nt_v, nv_t, nv_v, ew_t])

    return stat


def score_with_ci(acoustic, semantic, pred, labels=None, *, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05,
                  parse: str = DEFAULT_PARSE, extra_labels: Mapping[str, str] | None = None) -> dict:
    """``score`` plus ``<key>_ci`` = [lo, hi] for the rates in ``_CI_KEYS`` (``paired_bootstrap``).

    Every label (voice, words, answer) gets one integer code from one shared table, so a words'
    label that no voice in the group carries is still matched by the answers that name it.
    """
    out = score(acoustic, semantic, pred, labels, parse=parse, extra_labels=extra_labels)
    labels = tuple(labels) if labels is not None else CANONICAL
    a = ["" if x is None else str(x) for x in acoustic]
    s = ["" if x is None or str(x) == "nan" else str(x) for x in semantic]
    p = [normalize_pred(x, labels, parse, extra_labels) or "" for x in pred]
    classes = sorted(set(a) | set(s) | set(p) - {""})
    code = {c: i for i, c in enumerate(classes)}
    ac = np.array([code.get(x, -2) for x in a])  # -2: an empty voice label matches nothing
    sc = np.array([code.get(x, -3) for x in s])  # -3: unknown words' label
    pc = np.array([code.get(x, -1) for x in p])  # -1: invalid answer
    tc = np.array([_TYPE_CODE[conflict_type(x, y)] for x, y in zip(a, s)])
    cis = paired_bootstrap([ac, sc, pc, tc], _rates_statistic(len(classes)),
                           n_boot=n_boot, seed=seed, alpha=alpha)
    for key, ci in zip(_CI_KEYS, cis):
        out[f"{key}_ci"] = ci
    return out


# ---------------------------------------------------------------------------------- paired conditions
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


def compare_conditions(df, refs: Sequence[str] = ("none",), *, correct_col: str = "acoustic_label",
                       parse: str = DEFAULT_PARSE) -> dict:
    """Each condition against each reference condition on the utterances both hold (paired).

    ``df``: prediction rows (``utt_id, condition, pred, acoustic_label[, semantic_label]``) or a
    run folder. Returns {ref: {condition: entry}}, entry = ``n``; ``delta_uar``,
    ``delta_accuracy``, ``delta_macro_f1`` (condition minus reference, against ``correct_col``)
    and ``mcnemar`` on that correctness; on conflict items (reference rows' labels)
    ``n_conflict``, ``delta_follows_voice``, ``delta_follows_text``; ``mcnemar_voice`` and
    ``mcnemar_text`` on matching the voice's / the words' label (items with a words' label).
    """
    if isinstance(df, (str, Path)):
        from probes.store import read_rows

        df = read_rows(df)
    if df.empty or "pred" not in df.columns:
        return {}
    df = df.copy()
    df["pred_c"] = [normalize_pred(p, parse=parse) or "" for p in df["pred"]]
    df["semantic_label"] = df["semantic_label"].fillna("").astype(str) if "semantic_label" in df else ""
    if "condition" not in df:
        df["condition"] = "none"
    by = {str(c): g.drop_duplicates("utt_id").set_index("utt_id") for c, g in df.groupby("condition", sort=True)}
    out: dict = {}
    for ref in refs:
        if ref not in by:
            continue
        r = by[ref]
        out[ref] = {}
        for c, g in by.items():
            if c == ref:
                continue
            common = r.index.intersection(g.index).sort_values()
            a, b = r.loc[common], g.loc[common]
            truth = a[correct_col].astype(str).tolist()
            entry: dict = {"n": int(len(common))}
            for name, fn in (("uar", uar), ("accuracy", accuracy), ("macro_f1", macro_f1)):
                entry[f"delta_{name}"] = fn(truth, b["pred_c"].tolist()) - fn(truth, a["pred_c"].tolist())
            entry["mcnemar"] = mcnemar((a["pred_c"] == a[correct_col]).to_numpy(), (b["pred_c"] == a[correct_col]).to_numpy())
            sem, ac = a["semantic_label"], a["acoustic_label"].astype(str)
            conflict = (sem != "") & (sem != ac)
            entry["n_conflict"] = int(conflict.sum())
            if conflict.any():
                for who, col in (("voice", ac), ("text", sem)):
                    entry[f"delta_follows_{who}"] = float(np.mean(b["pred_c"][conflict] == col[conflict])
                                                          - np.mean(a["pred_c"][conflict] == col[conflict]))
            entry["mcnemar_voice"] = mcnemar((a["pred_c"] == ac).to_numpy(), (b["pred_c"] == ac).to_numpy())
            has = sem != ""
            entry["mcnemar_text"] = mcnemar((a["pred_c"] == sem)[has].to_numpy(), (b["pred_c"] == sem)[has].to_numpy())
            out[ref][c] = entry
    return out


def prediction_entropy(pred: Sequence) -> float:
    """Entropy (bits) of the distribution of predicted labels: near 0 means collapse onto one label."""
    vals, counts = np.unique(_arr(pred), return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


# ---------------------------------------------------------------------------------- tables
def apply_preset(df, preset: str | Mapping[str, str]):
    """A prediction table with the run-row column names added (``pred``, ``acoustic_label``,
    ``semantic_label`` and, where the preset names them, ``model`` and ``text_condition``),
    labels stripped and lower-cased. A missing column is a ValueError naming it."""
    spec = dict(PRESETS[preset] if isinstance(preset, str) else preset)
    names = {"pred": "pred", "acoustic": "acoustic_label", "semantic": "semantic_label", "model": "model",
             "text_condition": "text_condition"}
    missing = [spec[k] for k in names if spec.get(k) and spec[k] not in df.columns]
    if missing:
        raise ValueError(f"not a {preset if isinstance(preset, str) else 'preset'} table: no column "
                         f"{', '.join(missing)}; expected {', '.join(spec[k] for k in names if spec.get(k))}")
    add = {}
    for k, col in names.items():
        src = spec.get(k)
        if src and src != col:
            v = df[src]
            add[col] = v.astype(str).str.strip().str.lower() if k in ("acoustic", "semantic") else v
    return df.assign(**add)


def score_frame(df, *, pred: str = "pred", acoustic: str = "acoustic_label", semantic: str = "semantic_label",
                group: str | Sequence[str] | None = None, labels=None, ci: bool = False, n_boot: int = 1000,
                seed: int = 0, parse: str = DEFAULT_PARSE, extra_labels: Mapping[str, str] | None = None) -> dict:
    """Score a DataFrame of predictions, overall (``"all"``) or per value of ``group``."""
    kw = dict(parse=parse, extra_labels=extra_labels)
    fn = (lambda a, s, p: score_with_ci(a, s, p, labels, n_boot=n_boot, seed=seed, **kw)) if ci else \
        (lambda a, s, p: score(a, s, p, labels, **kw))
    if semantic not in df.columns:
        df = df.assign(**{semantic: ""})
    groups = {"all": df} if group is None else {(str(k) if not isinstance(k, tuple) else " · ".join(map(str, k))): g
                                                for k, g in df.groupby(group, sort=True)}
    return {k: _clean(fn(g[acoustic].tolist(), g[semantic].fillna("").tolist(), g[pred].tolist())) for k, g in groups.items()}


def score_table(df, by: Sequence[str] = (), *, pred: str = "pred", acoustic: str = "acoustic_label",
                semantic: str = "semantic_label", n_boot: int = 1000, seed: int = 0, parse: str = DEFAULT_PARSE,
                extra_labels: Mapping[str, str] | None = None):
    """One row per group (columns ``by`` + every key of ``score_with_ci``): the table figures draw."""
    import pandas as pd

    by = list(by)
    out = []
    groups = [((), df)] if not by else list(df.groupby(by, sort=True))
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        s = g[semantic].fillna("").astype(str).replace("nan", "").tolist() if semantic in g else [""] * len(g)
        row = dict(zip(by, key))
        row.update(score_with_ci(g[acoustic].fillna("").astype(str).tolist(), s, g[pred].tolist(), n_boot=n_boot,
                                 seed=seed, parse=parse, extra_labels=extra_labels))
        out.append(row)
    return pd.DataFrame(out)


# The per-type keys behind the generic follows_voice / follows_text / n_conflict of a figure.
TYPE_COLUMNS = {
    "emotional-conflict": {"follows_voice": "follows_voice_emotional_conflict",
                           "follows_text": "follows_text_emotional_conflict", "n_conflict": "n_emotional_conflict"},
    "neutral-text": {"follows_voice": "follows_voice_neutral_text", "follows_text": "neutral_pull",
                     "n_conflict": "n_neutral_text"},
    "neutral-voice": {"follows_voice": "follows_voice_neutral_voice", "follows_text": "follows_text_neutral_voice",
                      "n_conflict": "n_neutral_voice"},
}


def conflict_type_table(table, keep: Sequence[str] = ()):
    """A score table (one row per group) -> one row per group and conflict type, with the
    generic columns ``follows_voice``, ``follows_text`` (+ ``_ci``), ``other_rate``,
    ``n_conflict`` and ``conflict_type``; types without items are left out."""
    import pandas as pd

    out = []
    for _, r in table.iterrows():
        for t, cols in TYPE_COLUMNS.items():
            n = r.get(cols["n_conflict"])
            if n is None or (isinstance(n, float) and math.isnan(n)) or int(n) == 0:
                continue
            row = {k: r[k] for k in keep}
            row.update({"conflict_type": t, "n_conflict": int(n)})
            for generic in ("follows_voice", "follows_text"):
                row[generic] = r.get(cols[generic])
                ci = r.get(f"{cols[generic]}_ci")
                if ci is not None:
                    row[f"{generic}_ci"] = ci
            fv, ft = row["follows_voice"], row["follows_text"]
            row["other_rate"] = None if fv is None or ft is None else 1.0 - fv - ft
            out.append(row)
    return pd.DataFrame(out)


def neutral_share(df, by: str = "condition", pred: str = "pred", acoustic: str = "acoustic_label",
                  parse: str = DEFAULT_PARSE) -> dict[str, float]:
    """Share of ``neutral`` answers per group among items whose voice is not neutral (where a
    ``neutral`` answer is always wrong): the cue-token study's shift of confusions toward neutral."""
    if acoustic in df:
        df = df[df[acoustic].astype(str) != NEUTRAL]
    return {str(k): float(np.mean([normalize_pred(v, parse=parse) == NEUTRAL for v in g[pred]])) for k, g in df.groupby(by)}


def corpus_notes(df) -> dict:
    """What the rows say about their corpora's design: ``neutral_text_by_design`` lists the
    corpora whose sentences are all neutral on purpose (EmoDB; a ``text_design`` column of
    ``neutral``, or the importer's ``neutral_text_by_design`` flag for the rows' ``corpus``): their
    conflict items are all neutral-text items, a neutral-words control set, not a test of words
    against voice, and the headline emotional-conflict figures are empty for them by design."""
    cols = set(getattr(df, "columns", ()))
    names: set[str] = set()
    if "text_design" in cols:
        flagged = df["text_design"].astype(str) == "neutral"
        names |= set(df.loc[flagged, "corpus"].astype(str)) if "corpus" in cols else ({"?"} if flagged.any() else set())
    if "corpus" in cols:
        from probes.registry import CORPORA

        for c in set(df["corpus"].astype(str)) - names:
            if c in CORPORA and getattr(CORPORA[c], "neutral_text_by_design", False):
                names.add(c)
    return {"neutral_text_by_design": sorted(names)} if names else {}


def score_run(run_dir: str | Path, *, ci: bool = True, n_boot: int = 500, parse: str = DEFAULT_PARSE) -> dict:
    """metrics.json of a prediction run: per condition, with intervals and error count.

    The rows are scored sorted by utterance (``paired_bootstrap`` sorts again), so a run merged
    from shards gets exactly the metrics of the same run made in one piece.
    """
    from probes.store import count_errors, read_rows

    df = read_rows(run_dir)
    out: dict = {"errors": count_errors(run_dir), "parse": parse}
    if df.empty or "pred" not in df.columns:
        out["conditions"] = {}
        return out
    if "utt_id" in df:
        df = df.sort_values(["utt_id"], kind="stable")
    if parse == "strict" and "raw" in df:
        # generated answers: the strict policy reads the model's own text, not the adapter's lenient parse
        raw = df["raw"].fillna("").astype(str)
        df = df.assign(pred=df["pred"].where(raw == "", raw))
    extra = run_extra_labels(run_dir)
    out["conditions"] = score_frame(df, group="condition" if "condition" in df else None, ci=ci, n_boot=n_boot,
                                    parse=parse, extra_labels=extra or None)
    if "condition" not in df:
        out["conditions"] = {"none": out["conditions"]["all"]}
    notes = corpus_notes(df)
    if notes:
        out.update(notes)
    if extra:
        out["extra_labels"] = extra
    return out


def run_extra_labels(run_dir: str | Path) -> dict[str, str]:
    """The run's extra labels ({corpus label: canonical}) as its manifest.json records them."""
    import json

    p = Path(run_dir) / "manifest.json"
    try:
        man = json.loads(p.read_text()) if p.exists() else {}
    except ValueError:
        return {}
    model = man.get("model") if isinstance(man.get("model"), dict) else {}
    return dict(man.get("extra_labels") or model.get("extra_labels") or {})


def _clean(d: dict) -> dict:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}


# ==================================================================================================
# Distributions against soft labels (issue 14; appended by the "tts" helper, tests: tests/test_soft_metrics.py)
#
# A soft label is the annotators' distribution over the labels of one utterance (manifest columns
# ``soft_<label>``, votes or shares; rows are normalised to sum to one). A prediction is a
# distribution over the same labels (a row's ``probs``, or a self-consistency vote share). All
# divergences are in bits (log base 2), so JS lies in [0, 1].
#
# - ``js_divergence``: Jensen-Shannon divergence between prediction and annotation (symmetric);
# - ``kl_to_soft``: KL(annotation || prediction), the surprise of the model at the annotators'
#   votes; the prediction is floored at ``eps`` (and renormalised) so that a zero where the
#   annotators voted gives a large finite number, not infinity;
# - ``brier``: sum over labels of the squared difference (0 = equal, 2 = disjoint one-hots);
# - ``expected_calibration_error``: confidence = the prediction's top probability, accuracy = the
#   annotators' share of that label (for a one-hot annotation: 1 if right, else 0, the usual ECE);
#   equal-width bins on [0, 1], weighted by their item count;
# - ``top2_agreement``: the two most probable labels of prediction and annotation are the same
#   set (``top1_in_top2``: the predicted label is one of the annotators' two most voted);
#   ties are broken by label order;
# - entropies of the prediction and of the annotation (bits), and their mean absolute gap;
# - accuracy against the majority label (items whose annotation has a unique top label).
# ==================================================================================================
SOFT_PREFIX = "soft_"
SOFT_KEYS = ("n_soft", "js", "kl_to_soft", "brier", "ece", "top2_agreement", "top1_in_top2",
             "entropy_pred", "entropy_soft", "entropy_gap", "accuracy_majority", "n_majority")


def soft_label_columns(df) -> list[str]:
    """The manifest's ``soft_<label>`` columns, in column order."""
    return [c for c in df.columns if str(c).startswith(SOFT_PREFIX) and len(str(c)) > len(SOFT_PREFIX)]


def soft_labels(df, labels: Sequence[str] | None = None, *, where: str = "manifest") -> tuple[tuple[str, ...], np.ndarray]:
    """Per row the annotation distribution from the ``soft_<label>`` columns. -> (labels, [n, k])

    ``labels`` fixes the order (a label without a column counts zero votes); by default the
    columns' own. A row whose soft cells are all empty (no annotation) is a row of NaN; a negative
    or non-numeric cell, or a soft column for no label of ``labels`` that holds votes, raises one
    ValueError naming the row and column.
    """
    cols = soft_label_columns(df)
    own = tuple(str(c)[len(SOFT_PREFIX):] for c in cols)
    labels = tuple(labels) if labels is not None else own
    out = np.full((len(df), len(labels)), np.nan)
    ids = df["utt_id"].astype(str).tolist() if "utt_id" in df else [str(i) for i in range(len(df))]
    for r in range(len(df)):
        vals = np.zeros(len(labels))
        seen = False
        for c, lab in zip(cols, own):
            cell = df[c].iloc[r]
            if cell is None or (isinstance(cell, float) and math.isnan(cell)) or str(cell).strip() == "":
                continue
            try:
                v = float(cell)
            except (TypeError, ValueError):
                raise ValueError(f"{where}: row {ids[r]!r}, column {c}: {cell!r} is not a number "
                                 "(soft-label cells hold vote counts or shares)") from None
            if v < 0 or math.isnan(v):
                raise ValueError(f"{where}: row {ids[r]!r}, column {c}: {v} is negative; soft labels are votes or shares")
            seen = True
            if lab in labels:
                vals[labels.index(lab)] += v
            elif v > 0:
                raise ValueError(f"{where}: row {ids[r]!r}, column {c}: votes for {lab!r}, which is not one of the "
                                 f"labels scored ({', '.join(labels)}); map it or drop the column")
        if seen and vals.sum() > 0:
            out[r] = vals / vals.sum()
    return labels, out


def _dist(x) -> np.ndarray:
    a = np.atleast_2d(np.asarray(x, dtype=float))
    if (a < -1e-12).any():
        raise ValueError("distributions must be non-negative")
    s = a.sum(1, keepdims=True)
    if (s <= 0).any():
        raise ValueError("every distribution needs some mass (a row sums to zero)")
    return a / s


def _xlogy2(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x > 0, x * np.log2(np.where(x > 0, x, 1.0) / np.where(y > 0, y, 1.0)), 0.0)


def entropy_bits(p) -> np.ndarray:
    """Entropy (bits) of each row. # [n, k] -> [n]"""
    p = _dist(p)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log2(np.where(p > 0, p, 1.0)), 0.0).sum(1)


def js_divergence(pred, soft) -> np.ndarray:
    """Jensen-Shannon divergence (bits, in [0, 1]) per row. # [n, k] x [n, k] -> [n]"""
    p, q = _dist(pred), _dist(soft)
    m = 0.5 * (p + q)
    return np.clip(0.5 * _xlogy2(p, m).sum(1) + 0.5 * _xlogy2(q, m).sum(1), 0.0, 1.0)


def kl_to_soft(pred, soft, eps: float = 1e-6) -> np.ndarray:
    """KL(annotation || prediction) in bits per row; the prediction floored at ``eps``. # -> [n]"""
    p = _dist(np.maximum(_dist(pred), eps))
    q = _dist(soft)
    return _xlogy2(q, p).sum(1)


def brier(pred, soft) -> np.ndarray:
    """Multi-class Brier score per row: sum over labels of (prediction - annotation)^2. # -> [n]"""
    return ((_dist(pred) - _dist(soft)) ** 2).sum(1)


def expected_calibration_error(pred, soft, n_bins: int = 10) -> float:
    """ECE with equal-width confidence bins; accuracy = the annotation's share of the predicted label."""
    p, q = _dist(pred), _dist(soft)
    top = p.argmax(1)
    conf = p[np.arange(len(p)), top]
    acc = q[np.arange(len(q)), top]
    # bin b holds conf in (b/n, (b+1)/n]; conf 0 goes to bin 0
    b = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    err = 0.0
    for k in range(n_bins):
        sel = b == k
        if sel.any():
            err += sel.mean() * abs(conf[sel].mean() - acc[sel].mean())
    return float(err)


def _top2(a: np.ndarray) -> np.ndarray:
    return np.argsort(-a, axis=1, kind="stable")[:, :2]


def top2_agreement(pred, soft) -> np.ndarray:
    """1.0 where the two most probable labels of prediction and annotation are the same set. # -> [n]"""
    tp, tq = _top2(_dist(pred)), _top2(_dist(soft))
    return np.array([float(set(a) == set(b)) for a, b in zip(tp, tq)])


def top1_in_top2(pred, soft) -> np.ndarray:
    """1.0 where the predicted label is one of the annotation's two most voted. # -> [n]"""
    p, tq = _dist(pred), _top2(_dist(soft))
    return np.array([float(a in b) for a, b in zip(p.argmax(1), tq)])


def majority_labels(soft, labels: Sequence[str]) -> list[str | None]:
    """The annotation's unique most voted label per row, None on a tie or a missing (NaN) row."""
    out: list[str | None] = []
    for row in np.atleast_2d(np.asarray(soft, dtype=float)):
        if np.isnan(row).any() or row.sum() <= 0:
            out.append(None)
            continue
        top = np.flatnonzero(np.isclose(row, row.max()))
        out.append(labels[int(top[0])] if len(top) == 1 else None)
    return out


def soft_scores(pred, soft, labels: Sequence[str], pred_labels: Sequence | None = None, *, n_bins: int = 10) -> dict:
    """Every distribution metric over the rows that have both a prediction and a soft label.

    ``pred``: [n, k] prediction distributions (rows of NaN = none given); ``soft``: [n, k] soft
    labels (NaN = unannotated); ``pred_labels``: the predicted labels for accuracy against the
    majority label (default: the prediction's argmax). Means over rows; ``n_soft`` rows scored.
    """
    pred = np.atleast_2d(np.asarray(pred, dtype=float))
    soft = np.atleast_2d(np.asarray(soft, dtype=float))
    if pred.shape != soft.shape or pred.shape[1] != len(labels):
        raise ValueError(f"soft_scores: prediction {pred.shape} and soft labels {soft.shape} must both be [n, {len(labels)}]")
    ok = ~np.isnan(pred).any(1) & ~np.isnan(soft).any(1) & (np.nan_to_num(pred).sum(1) > 0) & (np.nan_to_num(soft).sum(1) > 0)
    out: dict = {"n_soft": int(ok.sum())}
    if pred_labels is None:
        pred_labels = [labels[int(i)] if good else None for i, good in zip(np.nan_to_num(pred).argmax(1), ok)]
    maj = majority_labels(soft, labels)
    has = [m is not None for m in maj]
    out["n_majority"] = int(sum(has))
    out["accuracy_majority"] = (float(np.mean([p == m for p, m, h in zip(pred_labels, maj, has) if h]))
                                if any(has) else float("nan"))
    if not ok.any():
        out.update({k: float("nan") for k in SOFT_KEYS if k not in out})
        return out
    p, q = pred[ok], soft[ok]
    hp, hq = entropy_bits(p), entropy_bits(q)
    out.update(js=float(js_divergence(p, q).mean()), kl_to_soft=float(kl_to_soft(p, q).mean()),
               brier=float(brier(p, q).mean()), ece=expected_calibration_error(p, q, n_bins),
               top2_agreement=float(top2_agreement(p, q).mean()), top1_in_top2=float(top1_in_top2(p, q).mean()),
               entropy_pred=float(hp.mean()), entropy_soft=float(hq.mean()), entropy_gap=float(np.abs(hp - hq).mean()))
    return out


def prediction_matrix(rows, labels: Sequence[str], column: str = "probs") -> np.ndarray:
    """Rows' ``probs`` dicts as an [n, k] array in ``labels`` order; NaN rows where none was given."""
    out = np.full((len(rows), len(labels)), np.nan)
    for i, d in enumerate(rows[column] if column in getattr(rows, "columns", ()) else [None] * len(rows)):
        if isinstance(d, Mapping) and d:
            out[i] = [float(d.get(l, 0.0) or 0.0) for l in labels]
    return out


def score_soft_run(run_dir: str | Path, manifest=None, *, column: str = "probs", by: str = "condition") -> dict:
    """Distribution metrics of a run's rows against its manifest's soft labels, per condition.

    ``manifest``: a Manifest (default: the run's own, from manifest.json's ``data``). Returns {}
    when the manifest has no ``soft_<label>`` columns.
    """
    import json

    from probes.store import read_rows

    run_dir = Path(run_dir)
    if manifest is None:
        from probes.data.manifest import Manifest

        info = json.loads((run_dir / "manifest.json").read_text())
        manifest = Manifest.read(info["data"], check_audio=False)
    mdf = manifest.df
    if not soft_label_columns(mdf):
        return {}
    df = read_rows(run_dir)
    if df.empty:
        return {}
    # the labels scored: the soft columns' own, then any other label the predictions give mass to
    labels = [str(c)[len(SOFT_PREFIX):] for c in soft_label_columns(mdf)]
    for d in (df[column] if column in df.columns else []):
        if isinstance(d, Mapping):
            labels += [k for k in d if k not in labels]
    labels, soft = soft_labels(mdf, labels, where=str(getattr(manifest, "source", "manifest")))
    index = {u: i for i, u in enumerate(mdf["utt_id"].astype(str))}
    groups = df.groupby(by, sort=True) if by in df.columns else [("none", df)]
    out: dict = {"labels": list(labels)}
    for name, g in groups:
        keep = [index.get(str(u)) for u in g["utt_id"]]
        sel = [k is not None for k in keep]
        g = g[sel]
        s = soft[[k for k in keep if k is not None]]
        preds = g["pred"].tolist() if "pred" in g else None
        out[str(name)] = _clean(soft_scores(prediction_matrix(g, labels, column), s, labels, preds))
    return out
