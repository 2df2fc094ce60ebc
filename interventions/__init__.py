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

__all__ = ["Intervention", "rng_for"]


def __getattr__(name: str):
    # lazy: `probe --help` imports interventions.cli, which must not load numpy through this file
    if name in __all__:
        from interventions import base

        return getattr(base, name)
    raise AttributeError(f"module 'interventions' has no attribute {name!r}")
