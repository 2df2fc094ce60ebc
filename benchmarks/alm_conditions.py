"""What five cue-token conditions cost against one, and what reading every residual costs against a plain pass.

What it loads: a tiny random-weight ALM (``--model``, default ``qwen2-audio``; weights random, so
only the timings and counts mean anything) and synthetic tones (no disk, no opensmile).

What it measures, on ``--utterances`` tones of ``--seconds`` s, each the best of ``--repeats`` in process CPU time on one thread:
- ``one``: ``predict`` over the utterances under one condition (cue tokens of one kind);
- ``five``: ``predict`` over the same utterances under five conditions (none + four cue texts),
  utterance-major in batches as ``PredictionProbe`` plans them: the adapter encodes each
  waveform once and shares one prefix pass (system + audio) across the five prompts;
- ``naive``: five separate ``one`` runs with the audio cache emptied in between (no sharing);
- ``hooks``: a forward through the adapters' edit engine (plain hooks) keeping every residual,
  vs a plain forward of the same batch, and an nnsight trace saving every block's output (the
  engine the project declared first; docs/models.md says why hooks were kept).
The audio cache is emptied before each timed run. Besides wall time it prints the token
positions pushed through the decoder and the audio encodings, which do not depend on the CPU's
load: on a real 7B model with 30 s clips (750 audio tokens) the prefix dominates, and the token
ratio is the better guide to the ratio there.

Usage: ``python benchmarks/alm_conditions.py [--model qwen2-audio] [--utterances 8] [--repeats 3]``.
Output: one line per measurement and the ratios ``five/one`` (goal <= 1.6), ``naive/one``
(~5), ``hooks/plain`` and ``nnsight/plain``.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CUES = [None, "[energy: high] [pitch: high] [dynamics: high] [brightness: mid] [formants: mid] [voice quality: low]",
        "[energy: low] [pitch: low] [dynamics: low] [brightness: low] [formants: high] [voice quality: high]",
        "[energy: mid] [pitch: high] [dynamics: low] [brightness: high] [formants: low] [voice quality: mid]",
        "[energy: high] [pitch: low] [dynamics: mid] [brightness: low] [formants: mid] [voice quality: high]"]


def main() -> None:
    import numpy as np
    import torch

    from probes.adapter import Example
    from probes.registry import MODELS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen2-audio")
    ap.add_argument("--utterances", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=1.5)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=40, help="examples per predict call (the CLI's --batch-size)")
    args = ap.parse_args()
    # one thread and process CPU time: other jobs on a shared machine then slow the numbers
    # down less than they slow wall time (a loaded 2-core box made wall-time ratios swing 2x)
    torch.set_num_threads(1)
    clock = time.process_time

    a = MODELS[args.model].tiny()
    sr = a.sample_rate
    t = np.arange(int(args.seconds * sr)) / sr
    utts = [Example(utt_id=f"u{i}", row={}, audio=(0.2 * np.sin(2 * np.pi * (140 + 37 * i) * t)).astype(np.float32))
            for i in range(args.utterances)]

    def run(examples) -> tuple[float, dict]:
        best, stats = float("inf"), {}
        for _ in range(args.repeats):
            a._audio_cache.clear()
            before = dict(a.stats)
            t0 = clock()
            for s in range(0, len(examples), args.batch_size):
                a.predict(examples[s : s + args.batch_size])
            best = min(best, clock() - t0)
            stats = {k: a.stats[k] - before[k] for k in a.stats}
        return best, stats

    one_ex = [u.with_(cues=CUES[1]) for u in utts]
    five_ex = [u.with_(cues=c) for u in utts for c in CUES]          # utterance-major, as the runner plans
    run(one_ex[:2])                                                   # warm-up (allocations, first calls)
    t_one, s_one = run(one_ex)
    t_five, s_five = run(five_ex)
    t_naive, s_naive = 0.0, {k: 0 for k in s_one}
    for c in CUES:
        dt, st = run([u.with_(cues=c) for u in utts])
        t_naive += dt
        s_naive = {k: s_naive[k] + st[k] for k in st}

    batch = a.encode(utts[: min(4, len(utts))])
    kw = a.forward_kwargs(batch)

    def plain():
        with torch.no_grad():
            a.model(**kw)

    def hooked_all():  # the adapters' edit engine: every residual 0..L read through plain hooks
        from probes.models.alm.engine import Op, hooked

        got = []
        with torch.no_grad(), hooked(a, [Op(("resid", l), lambda h: got.append(h) or None) for l in range(a.n_layers + 1)]):
            a.model(**kw)

    traced = None
    try:  # the alternative engine, for the record (docs/models.md): an nnsight trace saving every block
        import nnsight
        from nnsight import NNsight

        nm = NNsight(a.model)
        blocks = a.paths["decoder.blocks"]

        def traced():
            with torch.no_grad(), nm.trace(**kw):
                env = nm
                for part in blocks.split("."):
                    env = getattr(env, part)
                got = nnsight.save([])
                for l in range(a.n_layers):
                    got.append(env[l].output)
    except ImportError:
        pass

    def best_of(fn, n=max(5, args.repeats * 3)) -> float:
        fn()
        ts = []
        for _ in range(n):
            t0 = clock()
            fn()
            ts.append(clock() - t0)
        return min(ts)

    t_plain, t_hook = best_of(plain), best_of(hooked_all)
    t_trace = best_of(traced) if traced else float("nan")

    print(f"model {a.name} ({a.weights} weights), {args.utterances} utterances x {args.seconds:.1f} s, "
          f"batch {args.batch_size}, best of {args.repeats}, CPU time, {torch.get_num_threads()} thread")
    for name, tm, st in (("one condition", t_one, s_one), ("five conditions", t_five, s_five),
                         ("five, naive", t_naive, s_naive)):
        print(f"  {name:16s} {tm * 1000:8.1f} ms   decoder token positions {st['tokens_forwarded']:7d}   "
              f"audio encodings {st['audio_encoded']:3d}")
    print(f"  plain forward    {t_plain * 1000:8.2f} ms   hooks (every residual kept) {t_hook * 1000:8.2f} ms   "
          f"nnsight trace (every block output saved) {t_trace * 1000:8.2f} ms")
    print(f"ratio five/one    time {t_five / t_one:5.2f}x   tokens {s_five['tokens_forwarded'] / s_one['tokens_forwarded']:5.2f}x   (goal <= 1.6x)")
    print(f"ratio naive/one   time {t_naive / t_one:5.2f}x   tokens {s_naive['tokens_forwarded'] / s_one['tokens_forwarded']:5.2f}x")
    print(f"ratio hooks/plain time {t_hook / t_plain:5.2f}x   nnsight/plain {t_trace / t_plain:5.2f}x")

    # Projection to Qwen2-Audio-7B (arithmetic on the counts above, NOT a measurement): the
    # Whisper-large-v3 encoder always runs over 30 s of padded mel frames (~0.64 B params x 1500
    # positions), the 7.7 B decoder costs 2 x params FLOPs per token position, the audio takes
    # 25 tokens per second. Per-condition text tokens are taken from the tiny run, whose small
    # tokenizer splits words finer than Qwen's, so the projected ratio is on the high side.
    n = args.utterances
    per_cond = (s_five["tokens_forwarded"] - s_one["tokens_forwarded"]) / (4 * n)   # suffix + label rows
    tiny_audio = len(batch.spans[0]["audio"])
    prefix_text = s_one["tokens_forwarded"] / n - per_cond - tiny_audio
    enc, dec = 2 * 0.64e9 * 1500, 2 * 7.7e9
    for secs in (4.0, 30.0):
        p = prefix_text + 25 * secs
        one, five, naive = enc + dec * (p + per_cond), enc + dec * (p + 5 * per_cond), 5 * (enc + dec * (p + per_cond))
        print(f"projected Qwen2-Audio-7B, {secs:4.0f} s clips: five/one {five / one:4.2f}x, naive/one {naive / one:4.2f}x "
              f"(FLOPs; {per_cond:.0f} text positions per condition, {p:.0f} in the shared prefix)")


if __name__ == "__main__":
    main()
