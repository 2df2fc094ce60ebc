"""Importers through the CLI (in-process) and on the real data in ../shared/data (``corpus`` marker)."""

from __future__ import annotations

import json
from collections import Counter

import pandas as pd
import pytest

from probes.cli import main
from probes.data.manifest import Manifest
from probes.registry import CORPORA
from tests.fixtures import corpora as fake


def test_cli_import_then_show(tmp_path, capsys):
    root = fake.make_emodb(tmp_path / "emodb")
    out = tmp_path / "out" / "manifest.csv"
    assert main(["data", "import", "emodb", str(root), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "(6 utterances)" in text and "other=1" in text
    # the written manifest re-anchors audio paths to its own folder and reads back validated
    m = Manifest.read(out)
    assert m.audio_path("03a01Fa").resolve() == (root / "wav" / "03a01Fa.wav").resolve()
    assert main(["data", "show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "6 utterances" in shown and "congruent: false=5, true=1" in shown


def _json_part(out: str) -> dict:
    return json.loads(out[out.index("\n{") + 1:])


def test_cli_show_json_counts(tmp_path, capsys):
    root = fake.make_emodb(tmp_path / "emodb")
    out = tmp_path / "m.csv"
    assert main(["data", "import", "emodb", str(root), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["data", "show", str(out), "--json"]) == 0
    counts = _json_part(capsys.readouterr().out)
    assert counts["acoustic_label"] == {"angry": 1, "disgust": 1, "happy": 1, "neutral": 1, "other": 1, "sad": 1}
    assert counts["congruent"] == {"false": 5, "true": 1}
    assert counts["speaker"] == {"03": 2, "08": 1, "09": 1, "13": 1, "16": 1}


def test_cli_options_and_label_map(tmp_path, capsys):
    root = fake.make_iemocap(tmp_path / "iemocap")
    lm = tmp_path / "map.json"
    lm.write_text(json.dumps({"xxx": "other"}))
    out = tmp_path / "m.csv"
    assert main(["data", "import", "iemocap", str(root), "--out", str(out), "--set", "classes=5",
                 "--set", "excited-as-happy=false", "--label-map", str(lm)]) == 0
    m = Manifest.read(out)
    labels = dict(zip(m.df["utt_id"], m.df["acoustic_label"]))
    assert labels["Ses01F_impro01_F002"] == "other"  # fru in the 5-class set
    assert labels["Ses01F_impro01_M003"] == "other"  # xxx through the label map
    assert "Ses01F_impro01_M001" not in labels  # exc dropped
    capsys.readouterr()
    assert main(["data", "import", "iemocap", str(root), "--out", str(out), "--set", "clases=5"]) == 2
    err = capsys.readouterr().err
    assert "unknown option(s) clases" in err and "classes" in err and "excited_as_happy" in err


def test_cli_wrong_layout_exit_code(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["data", "import", "ravdess", str(tmp_path / "empty"), "--out", str(tmp_path / "m.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("probe: error:") and "does not look like a RAVDESS copy" in err and "Traceback" not in err


# ----------------------------------------------------------------------------- real data
EMODB_COUNTS = {"W": 127, "L": 81, "N": 79, "F": 71, "A": 69, "T": 62, "E": 46}


@pytest.mark.corpus
def test_real_emodb(shared_data):
    m = CORPORA["emodb"].load(shared_data / "emodb")
    assert len(m) == 535
    assert dict(Counter(m.df["raw_label"])) == EMODB_COUNTS
    assert Counter(m.df["acoustic_label"]) == Counter(
        {"angry": 127, "other": 81, "neutral": 79, "happy": 71, "fear": 69, "sad": 62, "disgust": 46})
    assert set(m.df["speaker"]) == {"03", "08", "09", "10", "11", "12", "13", "14", "15", "16"}
    assert m.df["sentence_id"].nunique() == 10 and set(m.df["language"]) == {"de"}
    # congruent exactly when the voice is neutral: the words are neutral throughout
    assert (m.df["congruent"] == "true").sum() == 79
    assert (m.df["recognised"] != "").all()  # every file has its listening-test row
    assert set(m.df.loc[m.df["speaker"].isin(["03", "10", "11", "12", "15"]), "gender"]) == {"m"}


@pytest.mark.corpus
def test_real_emodb_through_cli(shared_data, tmp_path, capsys):
    out = tmp_path / "emodb" / "manifest.csv"
    assert main(["data", "import", "emodb", str(shared_data / "emodb"), "--out", str(out)]) == 0
    assert "(535 utterances)" in capsys.readouterr().out
    assert main(["data", "show", str(out), "--json"]) == 0
    counts = _json_part(capsys.readouterr().out)
    assert counts["acoustic_label"]["angry"] == 127 and counts["acoustic_label"]["other"] == 81
    assert sum(counts["speaker"].values()) == 535


@pytest.mark.corpus
def test_real_emis_names(shared_data):
    from probes.data.corpora.emis import EMIS

    table = shared_data / "emis-predictions" / "aggregated_results_v4_fullLabel.csv"
    df = pd.read_csv(table, dtype=str, keep_default_na=False).drop_duplicates("filename").set_index("filename")
    assert len(df) == 1248
    m = EMIS.from_filenames(df.index, root=table.parent)
    assert len(m) == 1248
    assert Counter(m.df["acoustic_label"]) == Counter(df["wav_emo"])
    assert Counter(m.df["semantic_label"]) == Counter(df["txt_emo"])
    # per file, the name's design equals the table's columns
    names = m.df["utt_id"] + ".wav"
    assert (m.df["acoustic_label"].values == df.loc[names, "wav_emo"].values).all()
    assert (m.df["semantic_label"].values == df.loc[names, "txt_emo"].values).all()
    assert (m.df["explicitness"].values == df.loc[names, "txt_cond"].values).all()
    assert (m.df["tts"].values == df.loc[names, "tts_model"].values).all()
    assert (m.df["congruent"] == "true").sum() == (df["wav_emo"] == df["txt_emo"]).sum()
    assert m.df["sentence_id"].nunique() == 104


@pytest.mark.corpus
def test_real_emis_table_as_root_reads_texts(shared_data):
    m = CORPORA["emis"].load(shared_data / "emis-predictions" / "aggregated_results_v4_fullLabel.csv")
    assert len(m) == 1248 and (m.df["text"] != "").all()
    # one sentence id, one text: the sentence table and the file names agree on the numbering
    assert m.df.groupby("sentence_id")["text"].nunique().max() == 1
    assert m.df["text"].nunique() == 104


def test_cli_relative_corpus_path(tmp_path, monkeypatch, capsys):
    # a relative PATH on the command line must still resolve once the manifest is read elsewhere
    fake.make_emodb(tmp_path / "corpora" / "emodb")
    monkeypatch.chdir(tmp_path / "corpora")
    out = tmp_path / "elsewhere" / "manifest.csv"
    assert main(["data", "import", "emodb", "emodb", "--out", str(out)]) == 0
    monkeypatch.chdir(tmp_path)
    m = Manifest.read(out)  # checks that every audio file exists
    assert m.audio_path("16a05Ta").resolve() == (tmp_path / "corpora" / "emodb" / "wav" / "16a05Ta.wav").resolve()
