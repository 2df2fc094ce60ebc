"""Training and evaluating FAS and its arms on cached features; checkpoints; the conflict experiment.

Training follows the paper's Table 3: AdamW (lr 2e-4, weight decay 1e-4), a cosine schedule with
5 % linear warm-up, cross-entropy, seed 42; epochs and batch size are options (the paper's
2048 x 100 epochs is one step per epoch on a corpus of a few hundred items, so the experiment
uses smaller batches). Every run writes its loss curve as ``loss_curve.csv`` with the columns
``arm, epoch, split, loss`` (the figures helper reads exactly that).

Labels: the model's classes are the canonical labels (probes/labels.py) present among the
training items' acoustic labels; evaluation on another manifest (zero-shot) maps through the
same vocabulary, and an item whose label the model does not have simply counts as wrong.

Checkpoints are a folder: ``model.safetensors`` (weights and the stream means) and
``config.json`` (the FASConfig, the two feature pathways, the acoustic normalisation, the
training config). Loading reads JSON and safetensors only: nothing is unpickled.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from fas.model import FAS, FASConfig, arm_config

DEFAULT_ACOUSTIC = "egemaps"
DEFAULT_SEMANTIC = "asr-minilm"


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 100               # paper: 100
    batch_size: int = 2048          # paper: 2048 (global)
    lr: float = 2e-4
    weight_decay: float = 1e-4
    warmup: float = 0.05            # share of the steps spent warming up linearly
    seed: int = 42


# ------------------------------------------------------------------------------------ data
@dataclass
class Streams:
    """Features of a set of utterances, ready for batching."""

    utt_ids: list[str]
    aco: list[np.ndarray]           # each [T_aco, D_aco]
    sem: list[np.ndarray]           # each [T_sem, D_sem]
    acoustic_label: list[str]
    semantic_label: list[str]
    rows: list[dict] = field(default_factory=list)
    meta: dict = field(default_factory=dict)  # e.g. transcripts

    def __len__(self) -> int:
        return len(self.utt_ids)

    def subset(self, idx: Sequence[int]) -> "Streams":
        meta = dict(self.meta)
        if "voiced" in meta:  # per-utterance entries follow the subset
            meta["voiced"] = [meta["voiced"][i] for i in idx]
        return Streams([self.utt_ids[i] for i in idx], [self.aco[i] for i in idx], [self.sem[i] for i in idx],
                       [self.acoustic_label[i] for i in idx], [self.semantic_label[i] for i in idx],
                       [self.rows[i] for i in idx] if self.rows else [], meta)


def pathway_spec(name: str, source: str | None = None, layer: int | str = "last"):
    from fas.features import PathwaySpec

    return PathwaySpec(name, source, layer)


def load_streams(
    data,
    acoustic: str = DEFAULT_ACOUSTIC,
    semantic: str = DEFAULT_SEMANTIC,
    *,
    acoustic_source: str | None = None,
    semantic_source: str | None = None,
    workers: int = 2,
    progress: bool = True,
    hashes: dict | None = None,
    acoustic_norm: str = "speaker",
    raw: dict | None = None,
) -> Streams:
    """Featurise every row of a Manifest (through the cache) and normalise eGeMAPS per speaker.

    ``acoustic_norm``: ``"speaker"`` (z-score over all frames) or ``"speaker-voiced"`` (our
    deviation: voiced-frame statistics, unvoiced frames zeroed; fas/features.py). ``raw``: a dict
    that keeps the un-normalised frames per pathway, so a second norm reuses them.
    """
    from fas.features import ACOUSTIC_NORMS, extract, item_for, normalise, speaker_stats, voiced_mask

    if acoustic_norm not in ACOUSTIC_NORMS:
        raise ValueError(f"acoustic_norm {acoustic_norm!r}: use one of {', '.join(ACOUSTIC_NORMS)}")
    voiced = acoustic_norm == "speaker-voiced"

    rows = list(data.rows())
    out: dict[str, list] = {}
    meta: dict[str, dict] = {}
    hashes = {} if hashes is None else hashes
    for stream, name, src in (("aco", acoustic, acoustic_source), ("sem", semantic, semantic_source)):
        spec = pathway_spec(name, src)
        rkey = (stream, spec)
        if raw is not None and rkey in raw:
            frames, m = raw[rkey]
        else:
            items = [item_for(r, data.audio_path(i), spec, hashes=hashes) for i, r in enumerate(rows)]
            cache = extract(spec, items, workers=workers, progress=progress)
            frames, m = [], {}
            for r, it in zip(rows, items):
                x, md = cache.get(it.key)
                frames.append(x)
                if "transcript" in md:
                    m[r["utt_id"]] = md["transcript"]
            if raw is not None:
                raw[rkey] = (frames, m)
        if name == "egemaps":
            allx = np.concatenate(frames, 0)
            if voiced:
                allx = allx[voiced_mask(allx)]
            meta["raw_acoustic_stats"] = [allx.mean(0).tolist(), (allx.std(0) + 1e-6).tolist()]
            meta["voiced"] = [voiced_mask(x) for x in frames]
            by_utt = {r["utt_id"]: x for r, x in zip(rows, frames)}
            stats = speaker_stats(by_utt, {r["utt_id"]: r["speaker"] for r in rows}, voiced_only=voiced)
            frames = [normalise(x, stats[r["speaker"]], voiced_only=voiced) for r, x in zip(rows, frames)]
            meta["acoustic_norm"] = acoustic_norm
        out[stream] = frames
        if m:
            meta["transcripts"] = m
    return Streams([r["utt_id"] for r in rows], out["aco"], out["sem"], [r["acoustic_label"] for r in rows],
                   [r["semantic_label"] for r in rows], rows, meta)


def collate(aco: Sequence[np.ndarray], sem: Sequence[np.ndarray]) -> dict[str, torch.Tensor]:
    """Pad to the longest item.  -> aco [b, T_a, D_a], sem [b, T_s, D_s], aco_len / sem_len [b]"""
    def pad(xs):
        lens = torch.tensor([x.shape[0] for x in xs], dtype=torch.long)
        t = torch.zeros(len(xs), int(lens.max()), xs[0].shape[1])
        for i, x in enumerate(xs):
            t[i, : x.shape[0]] = torch.from_numpy(np.asarray(x, dtype=np.float32))
        return t, lens

    a, al = pad(aco)
    s, sl = pad(sem)
    return {"aco": a, "sem": s, "aco_len": al, "sem_len": sl}


def label_set(labels: Iterable[str]) -> tuple[str, ...]:
    from probes.labels import CANONICAL

    present = set(labels)
    return tuple(l for l in CANONICAL if l in present)


# ------------------------------------------------------------------------------------ training
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def cosine_with_warmup(optimizer, total_steps: int, warmup: float):
    n_warm = max(1, int(round(warmup * total_steps)))

    def factor(step: int) -> float:
        if step < n_warm:
            return (step + 1) / n_warm
        progress = (step - n_warm) / max(1, total_steps - n_warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def stream_means(train: Streams) -> tuple[torch.Tensor, torch.Tensor]:
    """Frame-weighted dataset means of the raw streams (for stream-ablate mode "mean")."""
    a = np.concatenate(train.aco, 0).mean(0)
    s = np.concatenate(train.sem, 0).mean(0)
    return torch.from_numpy(a.astype(np.float32)), torch.from_numpy(s.astype(np.float32))


def _loss(model: FAS, data: Streams, labels: tuple[str, ...], batch_size: int) -> float:
    model.eval()
    idx = {l: i for i, l in enumerate(labels)}
    keep = [i for i, l in enumerate(data.acoustic_label) if l in idx]
    if not keep:
        return float("nan")
    tot, n = 0.0, 0
    with torch.no_grad():
        for s in range(0, len(keep), batch_size):
            b = keep[s : s + batch_size]
            batch = collate([data.aco[i] for i in b], [data.sem[i] for i in b])
            y = torch.tensor([idx[data.acoustic_label[i]] for i in b])
            tot += float(F.cross_entropy(model(**batch).logits, y, reduction="sum"))
            n += len(b)
    return tot / n


def train_model(
    cfg: FASConfig,
    train: Streams,
    tc: TrainConfig = TrainConfig(),
    *,
    dev: Streams | None = None,
    arm: str = "fas",
    progress: bool = False,
) -> tuple[FAS, list[dict]]:
    """Train one arm from scratch; returns the model (eval mode) and its loss-curve rows."""
    from tqdm.auto import tqdm

    seed_everything(tc.seed)
    labels = cfg.labels
    idx = {l: i for i, l in enumerate(labels)}
    keep = [i for i, l in enumerate(train.acoustic_label) if l in idx]
    model = FAS(cfg)
    model.set_stream_means(*stream_means(train))
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    steps_per_epoch = math.ceil(len(keep) / tc.batch_size)
    sched = cosine_with_warmup(opt, tc.epochs * steps_per_epoch, tc.warmup)
    g = torch.Generator().manual_seed(tc.seed)
    curve: list[dict] = []
    for epoch in tqdm(range(1, tc.epochs + 1), desc=f"train {arm}", disable=not progress, dynamic_ncols=True):
        model.train()
        perm = torch.randperm(len(keep), generator=g).tolist()
        tot, n = 0.0, 0
        for s in range(0, len(perm), tc.batch_size):
            b = [keep[j] for j in perm[s : s + tc.batch_size]]
            batch = collate([train.aco[i] for i in b], [train.sem[i] for i in b])
            y = torch.tensor([idx[train.acoustic_label[i]] for i in b])
            loss = F.cross_entropy(model(**batch).logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(b)
            n += len(b)
        curve.append({"arm": arm, "epoch": epoch, "split": "train", "loss": tot / max(1, n)})
        if dev is not None and len(dev):
            curve.append({"arm": arm, "epoch": epoch, "split": "dev", "loss": _loss(model, dev, labels, 256)})
    model.eval()
    return model, curve


@torch.no_grad()
def predict_streams(model: FAS, data: Streams, batch_size: int = 256) -> tuple[list[str], np.ndarray]:
    """-> predicted labels, probabilities [n, n_classes]"""
    model.eval()
    probs = []
    for s in range(0, len(data), batch_size):
        batch = collate(data.aco[s : s + batch_size], data.sem[s : s + batch_size])
        probs.append(torch.softmax(model(**batch).logits, -1).numpy())
    p = np.concatenate(probs, 0) if probs else np.zeros((0, model.cfg.n_classes))
    return [model.cfg.labels[i] for i in p.argmax(1)], p


# ------------------------------------------------------------------------------------ checkpoints
def save_checkpoint(model: FAS, folder: str | Path, *, extra: dict | None = None) -> Path:
    """``folder/model.safetensors`` + ``folder/config.json``; extra = pathways, normalisation, training."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"))
    info = {"format": "dissonance-fas/1", "model": asdict(model.cfg), **(extra or {})}
    from probes.store import json_default

    (folder / "config.json").write_text(json.dumps(info, indent=2, default=json_default))
    return folder


