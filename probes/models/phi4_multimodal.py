"""Phi-4-multimodal (``Phi4MultimodalForCausalLM``): conformer speech encoder + 2-layer MLP + Phi-4-mini decoder.

Loads the transformers-format ``microsoft/Phi-4-multimodal-instruct`` (a local folder or hub id of the
converted checkpoint: ``config.json`` with ``model_type: phi4_multimodal`` and a ``speech-lora``
subfolder; the original release needs remote code and is not loaded); ``--tiny`` builds a
random-weight instance of the same class offline.
Why it is here: a third decoder family (Phi-4-mini, o200k vocabulary) and a speech encoder trained
from scratch rather than a Whisper copy, with the speech skills carried by a LoRA on the decoder
(rank 320): the cleanest case for asking whether the voice reaches the answer through the
decoder's own weights or through the adapter. It reports speech QA and summarisation, not emotion.

Measures what ``probes.models._alm`` measures. Prompt: Phi-4's chat roles with the audio placeholder
first in the user turn, no system turn (the model card's ``<|user|><|audio_1|>{question}<|end|>
<|assistant|>`` after the processor replaced ``<|audio_1|>`` by its token; configs/phi-4-multimodal.json)::

    <|user|><|endoftext11|>x n{question}<|end|><|assistant|>

The answer row is ``<|assistant|>``: the answer's first token follows it directly.

Footguns met: the audio placeholder is ``<|endoftext11|>`` (id 200011), not a readable name; the
image tower is built (and weighs 0.4 B) even for audio-only use; the speech skills need the speech
LoRA (``speech-lora/``, peft): ``load`` loads and activates it when peft is installed, and refuses
otherwise (without it the model does not follow audio instructions); the audio encoder pads a batch
to its longest clip and its masks are streaming masks over 8x-reduced frames: the adapter encodes
one clip at a time; 1 audio token per 80 ms (12.5 per second).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from probes.models._alm import ALMAdapter, ModelLoadError
from probes.registry import MODELS

_SPECIALS = ("<|endoftext|>", "<|endoftext10|>", "<|endoftext11|>", "<|assistant|>", "<|end|>", "<|user|>",
             "<|system|>")
_AUDIO = "model.embed_tokens_extend.audio_embed"


@MODELS.register("phi-4-multimodal")
class Phi4Multimodal(ALMAdapter):
    """Phi-4-multimodal-instruct (Microsoft): conformer encoder, MLP projector, Phi-4-mini decoder (+ speech LoRA)."""

    hub_id = "microsoft/Phi-4-multimodal-instruct"
    hub_ids = ("microsoft/Phi-4-multimodal-instruct",)
    audio_token = "<|endoftext11|>"
    stop_tokens = ("<|end|>", "<|endoftext|>")
    single_window = False
    max_seconds = 600.0
    system = ""
    paths_override = {"decoder": "model", "decoder.blocks": "model.layers", "decoder.norm": "model.norm",
                      "audio.blocks": f"{_AUDIO}.encoder.encoders", "projector": f"{_AUDIO}.down_proj_for_speech"}

    @classmethod
    def load(cls, path: str, kw: dict, *, answer_mode: str) -> "Phi4Multimodal":
        from transformers import AutoProcessor, Phi4MultimodalForCausalLM

        proc = AutoProcessor.from_pretrained(path, **{k: v for k, v in kw.items() if k in ("trust_remote_code", "local_files_only")})
        model = Phi4MultimodalForCausalLM.from_pretrained(path, **kw)
        lora = Path(path) / "speech-lora"
        try:
            import peft  # noqa: F401
        except ImportError:
            raise ModelLoadError("phi-4-multimodal: its speech skills live in the speech LoRA (speech-lora/), which "
                                 "needs the peft package (pip install peft)") from None
        model.load_adapter(str(lora) if lora.is_dir() else path, adapter_name="speech",
                           **({} if lora.is_dir() else {"adapter_kwargs": {"subfolder": "speech-lora"}}))
        model.set_adapter("speech")
        return cls(model, proc.tokenizer, proc.audio_processor, source=path, answer_mode=answer_mode)

    @classmethod
    def build_tiny(cls, tokenizer=None):
        from transformers import Phi4MultimodalConfig, Phi4MultimodalFeatureExtractor, Phi4MultimodalForCausalLM

        from probes.models._tiny import seed_all, tiny_tokenizer

        tok = tokenizer or tiny_tokenizer(_SPECIALS, eos="<|endoftext|>", pad="<|endoftext|>")
        n_vocab = max(len(tok), max(tok.get_vocab().values()) + 1)
        aud = dict(hidden_size=32, intermediate_size=64, num_blocks=2, num_attention_heads=2, ext_pw_out_channel=32,
                   depthwise_separable_out_channel=32, nemo_conv_channels=32, input_size=80, time_reduction=8,
                   bias_max_distance=50, audio_token_id=tok.convert_tokens_to_ids("<|endoftext11|>"))
        vis = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, crop_size=28,
                   image_size=28, patch_size=14, image_token_id=tok.convert_tokens_to_ids("<|endoftext10|>"))
        cfg = Phi4MultimodalConfig(vocab_size=n_vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                                   original_max_position_embeddings=1024, pad_token_id=tok.pad_token_id,
                                   bos_token_id=tok.pad_token_id, eos_token_id=[tok.eos_token_id],
                                   tie_word_embeddings=False, audio_config=aud, vision_config=vis)
        seed_all(0)
        return Phi4MultimodalForCausalLM(cfg).eval(), tok, Phi4MultimodalFeatureExtractor()

    def chat(self, user_text: str):
        head = ([("tok", "<|system|>"), ("text", self.system), ("tok", "<|end|>")] if self.system else []) + [
            ("tok", "<|user|>")]
        return head, [], [("tok", "<|end|>"), ("tok", "<|assistant|>")]

    def audio_features(self, wavs: Sequence[np.ndarray]) -> dict:
        return self.fe([np.asarray(w, dtype=np.float32) for w in wavs], sampling_rate=self.sample_rate,
                       return_tensors="pt")

    def encode_audio(self, wavs: Sequence[np.ndarray]) -> list[torch.Tensor]:
        emb = self.model.get_submodule(_AUDIO)
        out = []
        for w in wavs:  # one clip at a time: padding changes the encoder's masks
            f = self.audio_features([w])
            h = emb.encoder(f["audio_input_features"].to(self.device, self.dtype), None)
            h = emb.down_proj_for_speech(torch.nn.functional.gelu(emb.up_proj_for_speech(h)))  # [1, frames/8, hidden]
            n = int(f["audio_embed_sizes"][0])
            if h.shape[1] < n:
                raise RuntimeError(f"phi-4-multimodal: encoder gave {h.shape[1]} frames, the processor counts {n}")
            out.append(h[0, :n])
        return out

    def native_forward(self, batch, wavs):
        """The model's own forward (input_ids + audio features), for the equivalence test. # [b, seq, vocab]"""
        f = self.audio_features(wavs)
        return self.model(input_ids=batch.ids, attention_mask=batch.mask,
                          audio_input_features=f["audio_input_features"], audio_embed_sizes=f["audio_embed_sizes"],
                          audio_attention_mask=f.get("audio_attention_mask")).logits
