"""Offline hub-id failure, end to end: `probe run predict --model qwen2-audio --model-path
Qwen/Qwen2-Audio-7B-Instruct --data M` on a machine without a hub stops at once with one line saying
what to do (measured 0.6-0.7 s wall, docs/real-models.md), before any loader could retry for minutes.
No timing is asserted (project rule); what bounds the time is asserted instead: no network
connection at all when the hub is switched off, exactly one connect (2 s at most) when it is not."""

from __future__ import annotations

import os
import subprocess
import sys
import time

HUB_ID = "Qwen/Qwen2-Audio-7B-Instruct"


def _argv(manifest, out):
    return ["run", "predict", "--model", "qwen2-audio", "--model-path", HUB_ID, "--data", str(manifest),
            "--out", str(out), "--quiet"]


def test_hub_id_with_the_hub_switched_off_fails_without_network(tiny_manifest, tmp_path, monkeypatch, capsys):
    import socket

    from probes.cli import main

    calls = []
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: calls.append(a) or (_ for _ in ()).throw(
        AssertionError("a network connection was attempted")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    assert main(_argv(tiny_manifest, tmp_path / "run")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert HUB_ID in err and "HF_HUB_OFFLINE" in err and f"huggingface-cli download {HUB_ID}" in err
    assert calls == [] and not (tmp_path / "run").exists()


def test_hub_id_with_no_hub_reachable_is_one_short_connect(tiny_manifest, tmp_path, monkeypatch, capsys):
    import socket

    from probes.cli import main

    calls = []

    def unreachable(addr, timeout=None, *a, **k):
        calls.append((addr, timeout))
        raise OSError("network unreachable")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    monkeypatch.setattr(socket, "create_connection", unreachable)
    assert main(_argv(tiny_manifest, tmp_path / "run")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no hub is reachable" in err and "--model-path" in err, err
    assert len(calls) == 1 and calls[0][1] <= 2.0


def test_the_command_itself_in_a_fresh_process(tiny_manifest, tmp_path):
    """The user's command as a process (hub switched off, as on this machine): exit 2, one line."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty-hub-cache")}
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "probes.cli", *_argv(tiny_manifest, tmp_path / "run")],
                       capture_output=True, text=True, env=env, timeout=300)
    print(f"\nfailed in {time.perf_counter() - t0:.2f} s: {r.stderr.strip()}")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and HUB_ID in r.stderr and "Traceback" not in r.stderr
