"""FAS training, checkpoints, instrumentation, the experiment, and the adapter through the CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models train several times faster on one thread of a shared 2-core CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

from fas.model import arm_config
from fas.train import TrainConfig, collate, load_checkpoint, predict_streams, save_checkpoint, train_model

SMALL = dict(d=32, n_heads=4, ffn=32, head_hidden=16, patch_sem=1, k_aco=4, k_sem=4)


@pytest.fixture(scope="module")
def trained(fas_toy):
    from tests.fixtures.fas import TOY_LABELS

    cfg = arm_config("fas", d_aco=6, d_sem=10, labels=TOY_LABELS, dropout=0.1, **SMALL)
    model, curve = train_model(cfg, fas_toy, TrainConfig(epochs=25, batch_size=16, lr=3e-3), dev=fas_toy.subset(range(16)))
    return model, curve


def test_training_reduces_loss_and_learns_the_toy_problem(trained, fas_toy):
    model, curve = trained
    train = [r["loss"] for r in curve if r["split"] == "train"]
    assert train[-1] < 0.5 * train[0]
    pred, probs = predict_streams(model, fas_toy)
    assert np.mean(np.array(pred) == np.array(fas_toy.acoustic_label)) > 0.9
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    assert set(pd.DataFrame(curve).columns) == {"arm", "epoch", "split", "loss"}
    assert {r["split"] for r in curve} == {"train", "dev"}


def test_checkpoint_round_trip_gives_the_same_logits(trained, fas_toy, tmp_path):
    model, _ = trained
    folder = save_checkpoint(model, tmp_path / "ck", extra={"arm": "fas"})
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    loaded, info = load_checkpoint(folder)
    batch = collate(fas_toy.aco[:8], fas_toy.sem[:8])
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, loaded(**batch).logits)
    assert torch.equal(model.mean_aco, loaded.mean_aco)             # stream means travel with the weights
    assert info["model"]["labels"] == list(model.cfg.labels)
    with pytest.raises(FileNotFoundError, match="probe fas train"):
        load_checkpoint(tmp_path / "missing")


def test_instrumentation_per_utterance(trained, fas_toy):
    from fas.instrument import inspect

    model, _ = trained
    batch = collate(fas_toy.aco[:4], fas_toy.sem[:4])
    rows = inspect(model, batch, frame_rates=(100.0, None), with_attributions=True)
    for r, x in zip(rows, fas_toy.aco[:4]):
        assert abs(r["attn_acoustic_mass"] + r["attn_semantic_mass"] - 1) < 1e-5
        assert r["kept_acoustic"] == sorted(r["kept_acoustic"]) and len(r["kept_acoustic"]) == 4
        lo, hi = r["kept_acoustic_s"][0]
        assert hi - lo == pytest.approx(0.01 * model.cfg.patch_aco)  # patch of 5 frames at 100 frames/s
        assert r["kept_semantic_s"] is None                           # token streams have no time axis
        assert 0 <= r["ig_acoustic_share"] <= 1 and 0 <= r["ablation_acoustic_share"] <= 1
        assert r["fused"].shape == (model.cfg.d,)
    # the toy label lives in the acoustic stream: a trained model's attribution leans acoustic
    assert np.mean([r["ablation_acoustic_share"] for r in rows]) > 0.5


def test_experiment_writes_one_table_beside_the_acoustic_baseline(tiny_manifest, fas_cache, tmp_path):
    from fas.experiment import run_experiment

    arms = ("acoustic-only", "fas[text]", "fas-voiced[text]")
    out = run_experiment(tiny_manifest, tmp_path / "run", mixes=(0.0, 0.5), arms=arms, workers=1, seeds=2,
                         tc=TrainConfig(epochs=2, batch_size=4), n_boot=20, progress=False)
    res = pd.read_csv(out / "results.csv")
    assert len(res) == 6 and set(res["arm"]) == set(arms)
    assert set(res["n_test"]) == {2} and set(res["n_train"]) == {4}  # fixed training size across mixes
    assert set(res["n_seeds"]) == {2}
    assert res["train_accuracy"].between(0, 1).all()                  # every arm reports its fit
    q = res[res["arm"] != "acoustic-only"]
    assert q["attn_acoustic_mass"].between(0, 1).all() and q["kept_voiced_share"].between(0, 1).all()
    assert (res["follows_text_lo"] <= res["follows_text"]).all() and (res["follows_text"] <= res["follows_text_hi"]).all()
    curve = pd.read_csv(out / "loss_curve.csv")
    assert list(curve.columns) == ["arm", "epoch", "split", "loss"]
    man = json.loads((out / "manifest.json").read_text())
    assert man["seed"] == 42 and "git_sha" in man and "versions" in man
    assert man["probe"] == "fas-conflict" and man["model"]["name"] == "fas-untrained"
    assert "follows-text" in (out / "results.md").read_text()
    assert (out / "checkpoints").is_dir()
    # written by the run store like any other run: rows with the standard columns, metrics per condition
    from probes.probe import ROW_COLUMNS
    from probes.store import read_rows

    rows = read_rows(out)
    assert set(ROW_COLUMNS) <= set(rows.columns) and len(rows) == 6 * 2 * rows["utt_id"].nunique()
    metrics = json.loads((out / "metrics.json").read_text())
    assert "fas[text]@50%" in metrics["conditions"] and len(metrics["fas_table"]) == 6


def test_fas_conflict_is_a_registered_probe_that_resumes(tiny_manifest, fas_cache, tmp_path):
    from probes.data.manifest import Manifest
    from probes.probe import run_probe
    from probes.registry import MODELS, PROBES

    probe = PROBES["fas-conflict"](arms="acoustic-only,fas[text]", mixes="0,50", seeds=2, epochs=2, batch_size=4,
                                   n_boot=10, workers=1, query_mixes="0", query_seeds=1, checkpoints=False)
    data = Manifest.read(tiny_manifest)
    out = run_probe(probe, MODELS["fas-untrained"](), data, tmp_path / "r", seed=3, progress=False)
    first = (out / "rows.jsonl").read_text()
    from probes.store import read_rows

    rows = read_rows(out)
    # the slow query arm only where asked (0 %, one seed); the pooled arm at every mix, two seeds
    assert rows.groupby("condition")["train_seed"].nunique().to_dict() == {
        "acoustic-only@0%": 2, "acoustic-only@50%": 2, "fas[text]@0%": 1}
    calls = []
    orig = type(probe)._fit
    type(probe)._fit = lambda self, *a, **k: calls.append(a) or orig(self, *a, **k)
    try:
        run_probe(probe, MODELS["fas-untrained"](), data, out, seed=3, progress=False)
    finally:
        type(probe)._fit = orig
    assert calls == [] and (out / "rows.jsonl").read_text() == first   # nothing retrained on resume
    with pytest.raises(ValueError, match="known arms"):
        PROBES["fas-conflict"](arms="concat[text],nonsense[text]")
    with pytest.raises(ValueError, match=r"\[asr\] or"):
        PROBES["fas-conflict"](arms="concat")
    with pytest.raises(NotImplementedError, match="fas train"):
        MODELS["fas-untrained"]().predict([])


def test_fas_conflict_conditions_per_arm_family():
    """The demo's plan: concat at every mix, the one-stream baselines and the query arms where asked."""
    from probes.registry import PROBES

    probe = PROBES["fas-conflict"](arms="acoustic-only,semantic-only[text],concat[text],fas[text],fas-voiced[text]",
                                   mixes="0,20,50", seeds=2, query_mixes="0", query_seeds=1, single_mixes="0")
    assert probe.conditions() == ["acoustic-only@0%", "semantic-only[text]@0%", "concat[text]@0%", "fas[text]@0%",
                                  "fas-voiced[text]@0%", "concat[text]@20%", "concat[text]@50%"]
    assert probe.n_seeds("fas[text]@0%") == 1 and probe.n_seeds("acoustic-only@0%") == 2
    # without the option every pooled arm runs at every mix (as before)
    plain = PROBES["fas-conflict"](arms="acoustic-only,concat[text]", mixes="0,50", seeds=1)
    assert plain.conditions() == ["acoustic-only@0%", "concat[text]@0%", "acoustic-only@50%", "concat[text]@50%"]


