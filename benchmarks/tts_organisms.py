"""Test-time scaling on the model organisms: does spending more compute move the answer?

For each organism (``--organisms``, default text-reliant and voice-reliant) and each strategy /
budget in ``CONFIGS``, runs ``probe run`` (in this process, through ``probes.cli.main``) on

- **conflict items**: emotional-text conflict items (emotional words, another emotional voice)
  of the default synthetic corpus' ``test`` split (speakers and sentences the organisms never
  saw), ``--n-conflict`` of them in a seeded order: the score is follows-voice (answer = the
  voice's label);
- **ambiguous items**: ``--n-ambiguous`` items of ``probes.data.synth.ambiguous`` (a voice blended
  between two emotions at a stated ratio, soft label = the blend; test speakers and sentences):
  the score is the Jensen-Shannon divergence (bits) between the strategy's distribution (``probs``:
  label scores, vote shares, beam weights; one-hot for a single answer) and the soft label.

Each figure is the mean over items with a percentile bootstrap 95 % interval (items resampled,
``--n-boot``), and each strategy's difference to greedy decoding (``tts-beam`` width 1) with a
*paired* bootstrap interval over the same items. Compute: forward passes, generated tokens and
wall seconds per utterance (means; wall time on a shared CPU is indicative only).

    .venv/bin/python benchmarks/tts_organisms.py --out runs/tts-organisms            # runs + table
    .venv/bin/python benchmarks/tts_organisms.py --out runs/tts-organisms --doc      # + docs/tts.md

Runs are resumed (a finished run folder is reused: delete it to re-run). The table records the
sha256 prefix of the weights file each organism was loaded from. ``--doc`` rewrites the block
between ``<!-- tts-organisms:begin -->`` and ``<!-- tts-organisms:end -->`` in docs/tts.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

# (name, probe, --set options): greedy first, it is the reference of every difference
CONFIGS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("greedy (beam 1)", "tts-beam", ("beam_width=1",)),
    ("label scores (predict)", "predict", ()),
    ("self-consistency n=2", "tts-self-consistency", ("n=2",)),
    ("self-consistency n=8", "tts-self-consistency", ("n=8",)),
    ("best-of-n n=8, weighted", "tts-best-of-n", ("n=8", "weighted=true")),
    ("beam 4", "tts-beam", ("beam_width=4",)),
)


def sha_prefix(path: Path, k: int = 12) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:k]


def conflict_manifest(out: Path, n: int, seed: int, corpus: Path | None) -> Path:
    """The default corpus' test-split emotional-conflict items, ``n`` in a seeded order."""
    import pandas as pd

    from probes.data.synth.design import unit
    from probes.metrics import conflict_type

    dest = out / "data" / "conflict" / "manifest.csv"
    if dest.exists():
        return dest
    if corpus is None:
        from probes.data.synth import build

        corpus = build(out / "data" / "synth", seed=0, progress=False)
    corpus = Path(corpus)
    if corpus.is_dir():
        corpus = corpus / "manifest.csv"
    df = pd.read_csv(corpus, dtype=str, keep_default_na=False)
    types = [conflict_type(a, s) for a, s in zip(df["acoustic_label"], df["semantic_label"])]
    sel = df[(df["split"] == "test") & (pd.Series(types, index=df.index) == "emotional-conflict")].copy()
    sel["_k"] = [unit(seed, "tts-organisms", u) for u in sel["utt_id"]]
    sel = sel.sort_values("_k").head(n).drop(columns="_k")
    sel["audio_path"] = [str((corpus.parent / p).resolve()) for p in sel["audio_path"]]
    dest.parent.mkdir(parents=True, exist_ok=True)
    sel.to_csv(dest, index=False)
    return dest


def ambiguous_manifest(out: Path, n: int, seed: int) -> Path:
    from probes.data.synth.ambiguous import build

    dest = out / "data" / "ambiguous"
    if (dest / "manifest.csv").exists():
        return dest / "manifest.csv"
    return build(dest, n=n, seed=seed, progress=False)


def run_one(organism: str, probe: str, sets: tuple[str, ...], data: Path, run_dir: Path, seed: int) -> Path:
    from probes.cli import main

    if (run_dir / "metrics.json").exists():
        return run_dir
    args = ["run", probe, "--model", "qwen2-audio", "--organism", organism, "--data", str(data), "--out", str(run_dir),
            "--quiet", "--seed", str(seed)]
    for s in sets:
        args += ["--set", s]
    t0 = time.perf_counter()
    rc = main(args)
    if rc != 0:
        raise SystemExit(f"probe run failed ({rc}): {' '.join(args)}")
    (run_dir / "bench_wall.json").write_text(json.dumps({"run_wall_s": time.perf_counter() - t0}))
    return run_dir


