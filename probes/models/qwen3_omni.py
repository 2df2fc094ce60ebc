"""Qwen3-Omni, the thinker only (``Qwen3OmniMoeThinkerForConditionalGeneration``), a mixture of experts.

Loads ``Qwen/Qwen3-Omni-30B-A3B-Instruct`` (default; also the ``-Thinking`` and ``-Captioner``
checkpoints) from a hub id or a local folder: the full checkpoint is read with
``Qwen3OmniMoeForConditionalGeneration`` with the talker switched off and only its ``thinker``
kept; tokenizer and Whisper feature extractor are loaded on their own (the full processor needs
torchvision). ``--tiny`` builds a random-weight thinker offline (4 experts, 2 per token).

Measures what ``probes.models._alm`` measures. Prompt: no system turn (the chat template adds
none unless asked), then::

    <|im_start|>user\\n<|audio_start|><|audio_pad|>x n<|audio_end|>{question}<|im_end|>\\n<|im_start|>assistant\\n

Footguns met: the placeholder is ``<|audio_pad|>`` (not Qwen2's ``<|AUDIO|>``); the audio encoder
downsamples mel frames 8x in windows of ``2 x n_window`` frames (13 tokens per full 100-frame
window), computed by a module-level function, not a method of the tower; RoPE is 3-D as in
Qwen2.5-Omni and audio-only positions are broadcast the same way; the audio encoder is not
batch-invariant (a short clip's embeddings change when a longer one shares its batch: its
attention windows run over the concatenated chunks), so the adapter encodes one clip at a time. The ``-Thinking`` checkpoint
writes a reasoning block before the answer: use ``--answer-mode generate`` with a larger
``max_new_tokens`` there, closed-set scoring reads only the first answer tokens.
"""

from __future__ import annotations

import torch

from probes.models.qwen2_5_omni import _QwenOmniThinker
from probes.registry import MODELS

_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|audio_pad|>", "<|audio_start|>", "<|audio_end|>",
             "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")


@MODELS.register("qwen3-omni")
class Qwen3Omni(_QwenOmniThinker):
    """Qwen3-Omni-30B-A3B thinker: AuT audio encoder, MoE Qwen3 decoder (3B active), 3-D RoPE."""

    hub_id = "Qwen/Qwen3-Omni-30B-A3B-Instruct"
    hub_ids = ("Qwen/Qwen3-Omni-30B-A3B-Instruct", "Qwen/Qwen3-Omni-30B-A3B-Thinking", "Qwen/Qwen3-Omni-30B-A3B-Captioner")
    audio_token = "<|audio_pad|>"
    audio_start = "<|audio_start|>"
    audio_end = "<|audio_end|>"
    system = ""
    full_class = "Qwen3OmniMoeForConditionalGeneration"
    paths_override = {"projector": "model.audio_tower.proj2"}

    def encode_audio(self, wavs):
        # one waveform at a time: in a padded batch the encoder's attention windows run over the
        # concatenated chunks of all waveforms, so a short clip's embeddings change with the
        # longer clips beside it (0.1 on a tiny instance); alone they are batch-independent
        out = []
        for w in wavs:
            out += super().encode_audio([w])
        return out

    def audio_lengths(self, frames: torch.Tensor) -> torch.Tensor:
        from transformers.models.qwen3_omni_moe.modeling_qwen3_omni_moe import _get_feat_extract_output_lengths

        return _get_feat_extract_output_lengths(frames, self.model.config.audio_config.n_window)

    @classmethod
    def build_tiny(cls):
        from transformers import Qwen3OmniMoeThinkerConfig, Qwen3OmniMoeThinkerForConditionalGeneration

        from probes.models._tiny import seed_all, text_config, tiny_feature_extractor, tiny_tokenizer, token_ids, whisper_encoder_config

        tok = tiny_tokenizer(_SPECIALS, eos="<|im_end|>", pad="<|endoftext|>")
        ids = token_ids(tok, _SPECIALS)
        txt = text_config("qwen3_omni_moe_text", vocab=len(tok), head_dim=8, num_experts=4, num_experts_per_tok=2,
                          moe_intermediate_size=32,
                          rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [1, 1, 2]})
        # a wider init than the default 0.02: with it the random audio path is so weak that two
        # different tones give logits equal to 1e-6, and the tests could not tell audio from none
        txt["initializer_range"] = 0.2
        aud = whisper_encoder_config(initializer_range=0.2, output_dim=32, n_window=50, downsample_hidden_size=16, n_window_infer=100, conv_chunksize=50)
        vis = dict(depth=1, hidden_size=16, intermediate_size=32, num_heads=2, out_hidden_size=32, deepstack_visual_indexes=[0])
        cfg = Qwen3OmniMoeThinkerConfig(
            audio_config=aud, vision_config=vis, text_config=txt, audio_token_id=ids["<|audio_pad|>"],
            image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
            audio_start_token_id=ids["<|audio_start|>"], vision_start_token_id=ids["<|vision_start|>"],
            initializer_range=0.2)
        seed_all(0)
        return Qwen3OmniMoeThinkerForConditionalGeneration(cfg).eval(), tok, tiny_feature_extractor(8.0)
