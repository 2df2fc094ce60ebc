"""Probes and the runner that drives them.

A probe is a named experiment: for a model and a manifest it ``plan``s units of work
(``WorkItem``: one utterance under one condition, plus any extra key), and ``execute``s
batches of them, yielding the rows of each unit. The runner (``run_probe``) skips units
already in the run folder (resume), shards units across machines (``--shard i/n``, by a
stable hash of the utterance id), turns a failing utterance into an error row (or stops under
``strict``), and shows a progress bar.

``PredictionProbe`` is the base for probes whose rows are one prediction per (utterance,
condition): each condition is a list of interventions; subclasses only declare them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, Sequence

if TYPE_CHECKING:
    from probes.adapter import Adapter, Example
    from probes.data.manifest import Manifest

ROW_COLUMNS = ("utt_id", "condition", "pred", "acoustic_label", "semantic_label", "congruent",
               "speaker", "sentence_id", "split", "corpus")


@dataclass(frozen=True)
class WorkItem:
    utt_id: str
    condition: str = "none"
    key: tuple = ()  # extra key parts (seed index, layer, donor ...), part of the unit id

    @property
    def unit(self) -> str:
        return "|".join([self.utt_id, self.condition, *map(str, self.key)])


@dataclass
class RunContext:
    seed: int = 0
    batch_size: int = 8
    strict: bool = False
    too_long: str = "error"
    progress: bool = True
    cache: dict = field(default_factory=dict)  # per-run scratch (audio cache, fitted interventions)
    run_dir: Path | None = None                # the run folder, for probes that write files beside the rows

    probe: "Probe | None" = None               # set by ``set_up`` (run_probe does it)
    model: "Adapter | None" = None
    data: "Manifest | None" = None

    def load_audio(self, data: "Manifest", utt_id: str, sr: int, max_seconds: float | None):
        from probes.audio import load_audio

        key = ("audio", utt_id, sr)
        if key not in self.cache:
            self.cache[key] = load_audio(data.audio_path(utt_id), sr, max_seconds=max_seconds, too_long=self.too_long)
        return self.cache[key]

    # ---- the one place Examples are built, for every probe ------------------------------
    def set_up(self, probe: "Probe", model: "Adapter", data: "Manifest") -> "RunContext":
        """Bind the run's probe, model and data; give the model a way to fetch patch sources
        (``Edit(kind="patch")`` names an utterance: its clean Example, the recording as in the manifest)."""
        self.probe, self.model, self.data = probe, model, data
        if hasattr(model, "source_loader"):
            model.source_loader = lambda utt_id: self.example(utt_id, "none", plain=True)
        return self

    def fitted(self) -> dict[str, list]:
        """condition -> its interventions, fitted once per run on the whole manifest."""
        if "fitted" not in self.cache:
            self.cache["fitted"] = {c: [iv.fit(self.data, seed=self.seed) for iv in ivs]
                                    for c, ivs in self.probe.condition_map().items()}
        return self.cache["fitted"]

    def example(self, utt_id: str, condition: str = "none", key: tuple = (), *, plain: bool = False) -> "Example":
        """The Example of ``utt_id`` under ``condition`` (its interventions applied in order, each with a
        generator from the seed, the utterance, the condition and ``key``). ``plain``: no interventions."""
        from interventions.base import rng_for
        from probes.adapter import Example

        if self.probe is None or self.model is None or self.data is None:
            raise RuntimeError("RunContext.example: call set_up(probe, model, data) first (run_probe does)")
        model, data = self.model, self.data
        ivs = [] if plain else self.fitted().get(condition)
        if ivs is None:
            raise KeyError(f"condition {condition!r} is not one of this run's: {', '.join(self.fitted())}")
        row = data.row(utt_id)
        need_audio = model.needs_audio or any(iv.needs_audio for iv in ivs)
        audio = self.load_audio(data, utt_id, model.sample_rate, model.max_seconds) if need_audio else None
        ex = Example(utt_id=utt_id, row=row, audio=audio, sr=model.sample_rate,
                     template=getattr(self.probe, "template", None) or "plain")
        for iv in ivs:
            ex = iv.apply(ex, rng=rng_for(self.seed, utt_id, condition, type(iv).__name__, *key))
        return ex


class Probe:
    """Base class of every probe. Subclasses are dataclasses; their fields are the config."""

    name: ClassVar[str] = "probe"
    kind: ClassVar[str] = "predictions"   # "predictions" rows are scored by probes.metrics

    def config(self) -> dict:
        return asdict(self) if is_dataclass(self) else {}

    def condition_map(self) -> dict[str, list]:
        """condition name -> list of Intervention instances (applied in order).

        A probe with fixed conditions defines a method ``conditions()`` returning this map; a
        probe with the ``conditions`` option (``Conditions``) builds it from the names given
        (``--set conditions=none,cues-aligned,audio-flatten-f0``); otherwise just ``none``."""
        c = getattr(self, "conditions", None)
        if callable(c):
            return c()
        if c is None:
            return {"none": []}
        return parse_conditions(c, getattr(self, "intervention_options", None) or {})

    def plan(self, data: "Manifest") -> list[WorkItem]:
        """One unit per (utterance, condition)."""
        conds = list(self.condition_map())
        return [WorkItem(u, c) for u in data.df["utt_id"] for c in conds]

    def execute(self, model: "Adapter", data: "Manifest", items: Sequence[WorkItem], ctx: RunContext) -> Iterator[tuple[WorkItem, Any]]:
        """Yield (item, rows) or (item, Exception) for each item, in any order."""
        raise NotImplementedError

    def summarize(self, run_dir: Path) -> dict:
        """metrics.json for the run; prediction probes score per condition."""
        from probes.metrics import score_run

        return score_run(run_dir)

    @classmethod
    def options(cls) -> list[tuple[str, Any, str]]:
        """(name, default, help) of the config fields, for the CLI's --set NAME=VALUE."""
        if not is_dataclass(cls):
            return []
        return [(f.name, f.default, f.metadata.get("help", "")) for f in fields(cls)]