def load_checkpoint(folder: str | Path, device: str = "cpu") -> tuple[FAS, dict]:
    """Read a checkpoint folder (JSON + safetensors; never unpickles)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg_path, w_path = folder / "config.json", folder / "model.safetensors"
    if not cfg_path.exists() or not w_path.exists():
        raise FileNotFoundError(f"{folder}: not a FAS checkpoint (needs config.json and model.safetensors); "
                                "train one with `probe fas train`.")
    info = json.loads(cfg_path.read_text())
    model = FAS(FASConfig.from_dict(info["model"]))
    model.load_state_dict(load_file(str(w_path), device=device))
    return model.to(device).eval(), info


def dims(streams: Streams) -> dict:
    return {"d_aco": int(streams.aco[0].shape[1]), "d_sem": int(streams.sem[0].shape[1])}


def experiment_overrides(semantic: str) -> dict:
    """Token streams (MiniLM) have ~10 tokens a sentence: patches of 5 would average words away."""
    return {"patch_sem": 1} if semantic.endswith("minilm") else {}


def train_arm(
    arm: str,
    train: Streams,
    tc: TrainConfig,
    *,
    dev: Streams | None = None,
    acoustic: str = DEFAULT_ACOUSTIC,
    semantic: str = DEFAULT_SEMANTIC,
    overrides: dict | None = None,
    progress: bool = False,
) -> tuple[FAS, list[dict], dict]:
    """Configure an arm for these features, train it; returns model, curve, checkpoint extras."""
    labels = label_set(train.acoustic_label)
    cfg = arm_config(arm, labels=labels, **dims(train), **experiment_overrides(semantic), **(overrides or {}))
    model, curve = train_model(cfg, train, tc, dev=dev, arm=arm, progress=progress)
    extra = {"arm": arm, "train": asdict(tc), "pathways": {"acoustic": acoustic, "semantic": semantic},
             "acoustic_norm": train.meta.get("acoustic_norm", "speaker") if acoustic == "egemaps" else "none",
             # raw-frame stats of the training set: the adapter's fallback for a speaker it has no stats for
             "raw_acoustic_stats": train.meta.get("raw_acoustic_stats")}
    return model, curve, extra


def write_curve(rows: list[dict], path: str | Path) -> Path:
    import pandas as pd

    path = Path(path)
    df = pd.DataFrame(rows, columns=["arm", "epoch", "split", "loss"])
    if path.exists():
        df = pd.concat([pd.read_csv(path), df], ignore_index=True)
    df.to_csv(path, index=False)
    return path


# ------------------------------------------------------------------------------------ evaluation
def evaluate(model: FAS, data: Streams, *, n_boot: int = 500, seed: int = 0) -> dict:
    """Scores against the acoustic label plus follows-voice / follows-text, with bootstrap intervals."""
    from probes.metrics import score_with_ci

    pred, _ = predict_streams(model, data)
    return score_with_ci(data.acoustic_label, data.semantic_label, pred, n_boot=n_boot, seed=seed)
