"""The conflict experiment: does FAS follow the voice when the words disagree?

Reads a manifest with train / dev / test splits that hold out speakers and sentences (the
synthetic conflict corpus). For each conflict mix (0 %, 20 %, 50 % conflict items) a training
set of one fixed size is drawn from the train split; every arm is trained on it and tested on the
conflict items of the test split. Arms: acoustic-only (the baseline every row stands beside),
and semantic-only, concat, gated and FAS, each with the ASR transcript and with the true text
through MiniLM. Scores are against the acoustic label (accuracy, UAR, macro-F1) plus the
follows-voice / follows-text rates, with bootstrap 95 % intervals (probes.metrics).

For the FAS arms it also records why: the queries' attention mass on acoustic tokens and the
acoustic share of integrated-gradients and stream-ablation attributions (fas/instrument.py).

Writes into the run folder: ``results.csv`` / ``results.json`` / ``results.md`` (one table),
``loss_curve.csv`` (arm, epoch, split, loss), ``rows.jsonl`` (one prediction per test item and
condition ``<arm>@<mix>``, so `probe score` and the report read it), ``manifest.json`` (config,
seed, versions, git SHA) and the FAS checkpoints under ``checkpoints/``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np

from fas.train import Streams, TrainConfig, evaluate, load_streams, predict_streams, save_checkpoint, train_arm, write_curve

# (row label, FAS arm, semantic pathway)
MAIN_ARMS: tuple[tuple[str, str, str], ...] = (
    ("acoustic-only", "fas-acoustic-only", "asr-minilm"),
    ("semantic-only[asr]", "fas-semantic-only", "asr-minilm"),
    ("semantic-only[text]", "fas-semantic-only", "text-minilm"),
    ("concat[asr]", "fas-concat", "asr-minilm"),
    ("concat[text]", "fas-concat", "text-minilm"),
    ("gated[asr]", "fas-gated", "asr-minilm"),
    ("gated[text]", "fas-gated", "text-minilm"),
    ("fas[asr]", "fas", "asr-minilm"),
    ("fas[text]", "fas", "text-minilm"),
)
ABLATION_ARMS: tuple[tuple[str, str, str], ...] = (
    ("fas-no-topk[asr]", "fas-no-topk", "asr-minilm"),
    ("fas-no-queries[asr]", "fas-no-queries", "asr-minilm"),
)
COLUMNS = ("arm", "semantic", "conflict_mix", "n_train", "n_test", "accuracy", "uar", "macro_f1",
           "follows_voice", "follows_text", "text_dominance", "attn_acoustic_mass", "ig_acoustic_share",
           "ablation_acoustic_share")


def mix_indices(train: Streams, rate: float, size: int, seed: int) -> list[int]:
    """A training set of ``size`` items of which ``round(rate * size)`` are conflict items."""
    rng = np.random.default_rng(seed)
    conflict = [i for i, (a, s) in enumerate(zip(train.acoustic_label, train.semantic_label)) if s and a != s]
    congruent = [i for i, (a, s) in enumerate(zip(train.acoustic_label, train.semantic_label)) if not s or a == s]
    n_c = int(round(rate * size))
    if n_c > len(conflict) or size - n_c > len(congruent):
        raise ValueError(f"cannot draw {size} items with {rate:.0%} conflict from {len(conflict)} conflict / "
                         f"{len(congruent)} congruent training items; pass a smaller --size")
    pick = list(rng.choice(conflict, n_c, replace=False)) + list(rng.choice(congruent, size - n_c, replace=False))
    return sorted(int(i) for i in pick)


def largest_size(train: Streams, mixes: Sequence[float]) -> int:
    n_x = sum(1 for a, s in zip(train.acoustic_label, train.semantic_label) if s and a != s)
    n_c = len(train) - n_x
    return int(min(min(n_c / (1 - r) if r < 1 else 1e9, n_x / r if r > 0 else 1e9) for r in mixes))


def run_experiment(
    data_path: str | Path,
    out: str | Path,
    *,
    mixes: Sequence[float] = (0.0, 0.2, 0.5),
    arms: Sequence[tuple[str, str, str]] = MAIN_ARMS,
    tc: TrainConfig = TrainConfig(epochs=40, batch_size=32),
    size: int | None = None,
    workers: int = 2,
    n_boot: int = 500,
    instrument: bool = True,
    progress: bool = True,
    threads: int | None = 1,
) -> Path:
    import torch

    from probes.data.manifest import Manifest
    from probes.store import RunStore

    if threads:
        # the models are small: one thread beats two on a shared 2-core CPU (7x in docs/fas.md)
        torch.set_num_threads(threads)

    out = Path(out)
    data = Manifest.read(data_path)
    t0 = time.time()
    sems = sorted({s for _, _, s in arms})
    hashes: dict = {}
    streams = {s: load_streams(data, "egemaps", s, workers=workers, progress=progress, hashes=hashes) for s in sems}
    t_feat = time.time() - t0
    split = np.array(data.df["split"])
    conflict = np.array(data.df["congruent"]) == "false"
    tr_idx = np.where(split == "train")[0].tolist()
    dev_idx = np.where(split == "dev")[0].tolist()
    te_idx = np.where((split == "test") & conflict)[0].tolist()
    if not tr_idx or not te_idx:
        raise ValueError(f"{data_path}: needs a train split and conflict items in the test split")
    size = size or largest_size(streams[sems[0]].subset(tr_idx), mixes)

    store = RunStore(out)
    store.write_manifest({
        "probe": "fas-experiment", "probe_kind": "predictions", "model": {"name": "fas", "weights": "real"},
        "weights": "real", "data": str(data.source), "data_sha256": data.sha256(), "n_utterances": len(data), "seed": tc.seed,
        "config": {"mixes": list(mixes), "arms": [list(a) for a in arms], "train": asdict(tc), "size": size,
                   "test": "conflict items of the test split (held-out speakers and sentences)",
                   "acoustic": "egemaps LLD, per-speaker z-score", "n_boot": n_boot, "threads": threads},
    })
    curve_path = out / "loss_curve.csv"
    if curve_path.exists():
        curve_path.unlink()
    results = []
    for rate in mixes:
        for label, arm, sem in arms:
            st = streams[sem]
            train = st.subset(mix_indices(st.subset(tr_idx), rate, size, tc.seed))
            dev = st.subset(dev_idx) if dev_idx else None
            test = st.subset(te_idx)
            tag = f"{label}@{int(round(rate * 100))}%"
            model, curve, extra = train_arm(arm, train, tc, dev=dev, semantic=sem)
            write_curve([{**r, "arm": tag} for r in curve], curve_path)
            sc = evaluate(model, test, n_boot=n_boot, seed=tc.seed)
            row = {"arm": label, "semantic": sem if arm != "fas-acoustic-only" else "-", "conflict_mix": rate,
                   "n_train": len(train), "n_test": len(test), **{k: v for k, v in sc.items()}}
            if instrument and model.block is not None:
                from fas.instrument import summarize

                row.update(summarize(model, test))
            results.append(row)
            pred, probs = predict_streams(model, test)
            if not store.done(tag):
                store.append(tag, [
                    {"utt_id": u, "condition": tag, "pred": p, "acoustic_label": r["acoustic_label"],
                     "semantic_label": r["semantic_label"], "congruent": r["congruent"], "speaker": r["speaker"],
                     "sentence_id": r["sentence_id"], "split": r["split"], "corpus": r["corpus"]}
                    for u, p, r in zip(test.utt_ids, pred, test.rows)])
            if arm == "fas":
                save_checkpoint(model, out / "checkpoints" / tag.replace("[", "-").replace("]", "").replace("@", "-").replace("%", "pct"), extra=extra)
            if progress:
                print(f"[fas] {tag:28s} acc {row['accuracy']:.3f} uar {row['uar']:.3f} "
                      f"follows-voice {row['follows_voice']:.3f} follows-text {row['follows_text']:.3f}", flush=True)
    store.close()
    write_tables(results, out)
    transcripts = streams.get("asr-minilm").meta.get("transcripts", {}) if "asr-minilm" in streams else {}
    if transcripts:
        (out / "transcripts.json").write_text(json.dumps(transcripts, indent=1))
        (out / "asr.json").write_text(json.dumps(asr_error(data, transcripts), indent=2))
    (out / "timing.json").write_text(json.dumps({"features_s": t_feat, "total_s": time.time() - t0}, indent=2))
    from probes.metrics import score_run

    (out / "metrics.json").write_text(json.dumps(score_run(out), indent=2, default=str))
    return out


def asr_error(data, transcripts: dict[str, str]) -> dict:
    """Word error rate of the transcripts against the manifest text (Levenshtein over words)."""
    import re

    def words(s):
        return re.findall(r"[a-z']+", s.lower())

    err = n = 0
    for r in data.rows():
        ref, hyp = words(r["text"]), words(transcripts.get(r["utt_id"], ""))
        d = list(range(len(hyp) + 1))
        for i, rw in enumerate(ref, 1):
            prev, d[0] = d[0], i
            for j, hw in enumerate(hyp, 1):
                prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (rw != hw))
        err += d[-1]
        n += len(ref)
    return {"wer": err / max(1, n), "n_words": n, "n_utterances": len(data)}


def _fmt(v, ci=None) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "-"
    if ci and ci[0] is not None and not np.isnan(ci[0]):
        return f"{v:.3f} [{ci[0]:.2f}, {ci[1]:.2f}]"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def write_tables(results: list[dict], out: Path) -> None:
    import pandas as pd

    flat = []
    for r in results:
        d = {k: r.get(k) for k in COLUMNS}
        for k in ("accuracy", "uar", "macro_f1", "follows_voice", "follows_text"):
            lo, hi = (r.get(f"{k}_ci") or [None, None])
            d[f"{k}_lo"], d[f"{k}_hi"] = lo, hi
        flat.append(d)
    pd.DataFrame(flat).to_csv(out / "results.csv", index=False)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=float))
    lines = ["| conflict mix | arm | accuracy | UAR | macro-F1 | follows-voice | follows-text | attn acoustic | IG acoustic | ablation acoustic |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append("| " + " | ".join([
            f"{int(round(r['conflict_mix'] * 100))} %", r["arm"],
            *[_fmt(r.get(k), r.get(f"{k}_ci")) for k in ("accuracy", "uar", "macro_f1", "follows_voice", "follows_text")],
            *[_fmt(r.get(k)) for k in ("attn_acoustic_mass", "ig_acoustic_share", "ablation_acoustic_share")],
        ]) + " |")
    n = results[0]
    head = (f"Tested on {n['n_test']} conflict items of held-out speakers and sentences; {n['n_train']} training items "
            "per mix. Scores against the acoustic label; follows-* on conflict items; 95 % bootstrap intervals.\n\n")
    (out / "results.md").write_text(head + "\n".join(lines) + "\n")


def run_nq_sweep(
    data_path: str | Path,
    out: str | Path,
    *,
    n_queries: Sequence[int] = (1, 2, 4, 8),
    mix: float = 0.0,
    semantic: str = "asr-minilm",
    tc: TrainConfig = TrainConfig(epochs=40, batch_size=32),
    size: int | None = None,
    workers: int = 2,
    n_boot: int = 500,
    progress: bool = True,
    threads: int | None = 1,
) -> Path:
    """The ablation over the number of learnable queries N_q (the FAS paper's Figure 4).

    Trains FAS once per N_q on the same training items (``mix`` share of conflict items) and scores
    it on the conflict items of the test split. Writes ``nq_ablation.csv`` (``n_q, metric, value``,
    the format ``probes.plots.ablation_curve`` draws), ``loss_curve.csv`` and ``manifest.json``.
    """
    import pandas as pd
    import torch

    from probes.data.manifest import Manifest
    from probes.store import RunStore

    if threads:
        torch.set_num_threads(threads)
    out = Path(out)
    data = Manifest.read(data_path)
    st = load_streams(data, "egemaps", semantic, workers=workers, progress=progress)
    split = np.array(data.df["split"])
    conflict = np.array(data.df["congruent"]) == "false"
    tr_idx = np.where(split == "train")[0].tolist()
    te_idx = np.where((split == "test") & conflict)[0].tolist()
    if not tr_idx or not te_idx:
        raise ValueError(f"{data_path}: needs a train split and conflict items in the test split")
    size = size or largest_size(st.subset(tr_idx), (mix,))
    train = st.subset(mix_indices(st.subset(tr_idx), mix, size, tc.seed))
    test = st.subset(te_idx)
    store = RunStore(out)
    store.write_manifest({
        "probe": "fas-nq-sweep", "probe_kind": "sweep", "model": {"name": "fas", "weights": "real"},
        "weights": "real", "data": str(data.source), "data_sha256": data.sha256(), "n_utterances": len(data),
        "seed": tc.seed, "config": {"n_queries": list(n_queries), "mix": mix, "semantic": semantic,
                                    "train": asdict(tc), "size": size, "n_boot": n_boot},
    })
    store.close()
    curve_path = out / "loss_curve.csv"
    if curve_path.exists():
        curve_path.unlink()
    rows = []
    for nq in n_queries:
        model, curve, _ = train_arm("fas", train, tc, semantic=semantic, overrides={"n_queries": int(nq)})
        write_curve([{**r, "arm": f"N_q={nq}"} for r in curve], curve_path)
        sc = evaluate(model, test, n_boot=n_boot, seed=tc.seed)
        for metric in ("accuracy", "uar", "macro_f1", "follows_voice", "follows_text"):
            lo, hi = sc.get(f"{metric}_ci") or [None, None]
            rows.append({"n_q": int(nq), "metric": metric, "value": sc[metric], "lo": lo, "hi": hi})
        if progress:
            print(f"[fas] N_q={nq:<3d} acc {sc['accuracy']:.3f} uar {sc['uar']:.3f} follows-text {sc['follows_text']:.3f}", flush=True)
    pd.DataFrame(rows).to_csv(out / "nq_ablation.csv", index=False)
    return out
