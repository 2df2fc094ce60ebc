"""Real-size instances on the meta device, built from the published configurations in this folder.

``meta_instance(family)`` builds the family's transformers class from ``<family>.json`` without
allocating memory (``torch.device("meta")``); ``memory_table(family)`` computes weights, KV cache
per second of audio and the eager attention row at the answer position from that instance's
config. Families whose configuration could not be read completely raise NotImplementedError
with the reason recorded in their file (``not_found``).
"""

from __future__ import annotations

BUILDABLE = {"qwen2-audio": ("Qwen2AudioConfig", "Qwen2AudioForConditionalGeneration"),
             "audio-flamingo-3": ("AudioFlamingo3Config", "AudioFlamingo3ForConditionalGeneration"),
             "voxtral": ("VoxtralConfig", "VoxtralForConditionalGeneration"),
             "qwen2.5-omni": ("Qwen2_5OmniThinkerConfig", "Qwen2_5OmniThinkerForConditionalGeneration"),
             "qwen3-omni": ("Qwen3OmniMoeThinkerConfig", "Qwen3OmniMoeThinkerForConditionalGeneration"),
             "granite-speech": ("GraniteSpeechConfig", "GraniteSpeechForConditionalGeneration"),
             "phi-4-multimodal": ("Phi4MultimodalConfig", "Phi4MultimodalForCausalLM"),
             "gemma-4": ("Gemma4Config", "Gemma4ForConditionalGeneration")}


def meta_config(family: str):
    import transformers

    from probes.models.tokenizers import real_config

    rec = real_config(family)
    if family not in BUILDABLE:
        raise NotImplementedError(f"{family}: no meta-size instance: {rec.get('not_found', 'configuration incomplete')}")
    cfg_cls = getattr(transformers, BUILDABLE[family][0])
    return cfg_cls(**rec["config"]), rec


def meta_instance(family: str):
    """(model on the meta device, its config, the config record). No weights are allocated."""
    import torch
    import transformers

    cfg, rec = meta_config(family)
    with torch.device("meta"):
        model = getattr(transformers, BUILDABLE[family][1])(cfg)
    return model, cfg, rec


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _kv_widths(t) -> list[int]:
    """KV heads x head dim of every decoder layer that stores keys / values. Uniform decoders: the same
    width ``num_hidden_layers`` times. Gemma 4 (families2 helper): head dims differ per layer
    (``per_layer_config``) and its KV-shared layers store none (``kv_sharing_modes`` 'reuse')."""
    n = t.num_hidden_layers
    modes = getattr(t, "kv_sharing_modes", None) or [None] * n
    per = getattr(t, "per_layer_config", None)
    out = []
    for i in range(n):
        if modes[i] == "reuse":
            continue
        c = per[i] if per is not None else t
        heads = c.num_attention_heads
        kv = getattr(c, "num_key_value_heads", None) or heads
        hd = getattr(c, "head_dim", None) or c.hidden_size // heads
        out.append(kv * hd)
    return out


def memory_table(family: str, model=None, *, seconds: float = 30.0, prompt_tokens: int = 60, bytes_per: int = 2) -> dict:
    """Memory figures from the real-size config (bf16 by default).

    weights_gb: parameters x bytes; kv_per_audio_second_mb: audio tokens per second x layers x
    2 (K, V) x kv heads x head dim x bytes; attn_answer_row_kb: one query row of eager attention
    over a ``seconds`` clip plus ``prompt_tokens`` (heads x sequence x bytes, per layer).
    """
    if model is None:
        model, cfg, rec = meta_instance(family)
    else:
        cfg, rec = meta_config(family)
    t = getattr(cfg, "text_config", None) or cfg   # Phi-4-multimodal's decoder config is the top level
    heads = t.num_attention_heads
    rate = rec["audio_tokens_per_second"]
    seq = int(rate * seconds) + prompt_tokens
    p = n_params(model)
    return {"family": family, "params": p, "weights_gb": p * bytes_per / 1e9,
            "audio_tokens_per_second": rate,
            "kv_per_audio_second_mb": rate * 2 * sum(_kv_widths(t)) * bytes_per / 1e6,
            "attn_answer_row_kb_per_layer": heads * seq * bytes_per / 1e3, "seq_for_row": seq}
