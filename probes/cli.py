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


# user errors of modules loaded lazily (their classes are known by name so that no import is needed)
USER_ERRORS = {"ManifestError", "LabelError", "RegistryError", "RunError", "AudioError", "OptionError",
               "ModelLoadError", "ModelPathError", "CueError", "MissingInstrument", "SynthError", "DesignError",
               "RayBackendError", "ClassifierLoadError"}


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
    for name, doc in catalog(args.what).items():
        print(f"{name:24s} {doc}")
    return 0


_REGISTRY_PACKAGES = {"models": ("probes.models", "fas"), "probes": ("probes.library", "fas"),
                      "interventions": ("interventions",), "corpora": ("probes.data.corpora",)}


def catalog(what: str) -> dict[str, str]:
    """{name: one-line summary} of a registry, without importing its modules when it can.

    Registering a model imports its module (and torch with it: 10-30 s). The listing is kept in a
    small cache file keyed by the size and mtime of every source file of the registry's packages,
    so it is recomputed only after a source changes (or a module is added); ``DISSONANCE_CACHE``
    moves the cache (default ``~/.cache/dissonance``).
    """
    import hashlib
    import importlib.util
    import os

    key = hashlib.sha256(what.encode())
    try:
        for pkg in _REGISTRY_PACKAGES[what]:
            spec = importlib.util.find_spec(pkg)
            for loc in (spec.submodule_search_locations or []) if spec else []:
                for f in sorted(Path(loc).rglob("*")):  # sources, and data a module may register from
                    if "__pycache__" in f.parts or f.is_dir():
                        continue
                    st = f.stat()
                    key.update(f"{f}:{st.st_size}:{st.st_mtime_ns}".encode())
    except (ImportError, OSError, ValueError):
        key = None
    cache_dir = Path(os.environ.get("DISSONANCE_CACHE") or Path.home() / ".cache" / "dissonance")
    cache = cache_dir / f"catalog-{what}.json"
    if key is not None and cache.exists():
        try:
            saved = json.loads(cache.read_text())
            if saved.get("key") == key.hexdigest():
                return saved["entries"]
        except (OSError, ValueError, KeyError):
            pass
    from probes.registry import CORPORA, INTERVENTIONS, MODELS, PROBES, summary

    reg = {"probes": PROBES, "models": MODELS, "interventions": INTERVENTIONS, "corpora": CORPORA}[what]
    entries = {name: summary(obj) for name, obj in reg.items()}
    if key is not None:
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"key": key.hexdigest(), "entries": entries}))
            os.replace(tmp, cache)
        except OSError:
            pass  # a read-only home: list without the cache
    return entries


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

    if args.ambiguous is not None or args.with_corpus is not None:  # opt-in; the default corpus is unchanged
        from probes.data.synth.ambiguous import AmbiguousError, build as build_ambiguous

        if args.ambiguous is None:
            raise CLIError("--with-corpus M goes with --ambiguous N (it adds M default-corpus items to the ambiguous set)")
        if args.n is not None or args.conflict_rate is not None:
            raise CLIError("--n / --conflict-rate set the default corpus; with --ambiguous N use --with-corpus M for "
                           "M default-corpus items beside the ambiguous ones")
        try:
            path = build_ambiguous(Path(args.out), n=args.ambiguous, seed=args.seed, with_corpus=args.with_corpus,
                                   progress=not args.quiet, force=args.force)
        except AmbiguousError as e:
            raise CLIError(str(e)) from None
        print(f"wrote {path}")
        return 0
    path = build(Path(args.out), seed=args.seed, n=args.n, conflict_rate=args.conflict_rate, progress=not args.quiet,
                 force=args.force)
    print(f"wrote {path}")
    return 0


# ---------------------------------------------------------------------------------- run
def model_options(args) -> dict:
    return {k: v for k, v in {
        "model_path": args.model_path, "tiny": args.tiny, "checkpoint": args.checkpoint,
        "device": args.device, "dtype": args.dtype, "trust_remote_code": args.trust_remote_code,
        "answer_mode": args.answer_mode, "organism": getattr(args, "organism", None),
        **_model_sets(getattr(args, "model_set", None)),
    }.items() if v not in (None, False)}


