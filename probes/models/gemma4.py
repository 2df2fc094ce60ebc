"""Gemma 4 E2B / E4B (``Gemma4ForConditionalGeneration``): conformer audio encoder + Gemma 4 decoder with per-layer embeddings.

Loads ``google/gemma-4-E2B-it`` (default) or ``google/gemma-4-E4B-it`` from a hub id or a local
folder; ``--tiny`` builds a random-weight instance of the same class offline (audio tower, no
vision tower: ``vision_config=None`` is allowed by this class).
Why it is here: the two small Gemma 4 checkpoints are the open instruction-tuned models from
Google that take audio natively (the larger Gemma 4 sizes have no audio tower), with a speech
encoder of their own (a chunked-attention conformer, 25 soft tokens per second) rather than a
Whisper copy, and a decoder with an unusual lexical side channel: every decoder block also reads
a *per-layer embedding* looked up from the token id at each position. Text positions get their
token's entry; audio positions get the pad token's. So the words of a prompt reach every layer a
second time and the voice does not, which is exactly the asymmetry emotion-conflict probes ask
about (does the answer follow the words or the voice, and where). It does not report emotion
results itself (its model card lists speech recognition and translation for audio).

Measures what ``probes.models._alm`` measures. Prompt: Gemma 4's turn markers, no system turn,
the audio first in the user turn and the question right after it, and the generation prompt
with thinking off (the published template, probes/models/configs/gemma-4.json)::

    <bos><|turn>user\\n<|audio><|audio|>x n<audio|>{question}<turn|>\\n<|turn>model\\n<|channel>thought\\n<channel|>

The answer row is ``<channel|>``: the answer's first token follows it directly.

How the shared edit engine meets the per-layer inputs (probes/models/alm/engine.py feeds
embeddings, not ids): ``_decode`` recovers the token id behind every input row by exact match
with the (scaled) embedding table; a row that equals no token's embedding (an audio soft token,
or any edited / interpolated row) reads the pad token's per-layer embedding, which is what the
model's own forward gives audio positions. The context half of the per-layer inputs (a
projection of the input embeddings) is computed from what block 0 actually receives, after any
edit of residual 0: zeroing or patching the audio span at residual 0 therefore removes it from
both routes into the decoder. Edits at residual ``i > 0`` leave the per-layer inputs as they are
(they are a function of the input embeddings only, as in the model).

Footguns met: the feature extractor cuts clips at 30 s (480,000 samples); a batch of clips is
padded to its longest, so the adapter encodes one clip at a time; the audio tower's first linear
assumes 128 mel bins (``subsampling_conv_channels[0] // 4`` frequency rows); the final logits are
soft-capped (``tanh(x / 30) * 30``), which ``unembed`` applies too; 20 (E2B) / 18 (E4B) of the last
layers reuse the keys and values of earlier layers, so an edit of the residual in those layers never
changes what other positions attend to (patching curves flatten there for a structural reason);
transformers' sliding-window cache and masks count the window in cache slots, which the shared-prefix
scorer's inner padding breaks, so ``_decode`` masks by position over an uncropped cache; the audio tower
has no SDPA path, so eager attention is switched in the decoder only.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from probes.models._alm import ALMAdapter
from probes.registry import MODELS

# Gemma 4 specials used by the prompt and the tiny configs; their real ids (0, 1, 2, 100, 101, 105, 106,
# 256000, 258881, 258883, ...) are in probes/models/configs/gemma-4.json and probes.models.tokenizers.GEMMA4_SPECIALS.
_SPECIALS = ("<pad>", "<eos>", "<bos>", "<|channel>", "<channel|>", "<|turn>", "<turn|>", "<|audio>", "<|audio|>",
             "<audio|>", "<|image>", "<|image|>", "<image|>", "<|video|>")
AUDIO_MS_PER_TOKEN = 40     # the processor's audio_ms_per_token: 25 audio tokens per second


def n_audio_tokens(mask_len: int, n_valid: int) -> int:
    """Audio soft tokens for a clip whose feature mask has ``mask_len`` frames, ``n_valid`` of them real:
    two stride-2 convolutions (kernel 3, padding 1) over the frame mask, as Gemma4Processor counts."""
    mask = np.arange(mask_len) < n_valid
    for _ in range(2):
        t_out = (len(mask) + 2 - 3) // 2 + 1
        mask = mask[::2][:t_out]
    return int(mask.sum())


@MODELS.register("gemma-4")
class Gemma4(ALMAdapter):
    """Gemma 4 E2B / E4B (Google): conformer audio encoder, linear embedder, Gemma 4 decoder with per-layer embeddings."""

    hub_id = "google/gemma-4-E2B-it"
    hub_ids = ("google/gemma-4-E2B-it", "google/gemma-4-E4B-it")
    audio_token = "<|audio|>"
    stop_tokens = ("<turn|>", "<eos>")
    single_window = False       # variable-length features, one clip at a time
    max_seconds = 30.0          # the feature extractor truncates at 480,000 samples
    system = ""                 # the template writes no system turn unless one is given
    paths_override = {"projector": "model.embed_audio"}

    @classmethod
    def load(cls, path: str, kw: dict, *, answer_mode: str) -> "Gemma4":
        from transformers import AutoProcessor, Gemma4ForConditionalGeneration

        proc = AutoProcessor.from_pretrained(path, **{k: v for k, v in kw.items() if k in ("trust_remote_code", "local_files_only")})
        model = Gemma4ForConditionalGeneration.from_pretrained(path, **kw)
        if model.model.audio_tower is None:
            from probes.models._alm import ModelLoadError

            raise ModelLoadError(f"{path}: this Gemma 4 checkpoint has no audio tower (only E2B and E4B take audio)")
        return cls(model, proc.tokenizer, proc.feature_extractor, source=path, answer_mode=answer_mode)

    @classmethod
    def build_tiny(cls, tokenizer=None):
        from transformers import Gemma4AudioFeatureExtractor, Gemma4Config, Gemma4ForConditionalGeneration

        from probes.models._tiny import seed_all, tiny_tokenizer

        tok = tokenizer or tiny_tokenizer(_SPECIALS, eos="<eos>", pad="<pad>", bos="<bos>")
        n_vocab = max(len(tok), max(tok.get_vocab().values()) + 1)
        ids = {s: tok.convert_tokens_to_ids(s) for s in _SPECIALS}
        # 4 layers: sliding, full, then two that reuse their keys / values (as the last 20 of E2B's 35 do);
        # a 24-token window so the tests' prompts (40-110 tokens) cross it
        txt = dict(model_type="gemma4_text", vocab_size=n_vocab, vocab_size_per_layer_input=n_vocab, hidden_size=32,
                   intermediate_size=64, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=1, head_dim=8,
                   global_head_dim=16, hidden_size_per_layer_input=8, num_kv_shared_layers=2, use_double_wide_mlp=True,
                   sliding_window=24, layer_types=["sliding_attention", "full_attention"] * 2,
                   max_position_embeddings=2048, final_logit_softcapping=30.0, tie_word_embeddings=True,
                   pad_token_id=ids["<pad>"], bos_token_id=ids["<bos>"], eos_token_id=ids["<eos>"])
        # the audio tower keeps 128 mel bins and subsampling_conv_channels[0] = 128 (its input projection assumes it)
        aud = dict(model_type="gemma4_audio", hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                   subsampling_conv_channels=[128, 4], conv_kernel_size=5, output_proj_dims=24)
        cfg = Gemma4Config(text_config=txt, audio_config=aud, vision_config=None, tie_word_embeddings=True,
                           audio_token_id=ids["<|audio|>"], boa_token_id=ids["<|audio>"], eoa_token_index=ids["<audio|>"],
                           image_token_id=ids["<|image|>"], boi_token_id=ids["<|image>"], eoi_token_id=ids["<image|>"],
                           video_token_id=ids["<|video|>"])
        seed_all(0)
        return Gemma4ForConditionalGeneration(cfg).eval(), tok, Gemma4AudioFeatureExtractor()

    def chat(self, user_text: str):
        head = [("tok", "<bos>")]
        if self.system:
            head += [("tok", "<|turn>"), ("text", "system\n" + self.system.strip()), ("tok", "<turn|>"), ("text", "\n")]
        head += [("tok", "<|turn>"), ("text", "user\n"), ("tok", "<|audio>")]
        mid = [("tok", "<audio|>")]   # the question follows the audio block directly (the template trims it)
        end = [("tok", "<turn|>"), ("text", "\n"), ("tok", "<|turn>"), ("text", "model\n"), ("tok", "<|channel>"),
               ("text", "thought\n"), ("tok", "<channel|>")]
        return head, mid, end

    def user_text(self, ex) -> str:
        return super().user_text(ex).strip()   # the template writes item['text'] | trim

    # ------------------------------------------------------------------ audio
    def audio_features(self, wavs: Sequence[np.ndarray]) -> dict:
        return self.fe([np.asarray(w, dtype=np.float32) for w in wavs], sampling_rate=self.sample_rate, return_tensors="pt")

    def encode_audio(self, wavs: Sequence[np.ndarray]) -> list[torch.Tensor]:
        out = []
        for w in wavs:  # one clip at a time: a batch is padded to its longest clip
            f = self.audio_features([w])
            a = self.model.model.get_audio_features(f["input_features"].to(self.device, self.dtype),
                                                    f["input_features_mask"].to(self.device))
            emb = a.pooler_output[0][a.attention_mask[0]]                          # [n, hidden]
            m = f["input_features_mask"][0]
            n = n_audio_tokens(int(m.shape[0]), int(m.sum()))
            if emb.shape[0] != n:
                raise RuntimeError(f"gemma-4: the audio tower gave {emb.shape[0]} vectors, the processor counts {n}")
            out.append(emb)
        return out

    # ------------------------------------------------------------------ decoder with per-layer inputs
    def _fingerprints(self):
        """Sorted fingerprints of every (scaled) embedding row, computed once per weight tensor."""
        emb = self.module("decoder").embed_tokens
        key = (emb.weight.data_ptr(), emb.weight.dtype, str(emb.weight.device))
        if getattr(self, "_fp_key", None) != key:
            g = torch.Generator().manual_seed(0)
            r = torch.randn(emb.weight.shape[1], generator=g, dtype=torch.float64).to(emb.weight.device)
            scale = emb.embed_scale.to(emb.weight.dtype)
            with torch.no_grad():
                fp = torch.cat([(emb.weight[i:i + 16384] * scale).double() @ r
                                for i in range(0, emb.weight.shape[0], 16384)])
            srt, order = fp.sort()
            self._fp, self._fp_key = (r, srt, order, scale), key
        return self._fp

    def token_ids_of(self, embeds: torch.Tensor) -> torch.Tensor:
        """The token id behind each input row: the row's exact match in the scaled embedding table, else the
        pad id (audio soft tokens, edited or interpolated rows). # [b, s, d] -> [b, s]"""
        lm = self.module("decoder")
        emb = lm.embed_tokens
        r, srt, order, scale = self._fingerprints()
        pad = int(lm.config.pad_token_id)
        with torch.no_grad():
            rows = embeds.detach().reshape(-1, embeds.shape[-1]).to(emb.weight.dtype)
            q = rows.double() @ r
            tol = 1e-9 * (q.abs() + 1.0)
            lo = torch.searchsorted(srt, q - tol)
            hi = torch.searchsorted(srt, q + tol, right=True)
            ids = torch.full_like(lo, pad)
            one = hi - lo == 1
            if one.any():
                cand = order[lo[one]]
                ok = (rows[one] == emb.weight[cand] * scale).all(-1)
                ids[one.nonzero()[:, 0][ok]] = cand[ok]
            for k in (hi - lo > 1).nonzero()[:, 0].tolist():   # fingerprint ties: check each candidate
                for c in order[lo[k]:hi[k]].tolist():
                    if bool((rows[k] == emb.weight[c] * scale).all()):
                        ids[k] = c
                        break
        return ids.reshape(embeds.shape[:2])

    def _decode(self, embeds, mask_full, pos, cache=None, use_cache=False):
        """The text model over embeddings, with its per-layer inputs. # -> [b, s, hidden] (after the final norm), cache

        Token-identity half: looked up from the ids behind the rows (``token_ids_of``). Context half:
        projected from what block 0 receives (a hook after any residual-0 edit of the engine), then
        block ``i`` gets slice ``i`` of the sum, as in ``Gemma4TextModel.forward``.
        """
        lm = self.module("decoder")
        if not lm.hidden_size_per_layer_input:
            return super()._decode(embeds, mask_full, pos, cache=cache, use_cache=use_cache)
        tok = lm.get_per_layer_inputs(self.token_ids_of(embeds).to(embeds.device))    # [b, s, layers, d_ple]
        blocks = self.module("decoder.blocks")
        state: dict = {}

        def project(mod, args, kwargs):
            h = args[0] if args else kwargs["hidden_states"]
            state["ple"] = lm.project_per_layer_inputs(h, tok)

        def give(i):
            def hook(mod, args, kwargs):
                p = state["ple"][:, :, i, :]
                if len(args) >= 2:
                    return (args[0], p, *args[2:]), kwargs
                return args, {**kwargs, "per_layer_input": p}
            return hook

        if use_cache and cache is None:
            from transformers import DynamicCache

            cache = DynamicCache()   # no sliding-window cropping: the window is applied by position in the masks
        # registered now, so after the engine's own hooks on block 0: they see the edited residual 0
        handles = [blocks[0].register_forward_pre_hook(project, with_kwargs=True)]
        handles += [b.register_forward_pre_hook(give(i), with_kwargs=True) for i, b in enumerate(blocks)]
        self.stats["tokens_forwarded"] += int(embeds.shape[0] * embeds.shape[1])
        try:
            out = lm(inputs_embeds=embeds, per_layer_inputs=tok, attention_mask=self._masks(mask_full, pos, embeds.dtype),
                     position_ids=pos.to(self.device), past_key_values=cache, use_cache=use_cache)
        finally:
            for h in handles:
                h.remove()
        return out.last_hidden_state, out.past_key_values

    def _masks(self, mask_full: torch.Tensor, pos: torch.Tensor, dtype: torch.dtype) -> dict:
        """Additive attention masks by *position*, not by cache index. # -> {layer type: [b, 1, q, kv]}

        The shared-prefix scorer leaves padding between real tokens (a left-padded prefix, right-padded
        suffixes, then the label tokens); counting the sliding window in cache slots, as transformers'
        masks and sliding cache do, would shrink the window of a padded row by its pads. Here key ``k``
        is visible to query ``q`` when both are real, ``pos(k) <= pos(q)``, and, for sliding layers,
        ``pos(q) - pos(k) < sliding_window`` -- what a plain unpadded forward of that row sees.
        """
        kv = mask_full.to(self.device).bool()                                  # [b, K]
        kv_pos = kv.long().cumsum(-1) - 1                                     # [b, K]
        q = pos.to(self.device)                                               # [b, Q]
        causal = kv[:, None, :] & (kv_pos[:, None, :] <= q[:, :, None])       # [b, Q, K]
        window = self.module("decoder").config.sliding_window
        sliding = causal & (q[:, :, None] - kv_pos[:, None, :] < window)
        low = torch.finfo(dtype).min

        def additive(m):
            return torch.zeros(m.shape, dtype=dtype, device=self.device).masked_fill_(~m, low)[:, None]

        return {"full_attention": additive(causal), "sliding_attention": additive(sliding)}

    def forward_kwargs(self, batch) -> dict:
        """Keyword arguments of the model's own forward for a Batch, with the per-layer inputs its own
        forward cannot recover from embeddings that carry audio rows."""
        kw = super().forward_kwargs(batch)
        lm = self.module("decoder")
        if lm.hidden_size_per_layer_input:
            kw["per_layer_inputs"] = lm.get_per_layer_inputs(self.token_ids_of(batch.embeds).to(self.device))
        return kw

    def eager_attention(self):
        """Eager attention in the decoder only: the audio tower has no SDPA path, so switching the whole
        model back to SDPA afterwards (the shared helper) would fail."""
        from probes.models.alm.engine import eager_attention

        return eager_attention(self.module("decoder"))

    def unembed(self, hidden: torch.Tensor, *, normed: bool = True) -> torch.Tensor:
        """Logits as the model computes them: the unembedding, then the final soft cap. # [..., hidden] -> [..., vocab]"""
        logits = super().unembed(hidden, normed=normed)
        cap = self.model.config.get_text_config().final_logit_softcapping
        return logits if cap is None else torch.tanh(logits / cap) * cap

    def native_forward(self, batch, wavs):
        """The model's own forward (input_ids + audio features), for the equivalence test. # [b, seq, vocab]"""
        f = self.audio_features(wavs)
        return self.model(input_ids=batch.ids.to(self.device), attention_mask=batch.mask.to(self.device),
                          input_features=f["input_features"].to(self.device, self.dtype),
                          input_features_mask=f["input_features_mask"].to(self.device)).logits