def test_nq_sweep_writes_the_ablation_table_and_its_figure(tiny_manifest, fas_cache, tmp_path):
    from fas.experiment import run_nq_sweep
    from probes.plots import figures_for_run

    out = run_nq_sweep(tiny_manifest, tmp_path / "sweep", n_queries=(1, 3), semantic="text-minilm", workers=1,
                       tc=TrainConfig(epochs=2, batch_size=4), n_boot=20, progress=False)
    tab = pd.read_csv(out / "nq_ablation.csv")
    assert sorted(set(tab["n_q"])) == [1, 3] and {"accuracy", "follows_text"} <= set(tab["metric"])
    assert tab["value"].between(0, 1).all()
    assert set(pd.read_csv(out / "loss_curve.csv")["arm"]) == {"N_q=1", "N_q=3"}
    drawn = [str(p) for p in figures_for_run(out)]
    assert any("nq" in p or "ablation" in p for p in drawn), drawn


def test_cli_predict_with_a_trained_checkpoint(fas_checkpoint, tiny_manifest, tmp_path):
    from probes.cli import main
    from probes.store import read_rows

    out = tmp_path / "run"
    rc = main(["run", "predict", "--model", "fas", "--checkpoint", str(fas_checkpoint), "--data", str(tiny_manifest),
               "--out", str(out), "--quiet", "--strict"])
    assert rc == 0
    rows = read_rows(out)
    assert len(rows) == 8 and rows["pred"].notna().all()
    assert rows["attn_acoustic_mass"].between(0, 1).all()
    assert json.loads((out / "manifest.json").read_text())["weights"] == "real"
    # the wrong arm name for this checkpoint is an error, not a silent swap
    assert main(["run", "predict", "--model", "fas-concat", "--checkpoint", str(fas_checkpoint), "--data",
                 str(tiny_manifest), "--out", str(tmp_path / "r2"), "--quiet"]) == 2


