"""Throughput of a probe run on a local Ray cluster with 1 and 2 model replicas, and the cost of a block.

What it loads: a tiny random-weight ALM (``--model``, default ``qwen2-audio``; weights random, so
only the timings mean anything) and ``--utterances`` synthetic tones written to a temporary
manifest. Ray starts a local cluster on this machine (``num_cpus`` = 2).

What it measures (wall time of the whole run, model loading in each replica included, so the
first numbers carry a fixed start-up cost; a real 7B run amortises that over hours):
- ``local``: ``run_probe`` in this process (the default backend);
- ``ray-1`` / ``ray-2``: the same run through ``--backend ray`` with 1 and 2 replicas (one CPU
  each); their ratio is the scale-out on this machine (2 cores: at most 2x, less with the driver
  and Ray's own processes on the same cores);
- ``overhead``: the ``dummy`` model (no computation) through Ray with blocks of one utterance:
  the scheduling loop's time / blocks = what a block costs beyond its computation (submit, run,
  return, write the rows).
The scheduling-loop time starts once the first replica answers, so it leaves out most of the
start-up (the second replica may still be loading while the first works).
Each replica is pinned to one torch thread so that replicas do not fight over the cores.

Usage: ``python benchmarks/ray_throughput.py [--utterances 32] [--model qwen2-audio]``.
Output: one line per measurement, then ``ray-2/ray-1 speed-up`` and ``overhead per block``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")  # each replica one thread, inherited by Ray's workers
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _manifest(folder: Path, n: int) -> Path:
    import numpy as np
    import pandas as pd
    import soundfile as sf

    labels = ["neutral", "happy", "sad", "angry"]
    sr, t = 16_000, np.arange(16_000) / 16_000
    rows = []
    for i in range(n):
        wav = 0.2 * np.sin(2 * np.pi * (120 + 7 * i) * t)
        sf.write(folder / f"u{i:03d}.wav", wav.astype("float32"), sr)
        rows.append(dict(utt_id=f"u{i:03d}", audio_path=f"u{i:03d}.wav", text=f"sentence {i % 5}",
                         sentence_id=f"s{i % 5}", acoustic_label=labels[i % 4], semantic_label=labels[(i // 4) % 4],
                         speaker=f"spk{i % 3}", language="en", corpus="bench", split="test"))
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    return folder / "manifest.csv"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--utterances", type=int, default=32)
    ap.add_argument("--model", default="qwen2-audio")
    args = ap.parse_args()

    import ray
    import torch

    from probes.backends.ray_backend import RaySettings, run_on_ray
    from probes.data.manifest import Manifest
    from probes.probe import run_probe
    from probes.registry import MODELS, PROBES

    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="ray-bench-"))
    data = Manifest.read(_manifest(tmp, args.utterances))
    probe = PROBES["predict"]()
    n = len(data)

    t = time.perf_counter()
    run_probe(probe, MODELS[args.model].from_cli(tiny=True), data, tmp / "local", progress=False)
    local = time.perf_counter() - t
    print(f"local   : {local:7.2f} s  {n / local:6.2f} utt/s")

    from probes.backends.ray_backend import init_local_ray

    init_local_ray(num_cpus=2)
    try:
        times, loops = {}, {}
        for w in (1, 2):
            t = time.perf_counter()
            _, st = run_on_ray(probe, args.model, {"tiny": True}, data, tmp / f"ray{w}",
                               RaySettings(workers=w, block_size=4), progress=False)
            times[w], loops[w] = time.perf_counter() - t, st["seconds"]
            print(f"ray-{w}   : {times[w]:7.2f} s  {n / times[w]:6.2f} utt/s with replica start-up; "
                  f"scheduling loop {loops[w]:6.2f} s  {n / loops[w]:6.2f} utt/s")
        _, stats = run_on_ray(probe, "dummy", {}, data, tmp / "dummy-ray", RaySettings(workers=2, block_size=1),
                              progress=False)
    finally:
        ray.shutdown()
    print(f"ray-2/ray-1 speed-up: {times[1] / times[2]:.2f}x with start-up, {loops[1] / loops[2]:.2f}x "
          f"in the scheduling loop;   ray-2 vs local: {local / times[2]:.2f}x")
    print(f"time per block with a model that does nothing (submit, run, return, write the rows): "
          f"{stats['seconds'] / stats['blocks'] * 1000:.1f} ms ({stats['blocks']} blocks of one utterance)")


if __name__ == "__main__":
    main()
