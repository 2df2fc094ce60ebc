"""The FAS step of ``probe demo`` / ``make demo``: train FAS and its baselines on the synthetic corpus.

Runs the conflict experiment (fas/experiment.py) with the offline default encoders (eGeMAPS
frames per speaker; faster-whisper tiny.en transcripts or the true text through MiniLM, both real
weights shipped in packages) and returns its run folder, whose ``results.md`` holds the table.
"""

from __future__ import annotations

from pathlib import Path

from probes.demo import STEPS


def fas_step(corpus: Path, root: Path, seed: int, quick: bool) -> list[Path]:
    from fas.experiment import run_experiment
    from fas.train import TrainConfig

    out = Path(root) / "runs" / "fas" / "experiment"
    print(f"[demo] FAS conflict experiment -> {out}")
    tc = TrainConfig(epochs=15 if quick else 40, batch_size=32)
    run_experiment(corpus, out, tc=tc, n_boot=200 if quick else 500, progress=True)
    print((out / "results.md").read_text())
    return [out]


if fas_step not in STEPS:
    STEPS.append(fas_step)
