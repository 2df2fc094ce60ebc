"""The instruments checked against the organisms: ``python -m probes.models.organisms.validate``.

What it does: on the ``test`` split of the organisms' synthetic corpus (speakers and sentences
never seen in training), for each organism
1. the **causal ground truth**, with input-level interventions through ``adapter.predict``:
   transcript dropped (``transcript=""``), transcript swapped (another test item's text with
   another text label), audio span zeroed at the input embeddings, audio swapped (the same
   sentence spoken with another voice emotion). Each gives the share of answers that change and,
   for swaps, the share that moves to the donor's label, with bootstrap 95 % intervals;
2. the **instruments**, run as ordinary probes through ``probes.probe.run_probe`` (so they take the
   organism exactly as the CLI gives it): ``modality-ablation``, ``attention-share``,
   ``linear-probe``, ``activation-patching`` (audio span), ``logit-lens``, ``attribution``;
3. the table ``instrument | what the causal ground truth predicts | what it measured | agrees?``,
   written to ``OUT/validation.md`` (and ``OUT/validation.json``); ``--doc`` also replaces the
   table between the markers in docs/organisms.md.

Run folders land in ``OUT/<organism>/<probe>`` (default OUT = runs/organisms). About 10-20 min
on 2 busy cores; ``--limit N`` takes the first N test items per slow probe, whole sentence groups first
(``pair_order``), so activation patching always finds same-sentence pairs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from probes.models.organisms.train import corpus, predict_labels, rate_ci, read_manifest

ORGS = ("text-reliant", "voice-reliant")
SLOW = ("modality-ablation", "activation-patching", "attribution")  # the probes ``--limit`` applies to
INSTRUMENTS = ("predict", "modality-ablation", "attention-share", "linear-probe", "activation-patching", "logit-lens",
               "attribution", "token-all")  # what run_instruments runs, in this order


def _fmt(ci) -> str:
    m, lo, hi = ci
    return "-" if m != m else f"{m:.2f} [{lo:.2f}, {hi:.2f}]"


def _diff_ci(a, b, n_boot: int = 2000, seed: int = 0):
    """Difference of two independent means with a bootstrap interval."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    rng = np.random.default_rng(seed)
    d = a[rng.integers(0, len(a), (n_boot, len(a)))].mean(1) - b[rng.integers(0, len(b), (n_boot, len(b)))].mean(1)
    return float(a.mean() - b.mean()), float(np.quantile(d, 0.025)), float(np.quantile(d, 0.975))


# ------------------------------------------------------------------------------------ causal ground truth
def donors(df, key_same: str | None, key_diff: str, seed: int) -> list[int | None]:
    """For each row, a donor row index: same ``key_same`` (if given), different ``key_diff``."""
    rng = np.random.default_rng(seed)
    out = []
    for i, r in df.iterrows():
        ok = df[key_diff] != r[key_diff]
        if key_same:
            ok &= df[key_same] == r[key_same]
        idx = np.flatnonzero(ok.to_numpy())
        out.append(int(rng.choice(idx)) if len(idx) else None)
    return out


def causal(a, df, wavs, seed: int = 0) -> dict:
    from probes.adapter import Edit
    from probes.models.organisms.train import examples

    df = df.reset_index(drop=True)
    exs = examples(df, wavs)
    base = predict_labels(a, exs)
    out: dict = {"n": len(df)}
    drop = predict_labels(a, [e.with_(transcript="") for e in exs])
    out["transcript_dropped_changed"] = rate_ci(drop != base)
    d = donors(df, None, "semantic_label", seed)
    sw = predict_labels(a, [e.with_(transcript=df["text"][j]) for e, j in zip(exs, d)])
    dl = df["semantic_label"].to_numpy()[d]
    out["transcript_swapped_changed"] = rate_ci(sw != base)
    out["transcript_swapped_follows_donor"] = rate_ci(sw == dl)
    z = predict_labels(a, [e.with_(edits=(Edit(kind="ablate", span="audio", layer="input", mode="zero"),)) for e in exs])
    out["audio_zeroed_changed"] = rate_ci(z != base)
    d2 = donors(df, "sentence_id", "acoustic_label", seed)
    keep = [i for i, j in enumerate(d2) if j is not None]
    asw = predict_labels(a, [exs[i].with_(audio=exs[d2[i]].audio) for i in keep])
    al = df["acoustic_label"].to_numpy()[[d2[i] for i in keep]]
    out["audio_swapped_changed"] = rate_ci(asw != base[keep])
    out["audio_swapped_follows_donor"] = rate_ci(asw == al)
    conf = ((df["acoustic_label"] != df["semantic_label"]) & (df["semantic_label"] != "neutral")).to_numpy()
    out["follows_text"] = rate_ci(base[conf] == df["semantic_label"].to_numpy()[conf])
    out["follows_voice"] = rate_ci(base[conf] == df["acoustic_label"].to_numpy()[conf])
    out["n_emotional_conflict"] = int(conf.sum())
    out["_raw"] = {"drop_changed": (drop != base).astype(int).tolist(), "audio_changed": (z != base).astype(int).tolist()}
    return out


