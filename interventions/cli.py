"""``probe cues``: acoustic concept tokens of audio files or of a whole manifest.

    probe cues a.wav b.wav --json                  # bins fitted on the files given
    probe cues a.wav --reference MANIFEST --json   # bins fitted on a reference manifest
    probe cues a.wav --bins bins.json              # saved bins
    probe cues --data MANIFEST --out tokens.csv    # every utterance (.csv, .jsonl or .json)
    ... --save-bins bins.json --template sentence --per-speaker --levels 3

``--json`` prints a list, one object per file in the order given:
``{"file", "energy", "pitch", "dynamics", "brightness", "formants", "voice_quality"}``
(plus ``"text"`` when ``--template`` is given). This module is imported by ``probe`` at start-up,
so it imports nothing heavy at module level.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def add_commands(subparsers) -> None:
    s = subparsers.add_parser("cues", help="eGeMAPS acoustic concept tokens (energy, pitch, ...) of files or a manifest")
    s.add_argument("files", nargs="*", help="audio files (bins fitted on them unless --reference/--bins)")
    s.add_argument("--data", help="a manifest: tokens for every utterance (bins fitted on it unless --reference/--bins)")
    s.add_argument("--out", help="with --data: write the tokens here (.csv, .jsonl or .json)")
    s.add_argument("--reference", help="manifest whose audio the bins are fitted on")
    s.add_argument("--bins", help="saved bins JSON to use instead of fitting")
    s.add_argument("--save-bins", help="write the bins used to this JSON file")
    s.add_argument("--template", help="also render the tokens as prompt text with this template (brackets, sentence, list)")
    s.add_argument("--levels", type=int, default=3, help="levels per concept (2-5; default 3: low, mid, high)")
    s.add_argument("--per-speaker", action="store_true", help="z-normalise within speaker (needs manifests)")
    s.add_argument("--json", action="store_true", help="print a JSON list, one object per file")
    s.add_argument("--workers", type=int, help="extraction processes (default: all cores)")
    s.add_argument("--cache-dir", help="feature cache folder (default $DISSONANCE_CACHE/egemaps or .cache/dissonance/egemaps)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_cues)


def cmd_cues(args) -> int:
    from interventions.concepts import CONCEPT_NAMES, CueBins, CueError, render
    from interventions.egemaps import extract
    from probes.cli import CLIError

    if bool(args.files) == bool(args.data):
        raise CLIError("probe cues: give audio files or --data MANIFEST (one of the two)")
    if args.out and not args.data:
        raise CLIError("probe cues: --out goes with --data; for files use --json and redirect")
    if args.bins and args.reference:
        raise CLIError("probe cues: --bins and --reference both say where the bins come from; give one")
    opts = dict(cache_dir=args.cache_dir, workers=args.workers, progress=not args.quiet)
    try:
        if args.data:
            from probes.data.manifest import Manifest

            data = Manifest.read(args.data)
            paths = [data.audio_path(i) for i in range(len(data))]
            speakers = list(data.df["speaker"])
            ids = list(data.df["utt_id"])
        else:
            data, paths, speakers, ids = None, list(args.files), None, None  # echoed back exactly as given
            if args.per_speaker and not (args.reference or args.bins):
                raise CLIError("probe cues: --per-speaker needs speakers; use --data MANIFEST or --reference MANIFEST")
        feats = extract(paths, **opts)                                        # [n, 88]
        if args.bins:
            bins = CueBins.load(args.bins)
        else:
            if args.reference:
                from probes.data.manifest import Manifest

                ref = Manifest.read(args.reference)
                ref_feats = extract([ref.audio_path(i) for i in range(len(ref))], **opts)
                bins = CueBins.fit(ref_feats, speakers=list(ref.df["speaker"]), per_speaker=args.per_speaker,
                                   n_levels=args.levels, source=str(ref.source))
            else:
                source = str(data.source) if data is not None else f"{len(paths)} file(s) given"
                bins = CueBins.fit(feats, speakers=speakers, per_speaker=args.per_speaker, n_levels=args.levels, source=source)
        if bins.per_speaker and speakers is None:
            raise CLIError("probe cues: these bins are per speaker; give --data MANIFEST so each file has a speaker")
        tokens = bins.transform(feats, speakers)
        if args.template:
            texts = [render(t, args.template) for t in tokens]
    except CueError as e:
        raise CLIError(str(e)) from None
    if args.save_bins:
        bins.save(args.save_bins)
        print(f"wrote bins to {args.save_bins}", file=sys.stderr)

    records = []
    for i, (p, t) in enumerate(zip(paths, tokens)):
        rec = {"file": str(p)} if ids is None else {"utt_id": ids[i], "file": str(p)}
        rec.update({c: t[c] for c in CONCEPT_NAMES})
        if args.template:
            rec["text"] = texts[i]
        records.append(rec)

    if args.out:
        _write(records, Path(args.out))
        print(f"wrote {args.out} ({len(records)} utterances)", file=sys.stderr)
    elif args.json:
        print(json.dumps(records, indent=1))
    else:
        for rec in records:
            text = rec.get("text") or render({c: rec[c] for c in CONCEPT_NAMES}, "brackets")
            print(f"{rec.get('utt_id', rec['file'])}\t{text}")
    return 0


def _write(records: list[dict], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".jsonl":
        out.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    elif out.suffix == ".json":
        out.write_text(json.dumps(records, indent=1), encoding="utf-8")
    else:
        import pandas as pd

        pd.DataFrame.from_records(records).to_csv(out, index=False)
