"""The Intervention contract.

An intervention turns an ``Example`` into a changed ``Example``: a new waveform (audio side),
a new prompt part (cue tokens, transcript, template: prompt side) or an ``Edit`` the adapter
applies inside its forward pass (activation side). Some need to see the whole data set first
(cue-token bins, the donor of a shuffle): they do that in ``fit``. Randomness comes only from
the generator the caller passes, made by ``rng_for(seed, utt_id, name)``, so a condition is
deterministic under a seed and independent of batch order and sharding.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, ClassVar

import numpy as np

if TYPE_CHECKING:
    from probes.adapter import Example
    from probes.data.manifest import Manifest


def rng_for(seed: int, *keys: object) -> np.random.Generator:
    """A generator that depends only on the seed and the keys (utterance id, condition...)."""
    h = hashlib.sha256("|".join(map(str, (seed, *keys))).encode()).digest()
    return np.random.default_rng(int.from_bytes(h[:8], "little"))


class Intervention:
    """Base class; subclasses set ``side`` and implement ``apply``."""

    side: ClassVar[str] = "prompt"   # "prompt" | "audio" | "text" | "activation"
    needs_audio: ClassVar[bool] = False

    def fit(self, data: "Manifest", *, seed: int = 0) -> "Intervention":
        """See the whole data set once (bins, donors); return self."""
        return self

    def apply(self, ex: "Example", *, rng: np.random.Generator) -> "Example":
        raise NotImplementedError

    def config(self) -> dict:
        from dataclasses import asdict, is_dataclass

        return asdict(self) if is_dataclass(self) else {}
