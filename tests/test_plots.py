"""probes/plots/ (the package): every figure on small constructed data, with values read back from the axes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex

from probes import plots
from probes.metrics import bootstrap_ci, conflict_rates, confusion, score

LABELS = ["neutral", "happy", "sad", "angry"]


def _files(stem) -> None:
    for suffix in (".png", ".svg"):
        p = stem.with_name(stem.name + suffix)
        assert p.exists() and p.stat().st_size > 500, p


def _cell_numbers(ax) -> list[int]:
    return [int(t.get_text()) for t in ax.texts]


def _preds(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a = rng.choice(LABELS, n)
    s = rng.choice(LABELS, n)
    # half the answers follow the text, a quarter the voice, the rest anything
    p = np.where(rng.random(n) < 0.5, s, np.where(rng.random(n) < 0.5, a, rng.choice(LABELS, n)))
    return pd.DataFrame({"acoustic_label": a, "semantic_label": s, "pred": p})


def test_confusion_matrix_plots_the_counts(tmp_path):
    df = _preds()
    fig = plots.confusion_matrix(df, out=tmp_path / "cm")
    _files(tmp_path / "cm")
    ax = fig.axes[0]
    expected = confusion(df["acoustic_label"], df["pred"], labels=plots.label_order(df["acoustic_label"]))
    shown = np.array(_cell_numbers(ax)).reshape(expected.shape)
    assert (shown == expected.to_numpy()).all()
    # colour = share of the reference row
    img = np.asarray(ax.images[0].get_array())
    m = expected.to_numpy(float)
    assert np.allclose(img, m / m.sum(1, keepdims=True))
    assert [t.get_text() for t in ax.get_yticklabels()] == [l for l in LABELS if l in set(df["acoustic_label"])]


def test_confusion_counts_keep_valid_answers_and_count_invalid():
    df = pd.DataFrame({"acoustic_label": ["happy", "sad", "sad"], "pred": ["fear", "I think sad", "banana"]})
    m = plots.confusion_counts(df)
    # "fear" is a valid label no item carries: its own column, not "invalid"
    assert list(m.columns) == ["happy", "sad", "fear", "invalid"]
    assert m.loc["happy", "fear"] == 1 and m.loc["sad", "sad"] == 1 and m.loc["sad", "invalid"] == 1
    assert int(m.to_numpy().sum()) == 3


def test_confusion_grid_facets(tmp_path):
    df = pd.concat([_preds(seed=i).assign(model=m, corpus=c)
                    for i, (m, c) in enumerate([("a", "x"), ("a", "y"), ("b", "x"), ("b", "y")])])
    fig = plots.confusion_grid(df, row="model", col="corpus", title="grid", out=tmp_path / "grid")
    _files(tmp_path / "grid")
    visible = [ax for ax in fig.axes if ax.get_visible() and ax.images]
    assert len(visible) == 4
    assert [ax.get_title().split()[0:3] for ax in visible] == [["a", "·", "x"], ["a", "·", "y"], ["b", "·", "x"], ["b", "·", "y"]]
    # panel b · y holds exactly the counts of its own slice
    sub = df[(df["model"] == "b") & (df["corpus"] == "y")]
    assert sum(_cell_numbers(visible[3])) == len(sub)


def test_confusion_grid_says_not_run_for_an_empty_cell(tmp_path):
    # the FAS demo trains the one-stream arms at 0 % only: their 20 / 50 % cells were drawn as
    # matrices of zeros (n=0), which read like results; now the cell says it was not run
    df = pd.concat([_preds(seed=i).assign(model=m, corpus=c)
                    for i, (m, c) in enumerate([("a", "x"), ("a", "y"), ("b", "x")])])
    fig = plots.confusion_grid(df, row="model", col="corpus", out=tmp_path / "grid")
    drawn = [ax for ax in fig.axes if ax.get_visible() and ax.images]
    assert len(drawn) == 3
    empty = [ax for ax in fig.axes if not ax.images and any("not run" in t.get_text() for t in ax.texts)]
    assert len(empty) == 1 and "b · y" in empty[0].texts[0].get_text()


def test_score_table_agrees_with_metrics():
    from probes.metrics import score_table

    df = _preds(80).assign(group=["g1", "g2"] * 40)
    t = score_table(df, by=["group"], n_boot=200, seed=3)
    assert plots.score_table is score_table  # old imports keep working; the statistics live in metrics
    for _, row in t.iterrows():
        g = df[df["group"] == row["group"]]
        ref = score(g["acoustic_label"].tolist(), g["semantic_label"].tolist(), g["pred"].tolist())
        for k in ("follows_voice", "follows_text", "uar", "n_conflict", "text_dominance"):
            assert row[k] == pytest.approx(ref[k])
        ci = bootstrap_ci(lambda a, s, p: conflict_rates(a, s, p)["follows_text"],
                          g["acoustic_label"].tolist(), g["semantic_label"].tolist(), g["pred"].tolist(), n_boot=200, seed=3)
        assert row["follows_text_ci"] == pytest.approx(list(ci))
        assert row["follows_text_ci"][0] <= row["follows_text"] <= row["follows_text_ci"][1]


def test_follows_bars_heights_and_colours(tmp_path):
    table = pd.DataFrame([
        {"condition": "none", "follows_voice": 0.2, "follows_text": 0.7, "other_rate": 0.1, "n_conflict": 30,
         "follows_voice_ci": [0.1, 0.3], "follows_text_ci": [0.6, 0.8]},
        {"condition": "aligned", "follows_voice": 0.5, "follows_text": 0.4, "other_rate": 0.1, "n_conflict": 30,
         "follows_voice_ci": [0.4, 0.6], "follows_text_ci": [0.3, 0.5]},
    ])
    fig = plots.follows_bars(table, order=["none", "aligned"], out=tmp_path / "f")
    _files(tmp_path / "f")
    bars = fig.axes[0].patches
    by_colour: dict[str, list[float]] = {}
    for b in bars:
        by_colour.setdefault(to_hex(b.get_facecolor()), []).append(round(b.get_height(), 6))
    assert by_colour[plots.VOICE.lower()] == [0.2, 0.5]
    assert by_colour[plots.TEXT.lower()] == [0.7, 0.4]
    assert [t.get_text().split("\n")[0] for t in fig.axes[0].get_xticklabels()] == ["none", "aligned"]


def test_cue_condition_bars_in_study_order(tmp_path):
    conds = ["shuffled", "none", "corrupted", "aligned", "conflicting"]
    uar = {"none": 0.5, "aligned": 0.6, "shuffled": 0.45, "conflicting": 0.4, "corrupted": 0.42}
    t = pd.DataFrame([{"condition": c, "uar": uar[c], "uar_ci": [uar[c] - 0.05, uar[c] + 0.05]} for c in conds])
    fig = plots.cue_condition_bars(t, neutral={c: 0.1 for c in conds}, out=tmp_path / "cue")
    _files(tmp_path / "cue")
    ax = fig.axes[0]
    assert [x.get_text() for x in ax.get_xticklabels()] == list(plots.CUE_CONDITIONS)
    assert [round(b.get_height(), 6) for b in ax.patches] == [uar[c] for c in plots.CUE_CONDITIONS]
    assert len(fig.axes) == 2


def test_umap_coords_are_cached(tmp_path):
    calls = []

    def fake(X):
        calls.append(len(X))
        return X[:, :2] * 2.0

    X = np.random.default_rng(0).normal(size=(30, 5)).astype(np.float32)
    y1 = plots.umap_coords(X, cache=tmp_path, reducer=fake)
    y2 = plots.umap_coords(X, cache=tmp_path, reducer=fake)
    assert calls == [30] and np.array_equal(y1, y2)
    plots.umap_coords(X, cache=tmp_path, reducer=fake, n_neighbors=5)  # other parameters: another fit
    assert calls == [30, 30]


def test_umap_scatter_two_panels_one_legend(tmp_path):
    rng = np.random.default_rng(1)
    ac, se = rng.choice(LABELS[:2], 40), rng.choice(LABELS[2:], 40)
    fig = plots.umap_scatter(None, ac, se, coords=rng.normal(size=(40, 2)), out=tmp_path / "u")
    _files(tmp_path / "u")
    assert len(fig.axes) == 2
    # the legend lists the labels of both panels (voice labels and words' labels differ here)
    assert sorted(t.get_text() for t in fig.legends[0].get_texts()) == sorted(LABELS)


def test_training_and_depth_figures(tmp_path):
    loss = pd.DataFrame([{"arm": a, "epoch": e, "split": s, "loss": 1.0 / e} for a in ("fas", "concat")
                         for s in ("train", "dev") for e in range(1, 6)])
    fig = plots.loss_curves(loss, out=tmp_path / "loss")
    assert len(fig.axes[0].lines) == 4
    abl = pd.DataFrame([{"n_q": q, "metric": m, "value": v} for q, v in ((1, 0.6), (2, 0.62), (4, 0.61), (8, 0.6))
                        for m in ("accuracy", "macro_f1")])
    fig = plots.ablation_curve(abl, out=tmp_path / "abl")
    assert list(fig.axes[0].lines[0].get_xdata()) == [1, 2, 4, 8]
    att = pd.DataFrame([{"layer": l, "span": s, "value": v, "congruent": c} for l in range(4)
                        for s, v in (("audio", 0.6), ("prompt", 0.4)) for c in ("true", "false")])
    plots.attention_share(att, group="congruent", out=tmp_path / "att")
    pr = pd.DataFrame([{"layer": l, "target": t, "score": sc} for l in range(4)
                       for t, sc in (("acoustic", 0.9), ("semantic", 0.5), ("control", 0.25))])
    fig = plots.probe_curves(pr, chance=0.25, out=tmp_path / "probe")
    colours = {to_hex(l.get_color()) for l in fig.axes[0].lines}
    assert plots.VOICE.lower() in colours and plots.TEXT.lower() in colours
    for stem in ("loss", "abl", "att", "probe"):
        _files(tmp_path / stem)


def test_patching_map_is_the_mean_per_span_and_layer(tmp_path):
    rows = [{"layer": l, "span": s, "value": (1.0 if s == "audio" else 0.0) * (3 - l) + k * 0.1}
            for l in range(3) for s in ("audio", "prompt") for k in (0, 2)]
    fig = plots.patching_map(pd.DataFrame(rows), out=tmp_path / "patch")
    _files(tmp_path / "patch")
    img = np.asarray(fig.axes[0].images[0].get_array())
    assert img.shape == (2, 3)  # [span, layer], spans in the rows' order
    assert np.allclose(img[0], [3.1, 2.1, 1.1]) and np.allclose(img[1], [0.1, 0.1, 0.1])


def test_depth_lines_pairs_voice_and_text(tmp_path):
    rows = [{"layer": l, "metric": m, "value": v, "congruent": c} for l in range(3) for c in ("true", "false")
            for m, v in (("p_voice", 0.3), ("p_text", 0.6), ("entropy", 2.0))]
    fig = plots.depth_lines(pd.DataFrame(rows), out=tmp_path / "depth")
    _files(tmp_path / "depth")
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == ["p_voice / p_text (conflict items)", "entropy"]


def test_span_bars(tmp_path):
    rows = [{"method": m, "span": s, "value": v, "utt_id": i} for m in ("ig", "ablation") for i in range(5)
            for s, v in (("audio", 0.3), ("prompt", 0.7))]
    fig = plots.span_bars(pd.DataFrame(rows), out=tmp_path / "spans")
    _files(tmp_path / "spans")
    assert [round(b.get_height(), 6) for b in fig.axes[0].patches if b.get_height() > 0] == [0.3, 0.7]


# ------------------------------------------------------------------------------ run folders
def _run(tmp_path, probe: str, rows: list[dict], **manifest) -> "object":
    from probes.store import RunStore

    d = tmp_path / probe
    with RunStore(d) as st:
        st.write_manifest({"probe": probe, "model": {"name": "m", "weights": "random"}, "weights": "random",
                           "data": "", **manifest})
        for i, r in enumerate(rows):
            st.append(f"u{i}", [r])
    (d / "metrics.json").write_text(json.dumps({"errors": 0}))
    return d


def test_figures_for_run_draws_what_the_probe_declares(tmp_path):
    att = [{"utt_id": f"u{i}", "layer": l, "span": s, "metric": m, "value": 0.5, "congruent": "true"}
           for i in range(3) for l in range(3) for s in ("audio", "prompt") for m in ("share", "share_norm")]
    d = _run(tmp_path, "attention-share", att)
    # a table another probe would draw: attention-share does not declare it, so it is not drawn
    pd.DataFrame([{"arm": "fas", "epoch": e, "split": "train", "loss": 1 / e} for e in (1, 2, 3)]).to_csv(d / "loss_curve.csv", index=False)
    made = plots.figures_for_run(d)
    assert sorted(p.stem for p, _ in made) == ["attention-share-share", "attention-share-share_norm"]

    lp = _run(tmp_path, "linear-probe", [])
    (lp / "probe-scores").mkdir()
    pd.DataFrame([{"layer": l, "target": t, "score": 0.5, "chance": 0.25, "metric": "uar"} for l in range(3)
                  for t in ("acoustic", "semantic", "control")]).to_csv(lp / "probe-scores" / "last.csv", index=False)
    assert [p.stem for p, _ in plots.figures_for_run(lp)] == ["probe-curves-probe-scores-last"]

    em = _run(tmp_path, "embeddings", [])
    (em / "embeddings").mkdir()
    ids = np.array([f"u{i}" for i in range(6)])
    np.savez(em / "embeddings" / "last-layer1.npz", embeddings=np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32),
             utt_id=ids, acoustic_label=np.array(["sad", "happy"] * 3), semantic_label=np.array(["happy"] * 6))
    # the embeddings probe's own coordinates are drawn as they are, without a new fit
    pd.DataFrame({"utt_id": ids, "pool": "last", "layer": 1, "x": np.arange(6.0), "y": np.arange(6.0)}).to_csv(em / "umap.csv", index=False)
    assert [p.stem for p, _ in plots.figures_for_run(em)] == ["umap-last-layer1"]
    assert not (em / ".cache").exists()  # coordinates came from umap.csv: nothing was fitted


def test_a_probe_without_declared_figures_says_so(tmp_path):
    d = _run(tmp_path, "my-new-probe", [{"utt_id": "u0", "pred": "sad", "acoustic_label": "sad"}])
    failures: list[str] = []
    assert plots.figures_for_run(d, failures=failures) == []
    assert "my-new-probe" in failures[0] and "PROBE_FIGURES" in failures[0]
    with pytest.raises(ValueError, match="declares no figures"):
        plots.figures_for_run(d)


def test_every_registered_probe_declares_its_figures():
    from probes.registry import PROBES

    for name in PROBES.names():
        sets = plots.figures_of(name)
        assert sets, f"probe {name} declares no figures (probes/plots/runs.py PROBE_FIGURES)"
        assert set(sets) <= set(plots.FIGURE_SETS), name


def test_figures_for_run_patching_and_fas_conditions(tmp_path):
    patch = [{"utt_id": f"u{i}", "condition": c, "layer": l, "span": s, "metric": "shift_norm", "value": v}
             for i in range(2) for l in range(3) for s in ("audio", "prompt")
             for c, v in (("patch", 0.5), ("self", 0.0))]
    made = plots.figures_for_run(_run(tmp_path, "activation-patching", patch))
    assert [p.stem for p, _ in made] == ["patching-shift_norm"]
    fas = [{"utt_id": f"u{i}", "condition": f"{arm}@{mix}", "acoustic_label": "sad", "semantic_label": "happy",
            "pred": "sad" if arm == "fas" else "happy"} for i in range(4) for arm in ("fas", "concat") for mix in ("0.0", "0.5")]
    d = _run(tmp_path, "fas-conflict", fas)
    pd.DataFrame([{"arm": "fas@0.0", "epoch": e, "split": "train", "loss": 1 / e} for e in (1, 2, 3)]).to_csv(d / "loss_curve.csv", index=False)
    made = plots.figures_for_run(d)
    stems = [p.stem for p, _ in made]
    assert stems == ["confusion", "confusion-text", "follows", "loss-loss_curve"]


def test_follows_figure_has_one_panel_per_conflict_type(tmp_path):
    rows = [{"utt_id": f"u{i}", "condition": "none", "acoustic_label": a, "semantic_label": s, "pred": p}
            for i, (a, s, p) in enumerate([("sad", "happy", "happy"), ("angry", "happy", "happy"), ("sad", "neutral", "neutral"),
                                           ("angry", "neutral", "angry"), ("neutral", "sad", "sad"), ("sad", "sad", "sad")] * 3)]
    d = _run(tmp_path, "predict", rows)
    made = dict((p.stem, p) for p, _ in plots.figures_for_run(d))
    assert "follows" in made
    fig = plots.follows_bars(plots.conflict_type_table(plots.score_table(pd.DataFrame(rows), by=["condition"], n_boot=50),
                                                       keep=["condition"]), facet="conflict_type")
    assert [ax.get_title() for ax in fig.axes] == ["emotional-conflict", "neutral-text", "neutral-voice"]
    # neutral-text panel: 'follows the text' = answered neutral = 1/2 of those items
    heights = {to_hex(b.get_facecolor()): b.get_height() for b in fig.axes[1].patches}
    assert heights[plots.TEXT.lower()] == pytest.approx(0.5)


def test_figures_for_run_on_prediction_rows(tmp_path, tiny_manifest):
    from probes.metrics import score_run

    man = pd.read_csv(tiny_manifest, dtype=str, keep_default_na=False)
    # a voice-oracle's rows, written by hand (no model, no runner): pred = the voice's label
    rows = [{"utt_id": r.utt_id, "condition": "none", "pred": r.acoustic_label, "acoustic_label": r.acoustic_label,
             "semantic_label": r.semantic_label} for r in man.itertuples()]
    run = _run(tmp_path, "predict", rows)
    (run / "metrics.json").write_text(json.dumps(score_run(run, n_boot=50)))
    made = plots.figures_for_run(run)
    assert [p.stem for p, _ in made] == ["confusion", "confusion-text", "follows"]
    for p, _ in made:
        assert p.exists() and p.with_suffix(".svg").exists()
    t = plots.run_table(run)
    assert t.loc[0, "follows_voice"] == 1.0 and t.loc[0, "follows_text"] == 0.0


@pytest.mark.corpus
def test_emis_figures_from_the_real_table(shared_data, tmp_path):
    csv = shared_data / "emis-predictions" / "aggregated_results_v4_fullLabel.csv"
    paths = plots.emis_figures(csv, tmp_path, n_boot=200)
    assert all(p.exists() for p in paths)
    types = pd.read_csv(tmp_path / "emis-types.csv").set_index("model")
    # the figures of issue 10: words-emotional conflicts (neutral-text left out) and the neutral pull,
    # under the study's strict parse (14 answers invalid)
    assert int(types["invalid"].sum()) == 14
    assert types["follows_text_emotional_words"].round(3).to_dict() == {"desta2": 0.922, "flamingo3": 0.848, "qwen": 0.842, "salmonn": 0.524}
    assert types.loc[["flamingo3", "salmonn"], "neutral_pull"].round(2).tolist() == [0.76, 0.82]
    t = pd.read_csv(tmp_path / "emis-follows.csv")
    assert sorted(t["model"].unique()) == ["desta2", "flamingo3", "qwen", "salmonn"]
    # EMIS design: 468 utterances per model and text condition with emotional words, 351 of them conflicts
    exp = t[t["text_condition"] == "explicit"]
    assert (exp["n"] == 468).all() and (exp["n_conflict"] == 351).all()
    # the study's finding, recomputed from its own predictions: with explicit emotional words
    # every model follows the text far more often than the voice
    assert (exp["follows_text"] > 0.7).all() and (exp["follows_voice"] < 0.15).all()
