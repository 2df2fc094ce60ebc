"""Runs on a local Ray cluster: two model replicas, a worker killed mid-run, resume, exactness.

One Ray instance is started for the module (about 5-10 s on 2 cores); every test runs a real
probe through ``run_on_ray`` and compares its rows with the same probe run locally.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is the optional extra dissonance[ray]")


@pytest.fixture(scope="module")
def ray_cluster():
    from probes.backends.ray_backend import init_local_ray

    init_local_ray(num_cpus=2)
    yield
    ray.shutdown()


def _rows(run: Path) -> list[dict]:
    rows = [json.loads(ln) for ln in (run / "rows.jsonl").read_text().splitlines() if ln.strip()]
    for r in rows:
        r.pop("unit_rows", None)
    return sorted(rows, key=lambda r: (r["unit"], json.dumps(r, sort_keys=True)))


def _local(probe, model_name, data, out, **opts):
    from probes.probe import run_probe
    from probes.registry import MODELS

    return run_probe(probe, MODELS[model_name].from_cli(**opts), data, out, progress=False)


def test_blocks_keep_an_utterance_together():
    from probes.backends.ray_backend import RayExecutor
    from probes.probe import WorkItem

    items = [WorkItem(u, c) for u in ("a", "b", "c") for c in ("none", "x")]
    blocks = RayExecutor.blocks(items, 2)
    assert [[(i.utt_id, i.condition) for i in b] for b in blocks] == [
        [("a", "none"), ("a", "x"), ("b", "none"), ("b", "x")], [("c", "none"), ("c", "x")]]


def test_bad_settings_are_refused_before_anything_starts():
    from probes.backends.ray_backend import RaySettings

    with pytest.raises(ValueError, match="--workers 0"):
        RaySettings(workers=0).check()
    with pytest.raises(ValueError, match="--block-size"):
        RaySettings(block_size=-1).check()


def test_two_workers_equal_a_local_run(ray_cluster, tiny_manifest, tmp_path):
    from probes.backends.ray_backend import RaySettings, run_on_ray
    from probes.data.manifest import Manifest
    from probes.registry import PROBES

    data = Manifest.read(tiny_manifest)
    probe = PROBES["predict"]()
    local = _local(probe, "dummy", data, tmp_path / "local")
    run, stats = run_on_ray(probe, "dummy", {}, data, tmp_path / "ray", RaySettings(workers=2, block_size=2),
                            progress=False)
    assert _rows(run) == _rows(local)
    assert stats["blocks"] == 4 and stats["dead_workers"] == 0
    man = json.loads((run / "manifest.json").read_text())
    assert man["backend"]["name"] == "ray" and man["backend"]["workers"] == 2


def test_a_killed_worker_loses_and_duplicates_nothing(ray_cluster, tiny_manifest, tmp_path):
    from probes.backends.ray_backend import RaySettings, run_on_ray
    from probes.data.manifest import Manifest
    from probes.registry import PROBES

    data = Manifest.read(tiny_manifest)
    probe = PROBES["predict"]()
    killed: list[int] = []

    def kill_one(ex, block_index):
        if not killed:  # after the first finished block: SIGKILL one replica's process (its pid
            pid = ex.worker_pids()[1]  # was asked for at start: this does not wait on its queue)
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    run, stats = run_on_ray(probe, "dummy", {}, data, tmp_path / "ray", RaySettings(workers=2, block_size=1),
                            on_block_done=kill_one, progress=False)
    assert killed
    rows = _rows(run)
    units = [r["unit"] for r in rows]
    assert len(units) == len(set(units)) == len(data)  # every utterance exactly once
    assert not (run / "errors.jsonl").exists() or not (run / "errors.jsonl").read_text().strip()
    assert rows == _rows(_local(probe, "dummy", data, tmp_path / "local"))
    assert stats["dead_workers"] >= 1


def _dying_worker_class():
    """An actor class (defined in a function, so Ray ships it by value) whose ``run`` kills its own
    process on a block that holds ``"die"``: once, or on every try when the block holds ``"always"``.
    The marker file is how a replacement knows an earlier actor already died on the block."""

    class Worker:
        def __init__(self, marker: str):
            self.marker = marker

        def pid(self) -> int:
            return os.getpid()

        def run(self, items):
            if "die" in items:
                first = not os.path.exists(self.marker)
                open(self.marker, "a").close()
                if first or "always" in items:
                    os._exit(1)
            return [f"done {it}" for it in items]

    return Worker


def test_an_actor_that_dies_on_a_block_is_replaced_and_the_block_runs_once(ray_cluster, tmp_path):
    from probes.backends.ray_backend import ActorPool, RaySettings

    # one block queued per actor, so no other block is queued behind the fatal one (one that is
    # fails the same way and is handed out again too, which the count would then include)
    pool = ActorPool(_dying_worker_class(), (str(tmp_path / "died"),),
                     RaySettings(workers=2, block_size=1, inflight=1))
    try:
        blocks = [["a"], ["b"], ["die"], ["c"], ["d"]]
        out = {i: r for i, _, r in pool.map(blocks)}
    finally:
        pool.kill()
    assert (tmp_path / "died").exists()
    assert out == {0: ["done a"], 1: ["done b"], 2: ["done die"], 3: ["done c"], 4: ["done d"]}
    assert pool.stats == {"blocks": 5, "retried_blocks": 1, "dead_workers": 1}


def test_a_block_that_kills_every_actor_is_given_up_after_the_retries(ray_cluster, tmp_path):
    from probes.backends.ray_backend import ActorPool, RaySettings

    pool = ActorPool(_dying_worker_class(), (str(tmp_path / "died"),),
                     RaySettings(workers=2, block_size=1, inflight=1, max_block_retries=1))
    try:
        out = {i: r for i, _, r in pool.map([["a"], ["die", "always"], ["b"]])}
    finally:
        pool.kill()
    assert out[0] == ["done a"] and out[2] == ["done b"]
    assert isinstance(out[1], RuntimeError) and "worker died 2 times" in str(out[1])
    assert pool.stats["dead_workers"] == 2 and pool.stats["retried_blocks"] == 1


def test_a_death_after_the_last_block_is_still_counted(ray_cluster, tmp_path):
    """A replica that dies with nothing left on it loses no work, but the stats report it (the
    clean-clone CI once saw a kill land after the killed replica's last block, and the run
    reported no death)."""
    from probes.backends.ray_backend import ActorPool, RaySettings

    pool = ActorPool(_dying_worker_class(), (str(tmp_path / "died"),), RaySettings(workers=2, block_size=1))
    try:
        pids = pool.pids()

        def blocks():
            yield ["a"]

        out = []
        for i, _, r in pool.map(list(blocks())):
            out.append(r)
            os.kill(pids[1], signal.SIGKILL)
        assert out == [["done a"]]
        assert pool.stats["dead_workers"] == 1
        # the next map replaces the dead actor before handing out blocks
        assert [r for _, _, r in pool.map([["b"], ["c"]])] == [["done b"], ["done c"]]
        assert pool.stats["dead_workers"] == 1 and pool.pids()[1] != pids[1]
    finally:
        pool.kill()


def test_resume_skips_what_a_local_run_finished(ray_cluster, tiny_manifest, tmp_path):
    from probes.backends.ray_backend import RaySettings, run_on_ray
    from probes.data.manifest import Manifest
    from probes.probe import run_probe
    from probes.registry import MODELS, PROBES

    data = Manifest.read(tiny_manifest)
    probe = PROBES["predict"]()
    out = tmp_path / "run"
    run_probe(probe, MODELS["dummy"](), data, out, progress=False)
    # as if the local run had been killed after three utterances
    rows_path = out / "rows.jsonl"
    rows_path.write_text("".join(rows_path.read_text().splitlines(keepends=True)[:3]))
    first = {r["unit"] for r in _rows(out)}
    seen: list = []
    run, stats = run_on_ray(probe, "dummy", {}, data, out, RaySettings(workers=2, block_size=1),
                            on_block_done=lambda ex, i: seen.append(i), progress=False)
    assert len(first) == 3 and len(seen) == len(data) - 3  # only the missing utterances went to Ray
    assert len(_rows(run)) == len(data)


def test_tiny_alm_replicas_end_to_end(ray_cluster, tiny_manifest, tmp_path):
    """Two replicas of a tiny random-weight Qwen2-Audio run a three-condition probe."""
    from probes.backends.ray_backend import RaySettings, run_on_ray
    from probes.data.manifest import Manifest
    from probes.registry import PROBES

    data = Manifest.read(tiny_manifest)
    probe = PROBES["modality-ablation"]()
    local = _local(probe, "qwen2-audio", data, tmp_path / "local", tiny=True)
    run, stats = run_on_ray(probe, "qwen2-audio", {"tiny": True}, data, tmp_path / "ray",
                            RaySettings(workers=2, block_size=3), progress=False)
    got, want = _rows(run), _rows(local)
    assert [r["unit"] for r in got] == [r["unit"] for r in want]
    assert [r["pred"] for r in got] == [r["pred"] for r in want]
    for g, w in zip(got, want):
        for k in w.get("probs") or {}:
            assert g["probs"][k] == pytest.approx(w["probs"][k], abs=1e-5)


def test_fas_features_on_ray_equal_local_extraction(ray_cluster, tiny_manifest, tmp_path):
    """eGeMAPS frames computed by two Ray actors equal those computed here, key for key."""
    import numpy as np

    from fas.features import extract, item_for
    from fas.train import pathway_spec
    from probes.backends.ray_backend import RaySettings
    from probes.data.manifest import Manifest

    data = Manifest.read(tiny_manifest)
    spec = pathway_spec("egemaps", None)
    items = [item_for(r, data.audio_path(i), spec) for i, r in enumerate(data.rows())]
    local = extract(spec, items, root=tmp_path / "local", workers=1, progress=False)
    remote = extract(spec, items, root=tmp_path / "ray", progress=False,
                     ray=RaySettings(workers=2, block_size=3))
    for it in items:
        a, b = local.get(it.key)[0], remote.get(it.key)[0]
        assert a.shape == b.shape and a.shape[0] > 10
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_probe_run_backend_ray_from_the_cli(ray_cluster, tiny_manifest, tmp_path, capsys):
    from probes.cli import main
    from probes.data.manifest import Manifest
    from probes.registry import PROBES

    out = tmp_path / "cli"
    args = ["run", "predict", "--model", "dummy", "--data", str(tiny_manifest), "--quiet", "--backend", "ray"]
    assert main(args + ["--out", str(out), "--workers", "2", "--block-size", "2"]) == 0
    assert "ray: 4 block(s) on 2 replica(s)" in capsys.readouterr().out
    local = _local(PROBES["predict"](), "dummy", Manifest.read(tiny_manifest), tmp_path / "local")
    assert _rows(out) == _rows(local)
    # a bad setting is one line, before any work
    assert main(args + ["--out", str(tmp_path / "bad"), "--workers", "0"]) == 2
    assert "--workers 0" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
