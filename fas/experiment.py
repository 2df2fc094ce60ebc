"""The conflict experiment as a registered probe: ``probe run fas-conflict --model fas-untrained --data M``.

Reads a manifest with train / dev / test splits that hold out speakers and sentences (the
synthetic conflict corpus). For each conflict mix (0 %, 20 %, 50 % conflict items in training)
a training set of one fixed size is drawn from the train split (one draw per training seed, the
same for every arm); every arm is trained on it from scratch, once per seed, and predicts every
item of the test split. The probe goes through ``run_probe`` like any other: one unit per (test
utterance, condition ``<arm>@<mix>%``, seed index), rows written by the run store (resumable:
a (condition, seed) whose rows are all there is not trained again), ``metrics.json`` per
condition from ``probes.metrics``. Its summary adds the table the experiment is for
(``metrics.json["fas_table"]``, also ``results.csv`` / ``results.md``): per arm and mix, the
training accuracy beside accuracy on congruent items, follows-voice / follows-text on conflict
items and follows-text on the emotional-conflict items (emotional words, another emotional voice), each averaged over
seeds with a bootstrap interval over test items (and the range over seeds).

Arms (row labels; ``[asr]`` = faster-whisper transcript, ``[text]`` = the true text, both
through MiniLM): ``acoustic-only`` (the baseline every row stands beside), ``semantic-only``,
``concat``, ``gated``, ``fas``, ``fas-no-topk``, ``fas-no-queries``, and ``fas-voiced``: FAS
on eGeMAPS normalised with voiced-frame statistics and silence zeroed (OUR DEVIATION from the
paper's recipe, fas/features.py), beside ``fas`` with the per-speaker z-score over all frames.

Rows carry, besides the standard columns: ``arm``, ``fas_arm``, ``semantic``, ``acoustic_norm``,
``conflict_mix``, ``train_seed``, ``n_train``, ``train_accuracy``, ``train_loss``, and for arms
with queries ``attn_acoustic_mass``, ``kept_voiced_share`` (share of the kept acoustic patches
that are voiced) and ``voiced_share`` (share of all the utterance's patches that are voiced).
Files beside the rows: ``loss_curve.csv`` (arm, epoch, split, loss; first seed), the FAS
checkpoints of the first seed under ``checkpoints/``, ``transcripts.json`` / ``asr.json``
when an ``[asr]`` arm ran.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from probes.adapter import Adapter
from probes.probe import Probe, WorkItem
from probes.registry import MODELS, PROBES

SEMANTICS = {"asr": "asr-minilm", "text": "text-minilm"}
# row label base -> (FAS arm, acoustic normalisation)
BASES: dict[str, tuple[str, str]] = {
    "acoustic-only": ("fas-acoustic-only", "speaker"),
    "semantic-only": ("fas-semantic-only", "speaker"),
    "concat": ("fas-concat", "speaker"),
    "gated": ("fas-gated", "speaker"),
    "fas": ("fas", "speaker"),
    "fas-voiced": ("fas", "speaker-voiced"),      # our deviation: see fas/features.py
    "fas-no-topk": ("fas-no-topk", "speaker"),
    "fas-no-queries": ("fas-no-queries", "speaker"),
}
MAIN_ARMS = ("acoustic-only", "semantic-only[asr]", "semantic-only[text]", "concat[asr]", "concat[text]",
             "gated[asr]", "gated[text]", "fas[asr]", "fas[text]", "fas-voiced[asr]", "fas-voiced[text]")
ABLATION_ARMS = ("fas-no-topk[asr]", "fas-no-queries[asr]")
# the text-reliance table (issue 13 part 1): cheap enough for `make demo`
DEMO_ARMS = ("acoustic-only", "semantic-only[text]", "concat[text]", "fas[text]", "fas-voiced[text]")
COLUMNS = ("arm", "semantic", "acoustic_norm", "conflict_mix", "n_train", "n_test", "n_seeds",
           "train_accuracy", "train_accuracy_min", "train_loss", "accuracy_congruent", "accuracy", "uar",
           "follows_voice", "follows_text", "follows_text_emotional_conflict", "n_emotional_conflict",
           "attn_acoustic_mass", "kept_voiced_share", "voiced_share")
RATES = ("accuracy_congruent", "accuracy", "follows_voice", "follows_text", "follows_text_emotional_conflict")


@dataclass(frozen=True)
class ArmSpec:
    label: str
    arm: str
    semantic: str | None   # None: the arm never reads the semantic stream
    norm: str


def parse_arm(label: str) -> ArmSpec:
    """``concat[text]`` -> ArmSpec(label, "fas-concat", "text-minilm", "speaker")."""
    base, _, sem = label.strip().partition("[")
    sem = sem.rstrip("]")
    if base not in BASES:
        raise ValueError(f"FAS arm {label!r}: known arms are {', '.join(BASES)} (with [asr] or [text])")
    arm, norm = BASES[base]
    if arm == "fas-acoustic-only":
        if sem:
            raise ValueError(f"FAS arm {label!r}: acoustic-only reads no words; write it without [..]")
        return ArmSpec(label.strip(), arm, None, norm)
    if sem not in SEMANTICS:
        raise ValueError(f"FAS arm {label!r}: say which words it reads, {base}[asr] or {base}[text]")
    return ArmSpec(label.strip(), arm, SEMANTICS[sem], norm)


def condition_name(label: str, rate: float) -> str:
    return f"{label}@{int(round(rate * 100))}%"


def parse_condition(cond: str) -> tuple[ArmSpec, float]:
    label, _, pct = cond.rpartition("@")
    return parse_arm(label), float(pct.rstrip("%")) / 100


def _split_list(v: Any) -> list[str]:
    if isinstance(v, (list, tuple)):
        return [str(x).strip() for x in v if str(x).strip()]
    return [x.strip() for x in str(v).split(",") if x.strip()]


def mix_indices(train, rate: float, size: int, seed: int) -> list[int]:
    """A training set of ``size`` items of which ``round(rate * size)`` are conflict items."""
    rng = np.random.default_rng(seed)
    conflict = [i for i, (a, s) in enumerate(zip(train.acoustic_label, train.semantic_label)) if s and a != s]
    congruent = [i for i, (a, s) in enumerate(zip(train.acoustic_label, train.semantic_label)) if not s or a == s]
    n_c = int(round(rate * size))
    if n_c > len(conflict) or size - n_c > len(congruent):
        raise ValueError(f"cannot draw {size} items with {rate:.0%} conflict from {len(conflict)} conflict / "
                         f"{len(congruent)} congruent training items; pass a smaller size")
    pick = list(rng.choice(conflict, n_c, replace=False)) + list(rng.choice(congruent, size - n_c, replace=False))
    return sorted(int(i) for i in pick)


def largest_size(train, mixes: Sequence[float]) -> int:
    n_x = sum(1 for a, s in zip(train.acoustic_label, train.semantic_label) if s and a != s)
    n_c = len(train) - n_x
    return int(min(min(n_c / (1 - r) if r < 1 else 1e9, n_x / r if r > 0 else 1e9) for r in mixes))


# ------------------------------------------------------------------------------------ the model
@MODELS.register("fas-untrained")
class FASUntrained(Adapter):
    """FAS and its arms before training: the recipe that training probes (fas-conflict) fit themselves."""

    name: ClassVar[str] = "fas-untrained"
    weights: ClassVar[str] = "trained-here"

    @classmethod
    def from_cli(cls, **_: Any) -> "FASUntrained":
        return cls()

    def describe(self) -> dict:
        return {"name": self.name, "weights": self.weights,
                "pathways": {"acoustic": "egemaps (opensmile eGeMAPSv02 LLDs)",
                             "semantic": "MiniLM (all-MiniLM-L6-v2) of the true text or of the "
                                         "faster-whisper tiny.en transcript"},
                "note": "every arm is trained from scratch inside the run; no checkpoint is read"}

    def predict(self, examples):
        raise NotImplementedError(
            "fas-untrained has no weights: it is trained inside `probe run fas-conflict`. To run another "
            "probe on FAS, train a checkpoint with `probe fas train` and use --model fas --checkpoint CKPT.")


# ------------------------------------------------------------------------------------ the probe
@PROBES.register("fas-conflict")
@dataclass(frozen=True)
class FASConflict(Probe):
    """FAS and its baselines trained on 0/20/50 % conflict mixes; follows-voice/-text on held-out items."""

    name: ClassVar[str] = "fas-conflict"
    kind: ClassVar[str] = "predictions"

    arms: str = ",".join(MAIN_ARMS)   # comma-separated row labels (see BASES / parse_arm)
    mixes: str = "0,20,50"           # conflict share of the training set, in percent
    seeds: int = 3                   # training seeds per arm and mix (run seed, +1, ...)
    epochs: int = 60
    batch_size: int = 32
    lr: float = 1e-3
    size: int = 0                    # training items per mix; 0 = the largest every mix allows
    n_boot: int = 500
    instrument: bool = True          # attention mass and voiced share of kept patches (query arms)
    attributions: bool = False       # captum IG / ablation shares (slow)
    checkpoints: bool = True         # save the first seed's query-arm checkpoints under checkpoints/
    threads: int = 1                 # torch threads while training (one beats two here: docs/fas.md)
    workers: int = 2                 # feature extraction processes
    query_mixes: str = ""            # mixes for the arms with a query block (FAS: the slow ones); "" = mixes
    query_seeds: int = 0             # seeds for those arms; 0 = seeds
    single_mixes: str = ""           # mixes for the one-stream baselines (acoustic-only, semantic-only); "" = mixes

    def __post_init__(self):
        for label in self.arm_labels:
            parse_arm(label)
        if not self.rates or any(not 0 <= r < 1 for r in self.rates):
            raise ValueError(f"fas-conflict: mixes={self.mixes!r}: give percentages in [0, 100), e.g. 0,20,50")
        if self.seeds < 1:
            raise ValueError("fas-conflict: seeds must be at least 1")

    @property
    def arm_labels(self) -> list[str]:
        return _split_list(self.arms)

    @property
    def rates(self) -> list[float]:
        return [float(x) / 100 for x in _split_list(self.mixes)]

    @staticmethod
    def _is_query_arm(label: str) -> bool:
        return parse_arm(label).arm in ("fas", "fas-no-topk")

    @staticmethod
    def _is_single_arm(label: str) -> bool:
        return parse_arm(label).arm in ("fas-acoustic-only", "fas-semantic-only")

    def _extra_rates(self) -> list[float]:
        return [float(x) / 100 for x in _split_list(self.query_mixes) + _split_list(self.single_mixes)]

    def conditions(self) -> list[str]:
        q_rates = [float(x) / 100 for x in _split_list(self.query_mixes)] or self.rates
        s_rates = [float(x) / 100 for x in _split_list(self.single_mixes)] or self.rates

        def rates_of(a: str) -> list[float]:
            return q_rates if self._is_query_arm(a) else s_rates if self._is_single_arm(a) else self.rates

        return [condition_name(a, r) for r in sorted(set(self.rates) | set(q_rates) | set(s_rates))
                for a in self.arm_labels if r in rates_of(a)]

    def n_seeds(self, cond: str) -> int:
        return (self.query_seeds or self.seeds) if self._is_query_arm(cond.rpartition("@")[0]) else self.seeds

    def plan(self, data) -> list[WorkItem]:
        df = data.df
        for col in ("split", "acoustic_label", "semantic_label", "congruent", "speaker"):
            if col not in df.columns:
                raise ValueError(f"{data.source}: fas-conflict needs a {col!r} column (the synthetic corpus has it)")
        split = df["split"].astype(str)
        if not (split == "train").any() or not ((split == "test") & (df["congruent"].astype(str) == "false")).any():
            raise ValueError(f"{data.source}: fas-conflict needs a train split and conflict items in the test split "
                             "(speakers and sentences held out), as `probe data synth` writes")
        test = df.loc[split == "test", "utt_id"].tolist()
        return [WorkItem(u, c, (k,)) for c in self.conditions() for k in range(self.n_seeds(c)) for u in test]

    # ------------------------------------------------------------------ features
    def _streams(self, data, semantic: str, norm: str, ctx):
        from fas.train import load_streams

        key = ("fas-streams", semantic, norm)
        if key not in ctx.cache:
            raw = ctx.cache.setdefault("fas-raw", {})
            hashes = ctx.cache.setdefault("fas-hashes", {})
            ctx.cache[key] = load_streams(data, "egemaps", semantic, workers=self.workers, progress=ctx.progress,
                                          hashes=hashes, acoustic_norm=norm, raw=raw)
        return ctx.cache[key]

    def _default_semantic(self) -> str:
        sems = [parse_arm(a).semantic for a in self.arm_labels]
        return next((s for s in sems if s), "text-minilm")

    def _size(self, data, ctx) -> int:
        if self.size:
            return self.size
        if "fas-size" not in ctx.cache:
            st = self._streams(data, self._default_semantic(), "speaker", ctx)
            tr = [i for i, r in enumerate(st.rows) if r["split"] == "train"]
            rates = sorted(set(self.rates) | set(self._extra_rates()))
            ctx.cache["fas-size"] = largest_size(st.subset(tr), rates)
        return ctx.cache["fas-size"]

    # ------------------------------------------------------------------ one (condition, seed)
    def _fit(self, data, cond: str, k: int, ctx) -> dict[str, dict]:
        """Train one arm at one mix and seed; -> {utt_id: row} for the test items."""
        from fas.train import TrainConfig, predict_streams, save_checkpoint, train_arm, write_curve
        from probes.adapter import Example, Prediction
        from probes.probe import prediction_row

        spec, rate = parse_condition(cond)
        st = self._streams(data, spec.semantic or self._default_semantic(), spec.norm, ctx)
        split = [r["split"] for r in st.rows]
        tr_all = st.subset([i for i, s in enumerate(split) if s == "train"])
        dev_idx = [i for i, s in enumerate(split) if s == "dev"]
        te_idx = [i for i, s in enumerate(split) if s == "test"]
        seed = ctx.seed + k
        train = tr_all.subset(mix_indices(tr_all, rate, self._size(data, ctx), seed))
        tc = TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, seed=seed)
        model, curve, extra = train_arm(spec.arm, train, tc, dev=st.subset(dev_idx) if dev_idx else None,
                                        semantic=spec.semantic or "none")
        tr_pred, _ = predict_streams(model, train)
        train_acc = float(np.mean([p == a for p, a in zip(tr_pred, train.acoustic_label)]))
        train_loss = next((r["loss"] for r in reversed(curve) if r["split"] == "train"), float("nan"))
        test = st.subset(te_idx)
        pred, probs = predict_streams(model, test)
        inst = self._instrument(model, test) if self.instrument and model.block is not None else {}
        if k == 0 and ctx.run_dir is not None:
            _replace_curve(ctx.run_dir / "loss_curve.csv", cond, curve)
            if self.checkpoints and model.block is not None:
                save_checkpoint(model, ctx.run_dir / "checkpoints" / _safe(cond), extra={**extra, "condition": cond})
        common = {"arm": spec.label, "fas_arm": spec.arm, "semantic": spec.semantic or "-", "acoustic_norm": spec.norm,
                  "conflict_mix": rate, "train_seed": seed, "n_train": len(train),
                  "train_accuracy": round(train_acc, 6), "train_loss": round(float(train_loss), 6)}
        out = {}
        labels = model.cfg.labels
        for j, (u, p, row) in enumerate(zip(test.utt_ids, pred, test.rows)):
            extra_cols = dict(common)
            for name, vals in inst.items():
                extra_cols[name] = round(float(vals[j]), 6)
            pr = Prediction(label=p, probs={l: float(v) for l, v in zip(labels, probs[j])}, extra=extra_cols)
            out[u] = prediction_row(Example(utt_id=u, row=row), cond, pr)
        return out

    def _instrument(self, model, test) -> dict[str, np.ndarray]:
        from fas.instrument import inspect
        from fas.train import collate

        cols: dict[str, list[float]] = {}
        s = model.cfg.patch_aco
        for b in range(0, len(test), 64):
            batch = collate(test.aco[b : b + 64], test.sem[b : b + 64])
            for j, r in enumerate(inspect(model, batch, with_attributions=self.attributions)):
                for name in ("attn_acoustic_mass", "ig_acoustic_share", "ablation_acoustic_share"):
                    if name in r:
                        cols.setdefault(name, []).append(r[name])
                voiced = test.meta.get("voiced")
                if voiced is not None and "kept_acoustic" in r:
                    v = np.asarray(voiced[b + j], dtype=float)
                    n_p = int(np.ceil(len(v) / s))
                    patch_v = np.array([v[i * s:(i + 1) * s].mean() > 0.5 for i in range(n_p)])
                    kept = [i for i in r["kept_acoustic"] if i < n_p]
                    cols.setdefault("kept_voiced_share", []).append(float(patch_v[kept].mean()) if kept else float("nan"))
                    cols.setdefault("voiced_share", []).append(float(patch_v.mean()) if n_p else float("nan"))
        return {k: np.asarray(v) for k, v in cols.items()}

    def execute(self, model, data, items, ctx):
        import torch

        if self.threads:
            # the models are small: one thread beats two on a shared 2-core CPU (7x in docs/fas.md)
            torch.set_num_threads(self.threads)
        groups: dict[tuple[str, int], list[WorkItem]] = {}
        for it in items:
            groups.setdefault((it.condition, int(it.key[0]) if it.key else 0), []).append(it)
        for (cond, k), its in groups.items():
            try:
                rows = self._fit(data, cond, k, ctx)
            except Exception as e:  # noqa: BLE001 - a failing arm becomes error rows, as a failing utterance does
                if ctx.strict:
                    raise
                for it in its:
                    yield it, e
                continue
            if ctx.progress:
                r0 = next(iter(rows.values()))
                print(f"[fas] {cond:28s} seed {r0['train_seed']}: train acc {r0['train_accuracy']:.3f}", flush=True)
            for it in its:
                yield it, [rows[it.utt_id]]
        if ctx.run_dir is not None and "fas-streams" in str(ctx.cache.keys()):
            _write_transcripts(data, ctx)

    def summarize(self, run_dir: Path) -> dict:
        from probes.metrics import score_run
        from probes.store import read_rows

        out = score_run(run_dir, n_boot=self.n_boot)
        table = fas_table(read_rows(run_dir), n_boot=self.n_boot)
        out["fas_table"] = table
        write_tables(table, Path(run_dir))
        return out


def _safe(cond: str) -> str:
    return cond.replace("[", "-").replace("]", "").replace("@", "-").replace("%", "pct")


def _replace_curve(path: Path, cond: str, curve: list[dict]) -> None:
    import pandas as pd

    from fas.train import write_curve

    if path.exists():
        old = pd.read_csv(path)
        old[old["arm"] != cond].to_csv(path, index=False)
    write_curve([{**r, "arm": cond} for r in curve], path)


def _write_transcripts(data, ctx) -> None:
    for (_, sem, _), st in [(k, v) for k, v in ctx.cache.items() if isinstance(k, tuple) and k[0] == "fas-streams"]:
        tr = st.meta.get("transcripts") if sem == "asr-minilm" else None
        if tr:
            (ctx.run_dir / "transcripts.json").write_text(json.dumps(tr, indent=1))
            (ctx.run_dir / "asr.json").write_text(json.dumps(asr_error(data, tr), indent=2))
            return


# ------------------------------------------------------------------------------------ the table
def fas_table(df, *, n_boot: int = 500, seed: int = 0) -> list[dict]:
    """Per condition: rates averaged over training seeds, 95 % bootstrap intervals over test items.

    ``follows_text_emotional_conflict``: follows-text on the items of the ``emotional-conflict`` type
    (probes.metrics.conflict_type: the words carry an emotion, the voice another, non-neutral one).
    """
    from probes.metrics import bootstrap_ci, conflict_type, uar

    if df.empty or "condition" not in df.columns or "arm" not in df.columns:
        return []
    if "error" in df.columns:
        df = df[df["error"].isna()] if df["error"].notna().any() else df
    out = []
    order = list(dict.fromkeys(df["condition"]))
    for cond in order:
        g = df[df["condition"] == cond]
        piv = g.pivot_table(index="utt_id", columns="train_seed", values="pred", aggfunc="first")
        first = g.drop_duplicates("utt_id").set_index("utt_id").loc[piv.index]
        a = first["acoustic_label"].astype(str).to_numpy()
        s = first["semantic_label"].fillna("").astype(str).to_numpy()
        P = piv.to_numpy(dtype=object).T                                        # [seeds, items]
        conflict = (s != "") & (a != s)
        # the emotional-conflict type (probes.metrics): emotional words, another emotional voice
        emotional = np.array([conflict_type(x, y) == "emotional-conflict" for x, y in zip(a, s)])
        subsets = {"accuracy_congruent": (~conflict, a), "accuracy": (np.ones_like(conflict), a),
                   "follows_voice": (conflict, a), "follows_text": (conflict, s),
                   "follows_text_emotional_conflict": (emotional, s)}
        r0 = g.iloc[0]
        row: dict = {"condition": cond, "arm": r0["arm"], "semantic": r0["semantic"], "acoustic_norm": r0["acoustic_norm"],
                     "conflict_mix": float(r0["conflict_mix"]), "n_train": int(r0["n_train"]),
                     "n_test": int(conflict.sum()), "n_seeds": int(P.shape[0]),
                     "n_emotional_conflict": int(emotional.sum())}
        per_seed_acc = g.drop_duplicates("train_seed")["train_accuracy"].astype(float)
        row["train_accuracy"], row["train_accuracy_min"] = float(per_seed_acc.mean()), float(per_seed_acc.min())
        row["train_loss"] = float(g.drop_duplicates("train_seed")["train_loss"].astype(float).mean())
        for name, (mask, target) in subsets.items():
            if not mask.any():
                row[name], row[f"{name}_ci"], row[f"{name}_seeds"] = float("nan"), [None, None], []
                continue
            hit = (P[:, mask] == target[mask][None, :]).astype(float)           # [seeds, items]
            per_item = hit.mean(0)
            row[name] = float(per_item.mean())
            lo, hi = bootstrap_ci(lambda x: float(np.mean(x.astype(float))), per_item, n_boot=n_boot, seed=seed)
            row[f"{name}_ci"] = [lo, hi]
            row[f"{name}_seeds"] = [float(v) for v in hit.mean(1)]
        row["uar"] = float(np.mean([uar(a[conflict], [str(x) for x in P[i, conflict]]) for i in range(P.shape[0])])) \
            if conflict.any() else float("nan")
        for name in ("attn_acoustic_mass", "kept_voiced_share", "voiced_share", "ig_acoustic_share",
                     "ablation_acoustic_share"):
            if name in g.columns and g[name].notna().any():
                row[name] = float(g[name].astype(float).mean())
        out.append(row)
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


def _fmt(v, ci=None, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "-"
    if ci and ci[0] is not None and not np.isnan(ci[0]):
        return f"{v:.{digits}f} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def write_tables(results: list[dict], out: Path) -> None:
    """``results.csv`` (flat, one row per condition) and ``results.md`` from ``fas_table``."""
    import pandas as pd

    if not results:
        return
    flat = []
    for r in results:
        d = {k: r.get(k) for k in COLUMNS}
        for k in RATES:
            lo, hi = (r.get(f"{k}_ci") or [None, None])
            d[f"{k}_lo"], d[f"{k}_hi"] = lo, hi
            seeds = r.get(f"{k}_seeds") or []
            d[f"{k}_seed_min"], d[f"{k}_seed_max"] = (min(seeds), max(seeds)) if seeds else (None, None)
        flat.append(d)
    pd.DataFrame(flat).to_csv(out / "results.csv", index=False)
    lines = ["| conflict in training | arm | train acc (min) | congruent acc | follows-voice | follows-text | "
             "follows-text, emotional conflict | attn acoustic | kept voiced / all voiced |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        kv = r.get("kept_voiced_share")
        voiced = f"{kv:.2f} / {r.get('voiced_share', float('nan')):.2f}" if kv is not None else "-"
        lines.append("| " + " | ".join([
            f"{int(round(r['conflict_mix'] * 100))} %", r["arm"],
            f"{r['train_accuracy']:.2f} ({r['train_accuracy_min']:.2f})",
            *[_fmt(r.get(k), r.get(f"{k}_ci")) for k in ("accuracy_congruent", "follows_voice", "follows_text",
                                                         "follows_text_emotional_conflict")],
            _fmt(r.get("attn_acoustic_mass")), voiced,
        ]) + " |")
    n = results[0]
    head = (f"Tested on the test split (held-out speakers and sentences): {n['n_test']} conflict items "
            f"({n['n_emotional_conflict']} of the emotional-conflict type: emotional words, another emotional voice); {n['n_train']} training items per mix; "
            f"{n['n_seeds']} training seed(s) per arm, rates averaged over seeds; 95 % bootstrap intervals "
            "over test items. Accuracy and follows-voice are against the voice's label.\n\n")
    (out / "results.md").write_text(head + "\n".join(lines) + "\n")


def run_experiment(
    data_path: str | Path,
    out: str | Path,
    *,
    mixes: Sequence[float] = (0.0, 0.2, 0.5),
    arms: Sequence[str] = MAIN_ARMS,
    tc=None,
    seeds: int = 1,
    size: int | None = None,
    workers: int = 2,
    n_boot: int = 500,
    instrument: bool = True,
    attributions: bool = False,
    progress: bool = True,
    threads: int | None = 1,
) -> Path:
    """`probe fas experiment`: the fas-conflict probe through run_probe (a thin wrapper)."""
    from fas.train import TrainConfig
    from probes.data.manifest import Manifest
    from probes.probe import run_probe

    tc = tc or TrainConfig(epochs=60, batch_size=32, lr=1e-3)
    probe = FASConflict(arms=",".join(a if isinstance(a, str) else a[0] for a in arms),
                        mixes=",".join(str(int(round(r * 100))) for r in mixes), seeds=seeds, epochs=tc.epochs,
                        batch_size=tc.batch_size, lr=tc.lr, size=size or 0, n_boot=n_boot, instrument=instrument,
                        attributions=attributions, threads=threads or 0, workers=workers)
    return run_probe(probe, FASUntrained(), Manifest.read(data_path), out, seed=tc.seed, batch_size=10**6,
                     progress=progress)


def run_nq_sweep(
    data_path: str | Path,
    out: str | Path,
    *,
    n_queries: Sequence[int] = (1, 2, 4, 8),
    mix: float = 0.0,
    semantic: str = "asr-minilm",
    tc=None,
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

    from fas.train import TrainConfig, evaluate, load_streams, train_arm, write_curve

    tc = tc or TrainConfig(epochs=40, batch_size=32)

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
