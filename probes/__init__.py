"""dissonance: a workbench for speech emotion models when the words and the voice disagree.

The import packages are ``probes`` (data, adapters, probes, metrics, runs, CLI),
``interventions`` (what a model sees or computes, changed on purpose) and ``fas`` (the
acoustic-semantic fusion model). Importing this package is cheap: torch and transformers are
imported only by the modules that need them.
"""

__version__ = "0.1.0"
