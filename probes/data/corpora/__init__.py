"""Corpus importers: one module per corpus, each registered in ``probes.registry.CORPORA``.

``probe list corpora`` shows them; ``probe data import NAME PATH [--set K=V] [--label-map F]``
runs one. The shared machinery (options, label mapping, layout errors) is in ``base.py``; the
layouts, naming rules and mapping tables are written out in docs/corpora.md.
"""

from probes.data.corpora.base import Corpus, CorpusError, Option

__all__ = ["Corpus", "CorpusError", "Option"]
