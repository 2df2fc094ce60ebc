"""``probe cues``: acoustic concept tokens of audio files or of a whole manifest.

    probe cues a.wav --reference MANIFEST --json   # bins fitted on a reference manifest
    probe cues a.wav --bins bins.json              # saved bins
    probe cues --data MANIFEST --out tokens.csv    # every utterance (.csv, .jsonl or .json); bins
                                                   # fitted on its train split, per speaker
    probe cues a.wav b.wav ... --reference self    # bins fitted on the files given (explicit)
    ... --save-bins bins.json --template sentence --norm global --levels 3

Where the bins come from is always named: ``--reference`` (a manifest, a split of ``--data``, or
``self``) or ``--bins``; with ``--data`` the default is its ``train`` split. A reference of fewer
than ``MIN_REFERENCE_FILES`` (20) files is refused (one file would be ``mid`` on every concept)
unless ``--small-reference`` says to go on, with a warning. With ``--data`` the features are
z-normalised within each speaker when every row names one (``--norm auto``); files given on the
command line have no speaker, so their bins are global. What the bins were fitted on is printed
to stderr (stdout stays the JSON / table).

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
    s.add_argument("files", nargs="*", help="audio files (give --reference or --bins for their bins)")
    s.add_argument("--data", help="a manifest: tokens for every utterance (bins fitted on its train split unless --reference/--bins)")
    s.add_argument("--out", help="with --data: write the tokens here (.csv, .jsonl or .json)")
    s.add_argument("--reference", help="what the bins are fitted on: a manifest path; with --data also train|dev|test; "
                                       "or self (the files / manifest being tokenised)")
    s.add_argument("--small-reference", action="store_true",
                   help="go on (with a warning) when the reference holds fewer than 20 files")
    s.add_argument("--bins", help="saved bins JSON to use instead of fitting")
    s.add_argument("--save-bins", help="write the bins used to this JSON file")
    s.add_argument("--template", help="also render the tokens as prompt text with this template (brackets, sentence, list)")
    s.add_argument("--levels", type=int, default=3, help="levels per concept (2-5; default 3: low, mid, high)")
    s.add_argument("--norm", choices=("auto", "per-speaker", "global"), default="auto",
                   help="z-normalise features within each speaker or over the reference set "
                        "(auto: per speaker when every manifest row names its speaker)")
    s.add_argument("--per-speaker", dest="norm", action="store_const", const="per-speaker", help="same as --norm per-speaker")
    s.add_argument("--scaling", choices=("robust", "standard"), default="robust",
                   help="feature z-scores: robust (median/MAD, clipped to +-3; default) or standard (mean/std)")
    s.add_argument("--json", action="store_true", help="print a JSON list, one object per file")
    s.add_argument("--workers", type=int, help="extraction processes (default: all cores)")
    s.add_argument("--cache-dir", help="feature cache folder (default $DISSONANCE_CACHE/egemaps or .cache/dissonance/egemaps)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_cues)


def cmd_cues(args) -> int:
    from interventions.concepts import CueBins, CueError, render
    from interventions.cues import MIN_REFERENCE_FILES, SELF, SPLITS, _has_speakers, check_reference, resolve_reference
    from interventions.egemaps import extract
    from probes.cli import CLIError

    if bool(args.files) == bool(args.data):
        raise CLIError("probe cues: give audio files or --data MANIFEST (one of the two)")
    if args.out and not args.data:
        raise CLIError("probe cues: --out goes with --data; for files use --json and redirect")
    if args.bins and args.reference:
        raise CLIError("probe cues: --bins and --reference both say where the bins come from; give one")
    if args.files and not (args.bins or args.reference):
        raise CLIError(f"probe cues: say what the bins are fitted on: --reference MANIFEST (at least {MIN_REFERENCE_FILES} "
                       f"files of comparable speech), --bins FILE, or --reference self to fit them on the "
                       f"{len(args.files)} file(s) given")
    if args.files and args.reference in SPLITS:
        raise CLIError(f"probe cues: --reference {args.reference} names a split of --data; for files give a manifest path or self")
    if args.files and args.norm == "per-speaker" and not args.bins:
        raise CLIError("probe cues: files given on the command line have no speaker; per-speaker bins need --data MANIFEST")
    opts = dict(cache_dir=args.cache_dir, workers=args.workers, progress=not args.quiet)
    try:
        if args.reference and args.reference != SELF:
            check_reference(args.reference)  # a missing path: refused before any extraction
        if args.bins:
            bins = CueBins.load(args.bins)
        if args.data:
            from probes.data.manifest import Manifest

            data = Manifest.read(args.data)
            paths = [data.audio_path(i) for i in range(len(data))]
            speakers = list(data.df["speaker"])
            ids = list(data.df["utt_id"])
            if not args.bins:
                ref, _, described = resolve_reference(data, args.reference)
        else:
            data, paths, speakers, ids = None, list(args.files), None, None  # echoed back exactly as given
            if args.reference and args.reference != SELF:
                from probes.data.manifest import Manifest

                ref = Manifest.read(args.reference)
                described = str(args.reference)
            elif not args.bins:
                ref, described = None, f"the {len(paths)} file(s) given (--reference self)"
        if not args.bins:
            n_ref = len(ref) if ref is not None else len(paths)
            if n_ref < MIN_REFERENCE_FILES:
                msg = (f"the cue bins would be fitted on {n_ref} file(s) ({described}), fewer than {MIN_REFERENCE_FILES}: "
                       f"levels relative to so few files mean little (a single file is 'mid' on every concept)")
                if not args.small_reference:
                    raise CLIError(f"probe cues: {msg}; give --reference MANIFEST with more files of comparable speech "
                                   f"(or --bins FILE), or --small-reference to go on anyway")
                print(f"probe cues: WARNING: {msg}.", file=sys.stderr)
        feats = extract(paths, **opts)                                        # [n, 88]
        if not args.bins:
            if ref is None:
                ref_feats, ref_spk = feats, None
            elif data is not None and ref is data:
                ref_feats, ref_spk = feats, speakers
            else:
                ref_feats, ref_spk = extract([ref.audio_path(i) for i in range(len(ref))], **opts), list(ref.df["speaker"])
            if args.norm == "auto":
                per_speaker = data is not None and ref is not None and _has_speakers(ref) and _has_speakers(data)
            else:
                per_speaker = args.norm == "per-speaker"
            bins = CueBins.fit(ref_feats, speakers=ref_spk, per_speaker=per_speaker, n_levels=args.levels,
                               source=described, scaling=args.scaling)
        if bins.per_speaker and speakers is None:
            raise CLIError("probe cues: these bins are per speaker; give --data MANIFEST so each file has a speaker")
        tokens = bins.transform(feats, speakers)
        if args.template:
            texts = [render(t, args.template) for t in tokens]
    except CueError as e:
        raise CLIError(str(e)) from None
    if not args.quiet:
        print(f"cue bins: fitted on {bins.fitted_on.get('source') or '?'} ({bins.fitted_on.get('n', '?')} files), "
              f"{'per-speaker' if bins.per_speaker else 'global'} {bins.scaling} z, {bins.n_levels} levels"
              + (f" (loaded from {args.bins})" if args.bins else ""), file=sys.stderr)
    if args.save_bins:
        bins.save(args.save_bins)
        print(f"wrote bins to {args.save_bins}", file=sys.stderr)

    from interventions.concepts import CONCEPT_NAMES

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