def prediction_row(ex: "Example", condition: str, pred) -> dict:
    row = {c: ex.row.get(c, "") for c in ROW_COLUMNS if c not in ("condition", "pred")}
    row.update(utt_id=ex.utt_id, condition=condition, pred=pred.label)
    from probes.metrics import conflict_type

    row["conflict_type"] = conflict_type(row.get("acoustic_label"), row.get("semantic_label"))  # docs/vocabulary.md
    if pred.probs is not None:
        row["probs"] = {k: round(float(v), 6) for k, v in pred.probs.items()}
    if pred.raw is not None:
        row["raw"] = pred.raw
    row.update(ex.meta)
    row.update(pred.extra)
    return row


def parse_conditions(spec, options: dict | None = None) -> dict[str, list]:
    """``"none,cues-aligned,audio-noise+transcript"`` (or a list) -> {condition: [Intervention, ...]}.

    Each condition is ``none`` or registered intervention names joined by ``+`` (applied in
    order); ``options`` gives an intervention's options by name (``{"patch-span": {"layer": 3}}``).
    An unknown name fails here, before any work, naming the closest registered ones."""
    from probes.registry import INTERVENTIONS

    names = [c.strip() for c in (spec.split(",") if isinstance(spec, str) else spec) if str(c).strip()]
    if not names:
        raise ValueError("conditions: give at least one, e.g. --set conditions=none,cues-aligned")
    out: dict[str, list] = {}
    for c in names:
        c = str(c)
        ivs = [] if c == "none" else [INTERVENTIONS[n.strip()](**(options or {}).get(n.strip(), {})) for n in c.split("+")]
        out[c] = ivs
    return out


@dataclass(frozen=True)
class Conditions:
    """The ``conditions`` option, for probes whose conditions the user chooses (predict, the inside probes)."""

    conditions: tuple = field(default=("none",), metadata={
        "help": "conditions to run, comma-separated: none, or intervention names joined by '+' "
                "(e.g. none,cues-aligned,audio-flatten-f0); `probe list interventions` names them"})
    intervention_options: dict = field(default_factory=dict, metadata={
        "help": 'options per intervention, e.g. {"patch-span": {"layer": 3}, "audio-noise": {"snr_db": 10}}'})


class PredictionProbe(Probe):
    """One prediction per (utterance, condition); conditions map to lists of interventions."""

    def make_example(self, model: "Adapter", data: "Manifest", item: WorkItem, ctx: RunContext) -> "Example":
        if ctx.probe is None:
            ctx.set_up(self, model, data)
        return ctx.example(item.utt_id, item.condition, item.key)

    def execute(self, model, data, items, ctx):
        for start in range(0, len(items), ctx.batch_size):
            batch = items[start : start + ctx.batch_size]
            examples, ok = [], []
            for it in batch:
                try:
                    examples.append(self.make_example(model, data, it, ctx))
                    ok.append(it)
                except Exception as e:  # bad audio etc.: an error row, not the end of the run
                    yield it, e
            if not examples:
                continue
            try:
                preds = model.predict(examples)
            except Exception as e:
                if len(examples) == 1:
                    yield ok[0], e
                    continue
                # find the bad one: fall back to one at a time
                for it, ex in zip(ok, examples):
                    try:
                        yield it, [prediction_row(ex, it.condition, model.predict([ex])[0])]
                    except Exception as e1:
                        yield it, e1
                continue
            for it, ex, p in zip(ok, examples, preds):
                yield it, [prediction_row(ex, it.condition, p)]