def pair_order(df, seed: int = 0):
    """The test items in an order whose every prefix of 5 or more holds same-sentence pairs.

    Sentences in a seeded random order, each sentence's items together (a test sentence is spoken
    in 4-5 voice emotions): ``--limit N`` on the slow probes then keeps whole sentence groups, so
    activation patching finds pairs (same sentence, other voice emotion). A plain shuffle did not:
    12 shuffled items of 305 held no pair."""
    rng = np.random.default_rng(seed)
    sents = list(dict.fromkeys(df["sentence_id"]))
    rank = {s: k for k, s in enumerate(rng.permutation(sents))}
    key = df["sentence_id"].map(rank).to_numpy() * 1000 + np.arange(len(df)) % 1000
    return df.iloc[np.argsort(key, kind="stable")].reset_index(drop=True)


def train_manifest(man: Path) -> Path:
    """The corpus' train split as its own manifest beside it (the cue bins' reference set)."""
    import pandas as pd

    out = man.with_name("manifest-train.csv")
    df = pd.read_csv(man, dtype=str, keep_default_na=False)
    df[df["split"] == "train"].to_csv(out, index=False)
    return out


# ------------------------------------------------------------------------------------ instruments
def run_instruments(a, name: str, man: Path, df_test, out: Path, *, limit: int | None, seed: int, log=print,
                    only: tuple[str, ...] | None = None) -> dict:
    from probes.data.manifest import Manifest
    from probes.probe import run_probe
    from probes.registry import PROBES

    data = Manifest.read(man)
    order = {u: k for k, u in enumerate(df_test["utt_id"])}
    mask = data.df["utt_id"].isin(order)
    data = data.subset(mask)
    data.df = data.df.assign(_o=data.df["utt_id"].map(order)).sort_values("_o").drop(columns="_o").reset_index(drop=True)
    plan = {
        "predict": ({}, None),
        "modality-ablation": ({}, limit),
        "attention-share": ({}, None),
        "linear-probe": ({"pools": ("last", "audio-mean")}, None),
        "activation-patching": ({"spans": ("audio",)}, limit),
        "logit-lens": ({}, None),
        "attribution": ({"n_steps": 16}, limit),
        "token-all": ({"reference": str(train_manifest(man))}, None),
    }
    assert tuple(plan) == INSTRUMENTS
    dirs = {}
    for probe, (opts, lim) in plan.items():
        if only and probe not in only:
            continue
        t0 = time.time()
        d = out / name / probe
        try:
            p = PROBES[probe](**opts)
        except TypeError:  # an option this version of the probe does not have
            p = PROBES[probe](**{k: v for k, v in opts.items() if k != "pools"})
        try:
            run_probe(p, a, data, d, seed=seed, batch_size=16, progress=False, limit=lim)
            dirs[probe] = d
            log(f"  {name} {probe}: {time.time() - t0:.0f} s")
        except Exception as e:  # an instrument that fails is reported, not hidden
            dirs[probe] = e
            log(f"  {name} {probe}: FAILED {type(e).__name__}: {e}")
    return dirs


def _rows(d):
    from probes.store import read_rows

    return read_rows(d)


def _per_utt(df, metric, span=None, layer=None, col="value"):
    q = df[df["metric"] == metric]
    if span is not None:
        q = q[q["span"] == span]
    if layer is not None:
        q = q[q["layer"] == layer]
    return q.groupby("utt_id")[col].mean()


