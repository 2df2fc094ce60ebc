"""What FAS looks at, per utterance.

- ``kept``: which acoustic and semantic patches the Top-K kept, with their times in seconds
  (patch i of a stream at ``frame_rate`` frames/s with patch size s covers [i*s, (i+1)*s) frames;
  token streams such as MiniLM have no time axis and report token indices only);
- ``attn_acoustic_mass`` / ``attn_semantic_mass``: the queries' cross-attention over the context,
  averaged over heads and queries, split at the boundary between the k_aco acoustic and the k_sem
  semantic tokens. Padding gets no weight, so the two masses sum to one;
- ``fused``: the embedding the head reads (for UMAP);
- ``ig_acoustic_share``: captum integrated gradients on the two raw input streams (baseline:
  the training-set mean of each stream), |attribution| summed per stream, acoustic / total;
- ``ablation_acoustic_share``: captum feature ablation with each stream as one feature group
  (replaced by its training mean): |change of the target logit| per stream, acoustic / total.

The target of both attributions is the predicted class. Numbers from a random-weight model mean
nothing: look at a trained checkpoint.
"""

from __future__ import annotations

import numpy as np
import torch

from fas.model import FAS


def attention_split(attn: torch.Tensor, k_aco: int) -> tuple[torch.Tensor, torch.Tensor]:
    """attn [b, n_q, k_aco + k_sem] -> acoustic mass [b], semantic mass [b] (mean over queries)."""
    a = attn[..., :k_aco].sum(-1).mean(-1)
    s = attn[..., k_aco:].sum(-1).mean(-1)
    return a, s


def _forward_logits(model: FAS):
    def f(aco, sem, aco_len, sem_len):
        return model(aco, sem, aco_len, sem_len).logits

    return f


def attributions(model: FAS, batch: dict[str, torch.Tensor], target: torch.Tensor, *, n_steps: int = 16) -> dict[str, np.ndarray]:
    """Acoustic share of IG and of stream ablation, per utterance.  -> {name: [b]}"""
    from captum.attr import FeatureAblation, IntegratedGradients

    model.eval()
    f = _forward_logits(model)
    aco, sem = batch["aco"], batch["sem"]
    extra = (batch["aco_len"], batch["sem_len"])
    base = (model.mean_aco.expand_as(aco).clone(), model.mean_sem.expand_as(sem).clone())
    ma = (torch.arange(aco.shape[1])[None, :] < batch["aco_len"][:, None]).float()[..., None]  # [b, T, 1]
    ms = (torch.arange(sem.shape[1])[None, :] < batch["sem_len"][:, None]).float()[..., None]
    ig = IntegratedGradients(f)
    ia, is_ = ig.attribute((aco, sem), baselines=base, target=target, additional_forward_args=extra, n_steps=n_steps)
    ig_a = (ia.abs() * ma).sum((1, 2))
    ig_s = (is_.abs() * ms).sum((1, 2))
    fa = FeatureAblation(f)
    # one group per stream: every element of a stream carries the same feature id
    masks = (torch.zeros_like(aco, dtype=torch.long), torch.ones_like(sem, dtype=torch.long))
    aa, as_ = fa.attribute((aco, sem), baselines=base, target=target, additional_forward_args=extra,
                           feature_mask=masks, perturbations_per_eval=1)
    ab_a, ab_s = aa[:, 0, 0].abs(), as_[:, 0, 0].abs()
    return {"ig_acoustic_share": (ig_a / (ig_a + ig_s).clamp(min=1e-12)).detach().numpy(),
            "ablation_acoustic_share": (ab_a / (ab_a + ab_s).clamp(min=1e-12)).detach().numpy()}


def inspect(
    model: FAS,
    batch: dict[str, torch.Tensor],
    *,
    frame_rates: tuple[float | None, float | None] = (100.0, None),
    with_attributions: bool = False,
) -> list[dict]:
    """One dict per utterance of the batch (see the module docstring)."""
    model.eval()
    with torch.no_grad():
        out = model(**batch)
    cfg = model.cfg
    pred = out.logits.argmax(-1)
    rows = [{"pred": cfg.labels[int(p)], "fused": out.fused[i].numpy()} for i, p in enumerate(pred)]
    if out.attn is not None:
        a, s = attention_split(out.attn, cfg.k_aco)
        for i, r in enumerate(rows):
            r["attn_acoustic_mass"], r["attn_semantic_mass"] = float(a[i]), float(s[i])
    if out.kept_aco is not None:
        for i, r in enumerate(rows):
            for name, idx, s_, fr in (("acoustic", out.kept_aco[i], cfg.patch_aco, frame_rates[0]),
                                      ("semantic", out.kept_sem[i], cfg.patch_sem, frame_rates[1])):
                kept = [int(j) for j in idx if j >= 0]
                r[f"kept_{name}"] = kept
                r[f"kept_{name}_s"] = [(j * s_ / fr, (j + 1) * s_ / fr) for j in kept] if fr else None
    if with_attributions and cfg.streams == "both":
        att = attributions(model, batch, pred)
        for i, r in enumerate(rows):
            for k, v in att.items():
                r[k] = float(v[i])
    return rows


def summarize(model: FAS, data, *, batch_size: int = 64) -> dict[str, float]:
    """Means over a Streams set: attention mass on acoustic tokens, IG and ablation acoustic shares."""
    from fas.train import collate

    vals: dict[str, list[float]] = {}
    for s in range(0, len(data), batch_size):
        batch = collate(data.aco[s : s + batch_size], data.sem[s : s + batch_size])
        for r in inspect(model, batch, with_attributions=True):
            for k in ("attn_acoustic_mass", "ig_acoustic_share", "ablation_acoustic_share"):
                if k in r:
                    vals.setdefault(k, []).append(r[k])
    return {k: float(np.mean(v)) for k, v in vals.items()}
