"""FAS as a workbench model: ``probe run PROBE --model fas --checkpoint CKPT --data MANIFEST``.

Each arm is registered under its own name (``fas``, ``fas-concat``, ``fas-gated``,
``fas-no-topk``, ``fas-no-queries``, ``fas-semantic-only``, ``fas-acoustic-only``); the
checkpoint says which arm it holds, and a mismatch is an error rather than a silent swap.

``predict`` featurises the waveform in ``Example.audio`` (the one the condition's interventions
produced), keyed in the feature cache by a hash of its samples, so an intervened waveform never
reads the clean file's features. The true-text pathway reads ``Example.transcript`` when an
intervention set one, else the manifest text. eGeMAPS frames are z-scored per speaker as in
training: with statistics over the manifest's clean audio from ``prepare(data)`` (run_probe calls it),
else over the examples of that speaker in the batch (two or more), else with the training set's
raw statistics (weaker; written into ``Prediction.extra["acoustic_norm"]``).

Edits: ``Edit(kind="stream-ablate", span="acoustic"|"semantic", mode="zero"|"mean")`` replaces
one input stream inside the forward pass by zeros or by its training-set mean.

Rows carry ``attn_acoustic_mass`` (the queries' attention on acoustic tokens) for arms that have
queries; with ``attributions=True`` also the captum acoustic shares (fas/instrument.py).
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

import numpy as np

from probes.adapter import Adapter, AttributionInputs, Example, InsideInfo, Prediction, Readout
from probes.registry import MODELS


class FASAdapter(Adapter):
    """Shared implementation of the FAS arms."""

    name: ClassVar[str] = "fas"
    arm: ClassVar[str] = "fas"
    weights: ClassVar[str] = "real"
    needs_audio: ClassVar[bool] = True
    max_seconds: ClassVar[float | None] = 30.0

    def __init__(self, model, info: dict, *, attributions: bool = False, weights: str = "real", device: str = "cpu"):
        from fas.features import PathwaySpec

        self.model, self.info = model, info
        self.weights = weights  # type: ignore[misc]
        self.attributions = attributions
        self.labels = tuple(model.cfg.labels)
        pw = info.get("pathways", {})
        self.specs = {"acoustic": PathwaySpec(pw.get("acoustic", "egemaps"), pw.get("acoustic_source")),
                      "semantic": PathwaySpec(pw.get("semantic", "asr-minilm"), pw.get("semantic_source"))}
        self._pathways: dict[str, Any] = {}
        self._speaker_stats: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        raw = info.get("raw_acoustic_stats")
        self._raw_stats = (np.asarray(raw[0], np.float32), np.asarray(raw[1], np.float32)) if raw else None
        self._voiced = info.get("acoustic_norm") == "speaker-voiced"  # fas/features.py: our deviation

    # construction ------------------------------------------------------------------------
    @classmethod
    def from_cli(cls, checkpoint: str | None = None, device: str | None = None, tiny: bool = False,
                 attributions: bool = False, **_: Any) -> "FASAdapter":
        if tiny:
            return cls.tiny()
        if not checkpoint:
            raise FileNotFoundError(f"--model {cls.name} needs --checkpoint FOLDER; train one with `probe fas train`.")
        from fas.train import load_checkpoint

        model, info = load_checkpoint(checkpoint, device=device or "cpu")
        if info.get("arm", "fas") != cls.arm:
            from probes.registry import RegistryError

            raise RegistryError(f"{checkpoint} holds the arm {info.get('arm')!r}, not {cls.arm!r}; use --model {info.get('arm')}")
        return cls(model, info, attributions=attributions)

    @classmethod
    def tiny(cls) -> "FASAdapter":
        """A tiny RANDOM-weight instance on cheap real pathways (eGeMAPS + true text): tests only."""
        import torch

        from fas.model import arm_config, FAS
        from probes.labels import EMOTIONS

        torch.manual_seed(0)
        cfg = arm_config(cls.arm, d_aco=25, d_sem=384, d=16, n_heads=2, ffn=16, head_hidden=16, patch_sem=1,
                         labels=EMOTIONS)
        return cls(FAS(cfg).eval(), {"arm": cls.arm, "pathways": {"acoustic": "egemaps", "semantic": "text-minilm"}},
                   weights="random")

    def describe(self) -> dict:
        return {**super().describe(), "arm": self.arm, "config": self.info.get("model"),
                "pathways": {k: v.encoder_id for k, v in self.specs.items()}}

    # normalisation -----------------------------------------------------------------------
    def prepare(self, data) -> None:
        """Per-speaker eGeMAPS statistics over the manifest's clean audio (through the cache)."""
        if self.specs["acoustic"].name != "egemaps":
            return
        from fas.features import extract, item_for, speaker_stats

        rows = list(data.rows())
        items = [item_for(r, data.audio_path(i), self.specs["acoustic"]) for i, r in enumerate(rows)]
        cache = extract(self.specs["acoustic"], items, workers=1, progress=False)
        frames = {r["utt_id"]: cache.get(it.key)[0] for r, it in zip(rows, items)}
        self._speaker_stats.update(speaker_stats(frames, {r["utt_id"]: r["speaker"] for r in rows}, voiced_only=self._voiced))

    # features ----------------------------------------------------------------------------
    def _pathway(self, which: str):
        if which not in self._pathways:
            from fas.features import build_pathway

            self._pathways[which] = build_pathway(self.specs[which])
        return self._pathways[which]

    def features(self, which: str, ex: Example) -> np.ndarray:
        """One stream's raw frames for an example (``which``: acoustic | semantic), through the feature cache. # [T, D]"""
        from fas.features import cache_for, text_hash, wav_hash

        spec = self.specs[which]
        if spec.needs_text:
            text = ex.transcript if ex.transcript is not None else str(ex.row.get("text", ""))
            key, wav = text_hash(text), None
        else:
            if ex.audio is None:
                raise ValueError(f"{ex.utt_id}: FAS needs the waveform")
            key, wav, text = wav_hash(ex.audio, ex.sr), ex.audio, None
        cache = cache_for(spec)  # eGeMAPS: the workbench's one eGeMAPS cache (interventions.egemaps)
        got = cache.get(key)
        if got is None:
            frames, meta = self._pathway(which).compute(wav, ex.sr, text)
            if frames.shape[0] == 0:
                frames = np.zeros((1, frames.shape[1]), np.float32)
            cache.put(key, frames, meta)
            return frames
        return got[0]

    def normalise(self, examples: Sequence[Example], raw: list[np.ndarray]) -> tuple[list[np.ndarray], list[str]]:
        """eGeMAPS frames z-scored per speaker (module docstring); returns the frames and how each was normalised."""
        from fas.features import normalise

        if self.specs["acoustic"].name != "egemaps":
            return raw, ["none"] * len(raw)
        by_spk: dict[str, list[np.ndarray]] = {}
        for ex, x in zip(examples, raw):
            by_spk.setdefault(str(ex.row.get("speaker", "")), []).append(x)
        out, how = [], []
        for ex, x in zip(examples, raw):
            spk = str(ex.row.get("speaker", ""))
            if spk in self._speaker_stats:
                st, h = self._speaker_stats[spk], "speaker"
            elif len(by_spk[spk]) >= 2:
                allx = np.concatenate(by_spk[spk], 0)
                st, h = (allx.mean(0), allx.std(0) + 1e-6), "speaker-in-batch"
            elif self._raw_stats is not None:
                st, h = self._raw_stats, "training-set"
            else:
                st, h = (x.mean(0), x.std(0) + 1e-6), "utterance"
            out.append(normalise(x, st, voiced_only=self._voiced))
            how.append(h)
        return out, how

    def streams(self, examples: Sequence[Example]) -> tuple[list[np.ndarray], list[str], list[np.ndarray]]:
        """The model's two inputs per example: normalised acoustic frames, how they were normalised,
        semantic frames (what ``predict`` and every instrument feed the model)."""
        aco, how = self.normalise(examples, [self.features("acoustic", ex) for ex in examples])
        return aco, how, [self.features("semantic", ex) for ex in examples]

    def encode(self, examples: Sequence[Example]) -> dict:
        """The padded batch the model reads (``fas.train.collate``): aco, sem and their lengths."""
        from fas.train import collate

        aco, _, sem = self.streams(examples)
        return collate(aco, sem)

    # instruments (probes/adapter.py) -----------------------------------------------------
    def inside_info(self) -> InsideInfo:
        """FAS has no decoder stack: its one "layer" (residual 0) is the fused representation, its
        attention is the learnable queries' cross-attention over the kept tokens (heads = queries,
        spans ``acoustic`` = the k_aco kept acoustic tokens, ``semantic`` = the k_sem semantic
        ones), patching swaps a whole input stream, and attribution is over the two raw streams
        from their training means (as ``fas.instrument`` does). It has no logit lens."""
        cfg = self.model.cfg
        queries = cfg.fusion == "queries" and cfg.streams == "both"
        sup = {"hidden", "patch"} | ({"attention"} if queries else set()) | ({"attribution"} if cfg.streams == "both" else set())
        pools = ("fused",) + (("acoustic-mean", "semantic-mean") if cfg.streams == "both" else ())
        return InsideInfo(n_layers=0, n_heads=cfg.n_queries if queries else 0, pools=pools,
                          spans=("acoustic", "semantic") if cfg.streams == "both" else (cfg.streams,),
                          supports=frozenset(sup),
                          why_not={"lens": "FAS has no residual stream read by an unembedding (its head reads the fused embedding)",
                                   "attention": "this arm has no learnable queries",
                                   "attribution": "single-stream arm: there is nothing to split"})

    def unembed(self, hidden, *, normed: bool = True):
        raise self.missing("logit lens", "FAS has no residual stream read by an unembedding (its head reads the fused embedding)")

    def _inside_spans(self) -> dict[str, tuple[int, int]]:
        c = self.model.cfg
        if c.fusion == "queries" and c.streams == "both":
            return {"acoustic": (0, c.k_aco), "semantic": (c.k_aco, c.k_aco + c.k_sem)}
        return {"acoustic": (0, 1), "semantic": (1, 2)}  # nominal: one slot per stream

    def inside_read(self, examples, *, attention=False, pools=(), lens=False):
        import torch

        from fas.model import lengths_mask, masked_mean

        if lens:
            raise self.missing("logit lens", "FAS has no residual stream read by an unembedding")
        abl = {_ablation(ex) for ex in examples}
        if len(abl) > 1:  # one stream ablation per forward: read each group on its own, keep the order
            groups: dict = {}
            for i, ex in enumerate(examples):
                groups.setdefault(_ablation(ex), []).append(i)
            got: dict = {}
            for idx in groups.values():
                for i, r in zip(idx, self.inside_read([examples[i] for i in idx], attention=attention, pools=pools)):
                    got[i] = r
            return [got[i] for i in range(len(examples))]
        batch = self.encode(examples)
        m = self.model.eval()
        with torch.no_grad():
            out = m(**batch, ablate=dict(next(iter(abl))) or None)  # a stream-ablate condition, if any
            means = {}
            if any(p != "fused" for p in pools):
                for which, key in (("aco", "acoustic-mean"), ("sem", "semantic-mean")):
                    f, n = m.stream(batch[which], batch[f"{which}_len"], which)            # [b, T', d]
                    means[key] = masked_mean(f, lengths_mask(n, f.shape[1]))              # [b, d]
        spans = self._inside_spans()
        L = max(b for _, b in spans.values())
        reads = []
        for i, ex in enumerate(examples):
            r = Readout(utt_id=ex.utt_id, spans=spans, seq_len=L, answer_pos=L - 1, final=out.logits[i].numpy())
            if attention:
                if out.attn is None:
                    raise self.missing("attention weights", "this arm has no learnable queries")
                r.attention = out.attn[i][None].numpy()                                     # [1, n_q, L]
            for p in pools:
                r.pooled[p] = (out.fused[i] if p == "fused" else means[p][i]).numpy()[None]  # [1, d]
            reads.append(r)
        return reads

    def inside_patch(self, target, source, *, span, layers):
        import torch

        from fas.train import collate

        if list(layers) != [0]:
            raise ValueError("FAS patches its input streams only (layer 0)")
        if _ablation(target) or _ablation(source):
            raise self.missing("patching under stream-ablate", "an ablated stream has nothing left to patch")
        (at,), _, (st,) = self.streams([target])
        (as_,), _, (ss,) = self.streams([source])
        aco, sem = {"acoustic": (as_, st), "semantic": (at, ss), "all": (as_, ss)}[span]
        with torch.no_grad():
            return self.model.eval()(**collate([aco], [sem])).logits.numpy()                # [1, n_labels]

    def inside_attribution(self, ex) -> AttributionInputs:
        m = self.model.eval()
        if _ablation(ex):
            raise self.missing("attribution under stream-ablate", "the ablated stream is constant: its share is zero by construction")
        if m.cfg.streams != "both":
            raise self.missing("attribution inputs", "single-stream arm: there is nothing to split")
        batch = self.encode([ex])
        aco, sem = batch["aco"], batch["sem"]
        return AttributionInputs(
            inputs=(aco, sem),
            baselines=(m.mean_aco.expand_as(aco).clone(), m.mean_sem.expand_as(sem).clone()),
            forward=lambda a, s: m(a, s).logits,
            spans={"acoustic": (0, (0, aco.shape[1])), "semantic": (1, (0, sem.shape[1]))})

    # prediction --------------------------------------------------------------------------
    def predict(self, examples: Sequence[Example]) -> list[Prediction]:
        import torch

        from fas.instrument import attention_split, attributions
        from fas.train import collate

        cfg = self.model.cfg
        aco, how, sem = self.streams(examples)
        preds: list[Prediction | None] = [None] * len(examples)
        # examples with the same stream ablation go through the model together
        groups: dict[tuple, list[int]] = {}
        for i, ex in enumerate(examples):
            groups.setdefault(_ablation(ex), []).append(i)
        for abl, idx in groups.items():
            batch = collate([aco[i] for i in idx], [sem[i] for i in idx])
            with torch.no_grad():
                out = self.model(**batch, ablate=dict(abl) or None)
            probs = torch.softmax(out.logits, -1).numpy()
            extra_cols: dict[str, np.ndarray] = {}
            if out.attn is not None:
                a, _ = attention_split(out.attn, cfg.k_aco)
                extra_cols["attn_acoustic_mass"] = a.numpy()
            if self.attributions and cfg.streams == "both" and not abl:
                extra_cols.update(attributions(self.model, batch, out.logits.argmax(-1)))
            for j, i in enumerate(idx):
                p = probs[j]
                extra = {k: round(float(v[j]), 6) for k, v in extra_cols.items()}
                extra["acoustic_norm"] = how[i]
                preds[i] = Prediction(label=self.labels[int(p.argmax())],
                                      probs={l: float(v) for l, v in zip(self.labels, p)}, extra=extra)
        return preds  # type: ignore[return-value]


