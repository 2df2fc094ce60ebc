"""``probe figures``: draw figures from run folders, from the EMIS result table, or all of ``figures/``.
It never runs a model: the run folders it draws come from ``probe run`` (or ``probe figures build``).

    probe figures RUN [RUN ...] [--out DIR] [--name PREFIX]
        the figures each run's probe declares (probes/plots/runs.py PROBE_FIGURES; into
        RUN/figures, or DIR for a single run); with several prediction runs also the comparison
        figures (follows bars and confusion matrices, one panel per run) into DIR (default:
        the current folder's figures-compare/).
    probe figures --emis CSV [--out DIR]
        the EMIS study's figures from its per-utterance result table (scored with probes.metrics,
        the study's strict parse policy).
    probe figures --all
        regenerates the committed ``figures/`` folder from the EMIS table and from the run
        folders under runs/figures/ that exist, and writes ``figures/README.md`` with the exact
        command behind each figure. Run folders that are missing are named with the command
        that makes them.
    probe figures build [--seed N]
        makes those run folders: a small synthetic corpus and the oracle sanity runs (reference
        predictors, no weights) under runs/figures/, and the demo's steps (the model organisms,
        the FAS experiment) on the demo's corpus under runs/figures/demo/. Existing runs resume.

    make figures  =  probe figures build && probe figures --all

This module is imported by ``probe`` at start-up: it imports nothing heavy at module level.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

EMIS_TABLE = "data/emis-predictions/aggregated_results_v4_fullLabel.csv"  # under the shared folder
ALL_CORPUS_N = 80  # the oracle sanity runs need conflict items, not a big corpus


def add_commands(subparsers) -> None:
    s = subparsers.add_parser("figures", help="draw figures from run folders (PNG + SVG), the EMIS table, or all of figures/",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("runs", nargs="*", help="run folders (or the word build: make the run folders --all draws)")
    s.add_argument("--seed", type=int, default=0, help="build: seed of the synthetic corpus and the runs")
    s.add_argument("--out", help="output folder")
    s.add_argument("--name", default="compare", help="file-name prefix of the comparison figures (several runs)")
    s.add_argument("--compare", default="follows,confusion", metavar="KINDS",
                   help="which comparison figures for several runs: follows, confusion (comma-separated)")
    s.add_argument("--emis", metavar="CSV", help="an EMIS result table (aggregated_results_v*.csv)")
    s.add_argument("--all", action="store_true", help="regenerate figures/ and figures/README.md")
    s.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for intervals")
    s.set_defaults(func=cmd_figures)


def cmd_figures(args) -> int:
    from probes.cli import CLIError

    if args.runs[:1] == ["build"] and not Path("build").is_dir():
        if len(args.runs) > 1 or args.emis or args.all:
            raise CLIError("probe figures build takes no run folders, --emis or --all; then run probe figures --all")
        for d in build_runs(repo_root(), seed=args.seed):
            print(d)
        return 0
    if args.all:
        if args.runs or args.emis:
            raise CLIError("--all regenerates figures/ by itself; give it no run folders and no --emis")
        for path in make_all(repo_root()):
            print(path)
        return 0
    if args.emis:
        from probes import plots

        src = Path(args.emis)
        if not src.exists():
            raise CLIError(f"{src}: no such file; the EMIS tables live in ../shared/{EMIS_TABLE.rsplit('/', 1)[0]}/")
        try:
            paths = plots.emis_figures(src, Path(args.out or "figures-emis"), n_boot=args.n_boot)
        except ValueError as e:
            raise CLIError(str(e)) from None
        for p in paths:
            print(p)
    if not args.runs:
        if not args.emis:
            raise CLIError("give run folders, --emis CSV, or --all (see probe figures --help)")
        return 0
    from probes import plots

    runs = [Path(r) for r in args.runs]
    for r in runs:
        out = Path(args.out) if (args.out and len(runs) == 1) else r / "figures"
        failures: list[str] = []
        made = plots.figures_for_run(r, out, failures=failures)
        print(f"{r}: {len(made)} figure(s) in {out}")
        for p, _ in made:
            print(f"  {p}")
        for f in failures:
            print(f"  could not draw {f}", file=sys.stderr)
    if len(runs) > 1:
        out = Path(args.out or "figures-compare")
        kinds = [k.strip() for k in args.compare.split(",") if k.strip()]
        bad = [k for k in kinds if k not in ("follows", "confusion")]
        if bad:
            raise CLIError(f"--compare {args.compare!r}: unknown kind(s) {', '.join(bad)}; use follows and/or confusion")
        for p, _ in plots.compare_runs(runs, out, name=args.name, which=kinds):
            print(p)
    return 0


def repo_root() -> Path:
    """The checkout this module lives in (``figures/`` is a folder of the repository)."""
    return Path(__file__).resolve().parents[1]


def shared_root(root: Path) -> Path:
    return Path(os.environ.get("DISSONANCE_SHARED", root.parent / "shared"))


ORACLES = ("text-oracle", "voice-oracle")


def oracle_dirs(root: Path) -> list[Path]:
    return [root / "runs" / "figures" / "predict" / m for m in ORACLES]


def make_all(root: Path, *, seed: int = 0) -> list[Path]:
    """Regenerate ``root/figures`` and its README from tables and run folders; returns the files
    written. Runs no model: missing run folders are reported with the command that makes them."""
    from probes import plots

    fig_dir = root / "figures"
    fig_dir.mkdir(exist_ok=True)
    entries: list[tuple[str, str, str]] = []  # (file stem, what it shows, command)
    written: list[Path] = []

    emis = shared_root(root) / EMIS_TABLE
    if emis.exists():
        written += plots.emis_figures(emis, fig_dir)
        cmd = f"probe figures --emis ../shared/{EMIS_TABLE} --out figures"
        entries.append(("emis-follows", "EMIS (4 spoken language models x 1,248 utterances, the study's own "
                        "predictions, read under its strict parse policy: 14 answers invalid): the share of answers that "
                        "follow the voice, the words, or neither, per model and conflict type (emotional-conflict: "
                        "emotional words, another emotional voice; neutral-voice; neutral-text, where following the words "
                        "means answering neutral), with bootstrap 95% intervals. Numbers in emis-types.csv (per model) "
                        "and emis-follows.csv (per model and text condition).", cmd))
        entries.append(("emis-confusion", "EMIS: confusion matrix per model against the voice's label.", cmd))
    else:
        print(f"[figures] {emis} not found: EMIS figures skipped", file=sys.stderr)

    dirs = oracle_dirs(root)
    if all((d / "rows.jsonl").exists() or (d / "metrics.json").exists() for d in dirs):
        made = plots.compare_runs(dirs, fig_dir, name="oracle", which=("follows",))
        written += [p for p, _ in made] + [p.with_suffix(".svg") for p, _ in made]
        cmd = (f"probe figures build --seed {seed}   # = the three commands below\n"
               f"probe data synth --out runs/figures/corpus --n {ALL_CORPUS_N} --seed {seed}\n"
               "probe run predict --model text-oracle --data runs/figures/corpus/manifest.csv --out runs/figures/predict/text-oracle\n"
               "probe run predict --model voice-oracle --data runs/figures/corpus/manifest.csv --out runs/figures/predict/voice-oracle\n"
               "probe figures runs/figures/predict/text-oracle runs/figures/predict/voice-oracle --out figures --name oracle --compare follows")
        entries.append(("oracle-follows", "Sanity check of the metrics, not a result: the two reference predictors on "
                        f"a synthetic conflict corpus of {ALL_CORPUS_N} utterances, per conflict type. text-oracle must "
                        "follow the text on every conflict item, voice-oracle the voice.", cmd))
    else:
        print("[figures] oracle run folders not found under runs/figures/predict: oracle figures skipped "
              "(make them with `probe figures build`)", file=sys.stderr)

    w, e = _step_figures(root, fig_dir)
    written += w
    entries += e
    written.append(_write_readme(fig_dir, entries))
    return written


STEPS_INDEX = "steps.json"  # under runs/figures/: the run folders the demo steps made (probe figures build)


def steps_root(root: Path) -> Path:
    return root / "runs" / "figures" / "demo"


def run_label(run: Path) -> str:
    """A short, file-name-safe name for a run's model: the registered name, plus the organism."""
    from probes.store import read_manifest

    m = read_manifest(run).get("model", {})
    if not isinstance(m, dict):
        return str(m)
    org = m.get("organism")
    name = m.get("name", "?")
    if isinstance(org, dict) and org.get("name"):
        name = f"{name}-{org['name']}"
    return name


