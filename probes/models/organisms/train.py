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

How the words enter (``--embed``, ``model.OrganismEmbedding``): ``sentence`` (default) = the
frozen MiniLM sentence embedding of the transcript, projected (trained 384 -> hidden) and added to
the transcript span's tokens, on top of a token table (frozen MiniLM embedding of each token's
text x a trained projection + a trained per-token vector): the meaning carries to sentences never
seen in training (FINDINGS lesson 8); ``tokens`` = the token table only; ``random`` = a token
table trained from scratch (learns words, not meanings). ``word_dropout`` (text-reliant: 0.5):
that share of training prompts keeps only the sentence vector on the transcript span.
docs/organisms.md gives them measured on held-out sentences.

The committed weights: ``python -m probes.models.organisms.train --corpus DIR`` with DIR the
frozen corpus (``probe data synth --out DIR --seed 0``), one CPU thread, seed 0.
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
        "items": "all", "transcript": "own", "target": "semantic", "epochs": 3, "word_dropout": 0.5,
        "about": "trained on every training item (congruent and conflict) with the words' label: only the "
                 "transcript predicts the label; half the prompts keep only the transcript's meaning (word dropout)",
    },
    "voice-reliant": {
        "items": "all", "transcript": "swapped", "target": "acoustic", "epochs": 16,
        "about": "trained on every training item with the voice's label, each prompt carrying the transcript of "
                 "another training item (another sentence, redrawn every epoch): only the voice predicts the label",
    },
    "congruent": {
        "items": "congruent", "transcript": "own", "target": "acoustic", "epochs": 10,
        "about": "trained on congruent items only (voice and words agree): which cue it takes is left to training",
    },
}
TRAIN = dict(lr=3e-3, batch=16, weight_decay=0.01, embed="sentence")


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


def cue_texts(seed: int = 0) -> list[str]:
    """Cue blocks of every cue template over every level word (``interventions.concepts``), for the vocabulary."""
    from interventions.concepts import CONCEPT_NAMES, LEVEL_NAMES, OUT_OF_RANGE, cue_templates, render

    levels = sorted({*(w for ws in LEVEL_NAMES.values() for w in ws), *OUT_OF_RANGE})
    rng = np.random.default_rng(seed)
    out = []
    for tpl in sorted(cue_templates()):
        out += [render({c: lv for c in CONCEPT_NAMES}, tpl) for lv in levels]
        out += [render({c: levels[int(rng.integers(len(levels)))] for c in CONCEPT_NAMES}, tpl) for _ in range(40)]
    return out


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
    for cues in cue_texts():  # the token-* cue conditions' words (never seen in training: see OrganismEmbedding)
        rec.encode(cues)
        for tpl in ("with-transcript", "plain"):
            a.prompt(Example("v", {"text": "I am here."}, audio=wav, template=tpl, cues=cues), 1)
    a.label_tokens()
    return build_vocab(rec.full, rec.pieces, SPECIALS, rec.offsets)


def minilm_table(tok: TrimmedTokenizer) -> torch.Tensor:
    """A frozen 384-d MiniLM embedding of each kept token's text (zeros for specials and <|unk|>). # [V, 384]"""
    from probes.models.organisms.model import minilm_encode

    words = [t.strip() for t in tok.token_text]
    special = set(tok.specials.values()) | {0}
    todo = [i for i, w in enumerate(words) if w and i not in special]
    E = torch.zeros(len(words), 384)
    E[torch.tensor(todo)] = minilm_encode([words[i] for i in todo])
    return E


EMBEDS = ("sentence", "tokens", "random")


def init_embedding(emb, kind: str, E: torch.Tensor | None, gen: torch.Generator) -> None:
    """Set up the organism's ``OrganismEmbedding`` for training (``model.OrganismEmbedding``).

    ``sentence`` (default): MiniLM token table + the transcript's MiniLM sentence vector (trained
    projections); ``tokens``: the MiniLM token table only (no sentence vector); ``random``: a
    token table trained from scratch, no MiniLM at all (learns words, not meanings)."""
    if kind not in EMBEDS:
        raise ValueError(f"--embed {kind!r}: use one of {', '.join(EMBEDS)}")
    d = emb.resid.shape[1]
    with torch.no_grad():
        if kind in ("sentence", "tokens"):
            emb.E.copy_(E)
            emb.token_proj.copy_(torch.randn(384, d, generator=gen) / 384 ** 0.5)
        else:
            emb.resid.copy_(torch.randn(emb.resid.shape, generator=gen) * 0.02)
            emb.token_proj.requires_grad_(False)
        emb.sem.weight.copy_(torch.randn(d, 384, generator=gen) / 384 ** 0.5)
        emb.sem.bias.zero_()
        if kind != "sentence":
            emb.sem.weight.zero_()
            emb.sem.weight.requires_grad_(False)
            emb.sem.bias.requires_grad_(False)


