"""Qwen2.5-Omni, the thinker only (``Qwen2_5OmniThinkerForConditionalGeneration``).

Loads ``Qwen/Qwen2.5-Omni-7B`` (default) or ``Qwen/Qwen2.5-Omni-3B`` from a hub id or a local
folder: the full checkpoint is read with ``Qwen2_5OmniForConditionalGeneration`` with the talker
(speech output) switched off, and only its ``thinker`` is kept. The tokenizer and the Whisper
feature extractor are loaded on their own, because the full processor also builds a video
processor that needs torchvision (which does not import beside this torch). ``--tiny`` builds
a random-weight thinker offline (its config needs vision start/end ids, and ``mrope_section``
must sum to head_dim / 2).

Measures what ``probes.models._alm`` measures. Prompt: the model card's system prompt (the one
the model was tuned with; another system prompt degrades its audio following), then::

    <|im_start|>user\\n<|audio_bos|><|AUDIO|>x n<|audio_eos|>{question}<|im_end|>\\n<|im_start|>assistant\\n

Footguns met: the rotary embedding is 3-D (time / height / width); for audio-only input all three
axes carry the same running position, so the adapter passes plain 2-D positions and the text
model broadcasts them (checked against the model's own ``get_rope_index`` path in the tests);
audio at 16 kHz; the audio encoder works in windows of ``2 x n_window`` mel frames.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from probes.models._alm import ALMAdapter
from probes.registry import MODELS

_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>",
             "<|vision_bos|>", "<|vision_eos|>", "<|IMAGE|>", "<|VIDEO|>")
QWEN_OMNI_SYSTEM = ("You are Qwen, a virtual human developed by the Qwen Team, Alibaba Group, capable of perceiving "
                    "auditory and visual inputs, as well as generating text and speech.")


class _QwenOmniThinker(ALMAdapter):
    """Shared by the Qwen Omni thinkers: chat format, feature extraction, audio tower call."""

    stop_tokens = ("<|im_end|>", "<|endoftext|>")
    audio_start = "<|audio_bos|>"
    audio_end = "<|audio_eos|>"
    system = QWEN_OMNI_SYSTEM
    full_class = ""

    @classmethod
    def load(cls, path: str, kw: dict, *, answer_mode: str):
        import transformers
        from transformers import AutoTokenizer, WhisperFeatureExtractor

        small = {k: v for k, v in kw.items() if k in ("trust_remote_code", "local_files_only")}
        tok = AutoTokenizer.from_pretrained(path, **small)
        fe = WhisperFeatureExtractor.from_pretrained(path, **small)
        full = getattr(transformers, cls.full_class).from_pretrained(path, enable_audio_output=False, **kw)
        return cls(full.thinker, tok, fe, source=path, answer_mode=answer_mode)

    def chat(self, user_text: str):
        head = [("tok", "<|im_start|>"), ("text", f"system\n{self.system}"), ("tok", "<|im_end|>"), ("text", "\n")]
        head = (head if self.system else []) + [("tok", "<|im_start|>"), ("text", "user\n"), ("tok", self.audio_start)]
        mid = [("tok", self.audio_end)]
        end = [("tok", "<|im_end|>"), ("text", "\n"), ("tok", "<|im_start|>"), ("text", "assistant\n")]
        return head, mid, end

    def encode_audio(self, wavs: Sequence[np.ndarray]) -> list[torch.Tensor]:
        f = self.audio_features(wavs)
        fmask = f["attention_mask"].to(self.device)                    # [b, frames]
        out = self.model.model.get_audio_features(f["input_features"].to(self.device, self.dtype),
                                                  feature_attention_mask=fmask).last_hidden_state  # [sum n_i, hidden]
        return list(torch.split(out, [int(x) for x in self.audio_lengths(fmask.sum(-1))]))

    def audio_lengths(self, frames: torch.Tensor) -> torch.Tensor:
        """Audio tokens per mel-frame count. # [b] -> [b]"""
        return self.model.model.audio_tower._get_feat_extract_output_lengths(frames)[1]

    def native_forward(self, batch, wavs):
        """The model's own forward (input_ids + input_features), for the equivalence test. # [b, seq, vocab]"""
        f = self.audio_features(wavs)
        return self.model(input_ids=batch.ids, attention_mask=batch.mask, input_features=f["input_features"],
                          feature_attention_mask=f["attention_mask"]).logits


@MODELS.register("qwen2.5-omni")
class Qwen25Omni(_QwenOmniThinker):
    """Qwen2.5-Omni thinker (7B / 3B): Whisper-style encoder with projection, Qwen2.5 decoder, 3-D RoPE."""

    hub_id = "Qwen/Qwen2.5-Omni-7B"
    hub_ids = ("Qwen/Qwen2.5-Omni-7B", "Qwen/Qwen2.5-Omni-3B")
    audio_token = "<|AUDIO|>"
    full_class = "Qwen2_5OmniForConditionalGeneration"
    paths_override = {"projector": "model.audio_tower.proj"}

    @classmethod
    def build_tiny(cls):
        from transformers import Qwen2_5OmniThinkerConfig, Qwen2_5OmniThinkerForConditionalGeneration

        from probes.models._tiny import seed_all, text_config, tiny_feature_extractor, tiny_tokenizer, token_ids, whisper_encoder_config

        tok = tiny_tokenizer(_SPECIALS, eos="<|im_end|>", pad="<|endoftext|>")
        ids = token_ids(tok, _SPECIALS)
        txt = text_config("qwen2_5_omni_text", vocab=len(tok),
                          rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [1, 1, 2]})
        vis = dict(depth=1, hidden_size=16, intermediate_size=32, num_heads=2, out_hidden_size=32, fullatt_block_indexes=[0])
        cfg = Qwen2_5OmniThinkerConfig(
            audio_config=whisper_encoder_config(output_dim=32, n_window=50), vision_config=vis, text_config=txt,
            audio_token_index=ids["<|AUDIO|>"], image_token_index=ids["<|IMAGE|>"], video_token_index=ids["<|VIDEO|>"],
            audio_start_token_id=ids["<|audio_bos|>"], audio_end_token_id=ids["<|audio_eos|>"],
            vision_start_token_id=ids["<|vision_bos|>"], vision_end_token_id=ids["<|vision_eos|>"])
        seed_all(0)
        return Qwen2_5OmniThinkerForConditionalGeneration(cfg).eval(), tok, tiny_feature_extractor(8.0)