_OWN_OPTIONS = ("model_path", "tiny", "checkpoint", "device", "dtype", "trust_remote_code", "answer_mode", "organism")


def _model_sets(pairs) -> dict:
    """``--model-set NAME=VALUE`` (repeatable): options of the model adapter beyond the dedicated flags."""
    out = {}
    for p in pairs or []:
        if "=" not in p:
            raise CLIError(f"--model-set {p!r}: write it as NAME=VALUE, e.g. --model-set label_map=head_map.json")
        k, v = p.split("=", 1)
        k = k.strip().replace("-", "_")
        if k in _OWN_OPTIONS:
            raise CLIError(f"--model-set {k}: use --{k.replace('_', '-')} instead")
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def check_model_sets(model_cls, args) -> None:
    """Every --model-set name is an option of the model's ``from_cli``; checked before any model loads."""
    import inspect

    sets = _model_sets(getattr(args, "model_set", None))
    if not sets:
        return
    params = [n for n, p in inspect.signature(model_cls.from_cli).parameters.items()
              if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and n not in _OWN_OPTIONS + ("cls",)]
    name = getattr(model_cls, "name", model_cls.__name__)
    for k in sets:
        if k not in params:
            raise CLIError(f"--model-set {k}: model {name} has no option {k!r}; "
                           + (f"it takes {', '.join(params)}" if params else "it takes no --model-set options"))
    check = getattr(model_cls, "check_cli_options", None)
    if check is not None:
        try:
            check(**sets)
        except (ValueError, RuntimeError) as e:
            raise CLIError(str(e)) from None


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise CLIError(f"{out}: --out points at a file, not a folder; give a folder (a new one, or an earlier run's folder to resume).")


def _load_model(model_cls, args):
    opts = model_options(args)
    if args.checkpoint and not Path(args.checkpoint).exists():
        raise CLIError(f"{args.checkpoint}: --checkpoint not found; give the checkpoint folder, or train one with `probe fas train`.")
    norm = getattr(args, "length_norm", None)
    if norm and not hasattr(model_cls, "length_norm"):
        raise CLIError(f"--length-norm applies to the closed-set label scoring of audio-language models; "
                       f"{getattr(model_cls, 'name', model_cls.__name__)} has none. Drop the option.")
    try:
        if norm:
            model = model_cls.from_cli(**opts)
            model.length_norm = norm  # describe() records it, so the run's settings do
            return model
        return model_cls.from_cli(**opts)
    except Exception as e:
        if args.checkpoint and (type(e).__name__ == "SafetensorError" or "safetensors" in type(e).__module__
                                or "deserializ" in str(e).lower()):
            ck = Path(args.checkpoint)
            weights = ck / "model.safetensors" if ck.is_dir() else ck
            raise CLIError(f"{weights}: not a readable safetensors file ({_first_line(e)}); it is probably truncated "
                           "(a copy or a save cut short): copy it again, or retrain it with `probe fas train`.") from None
        raise