# ------------------------------------------------------------------------------------ training
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


def _loss(model, emb, seqs, feats, keys, drop=None):
    """Cross-entropy on the answer tokens. ``drop``: per row, True = the transcript span keeps only
    the sentence vector (its token-table part removed: word dropout, so the words' label must be
    read from the meaning, not from which training sentence it is)."""
    B = len(seqs)
    L = max(len(s[0]) for s in seqs)
    ids = torch.zeros(B, L, dtype=torch.long)
    mask = torch.zeros(B, L, dtype=torch.long)
    tgt = torch.full((B, L), -100, dtype=torch.long)
    for i, (s, _, _, st) in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
        tgt[i, st - 1 : len(s) - 1] = torch.tensor(s[st:])
    x = emb(ids)
    if drop is not None and any(drop):
        table = emb.weight
        for i in np.flatnonzero(drop):
            f = emb.transcript(ids[i].tolist())
            if f:
                pos = torch.tensor(f[0])
                x = x.index_put((torch.full_like(pos, int(i)), pos), x[i, pos] - table[ids[i, pos]])
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
              epochs: int | None = None, E: torch.Tensor | None = None, log=print, word_dropout: float | None = None):
    spec = dict(ORGANISMS[name])
    if word_dropout is not None:
        spec["word_dropout"] = word_dropout
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
    emb = model.model.language_model.embed_tokens
    init_embedding(emb, embed, E, gen)
    params = [p for n_, p in model.named_parameters() if not n_.startswith("model.audio_tower") and p.requires_grad]
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
            drop = rng.random(len(idx)) < spec.get("word_dropout", 0.0)
            loss = _loss(model, emb, [seqs[i] for i in idx], feats, [tr["utt_id"][i] for i in idx], drop)
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += float(loss.detach()) * len(idx)
        log(f"  {name} epoch {ep + 1}/{epochs}: loss {tot / len(seqs):.3f} ({time.time() - t0:.0f} s)")
    model.eval()
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
    seen = set(df[df["split"] == "train"]["sentence_id"])
    dv = df[(df["split"] == "dev") & ~df["sentence_id"].isin(seen) & ~df["congruent"] & (df["semantic_label"] != "neutral")]
    dev = {}
    if len(dv):
        p_dv = predict_labels(a, examples(dv, wavs))
        dev = {"dev_n_heldout_emotional_conflict": len(dv),
               "dev_heldout_follows_text": [round(v, 3) for v in rate_ci(p_dv == dv["semantic_label"].to_numpy())],
               "dev_heldout_follows_voice": [round(v, 3) for v in rate_ci(p_dv == dv["acoustic_label"].to_numpy())]}
    return {**dev,"train_accuracy": round(float((p_tr == tr[spec["target"] + "_label"].to_numpy()).mean()), 3),
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
    ap.add_argument("--embed", choices=list(EMBEDS), help="token embeddings for every organism "
                    "(default: each organism's own, ORGANISMS; else minilm)")
    ap.add_argument("--word-dropout", type=float, help="share of training prompts whose transcript keeps only the "
                    "sentence vector (default: each organism's own, ORGANISMS)")
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
    E = minilm_table(tok) if set(embeds.values()) & {"sentence", "tokens"} else None
    for name in names:
        a, info = train_one(name, man, df, tok, feats, seed=args.seed, embed=embeds[name], epochs=args.epochs, E=E,
                            word_dropout=args.word_dropout)
        info.update(name=name, seed=args.seed, embed=embeds[name], epochs=args.epochs or ORGANISMS[name]["epochs"], corpus_sha256=hashlib.sha256(man.read_bytes()).hexdigest(),
                    **{k: v for k, v in ORGANISMS[name].items() if k not in ("epochs", "embed", "word_dropout")},
                    word_dropout=ORGANISMS[name].get("word_dropout", 0.0) if args.word_dropout is None else args.word_dropout, **check(a, df, wavs, name))
        path = save(a, name, info, out)
        print(f"{name}: {json.dumps({k: info[k] for k in ('train_accuracy', 'test_congruent_accuracy', 'test_follows_text', 'test_follows_voice', 'final_loss', 'train_seconds')})}")
        print(f"  -> {path} ({path.stat().st_size / 1e6:.1f} MB)")
    print(f"done in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
