"""Voxtral (``VoxtralForConditionalGeneration``): Whisper-large-v3 encoder + Mistral/Llama decoder.

Loads ``mistralai/Voxtral-Mini-3B-2507`` (default) or ``mistralai/Voxtral-Small-24B-2507`` from a
hub id or a local folder; the real tokenizer is Mistral's tekken, which transformers reads only
with the ``mistral-common`` package installed (not installed here: the error says so). ``--tiny``
builds a random-weight instance of the same class offline (its encoder needs
``intermediate_size = 4 x hidden_size``, because the projector reads four frames at a time).
Chosen because it is the strongest open speech-understanding ALM outside the Qwen family and a
common baseline in recent paralinguistic / emotion evaluations.

Measures what ``probes.models._alm`` measures. Prompt: Mistral's instruct turn with the audio
block first, as ``apply_chat_template`` writes it for an audio + text message::

    <s>[INST][BEGIN_AUDIO][AUDIO]x n{question}[/INST]

Footguns met: the audio is cut into 30 s windows and every window yields 375 placeholder tokens
whether it is full or not (the last window's padding is encoded too: no feature mask); the
placeholder id (24) is fixed in the processor, not read from the tokenizer; the processor refuses
text that already contains ``[AUDIO]``; audio at 16 kHz.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from probes.models._alm import ALMAdapter, ModelLoadError
from probes.registry import MODELS

_SPECIALS = ("<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[AUDIO]", "[BEGIN_AUDIO]")


@MODELS.register("voxtral")
class Voxtral(ALMAdapter):
    """Voxtral Mini 3B / Small 24B (Mistral): Whisper encoder, 4-frame MLP projector, Llama-style decoder."""

    hub_id = "mistralai/Voxtral-Mini-3B-2507"
    hub_ids = ("mistralai/Voxtral-Mini-3B-2507", "mistralai/Voxtral-Small-24B-2507")
    audio_token = "[AUDIO]"
    single_window = False  # cuts the audio into windows itself
    stop_tokens = ("</s>",)
    max_seconds = 1800.0

    @classmethod
    def load(cls, path: str, kw: dict, *, answer_mode: str) -> "Voxtral":
        try:
            import mistral_common  # noqa: F401
        except ImportError:
            raise ModelLoadError("voxtral: its tekken tokenizer needs the mistral-common package "
                                 "(pip install 'mistral-common[audio]'); it is not installed") from None
        from transformers import AutoProcessor, VoxtralForConditionalGeneration

        proc = AutoProcessor.from_pretrained(path, **{k: v for k, v in kw.items() if k in ("trust_remote_code", "local_files_only")})
        model = VoxtralForConditionalGeneration.from_pretrained(path, **kw)
        return cls(model, proc.tokenizer, proc.feature_extractor, source=path, answer_mode=answer_mode)

    @classmethod
    def build_tiny(cls):
        from transformers import VoxtralConfig, VoxtralForConditionalGeneration

        from probes.models._tiny import seed_all, text_config, tiny_feature_extractor, tiny_tokenizer

        tok = tiny_tokenizer(_SPECIALS, eos="</s>", bos="<s>", pad="<unk>")
        aud = dict(hidden_size=32, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                   max_source_positions=100, num_mel_bins=128)
        cfg = VoxtralConfig(audio_config=aud, text_config=text_config("llama", vocab=len(tok), head_dim=8),
                            audio_token_id=tok.convert_tokens_to_ids("[AUDIO]"))
        seed_all(0)
        return VoxtralForConditionalGeneration(cfg).eval(), tok, tiny_feature_extractor(2.0)

    def chat(self, user_text: str):
        return [("tok", "<s>"), ("tok", "[INST]"), ("tok", "[BEGIN_AUDIO]")], [], [("tok", "[/INST]")]

    def audio_features(self, wavs: Sequence[np.ndarray]) -> dict:
        win = int(self.sample_rate * self.fe.chunk_length)
        chunks, per = [], []
        for w in wavs:
            n = max(1, -(-len(w) // win))
            per.append(n)
            chunks += [w[i * win : (i + 1) * win] for i in range(n)]
        f = self.fe(chunks, sampling_rate=self.sample_rate, padding="max_length", return_tensors="pt")
        return {"input_features": f["input_features"], "windows": per}

    def encode_audio(self, wavs: Sequence[np.ndarray]) -> list[torch.Tensor]:
        f = self.audio_features(wavs)
        out = self.model.get_audio_features(f["input_features"].to(self.device, self.dtype)).pooler_output  # [sum n, hidden]
        per_win = out.shape[0] // sum(f["windows"])
        return list(torch.split(out, [n * per_win for n in f["windows"]]))

    def native_forward(self, batch, wavs):
        """The model's own forward (input_ids + input_features), for the equivalence test. # [b, seq, vocab]"""
        f = self.audio_features(wavs)
        return self.model(input_ids=batch.ids, attention_mask=batch.mask, input_features=f["input_features"]).logits
