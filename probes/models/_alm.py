"""The old home of the ALM base, kept so that ``from probes.models._alm import ALMAdapter`` works.

The code now lives in ``probes/models/alm/`` (``adapter.py``, ``prompt.py``, ``scoring.py``,
``instruments.py``, ``engine.py``); this module only re-exports its public names.
"""

from probes.models.alm import (NO_HUB, ALMAdapter, AudioDroppedError, Batch, ModelLoadError, Op,  # noqa: F401
                               Prompt, hooked, positions, time_align, wav_key)
from probes.models.alm.adapter import _TINY, _load_kwargs  # noqa: F401
from probes.models.alm.prompt import Prompt as _Prompt  # noqa: F401
from probes.models.alm.prompt import span_pos as _span_pos  # noqa: F401

_positions = positions
