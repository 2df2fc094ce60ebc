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


# ---- runs that cannot corrupt (issue 11) ------------------------------------------------------
HOLD = r"""
import sys, time
from probes.store import RunStore
s = RunStore(sys.argv[1])
print("locked", flush=True)
time.sleep(120)
"""


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _holder(run_dir):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], env=_env(), stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_locked_run_folder_refuses_a_second_writer_and_is_freed_by_death(tmp_path):
    import socket

    proc = _holder(tmp_path / "run")
    try:
        with pytest.raises(RunError) as e:
            RunStore(tmp_path / "run")
        msg = str(e.value)
        assert f"pid {proc.pid}" in msg and socket.gethostname() in msg and "\n" not in msg
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    RunStore(tmp_path / "run").close()  # the OS released the lock with the process


GATED_RUN = SLOW_RUN.replace("run_probe(", """import os
while not os.path.exists(sys.argv[3]):
    time.sleep(0.01)
run_probe(""", 1)


def test_two_concurrent_runs_on_one_folder_write_each_unit_once(many_manifest, tmp_path):
    out, go = tmp_path / "run", tmp_path / "go"
    cmd = [sys.executable, "-c", GATED_RUN, str(many_manifest), str(out), str(go)]
    procs = [subprocess.Popen(cmd, env=_env(), stderr=subprocess.PIPE, text=True) for _ in range(2)]
    go.write_text("")  # both processes have imported everything: they start at the same moment
    errs = [p.communicate(timeout=300)[1] for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes)[0] == 0 and sorted(codes)[1] != 0, errs
    winner, loser = (0, 1) if codes[0] == 0 else (1, 0)
    assert "is in use by another run" in errs[loser] and f"pid {procs[winner].pid}" in errs[loser]
    df = read_rows(out)
    assert len(df) == 150 and df["utt_id"].is_unique
    assert sum(1 for _ in open(out / "rows.jsonl")) == 150


def test_duplicated_units_on_disk_are_dropped_with_a_warning(tmp_path):
    rows = [{"unit": f"u{k}|none", "unit_rows": 1, "utt_id": f"u{k}", "pred": "sad"} for k in range(3)]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows + rows[:2]))
    with pytest.warns(UserWarning, match="2 duplicated row"):
        df = read_rows(tmp_path)
    assert len(df) == 3 and df["utt_id"].is_unique
    with pytest.warns(UserWarning, match="duplicated"):
        RunStore(tmp_path).close()  # a resume cleans the file
    assert sum(1 for _ in open(tmp_path / "rows.jsonl")) == 3


def test_resume_with_a_different_setting_is_refused_naming_it(tmp_path):
    s = RunStore(tmp_path)
    s.write_manifest({"probe": "predict", "seed": 0, "too_long": "error", "batch_size": 8})
    with pytest.raises(RunError, match=r"too_long \(too_long was \"error\", now \"truncate\"\)"):
        s.write_manifest({"probe": "predict", "seed": 0, "too_long": "truncate", "batch_size": 8})
    # the refused store let go of the folder; the same settings resume
    s = RunStore(tmp_path)
    m = s.write_manifest({"probe": "predict", "seed": 0, "too_long": "error", "batch_size": 8})
    s.close()
    assert m["settings"]["too_long"] == "error" and m["settings_sha256"] and m["resumed"]


def test_cli_resume_with_other_too_long_is_refused(tiny_manifest, tmp_path, capsys):
    from probes.cli import main

    out = tmp_path / "run"
    base = ["run", "predict", "--model", "dummy", "--data", str(tiny_manifest), "--out", str(out), "--quiet"]
    assert main(base) == 0
    assert main(base + ["--too-long", "truncate"]) == 2
    err = capsys.readouterr().err.strip()
    assert "too_long" in err and len(err.splitlines()) == 1


def test_errors_jsonl_keeps_one_line_per_failed_unit(tmp_path):
    from probes.store import error_counts

    for _ in range(4):  # a run and three reruns: the same two units of one utterance fail each time
        s = RunStore(tmp_path)
        s.error("a|none", "a", "bad file")
        s.error("a|loud", "a", "bad file")
        if not s.done("b|none"):
            s.append("b|none", [{"utt_id": "b"}])
        s.close()
    assert sum(1 for _ in open(tmp_path / "errors.jsonl")) == 2
    assert error_counts(tmp_path) == {"units": 2, "utterances": 1}


