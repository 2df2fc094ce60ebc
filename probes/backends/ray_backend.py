"""Run a probe's units on a Ray cluster: one model replica per worker, rows into one run folder.

How a run is split. ``run_probe`` plans the units (utterance x condition x key) and drops those
already in the run folder, exactly as for a local run. The executor here groups the remaining
units by utterance into *blocks* of ``block_size`` utterances (all conditions of an utterance stay
in one block, so the conditions still share one audio encoding) and keeps up to ``inflight`` blocks
queued on each of ``workers`` Ray actors. An actor builds the model once (``MODELS[name].from_cli``
with the run's model options, on the GPU share it was given), reads the manifest, and runs the
probe's own ``execute`` on each block it is handed. The driver receives a block's rows only when
the whole block is done and writes them through ``run_probe``'s store as blocks finish, so:

- restarting a run skips finished utterances (the store's resume), whatever backend wrote them;
- a worker that dies (a killed process, a lost node, CUDA out of memory that takes the process
  down) is replaced by a fresh actor and its unfinished blocks are handed out again, up to
  ``max_block_retries`` times; a block's rows are never half written, so nothing is duplicated;
- a block that keeps killing workers becomes error rows for its units (a rerun retries them).

Workers read the audio files themselves: on a multi-node cluster the manifest's audio paths
must be visible on every node (a shared file system), as for ``--shard`` on SLURM.

Ray is an optional extra (``pip install 'dissonance[ray]'``) and is imported only here.
"""

from __future__ import annotations

import os
import pickle
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

if TYPE_CHECKING:
    from probes.data.manifest import Manifest
    from probes.probe import Probe, RunContext, WorkItem


class RayBackendError(RuntimeError):
    """Ray is missing or the cluster cannot be reached; the message says what to do."""


@dataclass(frozen=True)
class RaySettings:
    address: str | None = None     # None: start a local Ray on this machine; "auto" / "ray://HOST:10001": join a cluster
    workers: int = 2               # model replicas (Ray actors), one model each
    cpus_per_worker: float = 1.0   # CPU cores reserved per replica
    gpus_per_worker: float = 0.0   # GPUs per replica (0.5 packs two small replicas on one GPU)
    block_size: int = 8            # utterances per block (the unit of scheduling and of retry)
    inflight: int = 2              # blocks queued per worker, so a worker never waits on the driver
    max_block_retries: int = 3     # a block whose worker died is handed out again this many times

    @classmethod
    def from_args(cls, args) -> "RaySettings":
        """The settings of a command line's Ray options (those it lacks keep their defaults), checked."""
        given = {k: getattr(args, k) for k in ("address", "workers", "cpus_per_worker", "gpus_per_worker", "block_size")
                 if getattr(args, k, None) is not None}
        st = cls(**given)
        st.check()
        return st

    def check(self) -> None:
        for name in ("workers", "block_size", "inflight"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"--{name.replace('_', '-')} {v!r}: must be a whole number >= 1")
        if self.cpus_per_worker < 0 or self.gpus_per_worker < 0:
            raise ValueError("--cpus-per-worker / --gpus-per-worker must be >= 0")
        if self.max_block_retries < 0:
            raise ValueError(f"max_block_retries {self.max_block_retries!r}: must be >= 0")


def _import_ray():
    try:
        import ray
    except ModuleNotFoundError:
        raise RayBackendError(
            "--backend ray needs Ray, an optional extra: pip install 'dissonance[ray]' (or pip install ray)"
        ) from None
    return ray


def _portable(e: BaseException) -> BaseException:
    """The exception itself if it survives the trip back to the driver, else a RuntimeError with its text."""
    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:
        return RuntimeError(f"{type(e).__name__}: {e}")


def _init_with_retry(ray, kw: dict, attempts: int = 3) -> None:
    """``ray.init``, tried again when a local node fails to come up.

    On a loaded machine Ray's raylet gives its dashboard agent a fixed 15 s to write its port
    file and aborts when it is late ("The current node timed out during startup"); a second try
    usually finds the agent's imports already in the page cache and starts.
    """
    for i in range(attempts):
        try:
            ray.init(**kw)
            return
        except Exception:
            try:
                ray.shutdown()
            except Exception:
                pass
            if i == attempts - 1:
                raise
            time.sleep(2.0)