def shard_of(utt_id: str, n: int) -> int:
    return int(hashlib.sha256(utt_id.encode()).hexdigest()[:8], 16) % n


def _record_interventions(out: Path, ctx: RunContext) -> None:
    """Write what each condition's fitted interventions report (``describe()``: e.g. which reference
    set the cue bins were fitted on) into manifest.json under ``interventions``. Not a resume-checked
    setting: it follows from the settings. A fit that fails is left to the units, which report it."""
    try:
        fitted = ctx.fitted()
    except Exception:
        return
    described = {c: [iv.describe() if callable(getattr(iv, "describe", None)) else type(iv).__name__ for iv in ivs]
                 for c, ivs in fitted.items() if ivs}
    if not described:
        return
    path = Path(out) / "manifest.json"
    try:
        man = json.loads(path.read_text())
        man["interventions"] = json.loads(json.dumps(described, default=str))
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(man, indent=2, default=str))
        tmp.replace(path)
    except (OSError, ValueError):
        return


def run_probe(
    probe: Probe,
    model: "Adapter",
    data: "Manifest",
    out: str | Path,
    *,
    seed: int = 0,
    batch_size: int = 8,
    strict: bool = False,
    shard: tuple[int, int] | None = None,
    limit: int | None = None,
    progress: bool = True,
    too_long: str = "error",
    extra_manifest: dict | None = None,
    executor: "Callable | None" = None,
) -> Path:
    """Run (or resume) ``probe`` on ``model`` x ``data`` into the run folder ``out``."""
    from probes.options import check_run_args
    from probes.progress import progress_bar
    from probes.store import RunStore

    check_run_args(batch_size=batch_size, limit=limit)  # one line naming the argument, before any work
    out = Path(out)
    if limit is not None:
        data = data.subset(data.df.index < limit)
    items = probe.plan(data)
    from probes.labels import manifest_extra_labels, run_labels

    extra_labels = manifest_extra_labels(data)  # a corpus' own labels (EmoDB: bored -> other), offered and scored
    if extra_labels and hasattr(model, "set_labels"):
        model.set_labels(run_labels(extra_labels, model.labels))
    if shard is not None:
        i, n = shard
        items = [it for it in items if shard_of(it.utt_id, n) == i]
    store = RunStore(out)
    info = {
        "probe": probe.name,
        "probe_kind": probe.kind,
        "config": probe.config(),
        "model": model.describe(),
        "weights": model.weights,
        "data": str(Path(data.source).resolve()),  # absolute: readers resolve it from anywhere
        "data_sha256": data.sha256(),
        "n_utterances": len(data),
        "seed": seed,
        "batch_size": batch_size,
        "shard": list(shard) if shard else None,
        "too_long": too_long,
        "extra_labels": extra_labels,
        **(extra_manifest or {}),
    }
    try:  # the store holds the folder's lock: let go of it on any failure before the loop
        store.write_manifest(json.loads(json.dumps(info, default=str)))
        todo = [it for it in items if not store.done(it.unit)]
        prepare = getattr(model, "prepare", None)
        if callable(prepare):
            prepare(data)  # adapters that need corpus-level statistics first (FAS: per-speaker eGeMAPS)
    except BaseException:
        store.close()
        raise
    ctx = RunContext(seed=seed, batch_size=batch_size, strict=strict, too_long=too_long, progress=progress,
                     run_dir=out).set_up(probe, model, data)
    _record_interventions(out, ctx)
    n_err = 0
    try:
        with progress_bar(total=len(items), initial=len(items) - len(todo), desc=f"{probe.name} [{model.name}]",
                          unit="unit", disable=not progress) as bar:
            # ``executor``: where the units run (probes/backends); default: the probe's own execute, here
            for item, rows in (executor or probe.execute)(model, data, todo, ctx):
                if isinstance(rows, Exception):
                    if strict:
                        raise rows
                    n_err += 1
                    store.error(item.unit, item.utt_id, f"{type(rows).__name__}: {rows}", condition=item.condition)
                else:
                    store.append(item.unit, rows)
                bar.update(1)
    finally:
        store.close()
    metrics = probe.summarize(out)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    return out
