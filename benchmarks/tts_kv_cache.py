"""Sampling with and without the KV cache (``tts-* --set kv_cache=true``): time ratio and agreement.

Decodes ``--n`` samples of up to ``--max-new-tokens`` tokens for each of ``--items`` utterances of
a manifest, once with the full-sequence decoder (the reference) and once with the KV cache, with
the same seeds; prints the wall-time ratio (uncached / cached, over all items, after one warm-up
item), the forward passes and rows forwarded of each, and whether every sample's tokens agree.

    .venv/bin/python benchmarks/tts_kv_cache.py --data M --organism voice-reliant
    .venv/bin/python benchmarks/tts_kv_cache.py --data M --tiny          # tiny random-weight Qwen2-Audio
"""

from __future__ import annotations

import argparse
import sys
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="manifest")
    ap.add_argument("--organism", help="an organism of qwen2-audio (docs/organisms.md)")
    ap.add_argument("--tiny", action="store_true", help="the tiny random-weight qwen2-audio instead")
    ap.add_argument("--items", type=int, default=6)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=12)
    ap.add_argument("--temperature", type=float, default=0.7)
    a = ap.parse_args(argv)
    if bool(a.organism) == bool(a.tiny):
        ap.error("give one of --organism NAME or --tiny")

    import torch

    from probes.data.manifest import Manifest
    from probes.library._tts import Budget, Decoder, seeded_generator
    from probes.probe import RunContext
    from probes.registry import MODELS, PROBES

    model = MODELS["qwen2-audio"].from_cli(organism=a.organism) if a.organism else MODELS["qwen2-audio"].from_cli(tiny=True)
    data = Manifest.read(a.data)
    probe = PROBES["tts-self-consistency"]()
    ctx = RunContext()
    exs = [probe.make_example(model, data, it, ctx) for it in probe.plan(data)[: a.items + 1]]
    res = {}
    for kv in (False, True):
        spent, wall, toks = Budget(), 0.0, []
        for k, ex in enumerate(exs):
            b = Budget()
            t0 = time.perf_counter()
            c = Decoder(model, ex, b, kv_cache=kv).sample(a.n, max_new_tokens=a.max_new_tokens, temperature=a.temperature,
                                                         generator=seeded_generator(0, ex.utt_id))
            dt = time.perf_counter() - t0
            if k == 0:
                continue                  # warm-up item
            wall += dt
            spent.forward_passes += b.forward_passes
            spent.sequences_forwarded += b.sequences_forwarded
            spent.tokens_generated += b.tokens_generated
            toks.append([x.tokens for x in c])
        res[kv] = (wall, spent, toks)
    (w0, b0, t0), (w1, b1, t1) = res[False], res[True]
    print(f"{len(exs) - 1} items x {a.n} samples, up to {a.max_new_tokens} tokens "
          f"({'organism ' + a.organism if a.organism else 'tiny random weights'}; prompt {exs[-1].utt_id})")
    print(f"uncached: {w0:.2f} s, {b0.forward_passes} forward passes, {b0.sequences_forwarded} rows, {b0.tokens_generated} tokens")
    print(f"cached:   {w1:.2f} s, {b1.forward_passes} forward passes, {b1.sequences_forwarded} rows, {b1.tokens_generated} tokens")
    print(f"time ratio uncached / cached: {w0 / w1:.2f}; same tokens in every sample: {t0 == t1}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