def _weights(run: Path) -> str:
    from probes.store import read_manifest

    man = read_manifest(run)
    m = man.get("model", {})
    return str(man.get("weights") or (m.get("weights", "?") if isinstance(m, dict) else "?"))


def _step_figures(root: Path, fig_dir: Path) -> tuple[list[Path], list[tuple[str, str, str]]]:
    """The figures of the runs the demo steps made under runs/figures/demo (the organisms, the
    FAS experiment): each run's declared figures, copied to figures/ as ``<probe>-<model>-<stem>``,
    and one follows comparison across the organisms' prediction runs."""
    import json
    import shutil
    import tempfile

    from probes import plots
    from probes.store import read_manifest

    index = steps_root(root) / STEPS_INDEX
    if not index.exists():
        print(f"[figures] {index} not found: organism and FAS figures skipped (make them with `probe figures build`)",
              file=sys.stderr)
        return [], []
    runs = [Path(r) for r in json.loads(index.read_text())["runs"]]
    runs = [r for r in runs if (r / "manifest.json").exists()]
    written: list[Path] = []
    entries: list[tuple[str, str, str]] = []
    cmd = f"probe figures build --seed {json.loads(index.read_text()).get('seed', 0)}   # runs the demo's steps into runs/figures/demo\nprobe figures --all"
    predict_runs = [r for r in runs if read_manifest(r).get("probe") == "predict"
                    and _weights(r).startswith("organism")]
    if len(predict_runs) >= 2:
        made = plots.compare_runs(predict_runs, fig_dir, name="organisms", which=("follows",))
        written += [p for p, _ in made] + [p.with_suffix(".svg") for p, _ in made]
        for p, _ in made:
            entries.append((p.stem, "Model organisms (weights: organism (trained here), small Qwen2-Audio-class models "
                            "trained on the synthetic corpus, NOT Qwen2-Audio's weights): who follows the words and who the voice, "
                            "per conflict type, with bootstrap 95% intervals (" + ", ".join(run_label(r) for r in predict_runs)
                            + "). docs/organisms.md says how they were trained.", cmd))
    for r in runs:
        probe = str(read_manifest(r).get("probe", "?"))
        label = run_label(r)
        failures: list[str] = []
        with tempfile.TemporaryDirectory() as tmp:
            made = plots.figures_for_run(r, tmp, failures=failures)
            for png, caption in made:
                stem = f"{probe}-{label}-{png.stem.removeprefix(probe + '-')}"
                for src in (png, png.with_suffix(".svg")):
                    if src.exists():
                        dst = fig_dir / (stem + src.suffix)
                        shutil.copyfile(src, dst)
                        written.append(dst)
                entries.append((stem, f"{caption} Run: `{probe}` on `{label}` (weights: {_weights(r)}), "
                                f"run folder runs/figures/demo/{r.relative_to(steps_root(root)) if r.is_relative_to(steps_root(root)) else r.name}.", cmd))
        for f in failures:
            print(f"[figures] {r}: {f}", file=sys.stderr)
    return written, entries