# ------------------------------------------------------------------------------ scoring
def per_item(run_dir: Path, kind: str) -> tuple[dict, dict, dict]:
    """({utt_id: score}, {utt_id: second score}, budget means). conflict: 1.0 when the answer is the
    voice's label (an invalid answer counts 0), second: the same for the words' label (follows-text);
    ambiguous: JS divergence to the soft label (a row without a distribution: NaN), second: 1.0 when
    the answer is the soft label's majority (NaN on a 50/50 blend)."""
    from probes.data.manifest import Manifest
    from probes.metrics import js_divergence, prediction_matrix, soft_labels
    from probes.store import read_rows

    df = read_rows(run_dir)
    info = json.loads((run_dir / "manifest.json").read_text())
    man = Manifest.read(info["data"], check_audio=False).df.set_index("utt_id", drop=False)
    if kind == "conflict":
        score = {u: float(p == man.loc[u, "acoustic_label"]) for u, p in zip(df["utt_id"], df["pred"])}
        second = {u: float(p == man.loc[u, "semantic_label"]) for u, p in zip(df["utt_id"], df["pred"])}
    else:
        labels, soft = soft_labels(man)
        soft_by = dict(zip(man["utt_id"], soft))
        pred = prediction_matrix(df, labels)
        for i, p in enumerate(df["pred"]):   # a single answer without scores: one-hot on it
            if np.isnan(pred[i]).any() and isinstance(p, str) and p in labels:
                pred[i] = [float(l == p) for l in labels]
        score = {}
        for u, row in zip(df["utt_id"], pred):
            score[u] = float("nan") if np.isnan(row).any() else float(js_divergence(row[None], soft_by[u][None])[0])
        from probes.metrics import majority_labels

        maj = dict(zip(man["utt_id"], majority_labels(soft, labels)))
        second = {u: (float("nan") if maj[u] is None else float(p == maj[u])) for u, p in zip(df["utt_id"], df["pred"])}
    budget = {}
    for k in ("forward_passes", "tokens_generated", "wall_s"):
        if k in df:
            budget[k] = float(df[k].mean())
    if "forward_passes" not in budget:
        # predict (closed-set label scores): one prefix pass and one batched pass over the label
        # continuations (KV cache), no token sampled; wall = the whole run / items (model cached)
        budget["forward_passes"] = 2.0
        budget["tokens_generated"] = 0.0
    if "wall_s" not in budget:
        w = run_dir / "bench_wall.json"
        budget["wall_s"] = json.loads(w.read_text())["run_wall_s"] / max(len(df), 1) if w.exists() else float("nan")
    return score, second, budget


