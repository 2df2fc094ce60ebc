"""``modality-ablation``: take the voice away (or add the words) and see which label survives.

What it measures: for each utterance, the model's answer under
- ``none``: the recording as it is;
- ``audio-silenced``: the waveform replaced by silence of the same length;
- ``audio-noised``: white noise mixed in at ``snr_db`` (0 dB by default);
- ``audio-lowpassed``: low-pass filtered at ``cutoff_hz`` (400 Hz): the prosody stays, the words
  become hard to make out;
- ``audio-ablated``: the audio span of the model's input embeddings zeroed (activation side, so
  the audio placeholders are still there but carry nothing);
- ``transcript``: the true transcript written into the prompt;
- ``transcript-swapped``: the transcript of another sentence written into the prompt.

Each condition is scored against the acoustic label (what the voice says) and the semantic label
(what the words say). On conflict items (the two differ) that gives follows-voice and
follows-text rates per condition: a model that answers from the words keeps its follows-text
rate when the audio is silenced, and moves with a swapped transcript.

What it reads: the manifest (audio, text, labels). One row per (utterance, condition), as
``probes.probe.prediction_row`` plus what the interventions record (``audio_change``,
``transcript``, ``edit``...).

metrics.json: ``probes.metrics.score_run``'s per-condition scores (accuracy / UAR / macro-F1
against the acoustic label with intervals, follows-voice / follows-text / text-dominance on
conflict items), ``semantic``: accuracy / UAR against the semantic label per condition (items
with a semantic label), and ``compare``: per condition against ``none``, the change in
follows-voice and follows-text on conflict items and McNemar's test on paired
"answer equals the acoustic label" and "answer equals the semantic label".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from probes.probe import PredictionProbe
from probes.registry import INTERVENTIONS, PROBES


@PROBES.register("modality-ablation")
@dataclass(frozen=True)
class ModalityAblation(PredictionProbe):
    """Audio silenced / noised / low-passed / ablated, transcript added / swapped: follows voice or text?"""

    snr_db: float = field(default=0.0, metadata={"help": "SNR of the noise condition in dB"})
    cutoff_hz: float = field(default=400.0, metadata={"help": "low-pass cut-off in Hz"})
    ablate_mode: str = field(default="zero", metadata={"help": "audio-span ablation: zero | mean"})
    n_boot: int = field(default=500, metadata={"help": "bootstrap resamples for the intervals"})

    def conditions(self) -> dict[str, list]:
        iv = INTERVENTIONS
        return {
            "none": [],
            "audio-silenced": [iv["audio-silence"]()],
            "audio-noised": [iv["audio-noise"](snr_db=self.snr_db)],
            "audio-lowpassed": [iv["audio-lowpass"](cutoff_hz=self.cutoff_hz)],
            "audio-ablated": [iv["ablate-span"](span="audio", layer=0, mode=self.ablate_mode)],
            "transcript": [iv["transcript"]()],
            "transcript-swapped": [iv["transcript-swap"]()],
        }

    def summarize(self, run_dir: Path) -> dict:
        from probes.metrics import score_run

        out = score_run(run_dir, n_boot=self.n_boot)
        out.update(voice_text_summary(run_dir))
        return out


def voice_text_summary(run_dir: Path, ref: str = "none") -> dict:
    """Scores against the semantic label, and voice / text changes against ``ref`` (see module docstring)."""
    import numpy as np

    from probes.metrics import accuracy, compare_conditions, normalize_pred, uar
    from probes.store import read_rows

    df = read_rows(run_dir)
    if df.empty or "pred" not in df.columns:
        return {"semantic": {}, "compare": {}}
    df = df.copy()
    df["pred_c"] = [normalize_pred(p) or "" for p in df["pred"]]
    df["semantic_label"] = df["semantic_label"].fillna("").astype(str)
    semantic = {}
    for c, g in df.groupby("condition", sort=True):
        s = g[g["semantic_label"] != ""]
        semantic[c] = {"n": int(len(s)),
                       "accuracy": accuracy(s["semantic_label"].tolist(), s["pred_c"].tolist()) if len(s) else None,
                       "uar": uar(s["semantic_label"].tolist(), s["pred_c"].tolist()) if len(s) else None}
    compare = compare_conditions(df, (ref,)).get(ref, {})  # paired deltas + McNemar (probes.metrics)
    return {"semantic": semantic, "compare": compare}
