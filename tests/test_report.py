"""probes/report.py and the ``probe report`` / ``probe figures`` commands, checked structurally
(html.parser, no browser): values from metrics.json, embedded images, audio loaded on demand,
banners, escaping, the many-arm FAS experiment layout, plain words for metric keys.
Layout in a real browser: tests/test_browser.py."""

from __future__ import annotations

import base64
import io
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from probes.report import write_report

HOSTILE = "<script>alert('x')</script> & \"quotes\""


class Page(HTMLParser):
    """Collects what the tests look at: tags with attributes, text, scripts."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        (self.scripts if self._in_script else self.text).append(data)

    def all(self, tag: str) -> list[dict]:
        return [a for t, a in self.tags if t == tag]


@pytest.fixture(scope="module")
def oracle_run(tmp_path_factory) -> Path:
    """A text-oracle run folder over the tiny manifest, with a hostile text in one conflict item.

    Written with the run store and scored with score_run, as the runner would, but without
    loading the model registry (which imports torch): the report reads the folder, not the model.
    """
    from probes.data.manifest import Manifest
    from probes.metrics import score_run
    from probes.store import RunStore
    from tests.fixtures.core import make_tiny_manifest

    root = tmp_path_factory.mktemp("report")
    path = make_tiny_manifest(root / "data")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df.loc[df["utt_id"] == "utt01", "text"] = HOSTILE  # utt01 is a conflict item (sad voice, happy words)
    df.to_csv(path, index=False)
    data = Manifest.read(path)
    run = root / "run"
    with RunStore(run) as st:
        st.write_manifest({"probe": "predict", "probe_kind": "predictions", "config": {},
                           "model": {"name": "text-oracle", "weights": "oracle", "labels": ["happy", "sad"]},
                           "weights": "oracle", "data": str(path), "data_sha256": data.sha256(),
                           "n_utterances": len(data), "seed": 0})
        for r in data.rows():
            st.append(f"{r['utt_id']}|none", [{k: r[k] for k in ("utt_id", "acoustic_label", "semantic_label", "congruent",
                                                                 "speaker", "sentence_id", "split", "corpus")}
                                              | {"condition": "none", "pred": r["semantic_label"]}])
    (run / "metrics.json").write_text(json.dumps(score_run(run, n_boot=200)))
    return run


@pytest.fixture(scope="module")
def page(oracle_run) -> tuple[Path, str, Page]:
    out = write_report(oracle_run)
    text = out.read_text(encoding="utf-8")
    return out, text, Page(text)


def _copy(run: Path, dst: Path) -> Path:
    shutil.copytree(run, dst)
    shutil.rmtree(dst / "figures", ignore_errors=True)
    return dst


def test_default_path_and_structure(page, oracle_run):
    out, text, p = page
    assert out == oracle_run / "report.html"
    assert text.startswith("<!doctype html>")
    ids = {a.get("id") for _, a in p.tags}
    assert {"run", "headline", "metrics", "errors", "figures", "conflicts"} <= ids


def test_headline_holds_the_metrics(page, oracle_run):
    _, text, p = page
    m = json.loads((oracle_run / "metrics.json").read_text())["conditions"]["none"]
    joined = " ".join(p.text)
    for key in ("accuracy", "uar", "macro_f1", "follows_voice", "follows_text", "cramers_v_acoustic"):
        assert f"{m[key]:.3f}" in joined, key
    lo, hi = m["accuracy_ci"]
    assert f"[{lo:.3f}, {hi:.3f}]" in joined
    # text-oracle on conflict items: follows the text always
    assert m["follows_text"] == 1.0 and m["text_dominance"] == 1.0


def test_what_was_run(page, oracle_run):
    _, _, p = page
    man = json.loads((oracle_run / "manifest.json").read_text())
    joined = " ".join(p.text)
    for v in (man["git_sha"], man["data_sha256"], man["data"], "text-oracle"):
        assert v in joined


def test_figures_are_embedded_and_nothing_is_fetched(page):
    _, text, p = page
    imgs = [a["src"] for a in p.all("img")]
    assert len(imgs) >= 3
    for src in imgs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    for _, a in p.tags:  # no external asset of any kind
        for attr in ("src", "href"):
            v = a.get(attr, "")
            assert not v.startswith(("http:", "https:", "//")), v
    assert not p.all("link")


def test_oracle_banner(page):
    _, _, p = page
    banners = [a for _, a in p.tags if a.get("class") == "banner"]
    assert len(banners) == 1 and banners[0]["data-weights"] == "oracle"
    assert "REFERENCE PREDICTOR" in " ".join(p.text)


@pytest.mark.parametrize("weights,shown", [("random", "RANDOM WEIGHTS"), ("real", None),
                                           ("organism (trained here)", "MODEL ORGANISM")])
def test_banner_follows_the_weights(oracle_run, tmp_path, weights, shown):
    run = _copy(oracle_run, tmp_path / "run")
    man = json.loads((run / "manifest.json").read_text())
    man["weights"] = weights
    man["model"]["weights"] = weights
    if weights.startswith("organism"):
        man["model"]["organism"] = {"name": "text-reliant"}
    (run / "manifest.json").write_text(json.dumps(man))
    p = Page(write_report(run, figures=False).read_text())
    if weights.startswith("organism"):  # the title names the organism, not only the model class
        assert "organism text-reliant" in " ".join(p.text)
    banners = [a for _, a in p.tags if a.get("class") == "banner"]
    if shown:
        assert len(banners) == 1 and shown in " ".join(p.text)
    else:
        assert banners == []


def test_hostile_text_is_escaped(page):
    _, text, p = page
    assert "<script>alert" not in text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;quotes&quot;" in text
    assert HOSTILE in " ".join(p.text)  # the browser shows it as text
    assert all("alert" not in s for s in p.scripts)  # the page's only script is its own filter


def test_conflict_browser_rows_and_audio(page, oracle_run):
    import soundfile as sf

    out, text, p = page
    rows = [a for t, a in p.tags if t == "tr" and "data-out" in a]
    assert len(rows) == 4  # the tiny design has four conflict items
    assert all(a["data-out"] == "text" for a in rows)  # the text-oracle follows the words
    # audio is loaded on demand from a path relative to the page, never inlined
    assert "data:audio" not in text and not p.all("audio")
    srcs = [a["data-src"] for a in p.all("button") if "play" in a.get("class", "")]
    assert len(srcs) == 4
    for s in srcs:
        assert not Path(s).is_absolute()
        wav, sr = sf.read(out.parent / s)
        assert sr == 16_000 and len(wav) == 16_000


def test_audio_paths_resolve_from_a_page_elsewhere(oracle_run, tmp_path):
    out = write_report(oracle_run, tmp_path / "elsewhere" / "page.html", figures=False)
    p = Page(out.read_text())
    srcs = [a["data-src"] for a in p.all("button") if "play" in a.get("class", "")]
    assert len(srcs) == 4
    for s in srcs:  # relative to the page, and pointing at the real file
        assert not Path(s).is_absolute()
        assert (out.parent / s).resolve().exists()


def test_report_size_does_not_grow_with_audio(tmp_path):
    """A report of many items stays small: per item a table row, not its audio (was 16-18 MB for the demo)."""
    from tests.fixtures.core import make_tiny_manifest
    from tests.fixtures.reports import write_predict_run

    sizes = {}
    for copies in (1, 8):
        m = make_tiny_manifest(tmp_path / f"d{copies}", seconds=3.0)
        df = pd.read_csv(m, dtype=str, keep_default_na=False)
        big = pd.concat([df.assign(utt_id=df["utt_id"] + f"-{i}") for i in range(copies)], ignore_index=True)
        big.to_csv(m, index=False)
        run = write_predict_run(m, tmp_path / f"run{copies}")
        sizes[copies] = write_report(run, figures=False).stat().st_size
    wav_bytes = 3 * 16_000 * 2
    per_item = (sizes[8] - sizes[1]) / (4 * 7)  # 4 conflict items per copy
    assert per_item < 2_000 < wav_bytes, sizes


def test_fas_experiment_layout(tmp_path, tiny_manifest):
    """Many arms x conflict mixes: one row per arm with a column group per mix, arms in the config's
    order, one accuracy column when every item is a conflict item, arms as a table, one mix at a time."""
    from tests.fixtures.reports import FAS_ARMS, write_fas_experiment_run

    run = write_fas_experiment_run(tiny_manifest, tmp_path / "fas")
    text = write_report(run, figures=False).read_text()
    p = Page(text)
    joined = " ".join(p.text)
    assert "accuracy = follows voice" in joined and "Every scored item is a conflict item" in joined
    pivot = text[text.index("class='grid headline pivot'"):]
    pivot = pivot[:pivot.index("</table>")]
    pos = [pivot.index(f"<th>{a}</th>") for a in FAS_ARMS]
    assert pos == sorted(pos)  # the config's order, not alphabetical
    assert pivot.count("conflict in training") == 3
    assert "[&quot;acoustic-only&quot;" not in text and '["acoustic-only"' not in text  # arms not raw JSON
    assert "labels" in joined and "angry, happy, neutral, sad" in joined  # labels from the rows, not "-"
    heads = [a for t, a in p.tags if t == "th" and "data-g" in a]
    assert len(heads) == 33 and sum("hidden" not in a for a in heads) == 11
    # the audio column first in the conflict-item table
    browse = text[text.index("id='browse'"):]
    assert browse.index("<th>audio</th>") < browse.index("<th>utterance</th>")


def test_compare_table_in_plain_words(tmp_path, oracle_run):
    run = _copy(oracle_run, tmp_path / "run")
    m = json.loads((run / "metrics.json").read_text())
    test = {"b": 3, "c": 1, "statistic": 1.0, "p_value": 0.625, "method": "exact"}
    m["compare"] = {"none": {"shuffled": {"n": 10, "delta_uar": -0.1, "delta_accuracy": -0.2, "delta_macro_f1": -0.1,
                                          "mcnemar": test, "n_conflict": 4, "delta_follows_voice": 0.1,
                                          "delta_follows_text": -0.1, "mcnemar_voice": test, "mcnemar_text": test}}}
    (run / "metrics.json").write_text(json.dumps(m))
    p = Page(write_report(run, figures=False).read_text())
    joined = " ".join(p.text)
    assert "mcnemar" not in joined and "delta_" not in joined
    for words in ("right under the reference only", "McNemar p", "Δ UAR", "against the reference"):
        assert words in joined


def test_errors_and_unknown_metrics_are_shown(oracle_run, tmp_path):
    run = _copy(oracle_run, tmp_path / "run")
    (run / "errors.jsonl").write_text(json.dumps({"unit": "bad|none", "utt_id": "bad<1>", "condition": "none",
                                                  "error": "AudioError: truncated file"}) + "\n")
    m = json.loads((run / "metrics.json").read_text())
    m["errors"] = 1
    m["my_new_probe"] = {"none": {"score": 0.123456, "score_ci": [0.1, 0.2], "mcnemar": {"p_value": 0.04321}}}
    (run / "metrics.json").write_text(json.dumps(m))
    text = write_report(run, figures=False).read_text()
    p = Page(text)
    joined = " ".join(p.text)
    assert "bad<1>" in joined and "bad<1>" not in text  # shown, escaped
    assert "AudioError: truncated file" in joined
    # a metric no code knows: one table with its value, interval and nested key
    assert "my_new_probe" in joined and "0.123" in joined and "[0.100, 0.200]" in joined
    assert "McNemar p" in joined and "0.043" in joined


def test_report_of_a_non_prediction_run(tmp_path):
    from probes.store import RunStore

    run = tmp_path / "inside"
    with RunStore(run) as st:
        st.write_manifest({"probe": "logit-lens", "model": {"name": "tiny", "weights": "random"}, "weights": "random",
                           "data": str(tmp_path / "missing.csv")})
        for i in range(3):
            st.append(f"u{i}", [{"utt_id": f"u{i}", "layer": l, "metric": m, "value": 0.1 * l, "congruent": "false"}
                                for l in range(3) for m in ("p_voice", "p_text")])
    (run / "metrics.json").write_text(json.dumps({"errors": 0, "p_voice_by_layer": {"0": 0.1, "1": 0.2}}))
    p = Page(write_report(run).read_text())
    joined = " ".join(p.text)
    assert "RANDOM WEIGHTS" in joined
    assert "p_voice_by_layer" in joined
    assert len(p.all("img")) == 1  # the depth figure
    assert any(a.get("id") == "rows" for _, a in p.tags)  # the rows are browsable


def test_cli_report_and_figures(oracle_run, tmp_path, capsys):
    from probes.cli import main

    run = _copy(oracle_run, tmp_path / "run")
    assert main(["report", str(run), "--out", str(tmp_path / "r.html")]) == 0
    assert (tmp_path / "r.html").exists()
    assert main(["figures", str(run), "--out", str(tmp_path / "figs")]) == 0
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == [
        "confusion-text.png", "confusion-text.svg", "confusion.png", "confusion.svg", "follows.png", "follows.svg"]
    assert main(["figures"]) == 2
    assert "give run folders" in capsys.readouterr().err


def test_cli_figures_compares_runs(oracle_run, tmp_path):
    from probes.cli import main

    a = _copy(oracle_run, tmp_path / "a")
    b = _copy(oracle_run, tmp_path / "b")
    out = tmp_path / "cmp"
    assert main(["figures", str(a), str(b), "--out", str(out), "--name", "pair", "--compare", "follows"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["pair-follows.png", "pair-follows.svg"]
    assert main(["figures", str(a), str(b), "--out", str(out), "--compare", "bogus"]) == 2


def test_loss_curves_of_many_arms_are_small_multiples():
    """33 arm@mix curves (36 lines on one panel before, colours repeated, legend cut): one panel per
    arm, one colour per mix, the split's line style named in the legend."""
    from probes.plots.training import loss_curves
    from tests.fixtures.reports import FAS_ARMS

    df = pd.DataFrame([{"arm": f"{a}@{m}%", "epoch": e, "split": sp, "loss": 1.0 / (e + 1)}
                       for a in FAS_ARMS for m in (0, 20, 50) for e in range(4) for sp in ("train", "dev")])
    fig = loss_curves(df)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == len(FAS_ARMS) and [ax.get_title() for ax in axes] == list(FAS_ARMS)
    for ax in axes:
        assert len(ax.lines) == 6
        assert len({ln.get_color() for ln in ax.lines}) == 3  # one colour per mix, no repeats
    legend = [t.get_text() for lg in fig.legends for t in lg.get_texts()]
    assert legend == ["0% conflict in training", "20% conflict in training", "50% conflict in training",
                      "train split", "dev split (held out)"]
