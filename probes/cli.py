"""The ``probe`` command. Imports stay lazy: ``probe --help`` and ``probe score`` never load torch.

Subcommands:
  list      probes | models | interventions | corpora
  data      import CORPUS PATH | show MANIFEST | synth --out DIR
  run       PROBE --model M --data MANIFEST [--out RUNDIR]
  score     PREDICTIONS.csv | RUNDIR  (foreign prediction tables with presets, or a run folder)
  report    RUNDIR  (self-contained HTML page)
  merge     RUNDIR... --out RUNDIR  (shards of one run)
  demo      the embedded default end to end
Other packages add their own subcommands (``cues``, ``fas``, ``figures``) through EXTENSIONS:
each module there has ``add_commands(subparsers)`` and must be cheap to import.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

EXTENSIONS = ("interventions.cli", "fas.cli", "probes.figures_cli")

def _score_presets() -> dict:
    """The column mappings of ``probe score`` (probes.metrics.PRESETS, the one place they live)."""
    from probes.metrics import PRESETS

    return PRESETS


class CLIError(Exception):
    """A user error: printed as one line, exit code 2."""


def _parse_shard(s: str | None):
    if not s:
        return None
    try:
        i, n = (int(x) for x in s.split("/"))
        assert 0 <= i < n
        return i, n
    except Exception:
        raise CLIError(f"--shard {s!r}: write it as I/N with 0 <= I < N, e.g. 0/4") from None


def _parse_sets(pairs: list[str]) -> dict:
    out = {}
    for p in pairs or []:
        if "=" not in p:
            raise CLIError(f"--set {p!r}: write it as NAME=VALUE")
        k, v = p.split("=", 1)
        try:
            out[k.replace("-", "_")] = json.loads(v)
        except json.JSONDecodeError:
            out[k.replace("-", "_")] = v
    return out


# ---------------------------------------------------------------------------------- list
def cmd_list(args) -> int:
    from probes.registry import CORPORA, INTERVENTIONS, MODELS, PROBES, summary

    reg = {"probes": PROBES, "models": MODELS, "interventions": INTERVENTIONS, "corpora": CORPORA}[args.what]
    for name, obj in reg.items():
        print(f"{name:24s} {summary(obj)}")
    return 0


# ---------------------------------------------------------------------------------- data
def cmd_data_import(args) -> int:
    from probes.registry import CORPORA

    corpus = CORPORA[args.corpus]
    opts = _parse_sets(args.set)
    if args.label_map:
        opts["label_map"] = json.loads(Path(args.label_map).read_text())
    manifest = corpus.load(Path(args.path), **opts)
    out = Path(args.out or f"runs/data/{args.corpus}/manifest.csv")
    path = manifest.write(out)
    print(f"wrote {path} ({len(manifest)} utterances)")
    _print_counts(manifest)
    return 0


def _print_counts(m) -> None:
    for col, counts in m.counts().items():
        if col == "speaker" and len(counts) > 30:
            print(f"  {col}: {len(counts)} distinct")
            continue
        print(f"  {col}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))


def cmd_data_show(args) -> int:
    from probes.data.manifest import Manifest

    m = Manifest.read(args.manifest, check_audio=not args.no_audio_check)
    print(f"{m.source}: {len(m)} utterances")
    _print_counts(m)
    if args.json:
        print(json.dumps(m.counts(), indent=2))
    return 0


def cmd_data_synth(args) -> int:
    from probes.data.synth import build

    path = build(Path(args.out), seed=args.seed, n=args.n, conflict_rate=args.conflict_rate, progress=not args.quiet)
    print(f"wrote {path}")
    return 0


# ---------------------------------------------------------------------------------- run
def model_options(args) -> dict:
    return {k: v for k, v in {
        "model_path": args.model_path, "tiny": args.tiny, "checkpoint": args.checkpoint,
        "device": args.device, "dtype": args.dtype, "trust_remote_code": args.trust_remote_code,
        "answer_mode": args.answer_mode,
    }.items() if v not in (None, False)}


def cmd_run(args) -> int:
    from probes.data.manifest import Manifest
    from probes.probe import run_probe
    from probes.registry import MODELS, PROBES
    from probes.store import default_run_dir

    shard = _parse_shard(args.shard)
    probe_cls = PROBES[args.probe]
    model_cls = MODELS[args.model]
    data = Manifest.read(args.data)
    try:
        probe = probe_cls(**_parse_sets(args.set))
    except TypeError as e:
        names = ", ".join(n for n, _, _ in probe_cls.options()) or "none"
        raise CLIError(f"probe {args.probe}: {e}; its options are: {names}") from None
    model = model_cls.from_cli(**model_options(args))
    dataset = Path(args.data).resolve().parent.name if Path(args.data).suffix else Path(args.data).name
    out = Path(args.out) if args.out else default_run_dir(args.probe, args.model, dataset)
    run_probe(probe, model, data, out, seed=args.seed, batch_size=args.batch_size, strict=args.strict,
              shard=shard, limit=args.limit, progress=not args.quiet, too_long=args.too_long)
    print(f"run folder: {out}")
    if model.weights == "random":
        print("note: this model has RANDOM weights (a tiny test instance); its numbers are not results.")
    _print_metrics(out)
    return 0


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def _print_metrics(run_dir: Path) -> None:
    p = Path(run_dir) / "metrics.json"
    if not p.exists():
        return
    m = json.loads(p.read_text())
    conds = m.get("conditions") or {}
    if conds:
        keys = ("n", "invalid", "accuracy", "uar", "macro_f1", "follows_voice", "follows_text", "text_dominance")
        print(f"{'condition':16s}" + "".join(f"{k:>15s}" for k in keys))
        for c, s in conds.items():
            print(f"{c:16s}" + "".join(f"{_fmt(s.get(k)):>15s}" for k in keys))
    if m.get("errors"):
        print(f"{m['errors']} utterance(s) failed: see {Path(run_dir) / 'errors.jsonl'}")


# ---------------------------------------------------------------------------------- score
def cmd_score(args) -> int:
    import pandas as pd

    from probes.metrics import score_frame

    presets = _score_presets()
    src = Path(args.file)
    if src.is_dir():
        from probes.store import read_rows

        df = read_rows(src)
        if df.empty:
            raise CLIError(f"{src}: the run folder has no rows yet")
        preset = dict(presets["run"])
        if "condition" in df.columns and df["condition"].nunique() > 1:
            preset["group"] = "condition"
    else:
        if not src.exists():
            raise CLIError(f"{src}: no such file")
        try:
            df = pd.read_csv(src, dtype=str, keep_default_na=False) if src.suffix != ".jsonl" else pd.read_json(src, lines=True, dtype=False)
        except Exception as e:
            raise CLIError(f"{src}: cannot read the table ({e})") from None
        preset = dict(presets[args.preset]) if args.preset else {}
        if not args.preset and {"pred_emo", "wav_emo", "txt_emo"} <= set(df.columns):
            preset = dict(presets["emis"])
    cols = {k: getattr(args, k) or preset.get(k) for k in ("pred", "acoustic", "semantic", "group")}
    parse = args.parse or preset.get("parse") or "lenient"
    if args.no_group:
        cols["group"] = None
    for k in ("pred", "acoustic"):
        if not cols[k]:
            raise CLIError(f"{src}: say which column holds the {k} labels with --{k} COL (or --preset emis)")
    missing = [c for c in cols.values() if c and c not in df.columns]
    if missing:
        raise CLIError(f"{src}: no column {', '.join(map(repr, missing))}; the table has: {', '.join(df.columns)}")
    if cols["semantic"] is None:
        cols["semantic"] = "__none__"
        df = df.assign(__none__="")
    if args.filter:
        for f in args.filter:
            if "=" not in f:
                raise CLIError(f"--filter {f!r}: write it as COL=VALUE")
            k, v = f.split("=", 1)
            if k not in df.columns:
                raise CLIError(f"--filter {f!r}: no column {k!r}; the table has: {', '.join(df.columns)}")
            df = df[df[k].astype(str) == v]
    from probes.labels import LabelError, canonical, extra_label_map

    for c in (cols["acoustic"], cols["semantic"]):
        try:
            df[c] = [canonical(v, where=f"{src}: row {i + 2}: ") if str(v).strip() else "" for i, v in enumerate(df[c])]
        except LabelError as e:
            raise CLIError(str(e)) from None
    extra = extra_label_map(json.loads(args.extra_labels), where="--extra-labels") if args.extra_labels else None
    if extra is None and src.is_dir():
        from probes.metrics import run_extra_labels

        extra = run_extra_labels(src) or None
    res = score_frame(df, pred=cols["pred"], acoustic=cols["acoustic"], semantic=cols["semantic"], group=cols["group"],
                      ci=args.ci, n_boot=args.n_boot, parse=parse, extra_labels=extra)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    print_score_tables(res, parse=parse, ci=args.ci)
    return 0


SCORE_TABLES = (
    ("all items (against the voice's label)",
     ("n", "invalid", "accuracy", "uar", "macro_f1", "cramers_v_acoustic", "cramers_v_semantic")),
    ("emotional-conflict: emotional words, another emotional voice (the headline)",
     ("invalid", "n_emotional_conflict", "follows_voice_emotional_conflict", "follows_text_emotional_conflict",
      "text_dominance_emotional_conflict")),
    ("neutral-text (neutral words, emotional voice) and neutral-voice (emotional words, neutral voice)",
     ("invalid", "n_neutral_text", "neutral_pull", "follows_voice_neutral_text", "n_neutral_voice",
      "follows_text_neutral_voice")),
    ("pooled: every conflict item / every conflict item with emotional words",
     ("invalid", "n_conflict", "follows_voice", "follows_text", "text_dominance", "n_emotional_words",
      "follows_text_emotional_words")),
)
_SHORT = {"cramers_v_acoustic": "V_acoustic", "cramers_v_semantic": "V_semantic",
          "follows_voice_emotional_conflict": "follows_voice", "follows_text_emotional_conflict": "follows_text",
          "text_dominance_emotional_conflict": "text_dominance", "n_emotional_conflict": "n",
          "follows_voice_neutral_text": "NT_follow_voice", "follows_text_neutral_voice": "NV_follow_text",
          "n_neutral_text": "n_NT", "n_neutral_voice": "n_NV", "n_emotional_words": "n_emo_words",
          "follows_text_emotional_words": "emo_words_text"}


def print_score_tables(res: dict, *, parse: str, ci: bool = False) -> None:
    """The score tables of ``probe score``: all items, then each conflict type, invalid counts beside each."""
    w = max(8, max(len(k) for k in res) + 2)
    for title, keys in SCORE_TABLES:
        cw = max(14, max(len(_SHORT.get(k, k)) for k in keys) + 2, 23 if ci else 0)
        print(f"\n{title}")
        print(f"{'group':{w}s}" + "".join(f"{_SHORT.get(k, k):>{cw}s}" for k in keys))
        for g, sc in res.items():
            cells = []
            for k in keys:
                cell = _fmt(sc.get(k))
                lohi = sc.get(f"{k}_ci") if ci else None
                if lohi and lohi[0] is not None:
                    cell = f"{cell} [{lohi[0]:.2f},{lohi[1]:.2f}]"
                cells.append(f"{cell:>{cw}s}")
            print(f"{g:{w}s}" + "".join(cells))
    print(f"\nanswers parsed '{parse}' (invalid = answers that name no label under that policy; they count as wrong). "
          "follows-* on conflict items; neutral_pull = share answering 'neutral' on neutral-text items; "
          "V = Cramer's V on valid answers. Definitions: docs/vocabulary.md.")


# ---------------------------------------------------------------------------------- report, merge
def cmd_report(args) -> int:
    from probes.report import write_report

    if args.out and len(args.runs) > 1 and Path(args.out).suffix == ".html":
        raise CLIError("--out FILE.html takes one run; with several runs give --out a folder")
    for run in args.runs:
        out = None
        if args.out:
            out = Path(args.out) if len(args.runs) == 1 else Path(args.out) / f"{Path(run).name}.html"
        path = write_report(Path(run), out=out)
        print(f"report: {path}")
    return 0


def cmd_merge(args) -> int:
    from probes.store import merge_runs

    out = merge_runs([Path(r) for r in args.runs], Path(args.out))
    from probes.metrics import score_run

    (out / "metrics.json").write_text(json.dumps(score_run(out), indent=2))
    print(f"merged into {out}")
    return 0


# ---------------------------------------------------------------------------------- demo
def cmd_demo(args) -> int:
    """Build the synthetic corpus (once), run the default analysis, write reports."""
    from probes.demo import run_demo

    run_demo(Path(args.root), seed=args.seed, n=args.n, quick=args.quick)
    return 0


# ---------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="probe", description="dissonance: what do speech emotion models listen to when words and voice disagree?")
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("list", help="list registered probes, models, interventions or corpora")
    s.add_argument("what", choices=["probes", "models", "interventions", "corpora"])
    s.set_defaults(func=cmd_list)

    d = sub.add_parser("data", help="corpora: import, show, synthesise")
    dsub = d.add_subparsers(dest="data_cmd", required=True)
    s = dsub.add_parser("import", help="read a corpus in its official layout and write a manifest")
    s.add_argument("corpus")
    s.add_argument("path")
    s.add_argument("--out", help="manifest CSV to write (default runs/data/CORPUS/manifest.csv)")
    s.add_argument("--set", action="append", metavar="NAME=VALUE", help="importer option, e.g. --set classes=4")
    s.add_argument("--label-map", help="JSON file {raw: canonical} extending the corpus mapping")
    s.set_defaults(func=cmd_data_import)
    s = dsub.add_parser("show", help="counts by label, congruence, speaker, split")
    s.add_argument("manifest")
    s.add_argument("--json", action="store_true")
    s.add_argument("--no-audio-check", action="store_true", help="do not check that audio files exist")
    s.set_defaults(func=cmd_data_show)
    s = dsub.add_parser("synth", help="build the synthetic conflict corpus")
    s.add_argument("--out", required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--n", type=int, default=None, help="number of utterances (default: the full design)")
    s.add_argument("--conflict-rate", type=float, default=None, help="share of conflict items (default: the full crossing)")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_data_synth)

    s = sub.add_parser("run", help="run a probe on a model and a manifest")
    s.add_argument("probe")
    s.add_argument("--model", required=True)
    s.add_argument("--data", required=True, help="manifest CSV (or its folder)")
    s.add_argument("--out", help="run folder (default runs/PROBE/MODEL/DATASET/STAMP)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--batch-size", type=int, default=8)
    s.add_argument("--strict", action="store_true", help="stop at the first bad utterance instead of recording an error row")
    s.add_argument("--shard", help="I/N: run only shard I of N (stable by utterance id); merge with `probe merge`")
    s.add_argument("--limit", type=int, help="only the first N utterances")
    s.add_argument("--set", action="append", metavar="NAME=VALUE", help="probe option")
    s.add_argument("--model-path", help="hub id or local folder of the weights")
    s.add_argument("--checkpoint", help="a trained checkpoint (FAS)")
    s.add_argument("--tiny", action="store_true", help="a tiny RANDOM-weight instance (tests, no download)")
    s.add_argument("--device", help="cpu, cuda, cuda:1, auto (device_map=auto across GPUs)")
    s.add_argument("--dtype", help="float32, bfloat16, float16")
    s.add_argument("--answer-mode", choices=["closed", "generate"], help="closed-set scoring or free generation")
    s.add_argument("--trust-remote-code", action="store_true", help="allow code shipped with the weights to run (off by default)")
    s.add_argument("--too-long", choices=["error", "truncate"], default="error")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("score", help="score a predictions table or a run folder")
    s.add_argument("file")
    s.add_argument("--preset", choices=sorted(k for k in _score_presets() if k != "run"),
                   help="column mapping (and parse policy) of a known table: emis = the EMIS study's result tables")
    s.add_argument("--pred")
    s.add_argument("--acoustic")
    s.add_argument("--semantic")
    s.add_argument("--group")
    s.add_argument("--no-group", action="store_true")
    s.add_argument("--filter", action="append", metavar="COL=VALUE")
    s.add_argument("--ci", action="store_true", help="add bootstrap 95%% intervals")
    s.add_argument("--n-boot", type=int, default=1000)
    s.add_argument("--parse", choices=["strict", "lenient"],
                   help="answer parse policy: strict = one label word, else invalid; lenient = also spellings and "
                        "free text naming one label (default: the preset's; emis: strict, as the study)")
    s.add_argument("--extra-labels", metavar="JSON", help='extra answer labels and their canonical label, e.g. \'{"bored": "other"}\'')
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_score)

    s = sub.add_parser("report", help="write a self-contained HTML report for run folders")
    s.add_argument("runs", nargs="+")
    s.add_argument("--out")
    s.set_defaults(func=cmd_report)

    s = sub.add_parser("merge", help="merge shards of one run")
    s.add_argument("runs", nargs="+")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_merge)

    s = sub.add_parser("demo", help="the embedded default end to end: synthetic corpus, analysis, reports")
    s.add_argument("--root", default="runs/demo")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--n", type=int, default=None)
    s.add_argument("--quick", action="store_true", help="a small corpus and short training")
    s.set_defaults(func=cmd_demo)

    import importlib

    for modname in EXTENSIONS:
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as e:
            if e.name == modname:
                continue
            raise
        mod.add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    from probes.audio import AudioError
    from probes.data.manifest import ManifestError
    from probes.labels import LabelError
    from probes.registry import RegistryError
    from probes.store import RunError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (CLIError, ManifestError, LabelError, RegistryError, RunError, AudioError, FileNotFoundError, NotImplementedError) as e:
        print(f"probe: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `probe ... | head`: the reader left; not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("probe: interrupted; run the same command again to resume.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