def boot(x: np.ndarray, n_boot: int, seed: int) -> tuple[float, float, float]:
    x = x[~np.isnan(x)]
    if not len(x):
        return (float("nan"),) * 3
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), (n_boot, len(x)))].mean(1)
    return float(x.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def fmt(m: tuple[float, float, float], signed: bool = False) -> str:
    if np.isnan(m[0]):
        return "-"
    f = "{:+.2f}" if signed else "{:.2f}"
    return f"{f.format(m[0])} [{f.format(m[1])}, {f.format(m[2])}]"


def table(out: Path, organisms: list[str], n_boot: int, seed: int) -> str:
    res = json.loads((out / "results.json").read_text())
    lines = []
    for org in organisms:
        r = res[org]
        lines += [f"**{org}** (weights `{r['weights']}`, sha256 {r['sha256']}; {r['n_conflict']} conflict items, "
                  f"{r['n_ambiguous']} ambiguous items)", "",
                  "| strategy | forward passes / utt | tokens / utt | wall s / utt | follows-voice (conflict) | "
                  "Δ vs greedy | follows-text (conflict) | JS to soft label (ambiguous) | Δ vs greedy | "
                  "accuracy vs majority (ambiguous) |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        g_c = r["configs"][CONFIGS[0][0]]["conflict"]
        g_a = r["configs"][CONFIGS[0][0]]["ambiguous"]
        for name, _, _ in CONFIGS:
            c = r["configs"].get(name)
            if c is None:
                continue
            fv = np.array([c["conflict"][u] for u in sorted(g_c)])
            js = np.array([c["ambiguous"][u] for u in sorted(g_a)])
            fv0 = np.array([g_c[u] for u in sorted(g_c)])
            js0 = np.array([g_a[u] for u in sorted(g_a)])
            ft = np.array([c["conflict_text"][u] for u in sorted(g_c)])
            mj = np.array([c["ambiguous_majority"][u] for u in sorted(g_a)])
            b = c["budget_conflict"]
            ba = c["budget_ambiguous"]
            fp = (b["forward_passes"] + ba["forward_passes"]) / 2
            tk = (b["tokens_generated"] + ba["tokens_generated"]) / 2
            ws = (b["wall_s"] + ba["wall_s"]) / 2
            same = name == CONFIGS[0][0]
            lines.append(f"| {name} | {fp:.1f} | {tk:.1f} | {ws:.2f} | {fmt(boot(fv, n_boot, seed))} | "
                         f"{'-' if same else fmt(boot(fv - fv0, n_boot, seed), True)} | {fmt(boot(ft, n_boot, seed))} | "
                         f"{fmt(boot(js, n_boot, seed))} | {'-' if same else fmt(boot(js - js0, n_boot, seed), True)} | "
                         f"{fmt(boot(mj, n_boot, seed))} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "runs" / "tts-organisms"), help="folder for data, runs and results.json")
    ap.add_argument("--organisms", default="text-reliant,voice-reliant")
    ap.add_argument("--n-conflict", type=int, default=16)
    ap.add_argument("--n-ambiguous", type=int, default=20)
    ap.add_argument("--corpus", help="an existing default synthetic corpus (seed 0) to take conflict items from "
                                     "(default: build it into OUT/data/synth, ~2 min)")
    ap.add_argument("--configs", default="", help="comma-separated config names to run (default: all of CONFIGS)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--kv-cache", action="store_true", help="sample with the KV cache (kv_cache=true: the same tokens "
                                                          "as without, faster; beams stay uncached)")
    ap.add_argument("--doc", action="store_true", help="write the table into docs/tts.md")
    ap.add_argument("--table-only", action="store_true", help="only print (and with --doc write) the table from results.json")
    a = ap.parse_args(argv)
    out = Path(a.out)
    organisms = [o for o in a.organisms.split(",") if o]
    if not a.table_only:
        from probes.models.organisms import WEIGHTS_DIR

        out.mkdir(parents=True, exist_ok=True)
        conflict = conflict_manifest(out, a.n_conflict, a.seed, Path(a.corpus) if a.corpus else None)
        amb = ambiguous_manifest(out, a.n_ambiguous, a.seed)
        wanted = [c for c in CONFIGS if not a.configs or c[0] in a.configs.split(",")]
        res_path = out / "results.json"
        res = json.loads(res_path.read_text()) if res_path.exists() else {}
        for org in organisms:
            w = WEIGHTS_DIR / f"{org}.safetensors"
            sha = sha_prefix(w)
            r = res.get(org)
            if r is None or r.get("sha256") != sha:   # new weights: start over for this organism
                r = {"weights": str(w.relative_to(ROOT)) if w.is_relative_to(ROOT) else str(w), "sha256": sha, "configs": {}}
            for name, probe, sets in wanted:
                t0 = time.perf_counter()
                slug = name.replace(" ", "_").replace(",", "").replace("=", "").replace("(", "").replace(")", "")
                if a.kv_cache and probe in ("tts-self-consistency", "tts-best-of-n"):
                    sets = (*sets, "kv_cache=true")
                rc = run_one(org, probe, sets, conflict, out / sha / org / slug / "conflict", a.seed)
                ra = run_one(org, probe, sets, amb, out / sha / org / slug / "ambiguous", a.seed)
                sc, ft, bc = per_item(rc, "conflict")
                sa, mj, ba = per_item(ra, "ambiguous")
                r["configs"][name] = {"conflict": sc, "conflict_text": ft, "ambiguous": sa, "ambiguous_majority": mj,
                                      "budget_conflict": bc, "budget_ambiguous": ba}
                r.update(n_conflict=len(sc), n_ambiguous=len(sa))
                res[org] = r
                res_path.write_text(json.dumps(res, indent=1))
                print(f"{org} {name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    text = table(out, organisms, a.n_boot, a.seed)
    print(text)
    if a.doc:
        doc = ROOT / "docs" / "tts.md"
        s = doc.read_text()
        b, e = "<!-- tts-organisms:begin -->", "<!-- tts-organisms:end -->"
        if b not in s or e not in s:
            raise SystemExit(f"{doc}: no {b} ... {e} block to write the table into")
        s = s[: s.index(b) + len(b)] + "\n" + text + "\n" + s[s.index(e):]
        doc.write_text(s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