def _ablation(ex: Example) -> tuple:
    out = {}
    for e in ex.edits:
        if e.kind != "stream-ablate":
            raise ValueError(f"FAS supports the edit kind 'stream-ablate' only, not {e.kind!r}")
        if e.span not in ("acoustic", "semantic"):
            raise ValueError(f"stream-ablate span {e.span!r}: FAS has the streams 'acoustic' and 'semantic'")
        if e.mode not in ("zero", "mean"):
            raise ValueError(f"stream-ablate mode {e.mode!r}: use 'zero' or 'mean'")
        out[e.span] = e.mode
    return tuple(sorted(out.items()))


def _register(name: str, doc: str) -> type:
    cls = type(name.replace("-", "_").title().replace("_", ""), (FASAdapter,), {"arm": name, "__doc__": doc})
    cls.__module__ = __name__
    return MODELS.register(name)(cls)


FAS_MODEL = _register("fas", "FAS: Top-K acoustic + semantic tokens fused by 2 learnable queries (needs --checkpoint).")
FAS_CONCAT = _register("fas-concat", "FAS arm: mean-pooled streams concatenated into an MLP (needs --checkpoint).")
FAS_GATED = _register("fas-gated", "FAS arm: gated multimodal unit over the pooled streams (needs --checkpoint).")
FAS_NO_TOPK = _register("fas-no-topk", "FAS arm: random tokens instead of the highest-norm ones (needs --checkpoint).")
FAS_NO_QUERIES = _register("fas-no-queries", "FAS arm: kept tokens pooled directly, no learnable queries (needs --checkpoint).")
FAS_SEMANTIC_ONLY = _register("fas-semantic-only", "Baseline: semantic stream only, mean-pooled, two-layer classifier (needs --checkpoint).")
FAS_ACOUSTIC_ONLY = _register("fas-acoustic-only", "Baseline: acoustic stream only, mean-pooled, two-layer classifier (needs --checkpoint).")

