"""Qwen2-Audio (``Qwen2AudioForConditionalGeneration``): Whisper-large-v3 encoder + Qwen-7B.

Loads ``Qwen/Qwen2-Audio-7B-Instruct`` (default) or the base ``Qwen/Qwen2-Audio-7B`` from a hub id
or a local folder (``--model-path``); ``--tiny`` builds a random-weight instance of the same
class offline. Measures what ``probes.models._alm`` measures: a closed-set label distribution
(or a generated answer) per Example, and the instrumentation API of docs/models.md.

Prompt (instruct): the chat format of the model card, one audio before the question::

    <|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n<|im_start|>user\\n
    Audio 1: <|audio_bos|><|AUDIO|>x n<|audio_eos|>\\n{question}<|im_end|>\\n<|im_start|>assistant\\n

The base checkpoint has no chat turns: ``<|audio_bos|><|AUDIO|>x n<|audio_eos|>{question}``
(chosen when the path's name has no "instruct" in it).

Footguns met: the processor's audio keyword has changed between versions (``audios=`` /
``audio=``); a wrong one returns text-only inputs without an error, which is why this adapter
runs the feature extractor itself and asserts the placeholders and features; the feature
extractor pads to 30 s and only its attention mask says how long the audio is (n audio tokens =
the mask's length / 4); audio must be 16 kHz; 30 s at most (longer: ``--too-long truncate``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from probes.models._alm import ALMAdapter
from probes.registry import MODELS

_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>")


@MODELS.register("qwen2-audio")
class Qwen2Audio(ALMAdapter):
    """Qwen2-Audio-7B(-Instruct): Whisper encoder, avg-pool, linear projector, Qwen decoder."""

    hub_id = "Qwen/Qwen2-Audio-7B-Instruct"
    hub_ids = ("Qwen/Qwen2-Audio-7B-Instruct", "Qwen/Qwen2-Audio-7B")
    audio_token = "<|AUDIO|>"
    stop_tokens = ("<|im_end|>", "<|endoftext|>")
    system = "You are a helpful assistant."
    instruct = True

    @classmethod
    def load(cls, path: str, kw: dict, *, answer_mode: str) -> "Qwen2Audio":
        from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

        proc = AutoProcessor.from_pretrained(path, **{k: v for k, v in kw.items() if k in ("trust_remote_code", "local_files_only")})
        model = Qwen2AudioForConditionalGeneration.from_pretrained(path, **kw)
        self = cls(model, proc.tokenizer, proc.feature_extractor, source=path, answer_mode=answer_mode)
        self.instruct = "instruct" in path.lower()
        return self

    @classmethod
    def build_tiny(cls):
        from transformers import Qwen2AudioConfig, Qwen2AudioForConditionalGeneration

        from probes.models._tiny import seed_all, text_config, tiny_feature_extractor, tiny_tokenizer, whisper_encoder_config

        tok = tiny_tokenizer(_SPECIALS, eos="<|im_end|>", pad="<|endoftext|>")
        # an 8 s window (800 mel frames): long enough for the synthetic corpus' utterances
        cfg = Qwen2AudioConfig(audio_config=whisper_encoder_config(max_source_positions=400), text_config=text_config(vocab=len(tok)),
                               audio_token_id=tok.convert_tokens_to_ids("<|AUDIO|>"))
        seed_all(0)
        return Qwen2AudioForConditionalGeneration(cfg).eval(), tok, tiny_feature_extractor(8.0)

    def chat(self, user_text: str):
        if not self.instruct:
            return [("tok", "<|audio_bos|>")], [("tok", "<|audio_eos|>")], []
        head = [("tok", "<|im_start|>"), ("text", f"system\n{self.system}"), ("tok", "<|im_end|>"),
                ("text", "\n"), ("tok", "<|im_start|>"), ("text", "user\nAudio 1: "), ("tok", "<|audio_bos|>")]
        mid = [("tok", "<|audio_eos|>"), ("text", "\n")]
        end = [("tok", "<|im_end|>"), ("text", "\n"), ("tok", "<|im_start|>"), ("text", "assistant\n")]
        return head, mid, end

    def encode_audio(self, wavs: Sequence[np.ndarray]) -> list[torch.Tensor]:
        from transformers.masking_utils import create_bidirectional_mask

        f = self.audio_features(wavs)
        feats = f["input_features"].to(self.device, self.dtype)        # [b, mels, frames]
        fmask = f["attention_mask"]                                    # [b, frames]
        m = self.model.model
        tower = m.audio_tower
        feat_len, out_len = tower._get_feat_extract_output_lengths(fmask.sum(-1))
        T = (feats.shape[-1] - 2) // 2 + 1
        m2d = (torch.arange(T)[None] < feat_len[:, None]).long()       # [b, T] after the conv stride
        dummy = torch.zeros(feats.shape[0], T, 1, dtype=feats.dtype, device=feats.device)
        attn = create_bidirectional_mask(config=tower.config, inputs_embeds=dummy, attention_mask=m2d.to(feats.device))
        h = tower(feats, attention_mask=attn).last_hidden_state       # [b, T/2, d_audio]
        a = m.multi_modal_projector(h)                                 # [b, T/2, hidden]
        return [a[i, : int(out_len[i])] for i in range(a.shape[0])]

    def native_forward(self, batch, wavs):
        """The model's own forward (input_ids + input_features), for the equivalence test. # [b, seq, vocab]"""
        f = self.audio_features(wavs)
        return self.model(input_ids=batch.ids, attention_mask=batch.mask, input_features=f["input_features"],
                          feature_attention_mask=f["attention_mask"]).logits
