"""Granite Speech (``GraniteSpeechForConditionalGeneration``): conformer CTC encoder + Q-Former + Granite LLM.

Loads ``ibm-granite/granite-speech-3.3-2b`` (default) or ``ibm-granite/granite-speech-3.3-8b`` from
a hub id or a local folder; ``--tiny`` builds a random-weight instance of the same class offline.
Why it is here: it is the one open speech LLM whose audio path is a *query transformer*
(windowed Q-Former: 15 encoder frames -> 3 query vectors), the bridge SALMONN uses, so it is the
closest transformers-native stand-in for the Q-Former EMIS models; its encoder is trained for
ASR only (CTC on characters), so what prosody reaches the decoder is an open question the
inside probes can answer. It does not report emotion results itself.

Measures what ``probes.models._alm`` measures. Prompt: Granite 3.3's chat roles, the audio token
first in the user turn and the question right after it (the prompt vLLM's tests and examples use
for ibm-granite/granite-speech-3.3-2b, probes/models/configs/granite-speech.json)::

    <|start_of_role|>system<|end_of_role|>{system}<|end_of_text|>\\n
    <|start_of_role|>user<|end_of_role|><|audio|>x n{question}<|end_of_text|>\\n
    <|start_of_role|>assistant<|end_of_role|>

The answer row is the ``<|end_of_role|>`` after ``assistant``: the answer's first token follows
it directly (no newline, no space).

Footguns met: the processor's feature extractor needs ``torchaudio`` (not installable beside this
torch); the tiny instance uses ``GraniteLogMel``, a torch re-implementation of the same features
(80 mels, 10 ms hop, log10 floored 8 below each clip's maximum, pairs of frames stacked to 160
dims). The encoder has no padding mask (block attention over 200 frames), so a clip's embeddings
depend on the padding of its batch: the adapter encodes one clip at a time. The number of
``<|audio|>`` tokens is ``ceil((samples // 160 + 1) // 2 / 15) * 3`` (3 per 15 encoder frames,
about 10 per second). The real checkpoints carry a LoRA adapter (peft) that the model enables
only when audio is given: ``load`` enables it for every forward, since every prompt here has
audio.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from probes.models._alm import ALMAdapter
from probes.registry import MODELS

# Granite 3.x specials used by the prompt; their real ids (0, 49152, 49153, 49159) are in
# probes/models/configs/granite-speech.json and probes.models.tokenizers.GRANITE_SPECIALS.
_SPECIALS = ("<|end_of_text|>", "<|start_of_role|>", "<|end_of_role|>", "<|audio|>")
SYSTEM = ("Knowledge Cutoff Date: April 2024.\nToday's Date: December 19, 2024.\n"
          "You are Granite, developed by IBM. You are a helpful AI assistant")


class GraniteLogMel:
    """Granite Speech's log-mel features without torchaudio (for the tiny instance and tests).

    Same numbers as transformers' ``GraniteSpeechFeatureExtractor``: power mel spectrogram
    (n_fft 512, Hann window of 400, hop 160, 80 HTK mels, no filter normalisation, centred with
    reflection), log10 floored at 1e-10, clipped at (clip maximum - 8), then /4 + 1; an odd last
    frame is dropped and pairs of frames are stacked (160 values per encoder frame).
    """

    def __init__(self, sampling_rate: int = 16_000, n_fft: int = 512, win_length: int = 400, hop_length: int = 160,
                 n_mels: int = 80, projector_window_size: int = 15, projector_downsample_rate: int = 5):
        from transformers.audio_utils import mel_filter_bank

        self.sampling_rate, self.n_fft, self.win_length, self.hop_length = sampling_rate, n_fft, win_length, hop_length
        self.projector_window_size, self.projector_downsample_rate = projector_window_size, projector_downsample_rate
        fb = mel_filter_bank(num_frequency_bins=n_fft // 2 + 1, num_mel_filters=n_mels, min_frequency=0.0,
                             max_frequency=sampling_rate / 2, sampling_rate=sampling_rate, norm=None, mel_scale="htk")
        self.fb = torch.tensor(fb, dtype=torch.float32)  # [freqs, mels]

    def n_tokens(self, n_samples: int) -> int:
        enc = (n_samples // self.hop_length + 1) // 2
        return math.ceil(enc / self.projector_window_size) * (self.projector_window_size // self.projector_downsample_rate)

    def __call__(self, audios, device: str = "cpu") -> dict:
        wavs = [torch.as_tensor(np.asarray(a, dtype=np.float32)) for a in audios]
        lengths = [int(w.shape[-1]) for w in wavs]
        x = torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True)                       # [b, samples]
        spec = torch.stft(x, self.n_fft, self.hop_length, self.win_length, torch.hann_window(self.win_length),
                          center=True, pad_mode="reflect", onesided=True, return_complex=True).abs().pow(2)
        logmel = (spec.transpose(-1, -2) @ self.fb).clamp_(min=1e-10).log10_()          # [b, frames, mels]
        mx = logmel.amax(dim=(-2, -1), keepdim=True)
        logmel = torch.maximum(logmel, mx - 8.0).div_(4).add_(1)
        if logmel.shape[1] % 2 == 1:
            logmel = logmel[:, :-1]
        feats = logmel.reshape(x.shape[0], -1, 2 * logmel.shape[-1])                      # [b, frames/2, 2 mels]
        sizes = [self.n_tokens(n) for n in lengths]
        mask = torch.arange(max(sizes))[None] < torch.tensor(sizes)[:, None]
        return {"input_features": feats, "audio_embed_sizes": sizes, "input_features_mask": mask}


@MODELS.register("granite-speech")
class GraniteSpeech(ALMAdapter):
    """Granite Speech 3.3 (IBM): conformer CTC encoder, windowed Q-Former projector, Granite 3.3 decoder (+ audio LoRA)."""

    hub_id = "ibm-granite/granite-speech-3.3-2b"
    hub_ids = ("ibm-granite/granite-speech-3.3-2b", "ibm-granite/granite-speech-3.3-8b")
    audio_token = "<|audio|>"
    stop_tokens = ("<|end_of_text|>",)
    single_window = False       # no fixed window: any length, one clip at a time
    max_seconds = 600.0
    system = SYSTEM
    paths_override = {"audio.blocks": "model.encoder.layers", "projector": "model.projector"}

    @classmethod
    def load(cls, path: str, kw: dict, *, answer_mode: str) -> "GraniteSpeech":
        from transformers import AutoProcessor, GraniteSpeechForConditionalGeneration

        proc = AutoProcessor.from_pretrained(path, **{k: v for k, v in kw.items() if k in ("trust_remote_code", "local_files_only")})
        model = GraniteSpeechForConditionalGeneration.from_pretrained(path, **kw)
        if getattr(model, "_hf_peft_config_loaded", False):
            model.enable_adapters()  # the audio LoRA: the model's own generate enables it whenever audio is given
        return cls(model, proc.tokenizer, proc.audio_processor, source=path, answer_mode=answer_mode)

    @classmethod
    def build_tiny(cls, tokenizer=None):
        from transformers import GraniteSpeechConfig, GraniteSpeechForConditionalGeneration

        from probes.models._tiny import seed_all, text_config, tiny_tokenizer

        tok = tokenizer or tiny_tokenizer(_SPECIALS, eos="<|end_of_text|>", pad="<|end_of_text|>")
        n_vocab = max(len(tok), max(tok.get_vocab().values()) + 1)
        enc = dict(input_dim=160, num_layers=2, hidden_dim=32, feedforward_mult=2, num_heads=2, dim_head=16,
                   output_dim=8, context_size=200, max_pos_emb=512, conv_kernel_size=5, dropout=0.0)
        proj = dict(model_type="blip_2_qformer", hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64, encoder_hidden_size=32, cross_attention_frequency=1,
                    hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        # Granite's multipliers are kept but set for 32 wide / head dim 8 (the real 12 / 0.22 / 1/64 of
        # configs/granite-speech.json belong to width 2048: here they flatten attention so much that a
        # cue text no longer moves the random model's answer)
        txt = text_config("granite", vocab=n_vocab, embedding_multiplier=1.0, residual_multiplier=1.0,
                          attention_multiplier=8 ** -0.5, logits_scaling=8.0, tie_word_embeddings=True)
        cfg = GraniteSpeechConfig(text_config=txt, encoder_config=enc, projector_config=proj,
                                  audio_token_index=tok.convert_tokens_to_ids("<|audio|>"), has_lora_adapter=False,
                                  downsample_rate=5, window_size=15, tie_word_embeddings=True)
        seed_all(0)
        return GraniteSpeechForConditionalGeneration(cfg).eval(), tok, GraniteLogMel()

    def chat(self, user_text: str):
        head = [("tok", "<|start_of_role|>"), ("text", "system"), ("tok", "<|end_of_role|>"), ("text", self.system),
                ("tok", "<|end_of_text|>"), ("text", "\n"), ("tok", "<|start_of_role|>"), ("text", "user"),
                ("tok", "<|end_of_role|>")]
        mid: list = []  # the question follows the <|audio|> run directly
        end = [("tok", "<|end_of_text|>"), ("text", "\n"), ("tok", "<|start_of_role|>"), ("text", "assistant"),
               ("tok", "<|end_of_role|>")]
        return head, mid, end

    def audio_features(self, wavs: Sequence[np.ndarray]) -> dict:
        return self.fe([torch.as_tensor(np.asarray(w, dtype=np.float32)) for w in wavs], device="cpu")

    def encode_audio(self, wavs: Sequence[np.ndarray]) -> list[torch.Tensor]:
        out = []
        for w in wavs:  # one clip at a time: the encoder has no padding mask
            f = self.audio_features([w])
            emb = self.model.get_audio_features(f["input_features"].to(self.device, self.dtype)).pooler_output[0]
            n = int(f["audio_embed_sizes"][0])
            if emb.shape[0] != n:
                raise RuntimeError(f"granite-speech: projector gave {emb.shape[0]} vectors, the processor counts {n}")
            out.append(emb)  # [n, hidden]
        return out

    def native_forward(self, batch, wavs):
        """The model's own forward (input_ids + input_features), for the equivalence test. # [b, seq, vocab]"""
        f = self.audio_features(wavs)
        return self.model(input_ids=batch.ids, attention_mask=batch.mask, input_features=f["input_features"],
                          input_features_mask=f["input_features_mask"]).logits