def test_cli_summary_counts_units_and_utterances(tmp_path, capsys):
    from probes.cli import _print_metrics

    s = RunStore(tmp_path)
    for c in ("none", "loud"):
        s.error(f"a|{c}", "a", "bad file")
        s.error(f"b|{c}", "b", "bad file")
    s.close()
    (tmp_path / "metrics.json").write_text(json.dumps({"errors": 4}))
    _print_metrics(tmp_path)
    assert "4 unit(s) of 2 utterance(s) failed" in capsys.readouterr().out


# ---- merge checks -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shard_runs(tiny_manifest, tmp_path_factory):
    from probes.cli import main

    root = tmp_path_factory.mktemp("shards")
    base = ["run", "modality-ablation", "--model", "voice-oracle", "--data", str(tiny_manifest), "--quiet", "--set", "n_boot=50"]
    assert main(base + ["--out", str(root / "full")]) == 0
    for spec in ("0/2", "1/2", "0/3"):
        assert main(base + ["--out", str(root / spec.replace("/", "of")), "--shard", spec]) == 0
    return root


@pytest.mark.parametrize("parts, message", [
    (["0of2", "0of2"], "shard 0/2 is given twice"),
    (["0of2", "0of3"], "cut differently"),
    (["0of2"], "shard(s) 1/2 missing"),
    (["0of2", "full"], "not a shard"),
])
def test_merge_refuses_what_is_not_one_whole_run(shard_runs, tmp_path, capsys, parts, message):
    from probes.cli import main

    assert main(["merge", *[str(shard_runs / p) for p in parts], "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "m" / "rows.jsonl").exists()


def test_merge_refuses_shards_of_different_settings(tiny_manifest, shard_runs, tmp_path, capsys):
    from probes.cli import main

    other = tmp_path / "seed1"
    assert main(["run", "modality-ablation", "--model", "voice-oracle", "--data", str(tiny_manifest), "--quiet",
                 "--set", "n_boot=50", "--seed", "1", "--shard", "1/2", "--out", str(other)]) == 0
    capsys.readouterr()
    assert main(["merge", str(shard_runs / "0of2"), str(other), "--out", str(tmp_path / "m")]) == 2
    assert "seed" in capsys.readouterr().err


@pytest.mark.parametrize("order", [("0of2", "1of2"), ("1of2", "0of2")])
def test_merged_metrics_equal_the_unsharded_run(shard_runs, tmp_path, order):
    from probes.cli import main

    out = tmp_path / "merged"
    assert main(["merge", *[str(shard_runs / p) for p in order], "--out", str(out)]) == 0
    full = json.loads((shard_runs / "full" / "metrics.json").read_text())
    merged = json.loads((out / "metrics.json").read_text())
    assert "conditions" in full and len(full) > 2  # the probe's own sections are there
    assert merged == full


# ---- errors that explain -----------------------------------------------------------------------
def test_disk_full_is_one_line_and_the_run_resumes(tiny_manifest, tmp_path, capsys, monkeypatch):
    import errno

    from probes.cli import main

    out = tmp_path / "run"
    calls = {"n": 0}
    real_fsync = os.fsync

    def fsync(fd):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    argv = ["run", "predict", "--model", "voice-oracle", "--data", str(tiny_manifest), "--out", str(out), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "disk is full" in err and str(out) in err and "resume" in err
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert main(argv) == 0
    df = read_rows(out)
    assert len(df) == 8 and df["utt_id"].is_unique


def test_read_only_folder_is_one_line(tiny_manifest, tmp_path, capsys, monkeypatch):
    import errno

    from probes.cli import main

    def mkdir(self, *a, **k):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "mkdir", mkdir)
    assert main(["run", "predict", "--model", "dummy", "--data", str(tiny_manifest), "--out", str(tmp_path / "ro" / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "read-only" in err and "--out" in err


def test_out_pointing_at_a_file_is_one_line(tiny_manifest, tmp_path, capsys):
    from probes.cli import main

    f = tmp_path / "notes.txt"
    f.write_text("mine")
    assert main(["run", "predict", "--model", "dummy", "--data", str(tiny_manifest), "--out", str(f), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(f) in err and "not a folder" in err
    assert f.read_text() == "mine"


def test_merge_refuses_shards_with_files_beside_their_rows(tmp_path):
    from probes.store import MergeError, merge_runs

    parts = []
    for i in range(2):
        d = tmp_path / f"s{i}"
        with RunStore(d) as s:
            s.write_manifest({"probe": "embeddings", "seed": 0, "shard": [i, 2]})
            s.append(f"u{i}|none", [{"utt_id": f"u{i}"}])
        (d / "features").mkdir()
        parts.append(d)
    with pytest.raises(MergeError, match=r"files beside its rows \(features\)"):
        merge_runs(parts, tmp_path / "m")