def measure(dirs: dict) -> dict:
    """What each instrument measured (means with bootstrap intervals over utterances)."""
    m: dict = {}
    d = dirs.get("predict")
    if isinstance(d, Path):
        r = _rows(d)
        r = r[(r["acoustic_label"] != r["semantic_label"]) & (r["semantic_label"] != "neutral")]
        m["pred.follows_text"] = rate_ci(r["pred"] == r["semantic_label"])
        m["pred.follows_voice"] = rate_ci(r["pred"] == r["acoustic_label"])
    d = dirs.get("modality-ablation")
    if isinstance(d, Path):
        every = _rows(d)
        r = every[(every["acoustic_label"] != every["semantic_label"]) & (every["semantic_label"] != "neutral")]
        for c in ("none", "audio-ablated", "audio-silenced", "transcript-swapped"):
            q = r[r["condition"] == c]
            m[f"ma.{c}.follows_text"] = rate_ci(q["pred"] == q["semantic_label"])
            m[f"ma.{c}.follows_voice"] = rate_ci(q["pred"] == q["acoustic_label"])
        # share of answers the condition changes, on every item it ran on: the ground truth's own measure
        base = every[every["condition"] == "none"].set_index("utt_id")["pred"]
        for c in ("audio-ablated", "audio-silenced", "transcript-swapped"):
            q = every[every["condition"] == c].set_index("utt_id")["pred"]
            if len(q):
                m[f"ma.{c}.changed"] = rate_ci((q != base.reindex(q.index)).to_numpy())
    d = dirs.get("token-all")
    if isinstance(d, Path):
        r = _rows(d)
        base = r[r["condition"] == "none"].set_index("utt_id")["pred"]
        for c in sorted(set(r["condition"]) - {"none"}):
            q = r[r["condition"] == c].set_index("utt_id")
            m[f"tok.{c}.changed"] = rate_ci((q["pred"] != base.reindex(q.index)).to_numpy())
            cf = q[(q["acoustic_label"] != q["semantic_label"]) & (q["semantic_label"] != "neutral")]
            m[f"tok.{c}.follows_text"] = rate_ci(cf["pred"] == cf["semantic_label"])
    d = dirs.get("attention-share")
    if isinstance(d, Path):
        r = _rows(d)
        r = r[r["metric"] == "share"]
        layers = sorted(r["layer"].unique())
        for sp in ("audio", "transcript"):
            v = r[r["span"] == sp].groupby("utt_id")["value"].mean()
            m[f"att.{sp}"] = rate_ci(v.to_numpy())
            m[f"att.{sp}.by_layer"] = [round(float(r[(r["span"] == sp) & (r["layer"] == l)]["value"].mean()), 3) for l in layers]
    d = dirs.get("linear-probe")
    if isinstance(d, Path):
        import pandas as pd

        for pool in ("last", "audio-mean"):
            f = d / "probe-scores" / f"{pool}.csv"
            if f.exists():
                s = pd.read_csv(f)
                for tgt in ("acoustic", "semantic"):
                    q = s[s["target"] == tgt].sort_values("layer")
                    m[f"lp.{pool}.{tgt}"] = [round(float(x), 3) for x in q["score"]]
    d = dirs.get("activation-patching")
    if isinstance(d, Path):
        r = _rows(d)
        r = r[(r["span"] == "audio") & r["value"].notna()]
        # ``shift``: probability moved toward the source's voice label, the size of the effect;
        # ``shift_norm`` divides it by how far the source's own answer is, so it cannot say how
        # much an answer depends on the voice (a model whose answer hardly moves has a tiny divisor)
        for metric, key, clip in (("shift", "patch.input", None), ("shift_norm", "patch.input_norm", (-1, 2))):
            q = r[r["metric"] == metric]
            if len(q):
                v = q[q["layer"] == q["layer"].min()].groupby("utt_id")["value"].mean()
                m[key] = rate_ci(v.clip(*clip) if clip else v)
                m[f"{key}.n"] = int(len(v))
                m[key.replace("input", "by_layer")] = [round(float(q[q["layer"] == l]["value"].mean()), 3)
                                                       for l in sorted(q["layer"].unique())]
    d = dirs.get("logit-lens")
    if isinstance(d, Path):
        r = _rows(d)
        last = r["layer"].max()
        for k in ("top_is_text", "top_is_voice"):
            q = r[r["metric"] == k]
            m[f"lens.{k}.by_layer"] = [round(float(q[q["layer"] == l]["value"].mean()), 3) for l in sorted(q["layer"].unique())]
        q = r[(r["metric"] == "p_voice")]
        if "top" in r.columns:
            tops = r[r["metric"] == "p_voice"].pivot_table(index="utt_id", columns="layer", values="top", aggfunc="first")
            final = tops[last]
            first = [min([l for l in tops.columns if all(tops.loc[u, k] == final[u] for k in tops.columns if k >= l)]) for u in tops.index]
            m["lens.settle_layer"] = rate_ci(np.array(first, float) / max(1, last))
            m["lens.n_layers"] = int(last)
    d = dirs.get("attribution")
    if isinstance(d, Path):
        r = _rows(d)
        for meth in ("ig", "ablation"):
            for sp in ("audio", "transcript"):
                q = r[(r["method"] == meth) & (r["metric"] == "share") & (r["span"] == sp)]
                if len(q):
                    m[f"attr.{meth}.{sp}"] = rate_ci(q.groupby("utt_id")["value"].mean().to_numpy())
    for probe in SLOW:  # how many test items each slow probe ran on (the table's header says)
        d = dirs.get(probe)
        if isinstance(d, Path):
            m[f"n.{probe}"] = int(_rows(d)["utt_id"].nunique())
    for k, v in list(m.items()):
        if isinstance(v, tuple):
            m[k] = [round(float(x), 3) for x in v]
    return m