def init_local_ray(num_cpus: int = 2, attempts: int = 3) -> None:
    """Start a local Ray for tests and benchmarks (no dashboard, quiet workers), with retries."""
    ray = _import_ray()
    _init_with_retry(ray, {"num_cpus": num_cpus, "include_dashboard": False, "log_to_driver": False,
                           "ignore_reinit_error": True}, attempts)


class _Worker:
    """One model replica. Built once per actor; runs the probe's own ``execute`` on each block."""

    def __init__(self, model_name: str, model_options: dict, probe: "Probe", data: "Manifest",
                 seed: int, batch_size: int, too_long: str):
        from probes.probe import RunContext
        from probes.registry import MODELS

        from probes.labels import manifest_extra_labels, run_labels

        self.model = MODELS[model_name].from_cli(**model_options)
        self.probe = probe
        self.data = data
        extra = manifest_extra_labels(data)  # as run_probe does: a corpus' own labels join the label set
        if extra and hasattr(self.model, "set_labels"):
            self.model.set_labels(run_labels(extra, self.model.labels))
        prepare = getattr(self.model, "prepare", None)
        if callable(prepare):
            prepare(data)  # corpus-level statistics (FAS): the same on every replica, from the whole manifest
        self.ctx = RunContext(seed=seed, batch_size=batch_size, strict=False, too_long=too_long,
                              progress=False).set_up(probe, self.model, data)

    def pid(self) -> int:
        return os.getpid()

    def describe(self) -> dict:
        m = self.model
        return {"describe": m.describe(), "name": m.name, "weights": m.weights, "labels": list(m.labels),
                "needs_audio": getattr(m, "needs_audio", True), "sample_rate": getattr(m, "sample_rate", 16_000),
                "max_seconds": getattr(m, "max_seconds", None)}

    def run(self, items: Sequence["WorkItem"]) -> list[tuple["WorkItem", Any]]:
        out = []
        for item, rows in self.probe.execute(self.model, self.data, list(items), self.ctx):
            out.append((item, _portable(rows) if isinstance(rows, BaseException) else rows))
        return out


class RemoteModel:
    """What ``run_probe`` needs of the model on the driver (name, weights, describe): no weights here."""

    def __init__(self, info: dict):
        self._info = info
        self.name = info["name"]
        self.weights = info["weights"]
        self.labels = tuple(info["labels"])
        self.needs_audio = info["needs_audio"]
        self.sample_rate = info["sample_rate"]
        self.max_seconds = info["max_seconds"]

    def describe(self) -> dict:
        return dict(self._info["describe"])


@dataclass
class _Block:
    index: int
    items: list
    tries: int = 0


