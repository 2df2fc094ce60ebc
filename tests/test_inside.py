"""The looking-inside probes on constructed cases with known answers (ToyALM, LabelFeatureModel).

Every number asserted here follows from the construction, not from the random weights: span
shares are distributions, an utterance patched into itself is unchanged, the last lens layer is
the model's output, integrated gradients are complete, a feature that is the label is decodable
and its shuffled control is not.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from probes.data.manifest import Manifest
from probes.library import _inside
from probes.probe import run_probe
from probes.registry import PROBES
from probes.store import read_rows
from tests.fixtures.inside import LabelFeatureModel

from tests.fixtures.inside import INSIDE
ROOT = Path(__file__).resolve().parents[1]


def test_registered_and_cheap_to_list():
    for name in INSIDE:
        assert name in PROBES.names()
    # `probe list probes` imports every probe module: none may pull in torch / sklearn / umap
    code = ("import sys; from probes.registry import PROBES; PROBES.names(); "
            "print(sorted(m for m in ('torch','sklearn','umap','captum','transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------- attention share
def test_span_mass_uniform_and_overlap():
    masks = _inside.with_other({"audio": (1, 5), "prompt": np.array([5, 6, 8])}, 10)
    assert masks["other"].tolist() == [True, False, False, False, False, False, False, True, False, True]
    w = np.full((2, 3, 10), 0.1)                                        # uniform over 10 keys
    mass = _inside.span_mass(w, masks, visible=10)
    assert mass["audio"][0] == pytest.approx(np.full((2, 3), 0.4))
    for span in masks:                                                  # uniform attention -> norm 1
        assert mass[span][1] == pytest.approx(np.ones((2, 3)))
    with pytest.raises(ValueError, match="overlaps"):
        _inside.with_other({"audio": (1, 5), "prompt": (4, 6)}, 10)


def test_attention_shares_sum_to_one(toy_runs):
    df = read_rows(toy_runs["attention-share"])
    share = df[df["metric"] == "share"]
    assert set(share["span"]) == {"audio", "prompt", "cues", "answer", "other"}
    sums = share.groupby(["utt_id", "layer"])["heads"].apply(lambda h: np.sum(np.stack(h.to_list()), 0))
    for per_head in sums:
        assert per_head == pytest.approx(np.ones(2), abs=1e-5)
    # BOS is the only "other" token; no cue tokens in a plain prompt
    assert (share[share["span"] == "cues"]["value"] == 0).all()
    assert set(df[df["span"] == "other"]["n_tokens"]) == {1}
    m = json.loads((toy_runs["attention-share"] / "metrics.json").read_text())
    assert m["voice_share_gap"]["n_conflict"] == 4 and m["voice_share_gap"]["n_congruent"] == 4


# ---------------------------------------------------------------------------------- patching
def test_self_patch_changes_nothing(toy_runs):
    df = read_rows(toy_runs["activation-patching"])
    self_rows = df[df["pair"] == "self"]
    assert set(df["condition"]) == {"none"}                            # rows carry the condition, as prediction rows do
    assert len(self_rows) and (self_rows["source"] == self_rows["utt_id"]).all()
    assert self_rows[self_rows["metric"].isin(["shift", "tv_to_source"])]["value"].abs().max() < 1e-6
    assert self_rows[self_rows["metric"] == "shift_norm"]["value"].isna().all()  # 0 / 0 is left empty


def test_patch_pairs_and_full_patch_reproduces_source(toy_runs):
    df = read_rows(toy_runs["activation-patching"])
    pairs = df[df["pair"] == "patch"]
    # partners share the words and differ in the voice's label
    m = Manifest.read(read_json(toy_runs["activation-patching"])["data"])
    lab = dict(zip(m.df["utt_id"], m.df["acoustic_label"]))
    sent = dict(zip(m.df["utt_id"], m.df["sentence_id"]))
    assert all(sent[t] == sent[s] and lab[t] != lab[s] for t, s in zip(pairs["utt_id"], pairs["source"]))
    tv = pairs[pairs["metric"] == "tv_to_source"]
    assert tv[tv["span"] == "all"]["value"].max() < 1e-6                # every position: exactly the source
    last = tv["layer"].max()
    # after the last block only the answer position reaches the output
    assert tv[(tv["span"] == "answer") & (tv["layer"] == last)]["value"].max() < 1e-6
    assert tv[(tv["span"] == "audio") & (tv["layer"] == last)]["value"].min() > 1e-4
    sn = pairs[(pairs["metric"] == "shift_norm") & (pairs["span"] == "audio") & (pairs["layer"] == last)]
    assert sn["value"].abs().max() < 1e-6                               # audio patched too late: no effect


def read_json(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())


# ---------------------------------------------------------------------------------- lens
def test_lens_last_layer_is_the_output(toy_runs, toy_alm, tiny_manifest):
    df = read_rows(toy_runs["logit-lens"])
    last = df["layer"].max()
    assert last == 2                                                    # residuals 0..n_layers
    assert df[(df["layer"] == last) & (df["metric"] == "kl_to_final")]["value"].abs().max() < 1e-9
    pv = df[(df["layer"] == last) & (df["metric"] == "p_voice")].set_index("utt_id")
    data = Manifest.read(tiny_manifest)
    ctx = _ctx().set_up(PROBES["logit-lens"](), toy_alm, data)
    ex = [e for _, e in _inside.make_examples(toy_alm, data, [_wi(u) for u in pv.index], ctx)]
    for e, p in zip(ex, toy_alm.predict(ex)):
        assert pv.loc[e.utt_id, "value"] == pytest.approx(p.probs[e.row["acoustic_label"]], abs=1e-5)
        assert pv.loc[e.utt_id, "probs"][p.label] == pytest.approx(max(p.probs.values()), abs=1e-5)


def _wi(u):
    from probes.probe import WorkItem

    return WorkItem(u)


def _ctx():
    from probes.probe import RunContext

    return RunContext()


# ---------------------------------------------------------------------------------- attribution
def test_integrated_gradients_complete(toy_runs):
    df = read_rows(toy_runs["attribution"])
    ig = df[(df["method"] == "ig") & (df["metric"] == "signed")]
    for u, g in ig.groupby("utt_id"):
        total = g["value"].sum()                                        # spans + other cover every position
        expect = g["f_input"].iloc[0] - g["f_baseline"].iloc[0]
        assert total == pytest.approx(expect, abs=0.02 * max(1.0, abs(expect)))
        assert abs(g["ig_delta"].iloc[0]) < 0.02 * max(1.0, abs(expect))
    share = df[df["metric"] == "share"]
    for (u, meth), g in share.groupby(["utt_id", "method"]):
        vt = g[g["span"].isin(["voice", "text"])]["value"].sum()
        assert vt == pytest.approx(1.0, abs=1e-9)
        assert g[~g["span"].isin(["voice", "text"])]["value"].sum() == pytest.approx(1.0, abs=1e-9)


def test_ablation_is_the_span_effect(toy_alm, tiny_manifest):
    """Feature ablation of a span = f(x) - f(x with that span at the baseline), computed by hand."""
    import torch

    from probes.library.attribution import attribute

    data = Manifest.read(tiny_manifest)
    (_, ex), = _inside.make_examples(toy_alm, data, [_wi("utt01")], _ctx().set_up(PROBES["attribution"](), toy_alm, data))
    ai = toy_alm.inside_attribution(ex)
    rows = attribute(ai, toy_alm.labels, ex.row, methods=("ablation",))
    k = toy_alm.labels.index(rows[0]["target_label"])
    a, b = ai.spans["audio"][1]
    x = ai.inputs[0].clone()
    x[:, a:b] = ai.baselines[0][:, a:b]
    with torch.no_grad():
        f = lambda z: torch.log_softmax(ai.forward(z), -1)[0, k].item()  # noqa: E731
        expect = f(ai.inputs[0]) - f(x)
    got = [r["value"] for r in rows if r["span"] == "audio" and r["metric"] == "signed"][0]
    assert got == pytest.approx(expect, abs=1e-5)


# ---------------------------------------------------------------------------------- linear probes
def test_group_folds_hold_out_speakers_and_sentences():
    spk = [f"s{i % 4}" for i in range(48)]
    sent = [f"t{i // 4 % 6}" for i in range(48)]
    pairs, held = _inside.group_folds(spk, sent, k=3, seed=0)
    assert held == "speaker+sentence"
    tested = np.concatenate([te for _, te in pairs])
    assert sorted(tested.tolist()) == list(range(48))                   # every item tested exactly once
    for tr, te in pairs:
        assert not {spk[i] for i in tr} & {spk[i] for i in te}
        assert not {sent[i] for i in tr} & {sent[i] for i in te}


def test_fit_probe_perfect_feature_and_control():
    rng = np.random.default_rng(0)
    y = np.array(["angry", "happy", "sad", "neutral"] * 24)
    spk = [f"s{(i // 4) % 4}" for i in range(96)]                      # every speaker says every label
    sent = [f"t{i // 16}" for i in range(96)]
    X = rng.normal(0, 0.3, (96, 6))
    X[np.arange(96), np.searchsorted(sorted(set(y)), y)] += 3.0          # one-hot label + noise
    sc, _ = _inside.fit_probe(X, y, spk, sent)
    assert sc.score > 0.97 and sc.n_scored == 96
    ctl, _ = _inside.fit_probe(X, _inside.control_labels(y, seed=1), spk, sent)
    assert ctl.score < 0.45                                             # chance is 0.25


def test_linear_probe_run_known_answer(tmp_path, label_manifest):
    data = Manifest.read(label_manifest, check_audio=False)
    out = run_probe(PROBES["linear-probe"](), LabelFeatureModel(), data, tmp_path / "lp", progress=False, strict=True)
    import pandas as pd

    t = pd.read_csv(out / "probe-scores" / "audio-mean.csv").set_index(["layer", "target"])["score"]
    assert t[(1, "acoustic")] > 0.97                                    # layer 1 is the label
    assert t[(0, "acoustic")] < 0.45                                    # layer 0 is noise
    assert t[(1, "control")] < 0.45                                     # shuffled labels: chance
    m = json.loads((out / "metrics.json").read_text())["pools"]["audio-mean"]
    assert m["best"]["acoustic"]["layer"] == 1 and m["held_out"] == "speaker+sentence"
    assert m["selectivity"]["1"] > 0.5
    # the fit lives in summarize: refitting from the run folder alone gives the same table
    again = PROBES["linear-probe"]().summarize(out)
    assert json.loads(json.dumps(again["pools"]["audio-mean"]["scores"])) == m["scores"]


def test_missing_feature_file_is_named(tmp_path, label_manifest):
    data = Manifest.read(label_manifest, check_audio=False)
    out = run_probe(PROBES["embeddings"](umap=False), LabelFeatureModel(), data.subset(data.df.index < 4),
                    tmp_path / "e", progress=False, strict=True)
    victim = next((out / "features" / "units").glob("*.safetensors"))
    victim.unlink()
    with pytest.raises(FileNotFoundError, match=victim.name):
        _inside.read_features(out, "audio-mean")


# ---------------------------------------------------------------------------------- embeddings
def test_embeddings_files_and_cached_map(toy_runs, tiny_manifest):
    run = toy_runs["embeddings"]
    meta, X = _inside.read_features(run, "audio-mean")
    assert X.shape == (8, 3, 16)
    with np.load(run / "embeddings" / "audio-mean-layer2.npz", allow_pickle=False) as z:
        assert z["embeddings"].shape == (8, 16)
        np.testing.assert_allclose(z["embeddings"], X[:, 2], rtol=1e-6)
        ids = list(z["utt_id"])
    m = Manifest.read(tiny_manifest)
    import pandas as pd

    um = pd.read_csv(run / "umap.csv")
    assert set(um["layer"]) == {0, 2} and set(um["pool"]) == {"audio-mean", "prompt-mean", "last"}
    lab = dict(zip(m.df["utt_id"], m.df["acoustic_label"]))
    assert all(lab[u] == a for u, a in zip(um["utt_id"], um["acoustic_label"]))
    assert ids == meta["utt_id"].tolist()
    # a second summarize reuses the cached projections: same coordinates, no new cache files
    before = sorted((run / ".cache").rglob("*.npy"))
    PROBES["embeddings"](reducer="pca", umap_layers=["first", "last"]).summarize(run)
    assert sorted((run / ".cache").rglob("*.npy")) == before
    pd.testing.assert_frame_equal(pd.read_csv(run / "umap.csv"), um)


@pytest.mark.slow
def test_embeddings_umap(tmp_path, label_manifest):
    data = Manifest.read(label_manifest, check_audio=False)
    out = run_probe(PROBES["embeddings"](umap_layers=["last"]), LabelFeatureModel(), data, tmp_path / "u",
                    progress=False, strict=True)
    import pandas as pd

    um = pd.read_csv(out / "umap.csv")
    assert len(um) == len(data) and np.isfinite(um[["x", "y"]].to_numpy()).all()
    # the label is the feature: points of one label sit closer to each other than to the rest
    c = um.groupby("acoustic_label")[["x", "y"]].mean()
    within = np.mean([np.linalg.norm(g[["x", "y"]].to_numpy() - c.loc[a].to_numpy(), axis=1).mean()
                      for a, g in um.groupby("acoustic_label")])
    between = np.mean([np.linalg.norm(c.to_numpy()[i] - c.to_numpy()[j]) for i in range(4) for j in range(i + 1, 4)])
    assert within < between


# ---------------------------------------------------------------------------------- figures, resume
def test_figures_draw_from_inside_runs(toy_runs, tmp_path):
    from probes.plots import figures_for_run

    made = {p.name for run in ("attention-share", "activation-patching", "logit-lens")
            for p, _ in figures_for_run(toy_runs[run], tmp_path / run, umap=False)}
    assert {"attention-share-share.png", "attention-share-share_norm.png", "depth.png"} <= made
    assert any(n.startswith("patching-") for n in made)


def test_resume_writes_nothing_twice(tmp_path, tiny_manifest, toy_alm):
    data = Manifest.read(tiny_manifest)
    probe = PROBES["embeddings"](umap=False)
    run_probe(probe, toy_alm, data, tmp_path / "r", progress=False)
    rows_file = tmp_path / "r" / "rows.jsonl"
    lines = rows_file.read_text().splitlines(keepends=True)
    rows_file.write_text("".join(lines[:3]) + lines[3][:20])          # killed mid-write: a torn line
    run_probe(probe, toy_alm, data, tmp_path / "r", progress=False)
    rows = read_rows(tmp_path / "r")
    assert len(rows) == 8 and rows["unit"].is_unique
    assert len(list((tmp_path / "r" / "features" / "units").glob("*.safetensors"))) == 8
