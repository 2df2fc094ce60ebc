"""``probe fas train | eval | experiment``. Cheap to import: torch loads inside the commands.

  probe fas train --data MANIFEST --out CKPT [--arm fas] [--acoustic egemaps] [--semantic asr-minilm]
  probe fas eval --checkpoint CKPT --data MANIFEST [--split test] [--conflict-only]   (zero-shot: another manifest)
  probe fas experiment --data MANIFEST --out RUNDIR [--quick]   (= probe run fas-conflict --model fas-untrained)
"""

from __future__ import annotations

import json


ARM_NAMES = ("fas", "fas-concat", "fas-gated", "fas-no-topk", "fas-no-queries", "fas-semantic-only", "fas-acoustic-only")
PATHWAYS = ("egemaps", "encodec", "dac", "mimi", "vibevoice", "xcodec2", "mingtok", "asr-minilm", "text-minilm", "whisper", "clap")


def _train_config(args):
    from fas.train import TrainConfig

    return TrainConfig(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)


def cmd_train(args) -> int:
    import torch

    from probes.data.manifest import Manifest

    from fas.train import load_streams, save_checkpoint, train_arm, write_curve

    if args.threads:
        torch.set_num_threads(args.threads)
    data = Manifest.read(args.data)
    streams = load_streams(data, args.acoustic, args.semantic, acoustic_source=args.acoustic_source,
                           semantic_source=args.semantic_source, workers=args.workers, progress=not args.quiet)
    split = list(data.df["split"])
    tr = [i for i, s in enumerate(split) if s == args.split] or list(range(len(data)))
    dev = [i for i, s in enumerate(split) if s == "dev"]
    model, curve, extra = train_arm(args.arm, streams.subset(tr), _train_config(args),
                                    dev=streams.subset(dev) if dev else None, acoustic=args.acoustic,
                                    semantic=args.semantic, progress=not args.quiet)
    extra["pathways"].update(acoustic_source=args.acoustic_source, semantic_source=args.semantic_source)
    extra["data"], extra["data_sha256"] = str(data.source), data.sha256()
    out = save_checkpoint(model, args.out, extra=extra)
    write_curve(curve, out / "loss_curve.csv")
    print(f"checkpoint: {out}  ({len(tr)} training items, final train loss {curve[-2 if dev else -1]['loss']:.4f})")
    return 0


def cmd_eval(args) -> int:
    from probes.data.manifest import Manifest

    from fas.train import evaluate, load_checkpoint, load_streams

    model, info = load_checkpoint(args.checkpoint)
    pw = info.get("pathways", {})
    data = Manifest.read(args.data)
    # features (and the per-speaker eGeMAPS statistics) over the whole manifest, then the subset
    streams = load_streams(data, pw.get("acoustic", "egemaps"), pw.get("semantic", "asr-minilm"),
                           acoustic_source=pw.get("acoustic_source"), semantic_source=pw.get("semantic_source"),
                           workers=args.workers, progress=not args.quiet)
    keep = [i for i, r in enumerate(data.rows())
            if (not args.split or r["split"] == args.split) and (not args.conflict_only or r["congruent"] == "false")]
    streams = streams.subset(keep)
    res = evaluate(model, streams, n_boot=args.n_boot)
    if args.json:
        print(json.dumps(res, indent=2, default=float))
        return 0
    print(f"{info.get('arm', 'fas')} on {args.data} ({len(streams)} items; labels {', '.join(model.cfg.labels)})")
    for k in ("accuracy", "uar", "macro_f1", "follows_voice", "follows_text"):
        v, ci = res.get(k), res.get(f"{k}_ci") or [None, None]
        print(f"  {k:14s} " + ("-" if v is None or v != v else f"{v:.3f}  [{ci[0]:.3f}, {ci[1]:.3f}]"))
    return 0


