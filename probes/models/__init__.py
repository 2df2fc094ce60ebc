"""Model adapters, one file per model family, registered in ``probes.registry.MODELS``."""
