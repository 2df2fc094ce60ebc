"""Corpora: the Manifest table, its importers and the embedded synthetic conflict corpus."""

from probes.data.manifest import COLUMNS, Manifest, ManifestError

__all__ = ["COLUMNS", "Manifest", "ManifestError"]