def cmd_experiment(args) -> int:
    """A thin wrapper over `probe run fas-conflict --model fas-untrained` (the registered probe)."""
    from fas.experiment import ABLATION_ARMS, MAIN_ARMS, run_experiment
    from fas.train import TrainConfig

    tc = TrainConfig(epochs=args.epochs if args.epochs is not None else (20 if args.quick else 60),
                     batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    arms = tuple(a.strip() for a in args.arms.split(",")) if args.arms else MAIN_ARMS + (ABLATION_ARMS if args.ablations else ())
    out = run_experiment(args.data, args.out, tc=tc, arms=arms, seeds=args.seeds, size=args.size, workers=args.workers,
                         n_boot=args.n_boot, progress=not args.quiet, threads=args.threads,
                         attributions=args.attributions)
    print((out / "results.md").read_text())
    print(f"run folder: {out}")
    return 0


def cmd_sweep_nq(args) -> int:
    from fas.experiment import run_nq_sweep
    from fas.train import TrainConfig

    tc = TrainConfig(epochs=args.epochs if args.epochs is not None else 40, batch_size=args.batch_size, seed=args.seed)
    values = [int(v) for v in args.values.split(",")]
    out = run_nq_sweep(args.data, args.out, n_queries=values, mix=args.mix, semantic=args.semantic, tc=tc,
                       size=args.size, workers=args.workers, n_boot=args.n_boot, progress=not args.quiet,
                       threads=args.threads)
    print(f"run folder: {out} (nq_ablation.csv; draw it with `probe figures {out}`)")
    return 0


def cmd_features(args) -> int:
    """Fill the feature cache of a manifest for two pathways, here or on Ray (docs/distributed.md)."""
    from fas.features import extract, item_for
    from fas.train import pathway_spec
    from probes.data.manifest import Manifest

    from probes.cli import CLIError

    ray = None
    if args.backend == "ray":
        from probes.backends.ray_backend import RaySettings

        try:
            ray = RaySettings.from_args(args)
        except ValueError as e:
            raise CLIError(str(e)) from None
    data = Manifest.read(args.data)
    rows = list(data.rows())
    hashes: dict = {}
    for name, src in ((args.acoustic, args.acoustic_source), (args.semantic, args.semantic_source)):
        spec = pathway_spec(name, src)
        items = [item_for(r, data.audio_path(i), spec, hashes=hashes) for i, r in enumerate(rows)]
        extract(spec, items, workers=args.workers, progress=not args.quiet, ray=ray)
        print(f"{spec.name}: {len(items)} utterance(s) in the cache")
    return 0


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("fas", help="the FAS fusion model: train, evaluate, run the conflict experiment")
    sub = p.add_subparsers(dest="fas_cmd", required=True)

    def common(s, epochs_default: int | None = 100, batch_default: int = 32):
        s.add_argument("--data", required=True, help="manifest CSV (or its folder)")
        s.add_argument("--workers", type=int, default=2, help="processes for feature extraction")
        s.add_argument("--seed", type=int, default=42, help="seed of initialisation, batches and bootstrap")
        s.add_argument("--epochs", type=int, default=epochs_default, help="training epochs (default: the arm's schedule)")
        s.add_argument("--batch-size", type=int, default=batch_default, help="training batch size")
        s.add_argument("--threads", type=int, default=1, help="torch threads for training (0: torch's default)")
        s.add_argument("--quiet", action="store_true", help="no progress bars")

    s = sub.add_parser("features", help="fill the feature cache of a manifest (here, or on a Ray cluster) before training")
    s.add_argument("--data", required=True, help="manifest CSV (or its folder)")
    s.add_argument("--acoustic", choices=PATHWAYS, default="egemaps", help="acoustic pathway to featurise")
    s.add_argument("--semantic", choices=PATHWAYS, default="asr-minilm", help="semantic pathway to featurise")
    s.add_argument("--acoustic-source", help="hub id or folder for a transformers acoustic encoder")
    s.add_argument("--semantic-source", help="hub id or folder for a transformers semantic encoder")
    s.add_argument("--workers", type=int, default=2, help="processes here, or Ray actors with --backend ray")
    s.add_argument("--backend", choices=["local", "ray"], default="local",
                   help="where extraction runs: here, or on Ray actors (the pool of `probe run --backend ray`)")
    s.add_argument("--address", help="Ray: 'auto' or ray://HOST:10001; default: a local Ray on this machine")
    s.add_argument("--block-size", type=int, default=16, help="Ray: utterances per block")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_features)

    s = sub.add_parser("train", help="train one arm on a manifest's train split; writes a checkpoint folder")
    common(s, epochs_default=40)
    s.add_argument("--out", required=True, help="checkpoint folder (model.safetensors + config.json)")
    s.add_argument("--arm", choices=ARM_NAMES, default="fas", help="the model or baseline to train (docs/fas.md)")
    s.add_argument("--split", default="train", help="rows used for training (all rows if the split is empty)")
    s.add_argument("--acoustic", choices=PATHWAYS, default="egemaps", help="acoustic pathway (feature stream)")
    s.add_argument("--semantic", choices=PATHWAYS, default="asr-minilm", help="semantic pathway (feature stream)")
    s.add_argument("--acoustic-source", help="hub id or folder for a transformers acoustic encoder")
    s.add_argument("--semantic-source", help="hub id or folder for a transformers semantic encoder")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("eval", help="score a checkpoint on a manifest (in-domain or zero-shot)")
    s.add_argument("--checkpoint", required=True, help="checkpoint folder written by `probe fas train`")
    s.add_argument("--data", required=True, help="manifest CSV (or its folder)")
    s.add_argument("--split", help="only this split (e.g. test); default all rows")
    s.add_argument("--conflict-only", action="store_true", help="score only the conflict items")
    s.add_argument("--workers", type=int, default=2, help="processes for feature extraction")
    s.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the intervals")
    s.add_argument("--json", action="store_true", help="print the scores as JSON")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=cmd_eval)

    s = sub.add_parser("experiment", help="0/20/50 %% conflict mixes x arms, tested on held-out conflict items")
    common(s, epochs_default=None)
    s.add_argument("--out", required=True, help="run folder")
    s.add_argument("--size", type=int, help="training items per mix (default: the largest all mixes allow)")
    s.add_argument("--n-boot", type=int, default=500, help="bootstrap resamples for the intervals")
    s.add_argument("--ablations", action="store_true", help="also train FAS w/o Top-K and w/o queries")
    s.add_argument("--arms", help="comma-separated arms, e.g. acoustic-only,concat[text],fas-voiced[text] "
                                  "(default: every main arm)")
    s.add_argument("--seeds", type=int, default=3, help="training seeds per arm and mix")
    s.add_argument("--lr", type=float, default=1e-3, help="learning rate (AdamW)")
    s.add_argument("--attributions", action="store_true", help="also captum IG / ablation shares (slow)")
    s.add_argument("--quick", action="store_true", help="fewer epochs")
    s.set_defaults(func=cmd_experiment)

    s = sub.add_parser("sweep-nq", help="FAS trained with several numbers of learnable queries N_q (ablation curve)")
    common(s, epochs_default=None)
    s.add_argument("--out", required=True, help="run folder")
    s.add_argument("--values", default="1,2,4,8", help="comma-separated N_q values")
    s.add_argument("--mix", type=float, default=0.0, help="share of conflict items in training")
    s.add_argument("--semantic", choices=PATHWAYS, default="asr-minilm", help="semantic pathway (feature stream)")
    s.add_argument("--size", type=int, help="training items (default: as many as the mix allows)")
    s.add_argument("--n-boot", type=int, default=500, help="bootstrap resamples for the intervals")
    s.set_defaults(func=cmd_sweep_nq)
