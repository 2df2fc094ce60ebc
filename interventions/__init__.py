"""Interventions: changes to what a model sees (prompt, audio, text) or computes (activations).

Every intervention is registered in ``probes.registry.INTERVENTIONS`` by name and documented
in its own module; ``probe list interventions`` lists them, docs/interventions.md explains them.

- ``cues``: acoustic cue tokens in the prompt (aligned, shuffled, conflicting, corrupted), built on
  ``egemaps`` (cached opensmile extraction) and ``concepts`` (six concepts, bins, rendering);
- ``transcript``: true / neutral / swapped transcripts and the voice-only instruction;
- ``audio``: silence, noise, low-pass, reversal, F0 flattening;
- ``activation``: span ablation and patching, FAS stream ablation (Edits the adapters apply);
- ``cli``: the ``probe cues`` subcommand.
"""

from interventions.base import Intervention, rng_for

__all__ = ["Intervention", "rng_for"]
