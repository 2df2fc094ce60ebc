"""Where a run's units execute.

``local`` (the default) is the probe's own ``execute`` in this process. ``ray`` hands blocks of
utterances to a pool of model replicas on a Ray cluster (``probes/backends/ray_backend.py``);
rows still come back through the one run store of ``run_probe``, so the lock, the settings
check, resume and the merge checks are the same for both.
"""

BACKENDS = ("local", "ray")
