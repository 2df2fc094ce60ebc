"""Sum vs mean length normalisation of closed-set label scores, on trained models with the real Qwen ids.

Under the real Qwen vocabulary four of the seven labels are several tokens (``ang``+``ry``,
``f``+``ear``, ``dis``+``g``+``ust``, ``sur``+``prise``). Closed-set scoring sums the label's
token log-probabilities (``--length-norm sum``, the probability of the whole string) or averages
them (``mean``). On random weights every token costs about log(V), so the choice moves the
distribution a lot; what matters is how much it moves on a model that has learnt the labels.
The organisms (docs/organisms.md) are such models: Qwen2-Audio class, real Qwen token ids
(trimmed vocabulary), decoder trained here. For each organism, on the test split of its corpus
(305 items, speakers and sentences never seen in training): the total-variation distance between
the two distributions per item (mean with a bootstrap 95 % interval, and the largest), the share
of items whose top label changes, and how often the top label is the voice's and the words' label
under each rule.

    .venv/bin/python benchmarks/length_norm_organisms.py [--corpus DIR] [--n N]

About a minute per organism on 2 cores once the tower states are cached. The numbers go into
docs/models.md ("Scoring policy").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def distributions(a, exs, norm: str, batch: int = 32) -> np.ndarray:
    a.length_norm = norm
    out = []
    for k in range(0, len(exs), batch):
        out += [[p.probs[l] for l in a.labels] for p in a.predict(exs[k : k + batch])]
    return np.asarray(out, dtype=float)


def main(argv=None) -> int:
    from probes.models.organisms import load
    from probes.models.organisms.train import corpus, examples, load_wavs, rate_ci, read_manifest
    from probes.models.organisms.validate import ORGS, _prefill

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", help="synthetic corpus folder (default: the organisms' corpus cache)")
    ap.add_argument("--n", type=int, help="only the first N test items")
    args = ap.parse_args(argv)
    man = corpus(Path(args.corpus) if args.corpus else None)
    df = read_manifest(man)
    te = df[df["split"] == "test"].reset_index(drop=True)
    if args.n:
        te = te.iloc[: args.n].reset_index(drop=True)
    wavs = load_wavs(man, te)
    _prefill(man, te, wavs)
    print(f"{len(te)} test items of {man}")
    print("| organism | label tokens (Qwen ids) | TV(sum, mean) per item | top label changes | top = voice label, sum / mean | top = text label, sum / mean |")
    print("|---|---|---|---|---|---|")
    for name in ORGS:
        a = load("qwen2-audio", name)
        a.cache_size = max(a.cache_size, len(te) + 8)
        exs = examples(te, wavs)
        ps, pm = distributions(a, exs, "sum"), distributions(a, exs, "mean")
        a.length_norm = "sum"
        tv = 0.5 * np.abs(ps - pm).sum(1)
        top_s, top_m = np.asarray(a.labels)[ps.argmax(1)], np.asarray(a.labels)[pm.argmax(1)]
        ya, ys = te["acoustic_label"].to_numpy(), te["semantic_label"].to_numpy()
        toks = ", ".join(f"{l} {len(t)}" for l, t in zip(a.labels, a.label_tokens()))

        def f(ci):
            return f"{ci[0]:.3f} [{ci[1]:.3f}, {ci[2]:.3f}]"

        print(f"| {name} | {toks} | {f(rate_ci(tv))} (max {tv.max():.3f}) | {f(rate_ci(top_s != top_m))} | "
              f"{(top_s == ya).mean():.3f} / {(top_m == ya).mean():.3f} | {(top_s == ys).mean():.3f} / {(top_m == ys).mean():.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