# ------------------------------------------------------------------------------------ the table
def _gt(c, k):
    return _fmt(c[k])


def _gap(x, y):
    """x clearly above y: the intervals do not overlap."""
    return x[1] > y[2]


def table(gt: dict, ms: dict) -> tuple[str, list[dict]]:
    T, V = "text-reliant", "voice-reliant"
    gT, gV = gt[T], gt[V]
    mT, mV = ms[T], ms[V]
    words_more = _gap(gT["transcript_dropped_changed"], gV["transcript_dropped_changed"])
    voice_more = _gap(gV["audio_zeroed_changed"], gT["audio_zeroed_changed"])
    rows: list[dict] = []

    def add(inst, pred, meas, agree):
        rows.append({"instrument": inst, "prediction": pred, "measured": meas,
                     "agrees": "-" if agree is None else ("yes" if agree else "**no**")})

    def both(key, f=_fmt):
        return f"TR {f(mT[key]) if key in mT else '-'}; VR {f(mV[key]) if key in mV else '-'}"

    def ok(key_hi_org, key):
        hi, lo = (mT, mV) if key_hi_org == T else (mV, mT)
        if key not in hi or key not in lo:
            return None
        return bool(hi[key][1] > lo[key][2])

    add("behaviour (`predict`): follows-text on emotional-text conflict items",
        "TR > VR (a swapped transcript changes " + f"{_fmt(gT['transcript_swapped_changed'])} of TR's answers, VR's {_fmt(gV['transcript_swapped_changed'])}); 'no' = intervals overlap",
        both("pred.follows_text"), ok(T, "pred.follows_text"))
    add("behaviour (`predict`): follows-voice on the same items", "VR > TR (swapping the audio changes " + f"{_fmt(gV['audio_swapped_changed'])} of VR's answers, TR's {_fmt(gT['audio_swapped_changed'])})", both("pred.follows_voice"), ok(V, "pred.follows_voice"))
    if "ma.audio-ablated.changed" in mT:
        add("modality ablation: audio span zeroed (`audio-ablated`), share of answers changed",
            f"VR's answers change far more than TR's (GT, audio span zeroed on every test item: VR {_fmt(gV['audio_zeroed_changed'])}, "
            f"TR {_fmt(gT['audio_zeroed_changed'])})",
            f"changed: TR {_fmt(mT['ma.audio-ablated.changed'])}; VR {_fmt(mV['ma.audio-ablated.changed'])} "
            f"(conflict items: follows-voice VR {_fmt(mV['ma.none.follows_voice'])} -> {_fmt(mV['ma.audio-ablated.follows_voice'])}; "
            f"follows-text TR {_fmt(mT['ma.none.follows_text'])} -> {_fmt(mT['ma.audio-ablated.follows_text'])})",
            ok(V, "ma.audio-ablated.changed"))
    if "ma.transcript-swapped.changed" in mT:
        add("modality ablation: transcript swapped (`transcript-swapped`), share of answers changed",
            f"TR's answers change far more than VR's (GT, transcript swapped on every test item: TR {_fmt(gT['transcript_swapped_changed'])}, "
            f"VR {_fmt(gV['transcript_swapped_changed'])})",
            f"changed: TR {_fmt(mT['ma.transcript-swapped.changed'])}; VR {_fmt(mV['ma.transcript-swapped.changed'])} "
            f"(conflict items, follows-text vs the item's own text: TR {_fmt(mT['ma.none.follows_text'])} -> "
            f"{_fmt(mT['ma.transcript-swapped.follows_text'])}; VR {_fmt(mV['ma.none.follows_text'])} -> "
            f"{_fmt(mV['ma.transcript-swapped.follows_text'])})",
            ok(T, "ma.transcript-swapped.changed"))
    if "att.transcript" in mT:
        add("attention share of the answer position on the transcript (mean over blocks, heads)",
            "if attention tracked use: TR > VR" + ("" if words_more else " (GT does not separate them)"),
            both("att.transcript"), ok(T, "att.transcript"))
        add("attention share on the audio span", "if attention tracked use: VR > TR", both("att.audio"), ok(V, "att.audio"))
    for pool, tgt, hi, what in (("last", "semantic", T, "the words' emotion at the answer position"),
                                ("last", "acoustic", V, "the voice's emotion at the answer position"),
                                ("audio-mean", "acoustic", None, "the voice's emotion in the audio span")):
        k = f"lp.{pool}.{tgt}"
        if k in mT:
            last = lambda x: x[-1]  # noqa: E731
            if hi is None:
                pred = "present in both (the same frozen Whisper ear; the projector is trained in both)"
                agree = bool(last(mT[k]) > 0.3 and last(mV[k]) > 0.3)
            else:
                pred = f"{'TR' if hi == T else 'VR'} > {'VR' if hi == T else 'TR'} at the last layer (what the answer reads)"
                a_, b_ = (mT[k], mV[k]) if hi == T else (mV[k], mT[k])
                agree = bool(last(a_) > last(b_) + 0.05)
            add(f"linear probe: {what} (UAR by residual layer 0..L, held-out speakers x sentences)", pred,
                f"TR {mT[k]}; VR {mV[k]}", agree)
    if "patch.input" in mT:
        norm = (f"; normalised by the source's own distance (shift_norm, not judged: it divides the effect's size out) "
                f"{both('patch.input_norm')}" if "patch.input_norm" in mT else "")
        add("activation patching: audio span from the same sentence in another voice emotion, at the input "
            "(shift: probability moved to the source's voice label)",
            f"VR moves toward the source's voice label far more than TR (GT, audio swapped: answers change VR "
            f"{_fmt(gV['audio_swapped_changed'])}, TR {_fmt(gT['audio_swapped_changed'])})",
            f"shift {both('patch.input')}; by layer 0..L TR {mT.get('patch.by_layer', '-')}, VR {mV.get('patch.by_layer', '-')}{norm}",
            ok(V, "patch.input"))
    if "lens.top_is_text.by_layer" in mT:
        add("logit lens: last-layer top label = text label (share of conflict+congruent items, by layer)",
            "TR's final layer names the text label far more often than VR's (no prediction for the middle layers)",
            f"TR {mT['lens.top_is_text.by_layer']}; VR {mV['lens.top_is_text.by_layer']}",
            bool(mT["lens.top_is_text.by_layer"][-1] > mV["lens.top_is_text.by_layer"][-1] + 0.2))
    for meth in ("ig", "ablation"):
        if f"attr.{meth}.transcript" in mT:
            add(f"attribution ({meth}): share of the transcript span", "TR > VR", both(f"attr.{meth}.transcript"),
                ok(T, f"attr.{meth}.transcript"))
            add(f"attribution ({meth}): share of the audio span", "VR > TR", both(f"attr.{meth}.audio"), ok(V, f"attr.{meth}.audio"))
    conds = sorted(k.split(".")[1] for k in mT if k.startswith("tok.") and k.endswith(".changed"))
    if conds:
        add("cue tokens (`token-all`): share of answers changed by the cue line, per arm (" + ", ".join(conds) + ")",
            "none for either organism: neither saw a cue line in training (the cue words reach them through the MiniLM "
            "token table only), and the words' route reads the transcript span, not the cue line",
            "; ".join(f"{c}: TR {_fmt(mT[f'tok.{c}.changed'])}, VR {_fmt(mV[f'tok.{c}.changed'])}" for c in conds), None)
    lines = ["| instrument | what the causal ground truth predicts (TR = text-reliant, VR = voice-reliant) | what it measured (mean [95 % CI]) | agrees? |",
             "|---|---|---|---|"]
    lines += [f"| {r['instrument']} | {r['prediction']} | {r['measured']} | {r['agrees']} |" for r in rows]
    return "\n".join(lines), rows