def _ray_settings(args):
    """The Ray settings of ``--backend ray`` (None for a local run), checked before any work."""
    if getattr(args, "backend", "local") != "ray":
        return None
    from probes.backends.ray_backend import RaySettings

    try:
        return RaySettings.from_args(args)
    except ValueError as e:
        raise CLIError(str(e)) from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def cmd_run(args) -> int:
    from probes.options import build_probe, check_run_args, parse_sets

    # every argument is checked before any work (and before any model loads)
    check_run_args(batch_size=args.batch_size, limit=args.limit, seed=args.seed)
    shard = _parse_shard(args.shard)
    if args.model_path and not args.tiny:  # before pandas and the registries (torch) load: fails at once
        from probes.models.loading import check_model_path

        check_model_path(args.model_path)
    from probes.data.manifest import Manifest
    from probes.probe import run_probe
    from probes.registry import MODELS, PROBES
    from probes.store import default_run_dir, error_counts
    probe_cls = PROBES[args.probe]
    model_cls = MODELS[args.model]
    check_model_sets(model_cls, args)
    probe = build_probe(probe_cls, parse_sets(args.set), name=args.probe)
    label_map = _read_label_map(args.label_map) if args.label_map else None
    data = Manifest.read(args.data, label_map=label_map)
    dataset = Path(args.data).resolve().parent.name if Path(args.data).suffix else Path(args.data).name
    out = Path(args.out) if args.out else default_run_dir(args.probe, args.model, dataset)
    _check_out(out)
    ray_settings = _ray_settings(args)  # checked before any model loads
    extra = {"model_options": {k: v for k, v in model_options(args).items() if k not in ("device",)},
             "too_long": args.too_long}
    if label_map:
        extra["label_map"] = label_map
    run_kw = dict(seed=args.seed, batch_size=args.batch_size, strict=args.strict, shard=shard, limit=args.limit,
                  progress=not args.quiet, too_long=args.too_long, extra_manifest=extra)
    if ray_settings is not None:
        from probes.backends.ray_backend import run_on_ray

        if args.model_path and not args.tiny:
            from probes.models.loading import check_model_path

            check_model_path(args.model_path)
        _, stats = run_on_ray(probe, args.model, model_options(args), data, out, ray_settings, **run_kw)
        print(f"ray: {stats.get('blocks', 0)} block(s) on {ray_settings.workers} replica(s), "
              f"{stats.get('dead_workers', 0)} replica(s) replaced, {stats.get('retried_blocks', 0)} block(s) retried")
        model = None
    else:
        model = _load_model(model_cls, args)
        run_probe(probe, model, data, out, **run_kw)
    print(f"run folder: {out}")
    weights = model.weights if model is not None else json.loads((out / "manifest.json").read_text()).get("weights")
    if weights == "random":
        print("note: this model has RANDOM weights (a tiny test instance); its numbers are not results.")
    _print_metrics(out)
    from probes.store import iter_rows

    n_rows = sum(1 for _ in iter_rows(out))
    failed = error_counts(out)
    if n_rows == 0 and failed["units"]:
        first = next(iter_rows(out, "errors.jsonl"), {}).get("error", "")
        print(f"probe: error: every unit failed ({failed['units']}); the first: {first}", file=sys.stderr)
        return 1
    return 0


def _read_label_map(path: str) -> dict:
    p = Path(path)
    if not p.exists():
        raise CLIError(f"--label-map {p}: no such file; give a JSON file {{\"raw label\": \"canonical label\"}}")
    try:
        m = json.loads(p.read_text())
    except ValueError as e:
        raise CLIError(f"--label-map {p}: not valid JSON ({e}); write it as {{\"raw label\": \"canonical label\"}}") from None
    if not isinstance(m, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in m.items()):
        raise CLIError(f"--label-map {p}: must be one JSON object of strings, {{\"raw label\": \"canonical label\"}}")
    return m


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
        # follows-* per conflict type (docs/vocabulary.md): the headline on emotional-conflict items
        keys = {"n": "n", "invalid": "invalid", "accuracy": "accuracy", "uar": "uar", "macro_f1": "macro_f1",
                "follows_voice_emotional_conflict": "EC voice", "follows_text_emotional_conflict": "EC text",
                "text_dominance_emotional_conflict": "EC dominance", "neutral_pull": "neutral pull"}
        print(f"{'condition':16s}" + "".join(f"{h:>15s}" for h in keys.values()))
        for c, s in conds.items():
            print(f"{c:16s}" + "".join(f"{_fmt(s.get(k)):>15s}" for k in keys))
        print("EC = emotional-conflict items (emotional words, another emotional voice); neutral pull = share "
              "answering neutral on neutral-text items.")
    if m.get("errors"):
        from probes.store import error_counts

        c = error_counts(run_dir)
        print(f"{c['units']} unit(s) of {c['utterances']} utterance(s) failed: see {Path(run_dir) / 'errors.jsonl'}")


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
    from probes.metrics import corpus_notes

    for c in corpus_notes(df).get("neutral_text_by_design", []):
        print(f"note: {c}'s sentences are neutral by design: its conflict items are all neutral-text items "
              "(read neutral_pull), not words against voice.")
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
    from probes.store import merge_runs, read_manifest

    _check_out(Path(args.out))
    out = merge_runs([Path(r) for r in args.runs], Path(args.out))
    (out / "metrics.json").write_text(json.dumps(summarize_run(out, read_manifest(out)), indent=2, default=str))
    print(f"merged into {out}")
    _print_metrics(out)
    return 0


