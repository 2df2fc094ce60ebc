"""Checks to run the first time a real checkpoint is on a GPU: prints a pass/fail table.

    python benchmarks/real_model_check.py --model qwen2-audio --model-path /models/Qwen2-Audio-7B-Instruct \\
        --manifest data/small/manifest.csv [--n 20] [--out runs/check] [--tol 1e-4] [--min-agreement 0.8]
    python benchmarks/real_model_check.py --model qwen2-audio --tiny --manifest M   # the same on a tiny instance

Checks (each PASS / FAIL / SKIP with a one-line detail):
1. audio-reached: the encoded batch carries one placeholder per audio frame, the frames are not the
   placeholder embedding, and the label distributions differ between utterances;
2. prompt-equality: the adapter's piece-by-piece ids equal the checkpoint's own chat template
   (``processor.chat_template`` of the folder; for ``--tiny`` the published template recorded in
   probes/models/configs/) rendered for the same messages, the audio placeholder expanded, and
   tokenized at once with the model's tokenizer;
3. closed-vs-generated: closed-set label vs greedy generated answer (parsed) on ``--n`` items;
   PASS when the agreement rate is at least ``--min-agreement``;
4. batch-invariance: label log-probabilities of a batch of 8 mixed-length items vs one at a time,
   max difference below ``--tol`` (use about 2e-2 for bf16 weights);
5. token-shuffle: one run of the registered ``token-shuffle`` probe (cue bins fitted on the
   manifest itself) into ``--out``; PASS when both conditions were scored.

What a real checkpoint should print: PASS on 1, 2 and 4; on 3 an agreement well above chance
(a disagreement rate above 0.2 means the closed-set score is not what the model would say: check
capitalisation / leading space of the labels, docs/real-models.md); 5 PASS with its accuracy
change. Exit status 1 when any check FAILs.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _examples(model, data, n):
    from probes.adapter import Example
    from probes.audio import load_audio

    out = []
    for row in list(data.rows())[:n]:
        wav = load_audio(data.audio_path(row["utt_id"]), model.sample_rate, max_seconds=model.max_seconds, too_long="truncate")
        out.append(Example(utt_id=row["utt_id"], row=row, audio=wav, sr=model.sample_rate))
    return out


def check_audio_reached(model, ex):
    import torch

    model.encode(ex[:4])  # raises AudioDroppedError when the audio did not get in
    lp = model.label_logprobs(ex[:4])
    spread = float((lp - lp[:1]).abs().max())
    ok = spread > 1e-6
    return ok, f"placeholders = frames, embeddings written; distributions differ by up to {spread:.2e}" if ok else \
        "every utterance gets the same distribution: the audio has no effect"


def _template_for(model, args):
    if args.model_path:
        from transformers import AutoProcessor

        proc = AutoProcessor.from_pretrained(args.model_path)
        return getattr(proc, "chat_template", None) or getattr(proc.tokenizer, "chat_template", None), "the checkpoint's processor"
    from probes.models.tokenizers import real_config

    try:
        rec = real_config(model.name)
    except ValueError:
        return None, ""
    return rec.get("chat_template"), "the published template (configs/)"


def _message_form(model) -> str:
    """How the family's template takes the audio (configs/<family>.json ``message_form``): "string" = the
    placeholder written into the user text; default: a content list with an audio part."""
    from probes.models.tokenizers import real_config

    try:
        return real_config(model.name).get("message_form", "list")
    except ValueError:
        return "list"


def check_prompt_equality(model, ex, args):
    tpl, where = _template_for(model, args)
    if not tpl:
        return None, f"{model.name}: no chat template to compare with (its prompts are built by its own library)"
    tok = model.tokenizer
    n = 5
    bad = 0
    for e in ex[:3]:
        p = model.prompt(e, n)
        built = p.head + [model.audio_token_id] * n + p.tail
        system = getattr(model, "system", "") or None
        if _message_form(model) == "string":  # templates that concatenate strings (Granite, Phi-4): placeholder + text
            user = {"role": "user", "content": model.audio_token + model.user_text(e)}
        else:
            user = {"role": "user", "content": [{"type": "audio", "audio": "a.wav"}, {"type": "text", "text": model.user_text(e)}]}
        msgs = ([{"role": "system", "content": system}] if system else []) + [user]
        text = tok.apply_chat_template(msgs, chat_template=tpl, tokenize=False, add_generation_prompt=True)
        if text.count(model.audio_token) != 1:
            return False, f"the template rendered {text.count(model.audio_token)} audio placeholders"
        try:  # Gemma 4's processor also writes begin / end-of-audio around the run (configs: audio_wrap)
            from probes.models.tokenizers import real_config

            pre, post = real_config(model.name).get("audio_wrap", ("", ""))
        except ValueError:
            pre, post = "", ""
        text = text.replace(model.audio_token, pre + model.audio_token * n + post)
        want = tok(text, add_special_tokens=False)["input_ids"]
        if built != want:
            bad += 1
            first = next((i for i, (a, b) in enumerate(zip(built, want)) if a != b), min(len(built), len(want)))
            detail = f"first difference at token {first}: adapter {tok.decode(built[max(0, first - 3):first + 3])!r} vs template {tok.decode(want[max(0, first - 3):first + 3])!r}"
    return (bad == 0), (f"3 prompts equal {where}" if bad == 0 else f"{bad}/3 prompts differ; {detail}")


def check_agreement(model, ex, args):
    cls = type(model)
    gen = cls(model.model, model.tokenizer, model.fe, weights=model.weights, source=model.source, answer_mode="generate")
    gen.max_seconds = model.max_seconds
    closed = [p.label for p in model.predict(ex)]
    said = gen.predict(ex)
    agree = sum(c == g.label for c, g in zip(closed, said)) / len(ex)
    invalid = sum(g.label is None for g in said)
    ok = agree >= args.min_agreement
    return ok, f"agreement {agree:.2f} on {len(ex)} items ({invalid} generated answers named no label); threshold {args.min_agreement}"


def check_batch(model, ex, args):
    import torch

    items = (ex * 8)[:8]
    batched = model.label_logprobs(items)
    single = torch.cat([model.label_logprobs([e]) for e in items])
    d = float((batched - single).abs().max())
    return d < args.tol, f"max |batch 8 - batch 1| = {d:.2e} (tolerance {args.tol})"


def check_token_shuffle(model, data, args):
    from probes.probe import run_probe
    from probes.registry import PROBES

    out = Path(args.out or tempfile.mkdtemp(prefix="real-check-")) / "token-shuffle"
    probe = PROBES["token-shuffle"](reference="self", n_boot=50)
    run_probe(probe, model, data, out, limit=args.n, progress=False, too_long="truncate")
    m = json.loads((out / "metrics.json").read_text())
    conds = m.get("conditions") or {}
    ok = {"none", "shuffled"} <= set(conds) and m.get("errors", 0) == 0
    try:
        d = m["compare"]["none"]["shuffled"]
        change = f"accuracy change {d['delta_accuracy']:+.3f}, McNemar p {d['mcnemar']['p_value']:.3g}"
    except (KeyError, TypeError):
        change = "no comparison in metrics.json"
    return ok, f"run at {out}; {', '.join(sorted(conds))} scored, {m.get('errors', 0)} errors; {change}"

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="registered family, e.g. qwen2-audio")
    ap.add_argument("--model-path", help="local folder (or hub id where a hub is reachable)")
    ap.add_argument("--tiny", action="store_true", help="a tiny random-weight instance instead (tests)")
    ap.add_argument("--manifest", required=True, help="a small corpus manifest (20+ utterances)")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--out", help="folder for the token-shuffle run (default: a temporary folder)")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--min-agreement", type=float, default=0.8)
    ap.add_argument("--device")
    ap.add_argument("--skip", default="", help="comma-separated check names to skip")
    args = ap.parse_args(argv)
    if bool(args.model_path) == bool(args.tiny):
        ap.error("give exactly one of --model-path and --tiny")

    from probes.data.manifest import Manifest
    from probes.registry import MODELS

    data = Manifest.read(args.manifest)
    model = MODELS[args.model].from_cli(model_path=args.model_path, tiny=args.tiny, device=args.device)
    ex = _examples(model, data, args.n)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    checks = [("audio-reached", lambda: check_audio_reached(model, ex)),
              ("prompt-equality", lambda: check_prompt_equality(model, ex, args)),
              ("closed-vs-generated", lambda: check_agreement(model, ex, args)),
              ("batch-invariance", lambda: check_batch(model, ex, args)),
              ("token-shuffle", lambda: check_token_shuffle(model, data, args))]
    rows = []
    for name, fn in checks:
        t = time.time()
        if name in skip:
            rows.append((name, "SKIP", "--skip", 0.0))
            continue
        try:
            ok, detail = fn()
            status = "SKIP" if ok is None else ("PASS" if ok else "FAIL")
        except Exception as e:  # one failing check must not hide the others
            status, detail = "FAIL", f"{type(e).__name__}: {e}".splitlines()[0][:200]
        rows.append((name, status, detail, time.time() - t))
    print(f"\n{args.model} ({args.model_path or 'tiny'}), {len(ex)} items from {args.manifest}")
    w = max(len(r[0]) for r in rows)
    for name, status, detail, dt in rows:
        print(f"  {name:<{w}}  {status:<4}  {dt:6.1f}s  {detail}")
    return 1 if any(r[1] == "FAIL" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
