"""Probes: named experiments (model x data x conditions -> rows), one file each."""
