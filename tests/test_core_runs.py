"""Run folders: resume after a real kill, torn lines, shards that merge, the manifest record."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from probes.store import RunError, RunStore, iter_rows, read_manifest, read_rows

ROOT = Path(__file__).resolve().parents[1]

SLOW_RUN = r"""
import sys, time
from probes.adapter import Adapter, Prediction
from probes.data.manifest import Manifest
from probes.probe import run_probe
from probes.registry import PROBES

class Slow(Adapter):
    name = "slow"
    weights = "oracle"
    needs_audio = False
    def predict(self, exs):
        time.sleep(0.02)
        return [Prediction(label=e.row["acoustic_label"]) for e in exs]

run_probe(PROBES["predict"](), Slow(), Manifest.read(sys.argv[1]), sys.argv[2], batch_size=1, progress=False)
"""


@pytest.fixture(scope="module")
def many_manifest(tmp_path_factory, tiny_manifest):
    folder = tmp_path_factory.mktemp("many")
    base = pd.read_csv(tiny_manifest, dtype=str, keep_default_na=False)
    rows = []
    for k in range(150):
        r = base.iloc[k % len(base)].to_dict()
        r["utt_id"] = f"u{k:03d}"
        r["audio_path"] = str(Path(tiny_manifest).parent / r["audio_path"])
        rows.append(r)
    p = folder / "manifest.csv"
    pd.DataFrame(rows).to_csv(p, index=False)
    return p


def test_resume_after_kill(many_manifest, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", SLOW_RUN, str(many_manifest), str(out)], env=env)
    rows_file = out / "rows.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:
        if rows_file.exists() and sum(1 for _ in open(rows_file)) >= 20:
            break
        if proc.poll() is not None:
            pytest.fail("the run finished before it could be killed")
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_before = sum(1 for _ in open(rows_file))
    assert 20 <= n_before < 150
    # simulate the worst moment: a half-written last line
    with open(rows_file, "a") as f:
        f.write('{"unit": "u149|none", "unit_rows": 1, "utt_id": "u1')
    subprocess.run([sys.executable, "-c", SLOW_RUN, str(many_manifest), str(out)], env=env, check=True)
    df = read_rows(out)
    assert len(df) == 150 and df["utt_id"].is_unique
    assert set(df["utt_id"]) == {f"u{k:03d}" for k in range(150)}
    assert (df["pred"] == df["acoustic_label"]).all()
    m = read_manifest(out)
    assert m["seed"] == 0 and m["data_sha256"] and "resumed" in m and "torch" not in m.get("weights", "")


def test_incomplete_multi_row_unit_is_redone(tmp_path):
    s = RunStore(tmp_path)
    s.append("a|none", [{"layer": 0}, {"layer": 1}])
    s.close()
    with open(tmp_path / "rows.jsonl", "a") as f:  # unit b wrote 1 of its 3 rows, then died
        f.write(json.dumps({"unit": "b|none", "unit_rows": 3, "layer": 0}) + "\n")
    s = RunStore(tmp_path)
    assert s.done("a|none") and not s.done("b|none")
    s.close()
    assert [r["unit"] for r in iter_rows(tmp_path)] == ["a|none", "a|none"]


def test_resume_refuses_a_different_run(tmp_path):
    s = RunStore(tmp_path)
    s.write_manifest({"probe": "predict", "seed": 0})
    with pytest.raises(RunError, match="different seed"):
        s.write_manifest({"probe": "predict", "seed": 1})
    s.close()


def test_shards_merge_to_the_full_run(tiny_manifest, tmp_path):
    from probes.cli import main

    full = tmp_path / "full"
    assert main(["run", "predict", "--model", "dummy", "--data", str(tiny_manifest), "--out", str(full), "--quiet"]) == 0
    parts = []
    for i in range(3):
        p = tmp_path / f"shard{i}"
        assert main(["run", "predict", "--model", "dummy", "--data", str(tiny_manifest), "--out", str(p),
                     "--shard", f"{i}/3", "--quiet"]) == 0
        parts.append(str(p))
    merged = tmp_path / "merged"
    assert main(["merge", *parts, "--out", str(merged)]) == 0
    a = read_rows(full).sort_values("utt_id")[["utt_id", "pred"]].reset_index(drop=True)
    b = read_rows(merged).sort_values("utt_id")[["utt_id", "pred"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


def test_errors_are_counted_once_per_unit_across_resumes(tmp_path):
    from probes.store import count_errors

    s = RunStore(tmp_path)
    s.error("a|none", "a", "bad file")
    s.error("b|none", "b", "bad file")
    s.close()
    s = RunStore(tmp_path)  # resume: a is retried and fails again, b now succeeds
    s.error("a|none", "a", "bad file")
    s.append("b|none", [{"utt_id": "b"}])
    s.close()
    assert count_errors(tmp_path) == 1
