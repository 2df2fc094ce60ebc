"""``ALMAdapter``: the shared base of the audio-language-model adapters (loading, stable names).

What it loads: nothing itself. Each family file (``probes/models/qwen2_audio.py``, ...)
subclasses ``ALMAdapter`` and says how to load the weights (hub id or local folder, or a tiny
random-weight instance), how its chat prompt looks (``chat``), and how its audio tower +
projector turn a waveform into the embeddings that replace the audio placeholder tokens
(``encode_audio``). Module paths come from one default table (``default_paths``); a family
lists only the entries that differ (``paths_override``).

The rest is shared and split by what it does:

- ``prompt.py``: prompt building, audio encoding and caching, spans (``encode`` -> ``Batch``);
- ``scoring.py``: ``predict``: closed-set label scoring over shared prefixes, or generation;
- ``instruments.py``: everything a probe may read or change inside (hidden states, attention,
  ablation, patching, logit lens, captum entry point, the inside-probe instruments);
- ``engine.py``: the one mechanism every read and write goes through (plain PyTorch hooks).

Stable names (probes never see raw paths): modules ``decoder`` (the text model),
``decoder.blocks``, ``decoder.attn`` (relative to one block), ``decoder.norm``, ``unembed``,
``audio.blocks``, ``projector``; spans as in ``prompt.py``; layers as residual indices
(``probes.adapter``: 0 = input embeddings, ``i`` = input of block ``i``, ``L`` = after the last block).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
import torch

from probes.adapter import Adapter
from probes.models.alm.instruments import Instruments
from probes.models.alm.prompt import NO_HUB, AudioDroppedError, ModelLoadError, PromptBuilding  # noqa: F401
from probes.models.alm.scoring import Scoring


def _check_model_path(name: str, model_path: str) -> str:
    """``--model-path`` checked in well under a second (``probes.models.loading``): an offline hub id
    or a missing local folder fails here with one line, before transformers retries for minutes.
    Returns the folder or hub id to load from."""
    from probes.models.loading import ModelPathError, check_model_path

    try:
        return check_model_path(model_path)
    except ModelPathError as e:
        raise ModelLoadError(f"{name}: {e}") from None


class ALMAdapter(PromptBuilding, Scoring, Instruments, Adapter):
    """Base of every audio-language-model adapter; subclasses fill in the family's specifics."""

    name: ClassVar[str] = "alm"
    hub_id: ClassVar[str] = ""
    hub_ids: ClassVar[tuple[str, ...]] = ()       # other checkpoints the adapter loads
    # stable name -> real module path; a family overrides only the entries that differ (``paths_override``)
    default_paths: ClassVar[dict[str, str]] = {
        "decoder": "model.language_model",
        "decoder.blocks": "model.language_model.layers",
        "decoder.attn": "self_attn",                  # relative to one block
        "decoder.norm": "model.language_model.norm",
        "unembed": "lm_head",
        "audio.blocks": "model.audio_tower.layers",
        "projector": "model.multi_modal_projector",
    }
    paths_override: ClassVar[dict[str, str]] = {}
    audio_token: ClassVar[str] = ""
    stop_tokens: ClassVar[tuple[str, ...]] = ()   # end-of-answer tokens for generation
    max_seconds: ClassVar[float | None] = 30.0
    single_window: ClassVar[bool] = True          # the feature extractor pads / cuts to one window
    length_norm: str = "sum"
    max_new_tokens: int = 12
    cache_size: int = 64                          # distinct waveforms kept encoded

    def __init__(self, model, tokenizer, feature_extractor, *, weights: str = "real", source: str = "",
                 answer_mode: str = "closed", template_default: str = "plain"):
        if answer_mode not in ("closed", "generate"):
            raise ValueError(f"answer_mode must be 'closed' or 'generate', got {answer_mode!r}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.fe = feature_extractor
        self.weights = weights  # type: ignore[misc]  (instance value overrides the class default)
        self.source = source
        self.answer_mode = answer_mode
        self.template_default = template_default
        self._audio_cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._tok_cache: dict[str, list[int]] = {}
        self.source_loader = None   # utt_id -> Example, for Edit(kind="patch") inside predict
        self.stats = {"audio_encoded": 0, "audio_cache_hits": 0, "tokens_forwarded": 0}
        self.audio_token_id = int(tokenizer.convert_tokens_to_ids(self.audio_token))
        for stable in ("decoder", "decoder.blocks", "unembed"):
            self.module(stable)  # fail at load time, not in the middle of a run

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_cli(cls, model_path: str | None = None, tiny: bool = False, device: str | None = None,
                 dtype: str | None = None, trust_remote_code: bool = False, answer_mode: str | None = None,
                 organism: str | None = None, **_: Any) -> "ALMAdapter":
        answer_mode = answer_mode or "closed"
        if organism:
            try:
                from probes.models import organisms
            except ImportError as e:
                raise ModelLoadError(f"{cls.name}: organism {organism!r} asked for, but the model-organisms package "
                                     f"(probes/models/organisms) cannot be imported ({e})") from None
            return organisms.load(family=cls.name, name=organism, answer_mode=answer_mode)
        if tiny:
            return cls.tiny(answer_mode=answer_mode)
        if not model_path:
            # Nothing downloads unless the user names the weights: the hub id is a suggestion only.
            raise ModelLoadError(
                f"{cls.name} needs --model-path: a local folder with the weights, or a hub id such as "
                f"{cls.hub_id} (downloads only where a hub is reachable); --tiny gives a random-weight test instance"
            )
        path = _check_model_path(cls.name, model_path)
        local = Path(path).expanduser()
        kw = _load_kwargs(device, dtype, trust_remote_code)
        try:
            return cls.load(str(local) if local.is_dir() else path, kw, answer_mode=answer_mode)
        except (OSError, ValueError) as e:
            if local.is_dir():
                raise ModelLoadError(f"{path}: cannot load {cls.name} weights from this folder ({e})") from None
            raise ModelLoadError(f"{path}: not a local folder and {NO_HUB} (tried: {type(e).__name__})") from None

    @classmethod
    def load(cls, path: str, kw: dict, *, answer_mode: str) -> "ALMAdapter":
        raise NotImplementedError

    @classmethod
    def tiny(cls, *, answer_mode: str = "closed") -> "ALMAdapter":
        """A tiny random-weight instance of the real class, built once per process."""
        key = (cls, answer_mode)
        if key not in _TINY:
            model, tok, fe = cls.build_tiny()
            a = cls(model, tok, fe, weights="random", source="tiny", answer_mode=answer_mode)
            if cls.single_window:  # longer audio would be cut silently by the feature extractor
                a.max_seconds = float(fe.chunk_length)
            _TINY[key] = a
        return _TINY[key]

    @classmethod
    def build_tiny(cls):
        raise NotImplementedError

    def describe(self) -> dict:
        cfg = getattr(self.model, "config", None)
        return {"name": self.name, "weights": self.weights, "source": self.source or self.hub_id,
                "class": type(self.model).__name__, "labels": list(self.labels), "answer_mode": self.answer_mode,
                "length_norm": self.length_norm, "label_readout": self.LABEL_READOUT, "n_layers": self.n_layers,
                "dtype": str(next(self.model.parameters()).dtype), "hub_id": self.hub_id,
                "transformers_config": getattr(cfg, "model_type", None)}

    # ------------------------------------------------------------------ family hooks
    def chat(self, user_text: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]], list[tuple[str, str]]]:
        """(head, mid, end): pieces before the audio, between audio and user text, after it.

        A piece is ("tok", special_token) or ("text", string). ``head`` ends with the audio-start
        marker, ``mid`` starts with the audio-end marker, ``end`` closes the user turn and opens
        the assistant's.
        """
        raise NotImplementedError

    def encode_audio(self, wavs: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """Waveforms (16 kHz mono) -> audio embeddings in the decoder's space. # each [n_i, hidden]"""
        raise NotImplementedError

    def audio_features(self, wavs: Sequence[np.ndarray]) -> dict:
        """The feature extractor's output for ``wavs``: by default one Whisper-style window per clip,
        padded to the window with its frame mask. Families that cut long audio into several
        windows (Audio Flamingo 3, Voxtral) override this."""
        return self.fe(list(wavs), sampling_rate=self.sample_rate, return_attention_mask=True,
                       padding="max_length", return_tensors="pt")

    # ------------------------------------------------------------------ stable names
    @property
    def paths(self) -> dict[str, str]:
        """Stable name -> real module path: the default table with the family's overrides."""
        return {**self.default_paths, **self.paths_override}

    def module(self, stable: str, index: int | None = None) -> torch.nn.Module:
        """The real module behind a stable name; ``index`` picks one block. Fails loudly."""
        if stable == "decoder.attn":
            if index is None:
                raise ValueError("decoder.attn needs a layer index")
            return self.module("decoder.blocks", index).get_submodule(self.paths["decoder.attn"])
        if stable not in self.paths:
            raise KeyError(f"{self.name}: no stable module {stable!r}; known: {', '.join(sorted(self.paths))}")
        try:
            mod = self.model.get_submodule(self.paths[stable])
        except AttributeError as e:
            raise KeyError(f"{self.name}: module path {self.paths[stable]!r} for {stable!r} is missing "
                           f"from {type(self.model).__name__} ({e}); the paths table is out of date") from None
        return mod[index] if index is not None else mod

    @property
    def n_layers(self) -> int:
        return len(self.module("decoder.blocks"))

    @property
    def device(self) -> torch.device:
        return self.module("unembed").weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.module("unembed").weight.dtype


_TINY: dict = {}


def _load_kwargs(device: str | None, dtype: str | None, trust_remote_code: bool) -> dict:
    kw: dict = {"trust_remote_code": bool(trust_remote_code)}
    if dtype:
        if dtype not in ("float32", "bfloat16", "float16"):
            raise ModelLoadError(f"--dtype {dtype}: use float32, bfloat16 or float16")
        kw["dtype"] = getattr(torch, dtype)
    if device == "auto":
        kw["device_map"] = "auto"
    elif device:
        kw["device_map"] = {"": device}
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        kw["local_files_only"] = True
    return kw
