"""The organisms' step of ``probe demo`` / ``make demo``: who follows the words, and where the voice is lost.

For each organism (``text-reliant``, ``voice-reliant``: small Qwen2-Audio models trained here,
docs/organisms.md) it runs, on the demo corpus' ``test`` split (speakers and sentences the
organisms never saw in training; the first ``DEMO_ITEMS`` items in whole sentence groups,
``validate.pair_order``):

- ``predict``: follows-text / follows-voice on the conflict items (who follows the words);
- ``attention-share``: how much the answer position attends to the audio and to the transcript,
  block by block;
- ``logit-lens``: the block where the final answer becomes the top label.

Run folders: ``ROOT/<probe>/qwen2-audio-<organism>/<dataset>/``; their manifests say
``weights: organism (trained here)``. The words reach an organism only as a transcript in its
prompt (a decoder trained from scratch cannot read words out of audio states).

The command each run equals (seed 0, ``runs/demo`` the demo root; the demo restricts ``--data``
to the chosen test items)::

    probe run predict --model qwen2-audio --organism text-reliant --data runs/demo/data/synth/manifest.csv \\
        --out runs/demo/predict/qwen2-audio-text-reliant/synth
"""

from __future__ import annotations

import time
from pathlib import Path

from probes.demo import STEPS

ORGANISMS = ("text-reliant", "voice-reliant")
PROBES = ("predict", "attention-share", "logit-lens")
DEMO_ITEMS = 60        # test items per run (the Whisper tower encodes each once, ~0.3-1 s per clip on 2 busy cores)
QUICK_ITEMS = 24


def demo_items(data, n: int, seed: int = 0):
    """The first ``n`` test items of ``data`` in whole sentence groups (all items when there is no test split)."""
    from probes.models.organisms.validate import pair_order

    df = data.df.reset_index(drop=True)
    test = df[df["split"] == "test"] if "split" in df.columns and (df["split"] == "test").any() else df
    keep = set(pair_order(test.reset_index(drop=True), seed)["utt_id"].iloc[:n])
    return data.subset(df["utt_id"].isin(keep).to_numpy())


def organisms_step(corpus: Path, root: Path, seed: int, quick: bool) -> list[Path]:
    from probes.data.manifest import Manifest
    from probes.demo import run_dir
    from probes.models.organisms import load
    from probes.probe import run_probe
    from probes.registry import PROBES as REGISTRY

    t0 = time.time()
    data = demo_items(Manifest.read(corpus), QUICK_ITEMS if quick else DEMO_ITEMS, seed)
    print(f"[demo] model organisms (small Qwen2-Audio trained here; words enter only as a transcript) "
          f"on {len(data)} test items")
    runs = []
    for name in ORGANISMS:
        a = load("qwen2-audio", name)
        a.cache_size = max(a.cache_size, len(data) + 8)
        for probe in PROBES:
            out = run_dir(root, probe, f"qwen2-audio-{name}", corpus)
            run_probe(REGISTRY[probe](), a, data, out, seed=seed, progress=False)
            runs.append(out)
        print(f"[demo]   {name}: {_summary(runs[-len(PROBES)])} ({time.time() - t0:.0f} s)")
    return runs


def _summary(predict_dir: Path) -> str:
    from probes.store import read_rows

    r = read_rows(predict_dir)
    r = r[(r["acoustic_label"] != r["semantic_label"]) & (r["semantic_label"] != "neutral")]
    if not len(r):
        return "no emotional-text conflict items"
    return (f"follows-text {float((r['pred'] == r['semantic_label']).mean()):.2f}, "
            f"follows-voice {float((r['pred'] == r['acoustic_label']).mean()):.2f} on {len(r)} emotional-text conflict items")


if organisms_step not in STEPS:
    STEPS.append(organisms_step)
