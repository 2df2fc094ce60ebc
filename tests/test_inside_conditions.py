"""One probe path (issue 9): every registered probe under every kind of condition, on the registries.

- every probe that takes the ``conditions`` option runs on a tiny ALM and on a trained tiny FAS
  checkpoint under ``none`` and one prompt, one audio and one activation intervention, or refuses
  with the reason the contract documents (FAS has no logit lens; FAS applies ``stream-ablate``
  only); every other probe declares fixed conditions;
- every registered intervention runs through ``probe run predict`` (patch-span included: the
  runner gives the adapter its source loader);
- an inside probe's rows carry the condition, and an activation intervention really reaches the
  inside readouts.

Random / briefly trained weights: what is asserted holds for any weights.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from probes.data.manifest import Manifest
from probes.probe import run_probe
from probes.registry import INTERVENTIONS, MODELS, PROBES
from probes.store import read_errors, read_rows

# one intervention of each side; the activation one depends on the model family
PROMPT, AUDIO = "cues-aligned", "audio-noise"
ACTIVATION = {"alm": "ablate-span", "fas": "stream-ablate"}
# (model kind, probe, condition) -> a phrase of the documented refusal
REFUSALS = {("fas", "logit-lens", c): "unembedding" for c in ("none", PROMPT, AUDIO, "stream-ablate")}
REFUSALS.update({("fas", p, "stream-ablate"): "ablated stream" for p in ("activation-patching", "attribution")})
FAST = {"attribution": {"n_steps": 8, "methods": ["ig"]}, "embeddings": {"umap": False},
        "activation-patching": {"spans": ["audio", "acoustic"]}, "linear-probe": {"folds": 2}}


def _conditioned() -> list[str]:
    # the test-time-scaling probes (tts-*) decode many tokens per utterance; tests/test_tts.py covers them
    return [n for n, cls in PROBES.items() if "conditions" in {o for o, _, _ in cls.options()} and not n.startswith("tts-")]


def test_every_probe_declares_its_conditions():
    for name, cls in PROBES.items():
        opts = {o for o, _, _ in cls.options()}
        assert "conditions" in opts or callable(getattr(cls, "conditions", None)), \
            f"{name}: declares neither the conditions option nor fixed conditions()"
    assert {"predict", "attention-share", "linear-probe", "activation-patching", "logit-lens", "attribution",
            "embeddings"} <= set(_conditioned())


@pytest.fixture(scope="module")
def pair(tiny_manifest):
    m = Manifest.read(tiny_manifest)
    return m.subset(m.df["utt_id"].isin(["utt00", "utt04"]))  # same sentence, happy vs sad voice


def _model(kind, fas_checkpoint):
    if kind == "alm":
        return MODELS["qwen2-audio"].tiny()
    return MODELS["fas"].from_cli(checkpoint=str(fas_checkpoint))


@pytest.mark.parametrize("kind", ["alm", "fas"])
def test_every_probe_under_every_kind_of_condition(kind, pair, fas_checkpoint, tmp_path):
    model = _model(kind, fas_checkpoint)
    conds = ["none", PROMPT, AUDIO, ACTIVATION[kind]]
    seen = {}
    for name in _conditioned():
        for c in conds:
            opts = {**FAST.get(name, {}), "conditions": [c]}
            if c == "ablate-span":
                opts["intervention_options"] = {"ablate-span": {"layer": 1}}
            want = REFUSALS.get((kind, name, c))
            try:
                run = run_probe(PROBES[name](**opts), model, pair, tmp_path / name / c, progress=False, strict=True)
            except NotImplementedError as e:
                assert want and want in str(e), f"{kind} {name} under {c} refused: {e}"
                seen[(name, c)] = "refused"
                continue
            assert want is None, f"{kind} {name} under {c} ran, but should refuse ({want})"
            assert read_errors(run).empty
            rows = read_rows(run)
            assert len(rows) and set(rows["condition"]) == {c}, f"{name} rows must carry the condition {c}"
            seen[(name, c)] = "ran"
    assert len(seen) == len(_conditioned()) * len(conds)


def test_every_intervention_through_probe_run_predict(tiny_manifest, tmp_path):
    from probes.cli import main

    names = INTERVENTIONS.names()
    data = tiny_manifest  # --limit 2: utt00 (s0, happy) and utt01 (s1, sad): two sentences, two voices
    for name in names:
        model = "fas" if name == "stream-ablate" else "qwen2-audio"
        if model == "fas":
            continue  # stream-ablate needs a FAS checkpoint: test_every_probe_under_every_kind_of_condition runs it
        out = tmp_path / name
        rc = main(["run", "predict", "--model", model, "--tiny", "--data", str(data), "--out", str(out), "--quiet",
                   "--strict", "--limit", "2", "--set", f"conditions=none,{name}"])
        assert rc == 0, name
        rows = read_rows(out)
        assert set(rows["condition"]) == {"none", name}, name
    m = json.loads((tmp_path / "patch-span" / "metrics.json").read_text())
    assert m  # scored like any prediction run
    rows = read_rows(tmp_path / "patch-span")
    assert rows[rows["condition"] == "patch-span"]["patch_source"].notna().all()


def test_patch_span_known_answer_through_the_runner(pair, tmp_path):
    """patch-span of the whole audio span at residual 0 (equal durations, same prompt) makes the target
    answer exactly like its source: the runner hands the adapter the source through source_loader."""
    a = MODELS["qwen2-audio"].tiny()
    run = run_probe(PROBES["predict"](conditions=["none", "patch-span"]), a, pair, tmp_path / "p", progress=False)
    assert read_errors(run).empty, read_errors(run).to_dict("records")
    rows = read_rows(run)
    none = rows[rows["condition"] == "none"].set_index("utt_id")
    pat = rows[rows["condition"] == "patch-span"].set_index("utt_id")
    assert set(pat["edit"]) == {"patch:audio@0"}
    for u, r in pat.iterrows():
        assert r["patch_source"] != u
        assert r["probs"] == pytest.approx(none.loc[r["patch_source"], "probs"], abs=3e-6)
        assert r["probs"] != pytest.approx(none.loc[u, "probs"], abs=3e-6)  # random weights: small but real


def test_activation_intervention_reaches_inside_readouts(pair, tmp_path):
    """linear-probe / embeddings features under an audio-span ablation differ from the clean ones
    exactly where the ablation acts (residual >= the ablated layer), and equal them before."""
    a = MODELS["qwen2-audio"].tiny()
    probe = PROBES["embeddings"](umap=False, pools=["audio-mean"], conditions=["none", "ablate-span"],
                                 intervention_options={"ablate-span": {"layer": 1}})
    run = run_probe(probe, a, pair, tmp_path / "e", progress=False, strict=True)
    from safetensors.numpy import load_file

    rows = read_rows(run)
    f = {(r["utt_id"], r["condition"]): load_file(str(run / r["features"]))["audio-mean"] for _, r in rows.iterrows()}
    for u in pair.df["utt_id"]:
        clean, abl = f[(u, "none")], f[(u, "ablate-span")]
        assert np.allclose(clean[0], abl[0]), "residual 0 is before the ablation"
        assert np.allclose(abl[1], 0.0), "residual 1 of the audio span is zeroed"
        assert not np.allclose(clean[1], abl[1])


def test_activation_patching_between_a_condition_and_its_copy(pair, tmp_path):
    a = MODELS["qwen2-audio"].tiny()
    probe = PROBES["activation-patching"](pairs="condition", conditions=["none", "ablate-span"], spans=["audio"],
                                          intervention_options={"ablate-span": {"layer": 0}})
    run = run_probe(probe, a, pair, tmp_path / "ap", progress=False, strict=True)
    rows = read_rows(run)
    assert set(rows["pair"]) == {"condition"} and set(rows["condition"]) == {"ablate-span"}
    assert (rows["source"] == rows["utt_id"]).all()
    tv = rows[rows["metric"] == "tv_to_source"]
    # patching the ablated copy's audio span at residual 0 into the clean run reproduces the copy
    assert tv[tv["layer"] == 0]["value"].max() < 1e-5
    m = json.loads((run / "metrics.json").read_text())
    assert "condition@ablate-span" in m


def test_linear_probe_fits_each_condition_apart(tmp_path, label_manifest):
    """Under two conditions the probes are fit per condition (never on the union), and the none
    results keep their old place in metrics.json and probe-scores/."""
    from tests.fixtures.inside import LabelFeatureModel

    data = Manifest.read(label_manifest, check_audio=False)
    run = run_probe(PROBES["linear-probe"](conditions="none,transcript", folds=2), LabelFeatureModel(), data,
                    tmp_path / "lp", progress=False, strict=True)
    rows = read_rows(run)
    assert set(rows["condition"]) == {"none", "transcript"} and len(rows) == 2 * len(data)
    m = json.loads((run / "metrics.json").read_text())
    n = len(data)
    for scores in (m["pools"]["audio-mean"], m["conditions"]["transcript"]["audio-mean"]):
        assert scores["scores"]["acoustic"]["1"] > 0.9 and scores["scores"]["acoustic"]["0"] < 0.5  # JSON keys
    import pandas as pd

    t = pd.read_csv(run / "probe-scores" / "audio-mean@transcript.csv")
    assert set(t["condition"]) == {"transcript"} and t["n_scored"].max() <= n