def test_adapter_uses_the_intervened_waveform_and_stream_ablate(fas_checkpoint, tiny_manifest):
    from probes.adapter import Edit, Example
    from probes.audio import load_audio
    from probes.data.manifest import Manifest

    from fas.adapter import FASAdapter

    m = Manifest.read(tiny_manifest)
    ad = FASAdapter.from_cli(checkpoint=str(fas_checkpoint))
    ad.prepare(m)
    ex = [Example(u, m.row(u), audio=load_audio(m.audio_path(u))) for u in ("utt00", "utt01")]
    base = ad.predict(ex)
    assert {p.extra["acoustic_norm"] for p in base} == {"speaker"}
    quiet = ad.predict([e.with_(audio=e.audio * 0.1) for e in ex])      # an audio-side intervention
    assert any(abs(quiet[i].probs[l] - base[i].probs[l]) > 1e-6 for i in range(2) for l in ad.labels)
    for span in ("acoustic", "semantic"):
        abl = ad.predict([e.with_(edits=(Edit("stream-ablate", span=span, mode="zero"),)) for e in ex])
        assert any(abs(abl[i].probs[l] - base[i].probs[l]) > 1e-6 for i in range(2) for l in ad.labels)


def test_every_arm_is_registered_and_needs_a_checkpoint():
    from probes.registry import MODELS, summary

    from fas.model import ARMS

    for arm in ARMS:
        cls = MODELS[arm]
        assert summary(cls)
        with pytest.raises(FileNotFoundError, match="probe fas train"):
            cls.from_cli()


def test_fas_table_averages_seeds_and_counts_the_emotional_conflict_type():
    """Known answers: a model that always answers the words, and one that answers the voice."""
    from fas.experiment import fas_table

    items = [("u1", "angry", "happy"), ("u2", "sad", "happy"), ("u3", "neutral", "sad"),  # two emotional-conflict, one neutral-voice
             ("u4", "happy", "neutral"), ("u5", "happy", "happy")]                      # neutral-text, congruent
    rows = []
    for cond, follow in (("text@0%", 2), ("voice@0%", 1)):
        for seed in (0, 1):
            for u, a, s in items:
                rows.append({"utt_id": u, "condition": cond, "pred": (u, a, s)[follow], "acoustic_label": a,
                             "semantic_label": s, "arm": cond.split("@")[0], "semantic": "text-minilm",
                             "acoustic_norm": "speaker", "conflict_mix": 0.0, "n_train": 10, "train_seed": seed,
                             "train_accuracy": 0.9 + 0.05 * seed, "train_loss": 0.1})
    tab = {r["arm"]: r for r in fas_table(pd.DataFrame(rows), n_boot=50)}
    t, v = tab["text"], tab["voice"]
    assert t["n_test"] == 4 and t["n_emotional_conflict"] == 2 and t["n_seeds"] == 2
    assert t["follows_text_emotional_conflict"] == 1.0 and t["follows_text"] == 1.0 and t["follows_voice"] == 0.0
    assert v["follows_text_emotional_conflict"] == 0.0 and v["follows_voice"] == 1.0
    assert t["accuracy_congruent"] == 1.0 and t["train_accuracy"] == pytest.approx(0.925)
    assert t["train_accuracy_min"] == pytest.approx(0.9)
    assert t["follows_text_ci"][0] <= 1.0 <= t["follows_text_ci"][1] + 1e-12
