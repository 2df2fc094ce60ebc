"""The FAS step of ``probe demo`` / ``make demo``: the text-reliance table on the synthetic corpus.

Runs the registered probe ``fas-conflict`` (``probe run fas-conflict --model fas-untrained``)
through ``run_probe`` with the arms of the text-reliance table (``DEMO_ARMS``, all reading the
true text through MiniLM) and returns its run folder; its ``results.md`` holds the table and the
report reads the run like any other. What the demo runs (docs/fas.md, "The text-reliance table"):

- concat[text] at 0 / 20 / 50 % conflict items in training, two training seeds each;
- acoustic-only and semantic-only[text] at 0 %, two seeds (the baselines the table compares with);
- fas[text] and fas-voiced[text] (our voiced-frame variant) at 0 %, one seed: the query block is
  about 20x slower to train than the pooled arms on this CPU, and the table in docs/fas.md was
  measured with two seeds for them;
- 40 epochs, 1,000 bootstrap resamples. Every arm reports its training accuracy.

Measured wall time of this step (fresh feature cache, eGeMAPS and MiniLM extraction included,
2-core machine shared with other jobs): see docs/fas.md ("make demo"). ``--quick`` runs one seed,
20 epochs and 200 resamples on the 96-utterance corpus: a check that it runs, not a measurement.

The ``[asr]`` arms (faster-whisper transcripts) are left out of the demo: transcribing the
1,120-utterance corpus costs more than the demo's whole time budget on a 2-core machine
(docs/fas.md). Run them with ``probe fas experiment`` or ``--set arms=...``.

The command the demo step equals (seed 0, ``runs/demo`` the demo root)::

    probe run fas-conflict --model fas-untrained --data runs/demo/data/synth/manifest.csv \\
        --out runs/demo/fas-conflict/fas-untrained/synth --seed 0 --set seeds=2 --set epochs=40 \\
        --set single_mixes=0 --set query_mixes=0 --set query_seeds=1 --set n_boot=1000 \\
        --set 'arms=acoustic-only,semantic-only[text],concat[text],fas[text],fas-voiced[text]'
"""

from __future__ import annotations

from pathlib import Path

from probes.demo import STEPS

DEMO_SEEDS = 2
DEMO_EPOCHS = 40


def fas_step(corpus: Path, root: Path, seed: int, quick: bool) -> list[Path]:
    from fas.experiment import DEMO_ARMS, FASUntrained, FASConflict
    from probes.data.manifest import Manifest
    from probes.probe import run_probe

    from probes.demo import run_dir

    out = run_dir(root, "fas-conflict", "fas-untrained", corpus)  # ROOT/<probe>/<model>/<dataset>/
    print(f"[demo] FAS conflict experiment (probe fas-conflict) -> {out}")
    # concat at every mix with several seeds; the one-stream baselines and the FAS arms (query block,
    # ~20x slower to train here) at 0 % conflict, where the text-reliance table compares them
    probe = FASConflict(arms=",".join(DEMO_ARMS), seeds=1 if quick else DEMO_SEEDS, n_boot=200 if quick else 1000,
                        epochs=20 if quick else DEMO_EPOCHS, query_mixes="0", query_seeds=1, single_mixes="0")
    run_probe(probe, FASUntrained(), Manifest.read(corpus), out, seed=seed, batch_size=10**6, progress=True)
    print((out / "results.md").read_text())
    return [out]


if fas_step not in STEPS:
    STEPS.append(fas_step)