def ensure_ray(settings: RaySettings) -> bool:
    """Join (or start) the cluster of ``settings``; True when this call started a local Ray."""
    ray = _import_ray()
    if ray.is_initialized():
        return False
    s = settings
    kw: dict = {"include_dashboard": False, "log_to_driver": False, "ignore_reinit_error": True}
    if s.address:
        kw["address"] = s.address
    else:
        # a local cluster sized for the replicas asked for, whatever this machine reports
        kw["num_cpus"] = max(1, int(round(s.workers * max(s.cpus_per_worker, 1.0))))
        if s.gpus_per_worker:
            kw["num_gpus"] = int(-(-s.workers * s.gpus_per_worker // 1))
    try:
        _init_with_retry(ray, kw, attempts=1 if s.address else 3)
    except Exception as e:  # unreachable address, a node that does not come up
        raise RayBackendError(f"could not start or join Ray ({s.address or 'local'}): {e}") from None
    return True


class ActorPool:
    """``settings.workers`` actors of one class, all built from the same arguments, and the one
    scheduler every Ray job of the workbench uses (probe runs, FAS feature extraction).

    Each actor has a ``run(items) -> results`` method. ``map`` hands blocks out (at most
    ``inflight`` queued per actor), yields ``(block index, items, results)`` as blocks finish, and
    when an actor dies replaces it and hands its blocks out again (at most ``max_block_retries``
    times; after that ``results`` is the exception). An exception raised inside ``run`` is yielded
    as ``results`` at once (it would be raised again on a retry).
    """

    def __init__(self, cls: type, args: tuple, settings: RaySettings):
        ray = self._ray = _import_ray()
        self.settings = settings
        self._cls = ray.remote(num_cpus=settings.cpus_per_worker, num_gpus=settings.gpus_per_worker)(cls)
        self._args = args
        self.actors = [self._cls.remote(*args) for _ in range(settings.workers)]
        self.stats = {"blocks": 0, "retried_blocks": 0, "dead_workers": 0}
        # each actor's process id, asked once while it has no work queued (an actor runs its calls
        # in order, so asking later would wait behind every block queued on it)
        self._pid: dict = {}
        self._dead: set[int] = set()
        self.pids()

    def call(self, slot: int, method: str, *args):
        return self._ray.get(getattr(self.actors[slot], method).remote(*args))

    def pids(self) -> list[int]:
        """The process id of each actor, by slot (a replacement's is asked for when first wanted)."""
        new = [a for a in self.actors if a not in self._pid]
        for a, pid in zip(new, self._ray.get([a.pid.remote() for a in new])):
            self._pid[a] = pid
        return [self._pid[a] for a in self.actors]

    def _count_dead(self) -> None:
        """After the last block: count actors that died with no block left on them.

        A death is otherwise noticed only through a block that fails with it; one that comes after
        an actor's last block lost no work but is still a death the run's stats should report.
        """
        ray = self._ray
        for slot, actor in enumerate(self.actors):
            try:
                ray.get(actor.pid.remote(), timeout=60)
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError):
                self.stats["dead_workers"] += 1
                self._dead.add(slot)  # replaced if this pool maps again
            except ray.exceptions.GetTimeoutError:
                pass  # alive but busy (a call from elsewhere): not dead

    def kill(self) -> None:
        for a in self.actors:
            try:
                self._ray.kill(a)
            except Exception:
                pass
        self.actors = []

    def map(self, blocks: Sequence[list]) -> Iterator[tuple[int, list, Any]]:
        ray, s = self._ray, self.settings
        for slot in sorted(self._dead):
            self.actors[slot] = self._cls.remote(*self._args)
        self._dead.clear()
        queue = [_Block(i, b) for i, b in enumerate(blocks)]
        queue.reverse()  # pop() from the end = plan order
        pending: dict = {}  # object ref -> (actor handle, slot, block)

        def load(slot: int) -> int:
            return sum(1 for a, sl, _ in pending.values() if sl == slot and a is self.actors[slot])

        def submit() -> None:
            while queue:
                slot = min(range(len(self.actors)), key=load)
                if load(slot) >= s.inflight:
                    return
                b = queue.pop()
                b.tries += 1
                actor = self.actors[slot]
                pending[actor.run.remote(b.items)] = (actor, slot, b)

        submit()
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            actor, slot, b = pending.pop(done[0])
            try:
                results = ray.get(done[0])
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as e:
                # the actor died: replace it once (its other queued blocks fail the same way and
                # are handed out again as they come back), and hand this block out again
                if self.actors[slot] is actor:
                    self.stats["dead_workers"] += 1
                    self.actors[slot] = self._cls.remote(*self._args)
                if b.tries <= s.max_block_retries:
                    self.stats["retried_blocks"] += 1
                    queue.append(b)
                else:
                    yield b.index, b.items, RuntimeError(f"worker died {b.tries} times on this block: {type(e).__name__}")
                submit()
                continue
            except ray.exceptions.RayTaskError as e:
                cause = e.cause if getattr(e, "cause", None) is not None else e
                submit()
                yield b.index, b.items, _portable(cause)
                continue
            submit()
            self.stats["blocks"] += 1
            yield b.index, b.items, results
        self._count_dead()


@dataclass
class RayExecutor:
    """``executor`` for ``run_probe``: yields (item, rows | Exception) as blocks finish on the cluster."""

    model_name: str
    model_options: dict
    settings: RaySettings = field(default_factory=RaySettings)
    # called on the driver after each finished block with (executor, block index); tests use it to
    # kill a worker mid-run
    on_block_done: Callable[["RayExecutor", int], None] | None = None
    stats: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.settings.check()
        self._pool: ActorPool | None = None
        self._started_ray = False

    def start(self, probe: "Probe", data: "Manifest", *, seed: int, batch_size: int, too_long: str) -> RemoteModel:
        """Join (or start) the cluster, build the replicas, and return the driver-side model view."""
        self._started_ray = ensure_ray(self.settings)
        ray = _import_ray()
        opts = dict(self.model_options)
        if self.settings.gpus_per_worker and not opts.get("device"):
            opts["device"] = "cuda"
        args = (self.model_name, opts, probe, ray.put(data), seed, batch_size, too_long)
        self._pool = ActorPool(_Worker, args, self.settings)
        return RemoteModel(self._pool.call(0, "describe"))

    def worker_pids(self) -> list[int]:
        return self._pool.pids() if self._pool else []

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.kill()
            self._pool = None
        if self._started_ray:
            _import_ray().shutdown()
            self._started_ray = False

    @staticmethod
    def blocks(items: Sequence["WorkItem"], block_size: int) -> list[list["WorkItem"]]:
        """Units grouped by utterance (in plan order), ``block_size`` utterances per block."""
        by_utt: "OrderedDict[str, list]" = OrderedDict()
        for it in items:
            by_utt.setdefault(it.utt_id, []).append(it)
        groups = list(by_utt.values())
        return [[it for g in groups[i : i + block_size] for it in g] for i in range(0, len(groups), block_size)]

    def __call__(self, model: Any, data: "Manifest", items: Sequence["WorkItem"], ctx: "RunContext") -> Iterator[tuple["WorkItem", Any]]:
        if self._pool is None:
            raise RayBackendError("RayExecutor.start() must run before the executor is used")
        t0 = time.perf_counter()
        for index, block, results in self._pool.map(self.blocks(items, self.settings.block_size)):
            if isinstance(results, BaseException):
                for it in block:
                    yield it, results
                continue
            yield from results
            if self.on_block_done is not None:
                self.on_block_done(self, index)
        self.stats.update(self._pool.stats, seconds=round(time.perf_counter() - t0, 3))


class _FeatureWorker:
    """One FAS feature pathway (encoder, eGeMAPS) per actor, writing into the shared feature cache."""

    def __init__(self, spec, root: str | None, threads: int):
        from fas.features import _worker_init

        _worker_init(spec, root, threads)

    def pid(self) -> int:
        return os.getpid()

    def run(self, items: Sequence) -> list[str]:
        from fas.features import _work

        return [_work(it) for it in items]


def extract_on_ray(spec, items: Sequence, settings: RaySettings, *, root=None, progress: bool = True) -> int:
    """Fill the FAS feature cache for ``items`` (``fas.features.Item``) on Ray actors.

    The same pool and retries as a probe run; each actor builds the pathway once and writes into
    the cache folder (on a multi-node cluster: a shared file system). Returns the items computed.
    """
    from tqdm.auto import tqdm

    settings.check()
    started = ensure_ray(settings)
    pool = ActorPool(_FeatureWorker, (spec, str(root) if root is not None else None,
                                      max(1, int(settings.cpus_per_worker))), settings)
    blocks = [list(items[i : i + settings.block_size]) for i in range(0, len(items), settings.block_size)]
    n = 0
    try:
        with tqdm(total=len(items), desc=f"features {spec.name} [ray]", unit="utt", disable=not progress) as bar:
            for _, block, results in pool.map(blocks):
                if isinstance(results, BaseException):
                    raise results
                n += len(results)
                bar.update(len(block))
    finally:
        pool.kill()
        if started:
            _import_ray().shutdown()
    return n


def run_on_ray(probe: "Probe", model_name: str, model_options: dict, data: "Manifest", out,
               settings: RaySettings | None = None, *, seed: int = 0, batch_size: int = 8,
               too_long: str = "error", on_block_done=None, **run_kw: Any):
    """``run_probe`` with the units executed by ``settings.workers`` replicas on Ray.

    Same run folder, lock, settings check and resume as a local run; the manifest records
    ``backend: ray`` with the cluster settings (not a setting that changes results, so a run may
    be resumed locally or on Ray). Returns (run folder, executor stats).
    """
    from dataclasses import asdict

    from probes.probe import run_probe

    ex = RayExecutor(model_name, model_options, settings or RaySettings(), on_block_done=on_block_done)
    try:
        model = ex.start(probe, data, seed=seed, batch_size=batch_size, too_long=too_long)
        extra = dict(run_kw.pop("extra_manifest", None) or {})
        extra["backend"] = {"name": "ray", **asdict(ex.settings)}
        path = run_probe(probe, model, data, out, seed=seed, batch_size=batch_size, too_long=too_long,
                         executor=ex, extra_manifest=extra, **run_kw)
    finally:
        ex.shutdown()
    return path, dict(ex.stats)
