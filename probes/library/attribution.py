"""``attribution``: how much of the answer comes from the audio, how much from the text?

What it measures, per utterance, for the log-probability of one label in the model's closed-set
distribution (ALMs: each label's whole token string scored; ``target``: the model's own answer
by default, or the voice's / the words' label):
- ``ig``: integrated gradients (Sundararajan et al. 2017, captum) at the model's input
  embeddings (ALMs: after the audio projector is merged in; FAS: its two feature streams; the
  audio classifier: its encoder input frames, spans = 0.5 s stretches ``audio:START-END``),
  from the adapter's baseline (zeros) to the input. Attributions sum to f(input) -
  f(baseline) (completeness); ``ig_delta`` in every row is how far captum's numerical
  integral is from that, and a large one means more ``n_steps``.
- ``ablation``: feature ablation with one group per span: f(input) - f(input with the span
  set to the baseline). Cheap (one forward pass per span) and easy to explain, but it misses
  interactions: two spans that each suffice both score near zero.
Summarised per span (``audio``, ``prompt``, ``cues``, ``answer``, ``other``; FAS: ``acoustic``,
``semantic``) as the share of absolute attribution mass, and as ``voice`` (audio / acoustic
spans) vs ``text`` (everything else). Shares say what the prediction is sensitive to, near
this input; they are not a decomposition of what the model "knows".

What it reads: the model through ``inside_attribution(example)``; the manifest's labels.

One row per (utterance, method, span, metric): ``utt_id, condition, method ("ig" |
"ablation"), span, metric ("share" | "signed"), value, target_label, ig_delta, f_input,
f_baseline`` + labels, speaker, sentence_id, split, corpus. ``metrics.json``: mean voice share
per method for congruent and conflict items.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from probes.library._inside import VOICE_SPANS, label_columns, make_examples, positions, require
from probes.probe import Conditions, Probe, WorkItem
from probes.registry import PROBES


@PROBES.register("attribution")
@dataclass(frozen=True)
class Attribution(Conditions, Probe):
    """Integrated gradients and span ablation at the input embeddings: audio share vs text share."""

    kind = "inside"
    target: str = field(default="pred", metadata={"help": "label to attribute: pred | acoustic | semantic"})
    methods: tuple = field(default=("ig", "ablation"), metadata={"help": "ig and/or ablation"})
    n_steps: int = field(default=32, metadata={"help": "integrated-gradients steps"})
    internal_batch_size: int = field(default=8, metadata={"help": "IG steps per forward pass (memory)"})
    template: str = field(default="plain", metadata={"help": "prompt template"})

    def plan(self, data) -> list[WorkItem]:
        if self.target not in ("pred", "acoustic", "semantic"):
            raise ValueError(f"attribution: target={self.target!r}; use pred, acoustic or semantic")
        return super().plan(data)

    def execute(self, model, data, items, ctx):
        m = model
        require(m, "attribution", self.name)
        for it, ex in make_examples(model, data, items, ctx, self.template):
            if isinstance(ex, Exception):
                yield it, ex
                continue
            try:
                yield it, attribute(m.inside_attribution(ex), tuple(m.labels), ex.row, target=self.target,
                                    methods=tuple(self.methods), n_steps=self.n_steps,
                                    internal_batch_size=self.internal_batch_size,
                                    base={"utt_id": it.utt_id, "condition": it.condition, **label_columns(ex.row)})
            except Exception as err:
                yield it, err

    def summarize(self, run_dir: Path) -> dict:
        from probes.store import count_errors, read_rows

        df = read_rows(run_dir)
        out: dict = {"errors": count_errors(run_dir)}
        if df.empty or "method" not in df.columns:
            return out
        v = df[(df["span"] == "voice") & (df["metric"] == "share")]
        out["voice_share"] = {}
        for (meth, grp), g in v.groupby(["method", "congruent"]):
            name = {"true": "congruent", "false": "conflict"}.get(str(grp), "unknown")
            out["voice_share"].setdefault(meth, {})[name] = {"mean": round(float(g["value"].mean()), 6), "n": int(len(g))}
        if "ig_delta" in df.columns:
            out["ig_max_abs_delta"] = float(df["ig_delta"].abs().max())
        return out


def attribute(ai, labels: tuple[str, ...], row: dict, *, target: str = "pred", methods=("ig", "ablation"),
              n_steps: int = 32, internal_batch_size: int = 8, base: dict | None = None) -> list[dict]:
    """Attribution rows of one utterance from its ``AttributionInputs`` (see the module docstring)."""
    import torch
    from captum.attr import FeatureAblation, IntegratedGradients

    def f(*xs):  # [batch, n_labels] log-probabilities over the closed label set
        return torch.log_softmax(ai.forward(*xs).float(), dim=-1)

    inputs = tuple(ai.inputs)
    baselines = tuple(ai.baselines)
    with torch.no_grad():
        fx = f(*inputs)[0]
        fb = f(*baselines)[0]
    if target == "pred":
        k = int(fx.argmax())
    else:
        lab = str(row.get(f"{target}_label") or "")
        if lab not in labels:
            raise ValueError(f"attribution: the item has no {target} label among the model's labels ({lab!r})")
        k = labels.index(lab)
    common = {**(base or {}), "target_label": labels[k], "f_input": float(fx[k]), "f_baseline": float(fb[k])}
    masks = _span_masks(ai.spans, inputs)                              # span -> list of bool masks per input
    rows: list[dict] = []
    if "ig" in methods:
        ig = IntegratedGradients(f)
        attrs, delta = ig.attribute(inputs, baselines=baselines, target=k, n_steps=n_steps,
                                    internal_batch_size=internal_batch_size, return_convergence_delta=True)
        attrs = attrs if isinstance(attrs, tuple) else (attrs,)
        # per position: sum over the feature dims, the usual token-level summary
        per_pos = [a.detach()[0].reshape(a.shape[1], -1).sum(-1).double().numpy() if a.dim() > 2
                   else a.detach()[0].double().numpy() for a in attrs]    # each [positions]
        signed = {sp: float(sum(p[mk].sum() for p, mk in zip(per_pos, mks))) for sp, mks in masks.items()}
        mass = {sp: float(sum(np.abs(p[mk]).sum() for p, mk in zip(per_pos, mks))) for sp, mks in masks.items()}
        rows += _summary("ig", signed, mass, {**common, "ig_delta": float(delta.reshape(-1)[0])})
    if "ablation" in methods:
        fa = FeatureAblation(f)
        fmask, ids = _feature_mask(masks, inputs)
        attrs = fa.attribute(inputs, baselines=baselines, target=k, feature_mask=fmask)
        attrs = attrs if isinstance(attrs, tuple) else (attrs,)
        signed = {}
        for sp, (i, pos) in ids.items():
            a = attrs[i].detach()[0]
            signed[sp] = float(a.reshape(a.shape[0], -1)[pos, 0]) if a.dim() > 1 else float(a[pos])
        rows += _summary("ablation", signed, {sp: abs(v) for sp, v in signed.items()}, {**common, "ig_delta": None})
    return rows


def _span_masks(spans: dict[str, tuple[int, object]], inputs) -> dict[str, list[np.ndarray]]:
    """span -> one boolean position mask per input; ``other`` covers what no span does."""
    lens = [int(x.shape[1]) for x in inputs]
    masks: dict[str, list[np.ndarray]] = {}
    covered = [np.zeros(n, dtype=bool) for n in lens]
    for sp, (i, where) in spans.items():
        mk = [np.zeros(n, dtype=bool) for n in lens]
        mk[i][positions(where)] = True
        if (mk[i] & covered[i]).any():
            raise ValueError(f"attribution: span {sp!r} overlaps another span")
        covered[i] |= mk[i]
        masks[sp] = mk
    if any((~c).any() for c in covered):
        masks["other"] = [~c for c in covered]
    return masks


def _feature_mask(masks: dict[str, list[np.ndarray]], inputs):
    """captum feature masks (one group id per span, shared over the feature dims) and, per span,
    one (input, position) where its attribution can be read back."""
    import torch

    fmask = [torch.zeros((1, int(x.shape[1])) + (1,) * (x.dim() - 2), dtype=torch.long) for x in inputs]
    where = {}
    for gid, (sp, mks) in enumerate(masks.items()):
        for i, mk in enumerate(mks):
            if mk.any():
                fmask[i][0, torch.from_numpy(mk)] = gid
                where.setdefault(sp, (i, int(np.flatnonzero(mk)[0])))
    return tuple(fmask), where


def _summary(method: str, signed: dict[str, float], mass: dict[str, float], common: dict) -> list[dict]:
    total = sum(mass.values())
    rows = []
    for sp in signed:
        rows.append({**common, "method": method, "span": sp, "metric": "signed", "value": signed[sp]})
        rows.append({**common, "method": method, "span": sp, "metric": "share",
                     "value": mass[sp] / total if total > 0 else None})
    # a time sub-span of the voice ("audio:0.00-0.50", the audio classifier's) is voice too
    voice = sum(v for sp, v in mass.items() if sp.split(":")[0] in VOICE_SPANS)
    for sp, v in (("voice", voice), ("text", total - voice)):
        rows.append({**common, "method": method, "span": sp, "metric": "share", "value": v / total if total > 0 else None})
    return rows
