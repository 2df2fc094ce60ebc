"""FAS throughput: feature extraction (utterances/s, serial vs parallel) and training (items/s).

    .venv/bin/python benchmarks/fas_throughput.py [--n 16] [--pathways egemaps,asr-minilm] [--workers 2]

Speaks ``--n`` utterances with espeak-ng (the synthetic corpus' engine), extracts each pathway
into a fresh temporary cache once serially and once with ``--workers`` processes, then trains
FAS (d=512, the paper's sizes, eGeMAPS 25-d + MiniLM 384-d inputs) on random features of the
same shapes for a few epochs. Timings depend on the machine and on whatever else runs on it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--pathways", default="egemaps,asr-minilm")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import numpy as np

    from probes.audio import write_wav
    from probes.data.synth.engine import Request, speak

    from fas.features import PathwaySpec, extract, item_for

    tmp = Path(tempfile.mkdtemp(prefix="fas-bench-"))
    words = ["the train leaves at nine", "we won the final game", "nobody called me back", "the results are in"]
    rows = []
    # the first extraction of each pathway also pays process start-up; --n 64 shows the parallel gain
    for i in range(args.n):
        p = tmp / f"u{i}.wav"
        write_wav(p, speak(Request(f"{words[i % 4]} number {i}")))
        rows.append(({"text": f"{words[i % 4]} number {i}"}, p))
    print(f"{args.n} utterances, mean {np.mean([len(__import__('soundfile').read(str(p))[0]) / 16000 for _, p in rows]):.2f} s each")
    for name in args.pathways.split(","):
        spec = PathwaySpec(name)
        items = [item_for(r, p, spec) for r, p in rows]
        for workers in (1, args.workers):
            t = time.perf_counter()
            extract(spec, items, workers=workers, progress=False, root=tmp / f"cache-{name}-{workers}")
            dt = time.perf_counter() - t
            print(f"features {name:12s} workers={workers}: {args.n / dt:6.2f} utt/s ({dt:.1f} s, incl. start-up)")

    import torch

    from fas.model import arm_config
    from fas.train import Streams, TrainConfig, train_model

    rng = np.random.default_rng(0)
    n = 256
    st = Streams([f"u{i}" for i in range(n)], [rng.normal(size=(300, 25)).astype(np.float32) for _ in range(n)],
                 [rng.normal(size=(12, 384)).astype(np.float32) for _ in range(n)],
                 [["happy", "sad", "angry", "neutral"][i % 4] for i in range(n)], [""] * n)
    default_threads = torch.get_num_threads()
    train_model(arm_config("fas-concat", d_aco=25, d_sem=384, labels=("happy", "sad")), st.subset(range(8)),
                TrainConfig(epochs=1, batch_size=8))  # first optimizer step imports torch._dynamo: not timed
    for threads in sorted({1, default_threads}):
        torch.set_num_threads(threads)
        for arm in ("fas", "fas-concat"):
            cfg = arm_config(arm, d_aco=25, d_sem=384, patch_sem=1, labels=("neutral", "happy", "sad", "angry"))
            t = time.perf_counter()
            train_model(cfg, st, TrainConfig(epochs=args.epochs, batch_size=32))
            dt = time.perf_counter() - t
            print(f"training {arm:10s}: {n * args.epochs / dt:7.1f} items/s ({threads} threads)")


if __name__ == "__main__":
    main()