def gt_table(gt: dict) -> str:
    keys = [("transcript_dropped_changed", "transcript dropped: answers changed"),
            ("transcript_swapped_changed", "transcript swapped: answers changed"),
            ("transcript_swapped_follows_donor", "transcript swapped: answer = donor's text label"),
            ("audio_zeroed_changed", "audio span zeroed: answers changed"),
            ("audio_swapped_changed", "audio swapped (same sentence, other voice): answers changed"),
            ("audio_swapped_follows_donor", "audio swapped: answer = donor's voice label"),
            ("follows_text", "follows-text, emotional-text conflict items"),
            ("follows_voice", "follows-voice, same items")]
    orgs = list(gt)
    lines = ["| intervention (test split) | " + " | ".join(orgs) + " |", "|---|" + "---|" * len(orgs)]
    lines += [f"| {label} | " + " | ".join(_fmt(gt[o][k]) for o in orgs) + " |" for k, label in keys]
    return "\n".join(lines)


def _prefill(man: Path, df, wavs) -> None:
    """Tower states of the corpus from the training cache, when there (the tower is frozen: same states)."""
    import hashlib

    from probes.models.organisms.model import remember_states
    from probes.models.organisms.train import CACHE

    path = CACHE / f"tower-{hashlib.sha256(man.read_bytes()).hexdigest()[:16]}.safetensors"
    if path.exists():
        from safetensors.torch import load_file

        got = load_file(str(path))
        keep = [u for u in df["utt_id"] if u in got]
        remember_states([wavs[u] for u in keep], [got[u] for u in keep])