def build_runs(root: Path, *, seed: int = 0) -> list[Path]:
    """The run folders ``make_all`` draws beyond the EMIS table: a synthetic corpus of
    ALL_CORPUS_N utterances and the two oracle prediction runs. Existing ones are kept."""
    if not _has_build():
        raise NotImplementedError("probes.data.synth.build is not available: cannot build the synthetic corpus")
    corpus = root / "runs" / "figures" / "corpus" / "manifest.csv"
    return _oracle_runs(root, corpus, seed=seed) + _step_runs(root, seed=seed)


def _step_runs(root: Path, *, seed: int = 0) -> list[Path]:
    """The demo's steps (the organisms, the FAS experiment; ``probes.demo.STEPS``) on the demo's
    corpus, under runs/figures/demo; the run folders are listed in its steps.json. Finished runs resume."""
    import json

    from probes.data.synth import build
    from probes.demo import STEPS, _load_steps, dataset_name

    out = steps_root(root)
    corpus = out / "data" / dataset_name(None, False) / "manifest.csv"
    if not corpus.exists():
        build(corpus.parent, seed=seed, progress=False)
    _load_steps()
    runs: list[Path] = []
    for step in STEPS:
        runs += [Path(r).resolve() for r in step(corpus, out, seed, False)]
    (out / STEPS_INDEX).write_text(json.dumps({"seed": seed, "corpus": str(corpus), "runs": [str(r) for r in runs]}, indent=1))
    return runs


def _has_build() -> bool:
    try:
        from probes.data.synth import build  # noqa: F401
    except ImportError:
        return False
    return True


def _oracle_runs(root: Path, corpus: Path, *, seed: int) -> list[Path]:
    from probes.data.manifest import Manifest
    from probes.data.synth import build
    from probes.probe import run_probe
    from probes.registry import MODELS, PROBES

    if not corpus.exists():
        build(corpus.parent, seed=seed, n=ALL_CORPUS_N, progress=False)
    data = Manifest.read(corpus)
    dirs = oracle_dirs(root)
    for model, out in zip(ORACLES, dirs):
        if not (out / "metrics.json").exists():
            run_probe(PROBES["predict"](), MODELS[model](), data, out, seed=seed, progress=False)
    return dirs


def _write_readme(fig_dir: Path, entries: list[tuple[str, str, str]]) -> Path:
    lines = [
        "# figures/",
        "",
        "Every figure here is regenerated from the repository root by",
        "",
        "    make figures        # = probe figures build && probe figures --all",
        "",
        "`probe figures build` makes the run folders under runs/figures/ (it runs the reference predictors);",
        "`probe figures --all` only draws. Each figure comes as PNG and SVG, drawn by the `probes/plots/` package",
        "from run folders or result tables, never from a model. Below, the exact commands that make each one.",
        "",
    ]
    for stem, what, cmd in entries:
        lines += [f"## {stem}", "", f"![{stem}]({stem}.png)", "", what, "", "```", cmd, "```", ""]
    if not entries:
        lines += ["(nothing could be made here: neither the EMIS table nor the oracle run folders were found)", ""]
    path = fig_dir / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