def summarize_run(run_dir: Path, manifest: dict) -> dict:
    """metrics.json of a run folder from its own probe's ``summarize`` (its own sections kept)."""
    from probes.options import build_probe
    from probes.registry import PROBES

    name = manifest.get("probe", "")
    if name in PROBES:
        probe = build_probe(PROBES[name], manifest.get("config") or {}, name=name)
        return probe.summarize(Path(run_dir))
    from probes.metrics import score_run

    return score_run(run_dir)


# ---------------------------------------------------------------------------------- demo
def cmd_demo(args) -> int:
    """Build the synthetic corpus (once), run the default analysis, write reports."""
    from probes.demo import run_demo
    from probes.progress import quiet_libraries

    quiet_libraries()

    run_demo(Path(args.root), seed=args.seed, n=args.n, quick=args.quick)
    return 0


# ---------------------------------------------------------------------------------- parser
def _preset_name(value: str) -> str:
    """--preset, checked when given (the presets live in probes.metrics, which loads numpy)."""
    names = sorted(k for k in _score_presets() if k != "run")
    if value not in names:
        raise argparse.ArgumentTypeError(f"invalid choice: {value!r} (choose from {', '.join(names)})")
    return value


class _RunHelp(argparse.Action):
    """``probe run --help`` lists the probes; ``probe run PROBE --help`` that probe's --set options."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        parser.print_help()
        probe = getattr(namespace, "probe", None)
        if probe:
            from probes.options import describe_options
            from probes.registry import PROBES, RegistryError

            try:
                cls = PROBES[probe]
            except RegistryError as e:
                parser.exit(2, f"probe: error: {e}\n")
            print(f"\noptions of probe {probe} (--set NAME=VALUE):")
            print(describe_options(cls))
        else:
            print("\nprobes (`probe run PROBE --help` shows a probe's --set options):")
            for name, doc in catalog("probes").items():
                print(f"  {name:22s} {doc}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="probe", description="dissonance: what do speech emotion models listen to when words and voice disagree?")
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("list", help="list registered probes, models, interventions or corpora")
    s.add_argument("what", choices=["probes", "models", "interventions", "corpora"], help="which registry to list")
    s.set_defaults(func=cmd_list)

    d = sub.add_parser("data", help="corpora: import, show, synthesise")
    dsub = d.add_subparsers(dest="data_cmd", required=True)
    s = dsub.add_parser("import", help="read a corpus in its official layout and write a manifest")
    s.add_argument("corpus", help="corpus name (`probe list corpora`)")
    s.add_argument("path", help="the corpus folder as distributed")
    s.add_argument("--out", help="manifest CSV to write (default runs/data/CORPUS/manifest.csv)")
    s.add_argument("--set", action="append", metavar="NAME=VALUE", help="importer option, e.g. --set classes=4")
    s.add_argument("--label-map", help="JSON file {raw: canonical} extending the corpus mapping")
    s.set_defaults(func=cmd_data_import)
    s = dsub.add_parser("show", help="counts by label, congruence, speaker, split")
    s.add_argument("manifest", help="manifest CSV or JSONL (or its folder)")
    s.add_argument("--json", action="store_true", help="also print the counts as JSON")
    s.add_argument("--no-audio-check", action="store_true", help="do not check that audio files exist")
    s.set_defaults(func=cmd_data_show)
    s = dsub.add_parser("synth", help="build the synthetic conflict corpus")
    s.add_argument("--out", required=True, help="folder to write manifest.csv and wav/ into (new, or an earlier synth output)")
    s.add_argument("--seed", type=int, default=0, help="seed of the design and the voices (same seed: same corpus)")
    s.add_argument("--n", type=int, default=None, help="number of utterances (default: the full design)")
    s.add_argument("--conflict-rate", type=float, default=None, help="share of conflict items (default: the full crossing)")
    s.add_argument("--force", action="store_true",
                   help="write into a non-empty folder that is not this synth's output (files it did not write are kept)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--ambiguous", type=int, default=None, metavar="N",
                   help="instead of the default corpus, N items whose voice is blended between two emotions at a stated "
                        "ratio, with that soft label (docs/tts.md)")
    s.add_argument("--with-corpus", type=int, default=None, metavar="M",
                   help="with --ambiguous: also M items of the default corpus (as --n M, in OUT/base), listed in the same manifest")
    s.set_defaults(func=cmd_data_synth)

    s = sub.add_parser("run", help="run a probe on a model and a manifest", add_help=False,
                       description="Run (or resume) a probe. `probe run --help` lists the probes; "
                                   "`probe run PROBE --help` lists that probe's --set options.")
    s.add_argument("-h", "--help", action=_RunHelp, help="show this help (with a PROBE: its --set options) and exit")
    s.add_argument("probe", help="the experiment to run (listed below; `probe list probes`)")
    s.add_argument("--model", required=True, help="model adapter name (`probe list models`)")
    s.add_argument("--data", required=True, help="manifest CSV or JSONL (or its folder)")
    s.add_argument("--out", help="run folder (default runs/PROBE/MODEL/DATASET/STAMP); an earlier run's folder resumes it")
    s.add_argument("--seed", type=int, default=0, help="seed of every random draw (interventions, bootstrap); recorded in the run")
    s.add_argument("--batch-size", type=int, default=8, help="units per model call (at least 1)")
    s.add_argument("--strict", action="store_true", help="stop at the first bad utterance instead of recording an error row")
    s.add_argument("--shard", help="I/N: run only shard I of N (stable by utterance id); merge with `probe merge`")
    s.add_argument("--limit", type=int, help="only the first N utterances (at least 1)")
    s.add_argument("--set", action="append", metavar="NAME=VALUE",
                   help="probe option, repeatable; `probe run PROBE --help` lists them with types and defaults")
    s.add_argument("--label-map", help="JSON file {raw: canonical} mapping the manifest's label spellings to the canonical ones")
    s.add_argument("--model-path", help="hub id or local folder of the weights")
    s.add_argument("--model-set", action="append", metavar="NAME=VALUE",
                   help="model option, repeatable (audio-classifier: label_map=FILE.json or a JSON object mapping "
                        "head labels to canonical ones, tiny_class=wav2vec2|hubert|wavlm); recorded in the run")
    s.add_argument("--organism", help="a model organism of the family (e.g. text-reliant, voice-reliant), trained here")
    s.add_argument("--checkpoint", help="a trained checkpoint (FAS, .safetensors)")
    s.add_argument("--tiny", action="store_true", help="a tiny RANDOM-weight instance (tests, no download)")
    s.add_argument("--device", help="cpu, cuda, cuda:1, auto (device_map=auto across GPUs)")
    s.add_argument("--dtype", help="float32, bfloat16, float16")
    s.add_argument("--answer-mode", choices=["closed", "generate"], help="closed-set scoring or free generation")
    s.add_argument("--length-norm", choices=["sum", "mean"],
                   help="closed-set label score: sum of the label's token log-probs (default) or their mean (docs/real-models.md); recorded in the run's model settings")
    s.add_argument("--trust-remote-code", action="store_true", help="allow code shipped with the weights to run (off by default)")
    s.add_argument("--too-long", choices=["error", "truncate"], default="error",
                   help="audio longer than the model accepts: an error row (default) or cut to fit")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    g = s.add_argument_group("distributed runs (docs/distributed.md)")
    g.add_argument("--backend", choices=["local", "ray"], default="local",
                   help="where the units run: here (default) or on a Ray cluster (pip install 'dissonance[ray]')")
    g.add_argument("--address", help="Ray: 'auto' (this node's cluster) or ray://HOST:10001; default: a local Ray on this machine")
    g.add_argument("--workers", type=int, default=2, help="Ray: model replicas, one model each (default 2)")
    g.add_argument("--cpus-per-worker", type=float, default=1.0, help="Ray: CPU cores reserved per replica")
    g.add_argument("--gpus-per-worker", type=float, default=0.0, help="Ray: GPUs per replica (0.5 packs two on one GPU)")
    g.add_argument("--block-size", type=int, default=8, help="Ray: utterances per block, the unit of scheduling and retry")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("score", help="score a predictions table or a run folder")
    s.add_argument("file", help="a predictions CSV/JSONL, or a run folder")
    s.add_argument("--preset", type=_preset_name, metavar="{emis}",
                   help="column mapping (and parse policy) of a known table: emis = the EMIS study's result tables")
    s.add_argument("--pred", help="column of the model's answers")
    s.add_argument("--acoustic", help="column of the voice's (acoustic) labels: the ground truth")
    s.add_argument("--semantic", help="column of the words' (semantic) labels; empty cells where unknown")
    s.add_argument("--group", help="column to score separately by (a model, a condition ...)")
    s.add_argument("--no-group", action="store_true", help="one score over all rows, even where a preset groups")
    s.add_argument("--filter", action="append", metavar="COL=VALUE", help="keep only rows whose COL equals VALUE (repeatable)")
    s.add_argument("--ci", action="store_true", help="add bootstrap 95%% intervals")
    s.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for --ci")
    s.add_argument("--parse", choices=["strict", "lenient"],
                   help="answer parse policy: strict = one label word, else invalid; lenient = also spellings and "
                        "free text naming one label (default: the preset's; emis: strict, as the study)")
    s.add_argument("--extra-labels", metavar="JSON", help='extra answer labels and their canonical label, e.g. \'{"bored": "other"}\'')
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.set_defaults(func=cmd_score)

    s = sub.add_parser("report", help="write a self-contained HTML report for run folders")
    s.add_argument("runs", nargs="+", help="run folders")
    s.add_argument("--out", help="HTML file (one run) or folder (several runs); default inside each run folder")
    s.set_defaults(func=cmd_report)

    s = sub.add_parser("merge", help="merge shards of one run")
    s.add_argument("runs", nargs="+", help="the shard run folders (every I/N of one run, each once)")
    s.add_argument("--out", required=True, help="a new folder for the merged run")
    s.set_defaults(func=cmd_merge)

    s = sub.add_parser("demo", help="the embedded default end to end: synthetic corpus, analysis, reports")
    s.add_argument("--root", default="runs/demo", help="folder for the corpus, runs and reports")
    s.add_argument("--seed", type=int, default=0, help="seed of the corpus and the runs")
    s.add_argument("--n", type=int, default=None, help="number of utterances (default: the full design)")
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
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (CLIError, FileNotFoundError, NotImplementedError) as e:
        print(f"probe: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `probe ... | head`: the reader left; not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:
        from probes.store import explain_os_error

        print(f"probe: error: {explain_os_error(e, e.filename or '.')}", file=sys.stderr)
        return 2
    except Exception as e:
        # user errors are known by class name, so that `probe list` and `probe --help` import
        # neither numpy nor pandas (the modules that define them load only when used)
        if any(c.__name__ in USER_ERRORS for c in type(e).__mro__):
            print(f"probe: error: {e}", file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        print("probe: interrupted; run the same command again to resume.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