def _slow_counts(ms: dict, limit) -> str:
    """'modality-ablation on the first 80, ...': the test items each slow probe ran on, from its rows
    (a probe rerun with another ``--limit`` says its own number), else the ``--limit`` asked for."""
    parts = []
    for probe in SLOW:
        ns = {m.get(f"n.{probe}") for m in ms.values()} - {None}
        parts.append(f"{probe} on the first {'/'.join(str(x) for x in sorted(ns)) if ns else limit}")
    return ", ".join(parts)


def write_between(doc: Path, tag: str, text: str) -> None:
    """Replace what stands between ``<!-- TAG:begin -->`` and ``<!-- TAG:end -->`` in ``doc``."""
    s = doc.read_text()
    a_, b_ = f"<!-- {tag}:begin -->", f"<!-- {tag}:end -->"
    if a_ in s and b_ in s:
        doc.write_text(s[: s.index(a_) + len(a_)] + "\n" + text + "\n" + s[s.index(b_):])
        print(f"wrote the tables into {doc}")
    else:
        print(f"{doc}: no {a_} ... {b_} markers; tables not written there")


def main(argv=None) -> int:
    import torch

    from probes.models.organisms import load
    from probes.models.organisms.train import load_wavs

    ap = argparse.ArgumentParser(prog="python -m probes.models.organisms.validate", description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", help="synthetic corpus folder (default .cache/dissonance/organisms/corpus)")
    ap.add_argument("--out", default="runs/organisms")
    ap.add_argument("--limit", type=int, default=32, help="test items for the slow probes (modality-ablation, patching, attribution)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, help="only the first N test items (whole sentence groups in a seeded order; a quick look)")
    ap.add_argument("--weights", help="folder of the organisms' weights (default: the committed ones)")
    ap.add_argument("--name", action="append", choices=ORGS, help="organism(s) to measure now (default: both); "
                    "the tables are written once every organism has a result in --out")
    ap.add_argument("--probes", help="comma-separated subset of the instruments (default: all)")
    ap.add_argument("--table-only", action="store_true", help="write the tables from what --out holds (no model runs)")
    ap.add_argument("--skip-instruments", action="store_true", help="only the causal ground truth")
    ap.add_argument("--doc", action="store_true", help="also write the tables into docs/organisms.md")
    args = ap.parse_args(argv)
    unknown = sorted(set(args.probes.split(",")) - set(INSTRUMENTS)) if args.probes else []
    if unknown:  # before the minutes of the causal ground truth
        ap.error(f"--probes {','.join(unknown)}: not an instrument of the validation; choose from {','.join(INSTRUMENTS)}")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    t0 = time.time()
    man = corpus(Path(args.corpus) if args.corpus else None)
    df = read_manifest(man)
    te = pair_order(df[df["split"] == "test"].reset_index(drop=True), args.seed)
    if args.n:
        te = te.iloc[: args.n].reset_index(drop=True)
    wavs = load_wavs(man, te)
    _prefill(man, te, wavs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in ([] if args.table_only else (args.name or ORGS)):
        a = load("qwen2-audio", name, weights_dir=args.weights)
        a.cache_size = max(a.cache_size, len(te) + 8)
        res = {"n_test_items": len(te), "limit": args.limit, "gt": causal(a, te, wavs, seed=args.seed)}
        print(f"{name}: causal ground truth done ({time.time() - t0:.0f} s)", flush=True)
        if not args.skip_instruments:
            dirs = run_instruments(a, name, man, te, out, limit=args.limit, seed=args.seed,
                                   log=lambda s: print(s, flush=True),
                                   only=tuple(args.probes.split(",")) if args.probes else None)
            for d in sorted((out / name).iterdir()):  # instruments not rerun now: what their folders hold
                if d.is_dir() and (d / "metrics.json").exists():
                    dirs.setdefault(d.name, d)
            res["measured"] = measure(dirs)
            res["failed"] = {k: f"{type(v).__name__}: {v}" for k, v in dirs.items() if isinstance(v, Exception)}
        (out / name).mkdir(parents=True, exist_ok=True)
        (out / name / "result.json").write_text(json.dumps(res, indent=1, default=str))
    missing = [o for o in ORGS if not (out / o / "result.json").exists()]
    if missing:
        print(f"tables wait for {', '.join(missing)} (run with --name for them; the same --out)")
        return 0
    parts = {o: json.loads((out / o / "result.json").read_text()) for o in ORGS}
    gt = {o: {k: (tuple(v) if isinstance(v, list) and len(v) == 3 and k != "_raw" else v) for k, v in p["gt"].items()}
          for o, p in parts.items()}
    ms = {o: p["measured"] for o, p in parts.items() if "measured" in p}
    for o in ORGS:  # the run folders are the record: measure what they hold (runs made separately, cut short, or older)
        dirs = {d.name: d for d in (out / o).iterdir() if d.is_dir() and (d / "metrics.json").exists()}
        if dirs:
            ms[o] = measure(dirs)
    failed = {o: p.get("failed") for o, p in parts.items() if p.get("failed")}
    raw = {k: v.pop("_raw") for k, v in gt.items()}
    n = parts[ORGS[0]]["n_test_items"]
    slow = _slow_counts(ms, parts[ORGS[0]]["limit"])
    md = [f"Test split: {n} items (held-out speakers and sentences); {slow}. Mean [bootstrap 95 % interval over items].", "",
          "### Causal ground truth (input-level interventions, `adapter.predict`)", "", gt_table(gt), ""]
    if len(ms) == len(ORGS):
        tab, rows = table(gt, ms)
        md += ["### Instruments against it", "", tab, ""]
    if failed:
        md += ["Instruments that failed: " + "; ".join(f"{o} {k}: {v}" for o, f in failed.items() for k, v in f.items()), ""]
    text = "\n".join(md)
    (out / "validation.md").write_text(text + "\n")
    (out / "validation.json").write_text(json.dumps({"ground_truth": gt, "measured": ms, "raw": raw}, indent=1, default=str))
    print(text)
    if args.doc:
        docs = Path(__file__).resolve().parents[3] / "docs"
        write_between(docs / "organisms.md", "validation", text)
        if len(ms) == len(ORGS):
            write_between(docs / "inside.md", "organisms-validation",
                          f"Measured on the organisms' test split ({n} items; {slow}) "
                          "by `python -m probes.models.organisms.validate --doc`; the causal ground truth it is judged "
                          "against is in docs/organisms.md.\n\n" + tab)
    print(f"done in {time.time() - t0:.0f} s; run folders under {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
