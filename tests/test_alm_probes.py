"""The predict, cue-token and modality-ablation probes end to end through the CLI, on every ALM family.

Tiny random-weight instances on ``tiny_manifest`` (8 tone wavs of 1 s): the numbers are not
results; the tests check what must hold whatever the weights: one row per (utterance,
condition), distributions over the labels, the run marked ``random``, the summary's keys and
its arithmetic (deltas equal the difference of the per-condition scores), resume.
"""

from __future__ import annotations

import json

import pytest

from probes.cli import main
from probes.store import read_manifest, read_rows
from tests.fixtures.alm import alm_names

NAMES = alm_names()
TOKEN_CONDS = {"none", "aligned", "shuffled", "conflicting", "corrupted"}
ABLATION_CONDS = {"none", "audio-silenced", "audio-noised", "audio-lowpassed", "audio-ablated", "transcript",
                  "transcript-swapped"}


def _run(probe, model, manifest, out):
    assert main(["run", probe, "--model", model, "--tiny", "--data", str(manifest), "--out", str(out),
                 "--batch-size", "40", "--quiet", "--strict"]) == 0
    return read_rows(out), json.loads((out / "metrics.json").read_text())


@pytest.mark.parametrize("name", NAMES)
def test_predict_end_to_end(name, tiny_manifest, tmp_path):
    out = tmp_path / "run"
    assert main(["run", "predict", "--model", name, "--tiny", "--data", str(tiny_manifest),
                 "--out", str(out), "--quiet", "--strict"]) == 0
    rows = read_rows(out)
    assert len(rows) == 8 and set(rows["pred"]) <= {"neutral", "happy", "sad", "angry"}
    assert read_manifest(out)["model"]["weights"] == "random"


@pytest.mark.parametrize("name", NAMES)
def test_token_all_end_to_end(name, tiny_manifest, tmp_path):
    rows, m = _run("token-all", name, tiny_manifest, tmp_path / "run")
    assert read_manifest(tmp_path / "run")["weights"] == "random"
    assert len(rows) == 8 * 5 and set(rows["condition"]) == TOKEN_CONDS
    assert rows.groupby("condition")["utt_id"].nunique().eq(8).all()
    for p in rows["probs"]:
        assert abs(sum(p.values()) - 1) < 1e-3
    # the cue text reached the prompt: every cue condition moves some distribution off `none`
    none = rows[rows["condition"] == "none"].set_index("utt_id")["probs"]
    for c in TOKEN_CONDS - {"none"}:
        sub = rows[rows["condition"] == c].set_index("utt_id")
        assert sub["cues"].str.len().min() > 0
        assert any(abs(sub["probs"][u]["neutral"] - none[u]["neutral"]) > 1e-7 for u in sub.index)
    assert set(m["conditions"]) == TOKEN_CONDS and m["errors"] == 0
    for ref in ("none", "aligned"):
        for c, e in m["compare"][ref].items():
            want = m["conditions"][c]["uar"] - m["conditions"][ref]["uar"]
            assert e["delta_uar"] == pytest.approx(want, abs=1e-9)
            assert 0.0 <= e["mcnemar"]["p_value"] <= 1.0
    assert "neutral_shift_vs_aligned" in m["neutral"]["shuffled"]
    assert 0.0 <= m["collapse"]["none"]["entropy_bits"] <= 3.0
    assert sum(sum(r.values()) for r in m["confusion"]["none"].values()) == 8


@pytest.mark.parametrize("name", NAMES)
def test_modality_ablation_end_to_end(name, tiny_manifest, tmp_path):
    rows, m = _run("modality-ablation", name, tiny_manifest, tmp_path / "run")
    assert len(rows) == 8 * 7 and set(rows["condition"]) == ABLATION_CONDS
    assert set(m["conditions"]) == ABLATION_CONDS
    for c in ABLATION_CONDS - {"none"}:
        e = m["compare"][c]
        assert e["n_conflict"] == 4  # tiny_manifest has 4 conflict items
        want = m["conditions"][c]["follows_voice"] - m["conditions"]["none"]["follows_voice"]
        assert e["delta_follows_voice"] == pytest.approx(want, abs=1e-9)
    assert m["semantic"]["none"]["n"] == 8


def test_token_shuffle_resumes(tiny_manifest, tmp_path):
    out = tmp_path / "run"
    rows, _ = _run("token-shuffle", "qwen2-audio", tiny_manifest, out)
    assert len(rows) == 16 and set(rows["condition"]) == {"none", "shuffled"}
    lines = (out / "rows.jsonl").read_text().splitlines(keepends=True)
    (out / "rows.jsonl").write_text("".join(lines[:5]) + lines[5][:20])  # killed mid-write
    rows2, _ = _run("token-shuffle", "qwen2-audio", tiny_manifest, out)
    assert len(rows2) == 16
    assert rows2.set_index("unit")["pred"].to_dict() == rows.set_index("unit")["pred"].to_dict()
