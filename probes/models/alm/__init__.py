"""The audio-language-model adapters' shared code, one concern per file (see ``adapter.py``)."""

from probes.models.alm.adapter import ALMAdapter, _load_kwargs  # noqa: F401
from probes.models.alm.engine import Op, hooked, positions, time_align  # noqa: F401
from probes.models.alm.prompt import (NO_HUB, AudioDroppedError, Batch, ModelLoadError, Prompt,  # noqa: F401
                                      left_aligned, span_pos, wav_key)
