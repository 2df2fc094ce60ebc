"""Audio Flamingo 3 (``AudioFlamingo3ForConditionalGeneration``): AF-Whisper encoder + Qwen2.5-7B.

Loads ``nvidia/audio-flamingo-3-hf`` (the transformers-format checkpoint; the original
``nvidia/audio-flamingo-3`` needs NVIDIA's own ``llava`` code and does not load here) from a hub
id or a local folder; ``--tiny`` builds a random-weight instance of the same class offline.
Chosen for emotion work because its training mix includes emotion data (IEMOCAP, MELD and other
paralinguistic sets in AudioSkills) and its paper reports speech-emotion results.

Measures what ``probes.models._alm`` measures. Prompt: Qwen2.5's chat turns with the sound
placeholder first in the user turn and the question right after it, NO newline (the processor
chat template of nvidia/audio-flamingo-3-hf, probes/models/configs/audio-flamingo-3.json)::

    <|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n<|im_start|>user\\n
    <sound>x n{question}<|im_end|>\\n<|im_start|>assistant\\n

Footguns met: the audio is cut into 30 s windows (at most 20, i.e. 10 minutes), each padded;
the number of ``<sound>`` tokens counts only the real frames of all windows (the feature mask,
renamed ``input_features_mask`` by the processor, not ``attention_mask``: passing the wrong key
makes every window full length); no audio start / end markers surround the placeholders.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from probes.models._alm import ALMAdapter
from probes.registry import MODELS

_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<sound>")


@MODELS.register("audio-flamingo-3")
class AudioFlamingo3(ALMAdapter):
    """Audio Flamingo 3 (NVIDIA): AF-Whisper encoder, 2-layer MLP projector, Qwen2.5-7B decoder."""

    hub_id = "nvidia/audio-flamingo-3-hf"
    hub_ids = ("nvidia/audio-flamingo-3-hf",)
    audio_token = "<sound>"
    single_window = False  # cuts the audio into windows itself
    stop_tokens = ("<|im_end|>", "<|endoftext|>")
    max_seconds = 600.0
    system = "You are a helpful assistant."

    @classmethod
    def load(cls, path: str, kw: dict, *, answer_mode: str) -> "AudioFlamingo3":
        from transformers import AudioFlamingo3ForConditionalGeneration, AutoProcessor

        proc = AutoProcessor.from_pretrained(path, **{k: v for k, v in kw.items() if k in ("trust_remote_code", "local_files_only")})
        model = AudioFlamingo3ForConditionalGeneration.from_pretrained(path, **kw)
        return cls(model, proc.tokenizer, proc.feature_extractor, source=path, answer_mode=answer_mode)

    @classmethod
    def build_tiny(cls):
        from transformers import AudioFlamingo3Config, AudioFlamingo3ForConditionalGeneration

        from probes.models._tiny import seed_all, text_config, tiny_feature_extractor, tiny_tokenizer

        tok = tiny_tokenizer(_SPECIALS, eos="<|im_end|>", pad="<|endoftext|>")
        aud = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                   max_source_positions=100, num_mel_bins=128)
        cfg = AudioFlamingo3Config(audio_config=aud, text_config=text_config("qwen2", vocab=len(tok)),
                                   audio_token_id=tok.convert_tokens_to_ids("<sound>"))
        seed_all(0)
        return AudioFlamingo3ForConditionalGeneration(cfg).eval(), tok, tiny_feature_extractor(2.0)

    def chat(self, user_text: str):
        head = [("tok", "<|im_start|>"), ("text", f"system\n{self.system}"), ("tok", "<|im_end|>"), ("text", "\n"),
                ("tok", "<|im_start|>"), ("text", "user\n")]
        mid = []  # the published processor template puts the question right after the <sound> run, no newline
        end = [("tok", "<|im_end|>"), ("text", "\n"), ("tok", "<|im_start|>"), ("text", "assistant\n")]
        return head, mid, end

    def _windows(self, wavs: Sequence[np.ndarray]) -> tuple[list[np.ndarray], list[int]]:
        win = int(self.sample_rate * self.fe.chunk_length)
        chunks, per = [], []
        for w in wavs:
            n = min(max(1, -(-len(w) // win)), 20)
            per.append(n)
            chunks += [w[i * win : (i + 1) * win] for i in range(n)]
        return chunks, per

    def audio_features(self, wavs: Sequence[np.ndarray]) -> dict:
        chunks, per = self._windows(wavs)
        f = self.fe(chunks, sampling_rate=self.sample_rate, return_attention_mask=True, padding="max_length",
                    return_tensors="pt")
        return {"input_features": f["input_features"], "input_features_mask": f["attention_mask"], "windows": per}

    def encode_audio(self, wavs: Sequence[np.ndarray]) -> list[torch.Tensor]:
        f = self.audio_features(wavs)
        out = self.model.get_audio_features(f["input_features"].to(self.device, self.dtype),
                                            f["input_features_mask"].to(self.device)).pooler_output  # [sum n, hidden]
        # tokens per window, then per waveform
        frames = f["input_features_mask"].sum(-1)
        per_win = ((frames - 1) // 2 + 1 - 2) // 2 + 1
        per_wav = [int(s.sum()) for s in torch.split(per_win, f["windows"])]
        return list(torch.split(out, per_wav))

    def native_forward(self, batch, wavs):
        """The model's own forward (input_ids + input_features), for the equivalence test. # [b, seq, vocab]"""
        f = self.audio_features(wavs)
        return self.model(input_ids=batch.ids, attention_mask=batch.mask, input_features=f["input_features"],
                          input_features_mask=f["input_features_mask"]).logits
