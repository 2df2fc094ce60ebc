"""The ``audio-classifier`` adapter on tiny random-weight wav2vec2 / HuBERT / WavLM heads.

Known answers: the head-label table (default, override, refusal), probabilities that are a
softmax over the mapped classes summed per label, hidden states equal to the model's own
``output_hidden_states``, patching an utterance into itself changes nothing, an ablation
changes the logits, and prompt-needing work is refused with the reason.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from probes.adapter import Edit, Example, MissingInstrument, require
from probes.models.audio_classifier import (DEFAULT_LABEL_MAP, AudioClassifier, ClassifierLoadError,
                                            map_head_labels, read_label_map)

KINDS = ("wav2vec2", "hubert", "wavlm")


def _examples(seconds=(1.0, 0.75, 1.0)):
    rng = np.random.default_rng(0)
    return [Example(f"u{i}", {}, (0.1 * rng.standard_normal(int(s * 16_000))).astype(np.float32))
            for i, s in enumerate(seconds)]


# ------------------------------------------------------------------ labels
def test_default_label_map():
    m = map_head_labels({0: "neu", 1: "Happiness", 2: "sad", 3: "ANG", 4: "fea", 5: "dis", 6: "sur", 7: "calm"})
    assert m == {0: "neutral", 1: "happy", 2: "sad", 3: "angry", 4: "fear", 5: "disgust", 6: "surprise", 7: "neutral"}
    assert DEFAULT_LABEL_MAP["calm"] == "neutral"


def test_label_map_override_and_drop():
    lm = read_label_map('{"xx": "angry", "calm": ""}')
    m = map_head_labels({0: "xx", 1: "calm", 2: "happy"}, lm)
    assert m == {0: "angry", 1: "", 2: "happy"}


def test_unmappable_labels_refused_by_name():
    with pytest.raises(ClassifierLoadError, match=r"\['boredom-ish', 'zz'\].*label_map"):
        map_head_labels({0: "neu", 1: "boredom-ish", 2: "zz"})
    with pytest.raises(ClassifierLoadError, match="generic LABEL_i"):
        map_head_labels({0: "LABEL_0", 1: "LABEL_1"})
    with pytest.raises(ClassifierLoadError, match="not a canonical label"):
        read_label_map({"x": "grumpy"})


def test_tiny_with_override_is_described():
    a = AudioClassifier.from_cli(tiny=True, label_map={"hap": "surprise"})
    d = a.describe()
    assert d["weights"] == "random" and d["label_map"]["hap"] == "surprise" and d["label_map"]["neu"] == "neutral"
    p = a.predict(_examples((1.0,)))[0]
    assert p.probs["happy"] == 0.0 and p.probs["surprise"] > 0


# ------------------------------------------------------------------ predict
@pytest.mark.parametrize("kind", KINDS)
def test_predict_probs(kind):
    a = AudioClassifier.tiny(kind)
    assert a.weights == "random" and type(a.model).__name__.lower().startswith(kind)
    ex = _examples()
    preds = a.predict(ex)
    logits = a.run_with_edits(ex)
    ref = torch.softmax(logits, -1)   # the head's 4 classes map to neutral, happy, sad, angry
    for p, r in zip(preds, ref):
        assert abs(sum(p.probs.values()) - 1) < 1e-5
        assert np.allclose([p.probs[l] for l in ("neutral", "happy", "sad", "angry")], r.numpy(), atol=1e-6)
        assert p.probs["fear"] == 0.0 and p.label == max(p.probs, key=p.probs.get)
    one = torch.cat([a.run_with_edits([e]) for e in ex])  # batch-invariant (equal-length groups)
    assert torch.allclose(logits, one, atol=1e-5)


def test_several_classes_summed_into_one_label():
    a = AudioClassifier.from_cli(tiny=True, label_map={"hap": "neutral"})
    ex = _examples((1.0,))
    p = torch.softmax(a.run_with_edits(ex), -1)[0]
    assert a.predict(ex)[0].probs["neutral"] == pytest.approx(float(p[0] + p[1]), abs=1e-6)


def test_probe_run_predict(tiny_manifest, tmp_path):
    from probes.cli import main
    from probes.store import read_manifest, read_rows

    out = tmp_path / "run"
    assert main(["run", "predict", "--model", "audio-classifier", "--tiny", "--data", str(tiny_manifest),
                 "--out", str(out), "--quiet", "--strict"]) == 0
    rows = read_rows(out)
    assert len(rows) == 8 and set(rows["pred"]) <= {"neutral", "happy", "sad", "angry"}
    assert read_manifest(out)["model"]["weights"] == "random"


# ------------------------------------------------------------------ instruments
@pytest.mark.parametrize("kind", ("wav2vec2", "wavlm"))
def test_hidden_states_match_the_model(kind):
    a = AudioClassifier.tiny(kind)
    ex = _examples()
    hs = a.hidden_states(ex)
    assert hs["layers"] == [0, 1, 2] and hs["audio"].shape == (3, a.n_layers + 1, 32)
    mine = a.hidden_states([ex[1]], pool="none")["audio"][0]
    with torch.no_grad():
        ref = a.model(**a._inputs([ex[1]]), output_hidden_states=True).hidden_states
    assert len(ref) == a.n_layers + 1 and mine.shape[1] == a.frames(len(ex[1].audio))
    for l in range(a.n_layers + 1):
        assert torch.allclose(mine[l], ref[l][0], atol=1e-6)
    sub = a.hidden_states([ex[0]], spans=["audio:0.25-0.5"], pool="none")["audio:0.25-0.5"][0]
    assert sub.shape[1] == 50  # 0.25 s of 5 ms frames (tiny conv strides 5 * 4 * 4)


@pytest.mark.parametrize("kind", ("wav2vec2", "hubert"))
def test_self_patch_no_op_and_ablation_changes(kind):
    a = AudioClassifier.tiny(kind)
    ex = _examples()
    base = a.run_with_edits(ex)
    # transformers installs hooks of its own, on the first forward of a fresh model; ours must all go
    n_hooks = _hooks(a.model)
    for l in range(a.n_layers + 1):
        p = a.run_with_edits([ex[0]], [Edit("patch", layer=l, source="u0")], sources={"u0": ex[0]})
        assert torch.allclose(p[0], base[0], atol=1e-6)
    assert np.allclose(a.inside_patch(ex[0], ex[0], span="audio", layers=[0, 1, 2]),
                       a.label_scores(base[:1]).repeat(3, 0), atol=1e-5)
    other = a.inside_patch(ex[0], ex[1], span="audio", layers=[1])  # other length: time-aligned
    assert not np.allclose(other, a.label_scores(base[:1]), atol=1e-7)
    for l in (0, 1, 2):
        ab = a.run_with_edits(ex, [Edit("ablate", layer=l, mode="zero")])
        assert not torch.allclose(ab, base, atol=1e-5), f"ablation at residual {l} must change the logits"
    part = a.run_with_edits(ex[:1], [Edit("ablate", span="audio:0.1-0.3", layer=1)])
    assert not torch.allclose(part, base[:1], atol=1e-6)
    own = a.run_with_edits([ex[0].with_(edits=(Edit("ablate", layer=1),)), ex[1]])  # an example's own edit
    assert not torch.allclose(own[0], base[0], atol=1e-5) and torch.allclose(own[1], base[1], atol=1e-6)
    assert _hooks(a.model) == n_hooks, "hooks must be removed"
    with pytest.raises(ValueError, match="END must be after START"):  # raised inside a hook, mid-forward
        a.run_with_edits(ex, [Edit("ablate", span="audio:0.5-0.2", layer=1)])
    assert _hooks(a.model) == n_hooks, "hooks must be removed after an error too"


def _hooks(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_attention_and_inside_read():
    a = AudioClassifier.tiny("wav2vec2")
    ex = _examples((1.0, 0.5))
    att = a.attention(ex)
    assert att["weights"][0].shape == (2, 2, 199) and att["weights"][1].shape == (2, 2, 99)
    assert torch.allclose(att["weights"][1].sum(-1), torch.ones(2, 2), atol=1e-5)  # mean of rows summing to 1
    reads = a.inside_read(ex, attention=True, pools=("audio-mean",))
    assert reads[1].seq_len == 99 and reads[1].pooled["audio-mean"].shape == (3, 32) and reads[0].final.shape == (7,)
    info = require(a, "patch", "activation-patching")
    assert info.spans == ("audio",)
    with pytest.raises(MissingInstrument, match="no unembedding"):
        require(a, "lens", "logit-lens")


# ------------------------------------------------------------------ refusals
def test_prompt_refused_with_reason():
    a = AudioClassifier.tiny("wav2vec2")
    ex = _examples((1.0,))[0]
    for bad in (ex.with_(cues="[energy: high]"), ex.with_(transcript="hello"), ex.with_(template="voice-only")):
        with pytest.raises(MissingInstrument, match="no text input"):
            a.predict([bad])
    with pytest.raises(MissingInstrument, match="one span, 'audio'"):
        a.run_with_edits([ex], [Edit("ablate", span="prompt", layer=1)])


def test_prompt_probe_refuses_through_the_cli(tiny_manifest, tmp_path, capsys):
    from probes.cli import main

    rc = main(["run", "predict", "--model", "audio-classifier", "--tiny", "--data", str(tiny_manifest),
               "--out", str(tmp_path / "run"), "--set", "conditions=none,transcript", "--quiet", "--strict"])
    assert rc != 0
    assert "no text input" in capsys.readouterr().err


def test_needs_model_path():
    with pytest.raises(ClassifierLoadError, match="--model-path"):
        AudioClassifier.from_cli()
    with pytest.raises(ClassifierLoadError, match="audio-classifier"):
        AudioClassifier.from_cli(model_path="/nonexistent/folder")
    assert json.loads(json.dumps(AudioClassifier.tiny().describe()))["head_labels"]["0"] == "neu"


def test_loads_a_saved_checkpoint_folder(tmp_path):
    from probes.models.audio_classifier import build_tiny

    model, fe = build_tiny("hubert")
    model.config.id2label = {0: "neutral", 1: "calm", 2: "happy", 3: "angry"}
    model.config.label2id = {v: k for k, v in model.config.id2label.items()}
    model.save_pretrained(tmp_path / "ck")
    fe.save_pretrained(tmp_path / "ck")
    a = AudioClassifier.from_cli(model_path=str(tmp_path / "ck"))
    assert type(a.model).__name__ == "HubertForSequenceClassification"
    assert a.describe()["label_map"] == {"neutral": "neutral", "calm": "neutral", "happy": "happy", "angry": "angry"}
    ex = _examples((1.0,))
    p = torch.softmax(a.run_with_edits(ex), -1)[0]
    assert a.predict(ex)[0].probs["neutral"] == pytest.approx(float(p[0] + p[1]), abs=1e-6)
    ref = AudioClassifier(model, fe).run_with_edits(ex)  # the same weights as saved
    assert torch.allclose(a.run_with_edits(ex), ref, atol=1e-5)


@pytest.mark.parametrize("probe", ["attention-share", "activation-patching"])
def test_inside_probes_run(probe, tiny_manifest, tmp_path):
    from probes.cli import main

    out = tmp_path / probe
    assert main(["run", probe, "--model", "audio-classifier", "--tiny", "--data", str(tiny_manifest),
                 "--out", str(out), "--quiet", "--strict"]) == 0
    assert (out / "metrics.json").exists()


def test_logit_lens_refused(tiny_manifest, tmp_path, capsys):
    from probes.cli import main

    assert main(["run", "logit-lens", "--model", "audio-classifier", "--tiny", "--data", str(tiny_manifest),
                 "--out", str(tmp_path / "lens"), "--quiet", "--strict"]) != 0
    assert "has no lens" in capsys.readouterr().err


# ------------------------------------------------------------------ the head label map from the CLI
def test_label_map_from_the_cli_is_used_and_recorded(tiny_manifest, tmp_path):
    """``--model-set label_map=FILE`` reaches the adapter (a file and an inline JSON object) and the run
    manifest records both the option and the resulting table."""
    from probes.cli import main
    from probes.store import read_manifest, read_rows

    f = tmp_path / "head.json"
    f.write_text(json.dumps({"hap": "surprise", "ang": ""}))
    for value in (str(f), json.dumps({"hap": "surprise", "ang": ""})):
        out = tmp_path / f"run{len(value)}"
        assert main(["run", "predict", "--model", "audio-classifier", "--tiny", "--data", str(tiny_manifest),
                     "--model-set", f"label_map={value}", "--out", str(out), "--quiet", "--strict"]) == 0
        man = read_manifest(out)
        assert man["model"]["label_map"] == {"neu": "neutral", "hap": "surprise", "sad": "sad", "ang": None}
        assert man["model_options"]["label_map"] in (str(f), {"hap": "surprise", "ang": ""})
        rows = read_rows(out)
        assert set(rows["pred"]) <= {"neutral", "surprise", "sad"}


@pytest.mark.parametrize("sets, expect", [
    (["label_map={\"hap\": \"grumpy\"}"], r"--model-set label_map.*'grumpy' is not a canonical label"),
    (["label_map=/no/such/map.json"], r"--model-set label_map.*no such file"),
    (["label_map={bad json"], r"--model-set label_map.*not valid JSON"),
    (["labelmap=x.json"], r"--model-set labelmap: model audio-classifier has no option 'labelmap'; it takes label_map, tiny_class"),
    (["tiny_class=resnet"], r"tiny_class.*use one of wav2vec2, hubert, wavlm"),
    (["device=cpu"], r"--model-set device: use --device instead"),
    (["label_map"], r"--model-set 'label_map': write it as NAME=VALUE"),
])
def test_bad_model_set_is_one_clear_error_before_work(sets, expect, tiny_manifest, tmp_path, capsys):
    from probes.cli import main

    argv = ["run", "predict", "--model", "audio-classifier", "--tiny", "--data", str(tiny_manifest),
            "--out", str(tmp_path / "r"), "--quiet"]
    for s in sets:
        argv += ["--model-set", s]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("probe: error:") == 1 and __import__("re").search(expect, err), err
    assert not (tmp_path / "r").exists()                       # refused before the run folder was made


def test_unmappable_head_label_names_the_option():
    with pytest.raises(ClassifierLoadError, match=r"\['zz'\].*--model-set 'label_map=\{\"zz\": \"neutral\"\}'"):
        map_head_labels({0: "neu", 1: "zz"})


def test_alm_takes_no_model_set(tiny_manifest, tmp_path, capsys):
    from probes.cli import main

    assert main(["run", "predict", "--model", "qwen2-audio", "--tiny", "--data", str(tiny_manifest),
                 "--model-set", "label_map={}", "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert "qwen2-audio has no option 'label_map'; it takes no --model-set options" in capsys.readouterr().err


# ------------------------------------------------------------------ attribution
def test_attribution_view_is_the_model_and_complete():
    """The differentiable view at the encoder input reproduces the model's own label scores; the
    baseline is silence; integrated gradients are complete (their sum = f(input) - f(baseline)) and
    the time spans partition the clip; span ablation of one span is f(x) - f(x with that span silent)."""
    from captum.attr import IntegratedGradients

    from probes.library.attribution import attribute

    a = AudioClassifier.tiny()
    ex = _examples((1.3,))[0]
    ai = a.inside_attribution(ex)
    (x,), (b,) = ai.inputs, ai.baselines
    with torch.no_grad():
        fx = ai.forward(x)
    np.testing.assert_allclose(fx.numpy(), a.inside_read([ex])[0].final[None], atol=1e-5)
    silent = ex.with_(audio=np.zeros_like(ex.audio))
    np.testing.assert_allclose(ai.forward(b).detach().numpy(), a.inside_read([silent])[0].final[None], atol=1e-5)
    pos = np.concatenate([ai.spans[k][1] for k in ai.spans])
    assert sorted(pos.tolist()) == list(range(x.shape[1])) and list(ai.spans)[0].startswith("audio:0.00-0.5")

    def f(z):
        return torch.log_softmax(ai.forward(z), -1)
    k = int(f(x).argmax())
    attr, delta = IntegratedGradients(f).attribute(x, baselines=b, target=k, n_steps=64, return_convergence_delta=True)
    with torch.no_grad():
        gap = float(f(x)[0, k] - f(b)[0, k])
    assert abs(float(attr.sum()) - gap) <= 0.02 * max(abs(gap), 1e-2) + 1e-4, (float(attr.sum()), gap, float(delta))

    rows = attribute(ai, tuple(a.labels), ex.row, methods=("ig", "ablation"), n_steps=64, base={"utt_id": ex.utt_id})
    abl = {r["span"]: r["value"] for r in rows if r["method"] == "ablation" and r["metric"] == "signed"}
    name, (_, p) = next(iter(ai.spans.items()))
    xm = x.clone()
    xm[:, torch.as_tensor(p)] = b[:, torch.as_tensor(p)]
    with torch.no_grad():
        assert abl[name] == pytest.approx(float(f(x)[0, k] - f(xm)[0, k]), abs=1e-5)
    voice = [r["value"] for r in rows if r["span"] == "voice" and r["metric"] == "share"]
    assert voice == [pytest.approx(1.0), pytest.approx(1.0)]    # no text input: every span is voice


def test_attribution_probe_runs(tiny_manifest, tmp_path):
    from probes.cli import main
    from probes.store import read_rows

    out = tmp_path / "attr"
    assert main(["run", "attribution", "--model", "audio-classifier", "--tiny", "--data", str(tiny_manifest),
                 "--set", "n_steps=16", "--out", str(out), "--quiet", "--strict", "--limit", "2"]) == 0
    df = read_rows(out)
    assert {"ig", "ablation"} == set(df["method"]) and df["span"].str.startswith("audio:").any()
