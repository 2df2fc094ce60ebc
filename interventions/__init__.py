"""Interventions: changes to what a model sees (prompt, audio, text) or computes (activations).

Every intervention is registered in ``probes.registry.INTERVENTIONS`` by name and documented
in its own module; ``probe list interventions`` lists them.
"""

from interventions.base import Intervention, rng_for

__all__ = ["Intervention", "rng_for"]
