"""Corpus importers on fake copies of their official layouts (tests/fixtures/corpora.py).

For every importer: known answers for specific files (label, speaker, sentence id, split,
text), the label_map option, a wrong layout and an unknown label code each give one clear
error. The contract test loops over the registry, so a new importer is checked on registration.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from probes.data.corpora.base import CorpusError
from probes.data.manifest import Manifest
from probes.labels import CANONICAL, LabelError
from probes.registry import CORPORA, summary
from tests.fixtures import corpora as fake


def row(m: Manifest, utt: str) -> dict:
    return m.row(utt)


# ----------------------------------------------------------------------------- contract
@pytest.mark.parametrize("name", CORPORA.names())
def test_contract(name, tmp_path):
    cls = CORPORA[name]
    assert summary(cls), f"{name} needs a docstring whose first line says what it is"
    assert cls.mapping and set(cls.mapping.values()) <= set(CANONICAL)
    assert cls.__module__.split(".")[-1] != "base" and cls.layout
    with pytest.raises(CorpusError) as e:
        cls.load(tmp_path, no_such_option=1)
    assert "no_such_option" in str(e.value) and "label_map" in str(e.value) and "check_audio" in str(e.value)


def test_missing_path_and_bad_label_map(tmp_path):
    with pytest.raises(CorpusError, match="no such file or folder"):
        CORPORA["emodb"].load(tmp_path / "nope")
    root = fake.make_emodb(tmp_path / "emodb")
    with pytest.raises(CorpusError, match="not canonical"):
        CORPORA["emodb"].load(root, label_map={"L": "bored"})
    with pytest.raises(CorpusError, match="is not a bool"):
        CORPORA["emodb"].load(root, neutral_text="maybe")


# ----------------------------------------------------------------------------- per corpus
def test_emodb(tmp_path):
    m = CORPORA["emodb"].load(fake.make_emodb(tmp_path / "emodb"))
    assert len(m) == 6
    r = row(m, "03a01Fa")
    assert (r["acoustic_label"], r["semantic_label"], r["congruent"]) == ("happy", "neutral", "false")
    assert (r["speaker"], r["sentence_id"], r["language"], r["gender"]) == ("03", "a01", "de", "m")
    assert r["text"] == "Der Lappen liegt auf dem Eisschrank." and r["recognised"] == "90.00"
    assert row(m, "08b10Lc")["acoustic_label"] == "other"  # boredom
    assert row(m, "09b03Na")["congruent"] == "true"
    assert row(m, "13a07Ed")["acoustic_label"] == "disgust" and row(m, "13a07Ed")["gender"] == "f"
    assert {r["acoustic_label"] for r in m.rows()} == {"happy", "angry", "other", "sad", "neutral", "disgust"}
    m2 = CORPORA["emodb"].load(tmp_path / "emodb", neutral_text=False)
    assert set(m2.df["semantic_label"]) == {""} and set(m2.df["congruent"]) == {""}


def test_emodb_is_neutral_by_design_and_carries_bored(tmp_path):
    from probes.labels import manifest_extra_labels

    m = CORPORA["emodb"].load(fake.make_emodb(tmp_path / "emodb"))
    assert set(m.df["text_design"]) == {"neutral"}
    assert row(m, "08b10Lc")["extra_label"] == "bored" and row(m, "08b10Lc")["acoustic_label"] == "other"
    assert row(m, "03a01Fa")["extra_label"] == ""
    assert manifest_extra_labels(m) == {"bored": "other"}  # the mapping a run offers and scores, visible
    assert "extra_label" not in CORPORA["emodb"].load(tmp_path / "emodb", extra_labels={}).df
    # overridable: another name for the same code; canonical names are refused
    assert manifest_extra_labels(CORPORA["emodb"].load(tmp_path / "emodb", extra_labels={"L": "boredom"})) == {"boredom": "other"}
    with pytest.raises(CorpusError, match="already canonical"):
        CORPORA["emodb"].load(tmp_path / "emodb", extra_labels={"L": "sad"})


def test_a_run_on_emodb_offers_bored_and_says_the_text_is_neutral_by_design(tmp_path):
    import json

    from probes.probe import run_probe
    from probes.registry import MODELS, PROBES

    m = CORPORA["emodb"].load(fake.make_emodb(tmp_path / "emodb"))
    model = MODELS["voice-oracle"]()
    out = run_probe(PROBES["predict"](), model, m, tmp_path / "run", progress=False)
    man = json.loads((out / "manifest.json").read_text())
    assert man["extra_labels"] == {"bored": "other"} and "bored" in model.labels
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["neutral_text_by_design"] == ["emodb"]
    s = metrics["conditions"]["none"]
    # every non-neutral EmoDB recording is a neutral-text item, none an emotional conflict
    assert s["n_emotional_conflict"] == 0 and s["n_neutral_text"] == s["n_conflict"] == 5
    from probes.store import read_rows

    rows = read_rows(out).set_index("utt_id")  # the type is recorded on every row
    assert rows.loc["09b03Na", "conflict_type"] == "congruent" and rows.loc["03a01Fa", "conflict_type"] == "neutral-text"


def test_emis(tmp_path):
    m = CORPORA["emis"].load(fake.make_emis(tmp_path / "emis"))
    assert len(m) == 4
    r = row(m, "05_sad_implicit_neutral_0012_STYLE")
    assert (r["acoustic_label"], r["semantic_label"], r["congruent"]) == ("neutral", "sad", "false")
    assert (r["sentence_id"], r["explicitness"], r["speaker"], r["tts"]) == ("sad-implicit-05", "implicit", "0012", "STYLE")
    assert r["text"] == "s5 sad implicit"
    r = row(m, "26_neutral_sad_0020_F5TTS")
    assert (r["sentence_id"], r["explicitness"], r["text"], r["semantic_label"]) == ("neutral-26", "neutral", "n26 neutral", "neutral")
    assert row(m, "01_angry_explicit_angry_0011_COSY")["congruent"] == "true"
    assert m.audio_path("01_angry_explicit_angry_0011_COSY").exists()


def test_emis_from_filenames_without_audio(tmp_path):
    from probes.data.corpora.emis import EMIS, parse_name

    assert parse_name("26_neutral_sad_0020_F5TTS.wav")["explicitness"] == "neutral"
    with pytest.raises(CorpusError, match="explicit/implicit"):
        parse_name("03_happy_sad_0011_COSY.wav")
    m = EMIS.from_filenames(["02_happy_explicit_sad_0015_STYLE.wav", "02_happy_explicit_sad_0015_STYLE.wav",
                             "07_neutral_happy_0019_COSY.wav"])
    assert len(m) == 2 and row(m, "07_neutral_happy_0019_COSY")["acoustic_label"] == "happy"


def test_ravdess(tmp_path):
    m = CORPORA["ravdess"].load(fake.make_ravdess(tmp_path / "rav"))
    assert len(m) == 5
    r = row(m, "03-01-05-01-02-01-12")
    assert (r["acoustic_label"], r["speaker"], r["gender"], r["sentence_id"]) == ("angry", "Actor_12", "f", "s02")
    assert r["text"] == "Dogs are sitting by the door." and r["intensity"] == "normal" and r["channel"] == "speech"
    assert row(m, "03-01-02-02-01-02-12")["acoustic_label"] == "neutral"  # calm, default
    assert row(m, "03-01-08-02-02-02-07")["acoustic_label"] == "surprise" and row(m, "03-01-08-02-02-02-07")["gender"] == "m"
    assert row(m, "03-02-03-01-01-01-12")["channel"] == "song"
    other = CORPORA["ravdess"].load(tmp_path / "rav", calm="other")
    assert row(other, "03-01-02-02-01-02-12")["acoustic_label"] == "other"
    dropped = CORPORA["ravdess"].load(tmp_path / "rav", calm="drop", channel="speech")
    assert set(dropped.df["utt_id"]) == {"03-01-05-01-02-01-12", "03-01-01-01-01-01-07", "03-01-08-02-02-02-07"}
    with pytest.raises(CorpusError, match="must be one of"):
        CORPORA["ravdess"].load(tmp_path / "rav", calm="sleepy")


def test_crema_d(tmp_path):
    m = CORPORA["crema-d"].load(fake.make_crema_d(tmp_path / "crema"))
    assert len(m) == 4
    r = row(m, "1001_DFA_ANG_XX")
    assert (r["acoustic_label"], r["speaker"], r["sentence_id"], r["gender"], r["age"]) == ("angry", "1001", "DFA", "m", "51")
    assert r["text"] == "Don't forget a jacket." and r["level"] == "unspecified"
    assert row(m, "1002_TSI_NEU_XX")["congruent"] == "true" and row(m, "1002_TSI_NEU_XX")["gender"] == "f"
    assert row(m, "1091_WSI_FEA_LO")["acoustic_label"] == "fear" and row(m, "1091_WSI_FEA_LO")["gender"] == ""


def test_emovo(tmp_path):
    m = CORPORA["emovo"].load(fake.make_emovo(tmp_path / "emovo"))
    assert len(m) == 5 and set(m.df["language"]) == {"it"}
    r = row(m, "dis-f1-b1")
    assert (r["acoustic_label"], r["speaker"], r["sentence_id"], r["gender"]) == ("disgust", "f1", "b1", "f")
    assert (r["text"], r["sentence_type"]) == ("Gli operai si alzano presto.", "short")
    assert row(m, "rab-m3-n5")["sentence_type"] == "nonsense" and row(m, "neu-m3-d2")["text"].endswith("?")
    assert [row(m, u)["acoustic_label"] for u in ("gio-f1-l3", "rab-m3-n5", "neu-m3-d2", "sor-m3-b2")] == \
        ["happy", "angry", "neutral", "surprise"]
    shutil.move(tmp_path / "emovo" / "m3" / "rab-m3-n5.wav", tmp_path / "emovo" / "f1" / "rab-m3-n5.wav")
    with pytest.raises(CorpusError, match="folder is f1"):
        CORPORA["emovo"].load(tmp_path / "emovo")


def test_esd(tmp_path):
    m = CORPORA["esd"].load(fake.make_esd(tmp_path / "esd"))
    assert len(m) == 4
    r = row(m, "0011_000351")
    assert (r["acoustic_label"], r["speaker"], r["split"], r["sentence_id"], r["language"]) == ("angry", "0011", "train", "en-001", "en")
    assert r["text"] == "The sun rose early." and r["semantic_label"] == ""
    assert row(m, "0011_000001")["sentence_id"] == "en-001" and row(m, "0011_000001")["split"] == "test"
    r = row(m, "0011_001402")
    assert (r["acoustic_label"], r["split"], r["sentence_id"]) == ("surprise", "dev", "en-002")  # 1402 = 4 x 350 + 2
    r = row(m, "0003_001051")
    assert (r["acoustic_label"], r["language"], r["sentence_id"], r["text"]) == ("sad", "zh", "zh-001", "今天天气很好。")


def test_iemocap(tmp_path):
    root = fake.make_iemocap(tmp_path / "iemocap")
    m = CORPORA["iemocap"].load(root)
    # 4-class: fru and xxx dropped, exc counted as happy
    assert set(m.df["utt_id"]) == {"Ses01F_impro01_F000", "Ses01F_impro01_M001", "Ses05M_script01_1_F000", "Ses05M_script01_1_M001"}
    r = row(m, "Ses01F_impro01_M001")
    assert (r["acoustic_label"], r["raw_label"], r["speaker"], r["session"], r["gender"]) == ("happy", "exc", "Ses01M", "1", "m")
    assert (r["text"], r["valence"], r["arousal"], r["split"]) == ("Do you have your forms?", "4.0000", "3.5000", "")
    assert row(m, "Ses05M_script01_1_F000")["speaker"] == "Ses05F" and row(m, "Ses05M_script01_1_F000")["acoustic_label"] == "angry"
    assert row(m, "Ses05M_script01_1_F000")["text"] == ""  # no transcription file for that dialog
    strict = CORPORA["iemocap"].load(root, excited_as_happy=False)
    assert "Ses01F_impro01_M001" not in set(strict.df["utt_id"])
    five = CORPORA["iemocap"].load(root, classes=5, test_session=5)
    assert row(five, "Ses01F_impro01_F002")["acoustic_label"] == "other" and len(five) == 5
    assert row(five, "Ses05M_script01_1_M001")["split"] == "test" and row(five, "Ses01F_impro01_F000")["split"] == "train"
    everything = CORPORA["iemocap"].load(root, classes="all", excited_as_happy=False)
    assert row(everything, "Ses01F_impro01_M001")["acoustic_label"] == "other" and len(everything) == 5  # xxx dropped


def test_meld(tmp_path):
    m = CORPORA["meld"].load(fake.make_meld(tmp_path / "meld"))
    assert len(m) == 4
    r = row(m, "train_dia0_utt0")
    assert (r["acoustic_label"], r["speaker"], r["split"], r["sentiment"], r["season"]) == ("surprise", "Phoebe", "train", "negative", "8")
    assert r["text"] == "Oh my God, he's lost it." and r["semantic_label"] == ""
    assert row(m, "train_dia0_utt1")["acoustic_label"] == "happy"
    assert (row(m, "dev_dia0_utt0")["acoustic_label"], row(m, "dev_dia0_utt0")["split"]) == ("angry", "dev")
    assert row(m, "test_dia3_utt2")["split"] == "test" and m.audio_path("test_dia3_utt2").exists()
    (tmp_path / "meld" / "test" / "dia3_utt2.wav").unlink()
    from probes.data.manifest import ManifestError

    with pytest.raises(ManifestError, match="dia3_utt2.wav"):
        CORPORA["meld"].load(tmp_path / "meld")
    assert len(CORPORA["meld"].load(tmp_path / "meld", missing_audio="drop")) == 3


def test_case(tmp_path):
    root = fake.make_case(tmp_path / "case")
    m = CORPORA["case"].load(root)
    assert len(m) == 4 and set(m.df["split"]) == {"test"}
    r = row(m, "001")
    assert (r["acoustic_label"], r["semantic_label"], r["congruent"], r["language"]) == ("angry", "happy", "false", "zh")
    assert r["context"] == "praise said through clenched teeth" and m.audio_path("001").name == "001.wav"
    r = row(m, "003")
    assert (r["acoustic_label"], r["semantic_label"], r["language"]) == ("disgust", "surprise", "en")
    assert row(m, "004")["semantic_label"] == "other"  # tension
    assert row(CORPORA["case"].load(root / "metadata.csv", label_map={"tension": "fear"}), "004")["semantic_label"] == "fear"
    (root / "other.csv").write_text("a,b\n1,2\n")
    (root / "metadata.csv").rename(root / "labels.csv")
    with pytest.raises(CorpusError, match="cannot tell which table"):
        CORPORA["case"].load(root)
    assert len(CORPORA["case"].load(root, metadata="labels.csv")) == 4


def test_generic(tmp_path):
    root = fake.make_generic(tmp_path / "gen")
    m = CORPORA["generic"].load(root / "data.jsonl", corpus_name="mine")
    assert len(m) == 3 and set(m.df["corpus"]) == {"mine"}
    r = row(m, "u2")
    assert (r["acoustic_label"], r["semantic_label"], r["congruent"], r["split"], r["speaker"]) == ("angry", "happy", "false", "dev", "s2")
    assert row(m, "u1")["text"] == "hello" and row(m, "u1")["length"] == "0.1" and row(m, "u1")["semantic_label"] == ""
    assert row(m, "u3")["congruent"] == "true"
    import pandas as pd

    pd.read_json(root / "data.jsonl", lines=True).to_csv(root / "data.csv", index=False)
    assert CORPORA["generic"].load(root / "data.csv").df["acoustic_label"].tolist() == ["neutral", "angry", "happy"]


# ----------------------------------------------------------------------------- shared behaviour
# (corpus, builder, utt, raw code, the label_map target) for the label_map test
LABEL_MAP_CASES = [
    ("emodb", fake.make_emodb, "08b10Lc", "L", "sad"),
    ("emis", fake.make_emis, "02_happy_explicit_sad_0015_STYLE", "sad", "fear"),
    ("ravdess", fake.make_ravdess, "03-01-05-01-02-01-12", "05", "disgust"),
    ("crema-d", fake.make_crema_d, "1001_DFA_ANG_XX", "ANG", "other"),
    ("emovo", fake.make_emovo, "sor-m3-b2", "sor", "fear"),
    ("esd", fake.make_esd, "0011_001402", "Surprise", "happy"),
    ("iemocap", fake.make_iemocap, "Ses01F_impro01_F002", "fru", "angry"),  # fru is dropped unless mapped
    ("meld", fake.make_meld, "dev_dia0_utt0", "anger", "disgust"),
    ("case", fake.make_case, "002", "fear", "surprise"),
    ("generic", fake.make_generic, "u1", "neu", "sad"),
]


def _path(name: str, root: Path) -> Path:
    return root / "data.jsonl" if name == "generic" else root


@pytest.mark.parametrize("name,make,utt,raw,target", LABEL_MAP_CASES, ids=[c[0] for c in LABEL_MAP_CASES])
def test_label_map(name, make, utt, raw, target, tmp_path):
    root = make(tmp_path / name)
    before = CORPORA[name].load(_path(name, root))
    m = CORPORA[name].load(_path(name, root), label_map={raw: target})
    assert row(m, utt)["acoustic_label"] == target
    # only that raw code moved: rows with any other raw code keep their label
    old = before.df.set_index("utt_id")["acoustic_label"]
    for r in m.rows():
        if r["raw_label"] != raw:
            assert r["acoustic_label"] == old[r["utt_id"]]
    dropped = CORPORA[name].load(_path(name, root), label_map={raw: ""})
    assert utt not in set(dropped.df["utt_id"])


def _bad_emodb(root):
    shutil.copy(root / "wav" / "03a01Fa.wav", root / "wav" / "03a01Xa.wav")


def _bad_emis(root):
    shutil.copy(next(root.rglob("*.wav")), root / "03_happy_explicit_bored_0011_COSY.wav")


def _bad_ravdess(root):
    shutil.copy(root / "Actor_12" / "03-01-05-01-02-01-12.wav", root / "Actor_12" / "03-01-09-01-02-01-12.wav")


def _bad_crema(root):
    shutil.copy(root / "AudioWAV" / "1001_DFA_ANG_XX.wav", root / "AudioWAV" / "1001_DFA_BOR_XX.wav")


def _bad_emovo(root):
    shutil.copy(root / "f1" / "dis-f1-b1.wav", root / "f1" / "ans-f1-b1.wav")


def _bad_esd(root):
    shutil.copytree(root / "Emotion Speech Dataset" / "0011" / "Angry", root / "Emotion Speech Dataset" / "0011" / "Bored")


def _bad_iemocap(root):
    f = root / "Session5" / "dialog" / "EmoEvaluation" / "Ses05M_script01_1.txt"
    f.write_text(f.read_text().replace("\tsad\t", "\tzzz\t"))


def _bad_meld(root):
    f = root / "dev_sent_emo.csv"
    f.write_text(f.read_text().replace("anger", "annoyance"))


def _bad_case(root):
    f = root / "metadata.csv"
    f.write_text(f.read_text().replace("neutral,tension", "neutral,boredom"))


def _bad_generic(root):
    f = root / "data.jsonl"
    f.write_text(f.read_text().replace('"hap", "semantic"', '"bliss", "semantic"'))


BAD_LABEL = {"emodb": (fake.make_emodb, _bad_emodb, "'X'"), "emis": (fake.make_emis, _bad_emis, "'bored'"),
             "ravdess": (fake.make_ravdess, _bad_ravdess, "'09'"), "crema-d": (fake.make_crema_d, _bad_crema, "'BOR'"),
             "emovo": (fake.make_emovo, _bad_emovo, "'ans'"), "esd": (fake.make_esd, _bad_esd, "'Bored'"),
             "iemocap": (fake.make_iemocap, _bad_iemocap, "'zzz'"), "meld": (fake.make_meld, _bad_meld, "'annoyance'"),
             "case": (fake.make_case, _bad_case, "'boredom'"), "generic": (fake.make_generic, _bad_generic, "'bliss'")}


@pytest.mark.parametrize("name", sorted(BAD_LABEL))
def test_unknown_label_code_is_one_clear_error(name, tmp_path):
    make, spoil, code = BAD_LABEL[name]
    root = make(tmp_path / name)
    spoil(root)
    with pytest.raises(LabelError) as e:
        CORPORA[name].load(_path(name, root))
    msg = str(e.value)
    assert code in msg and "--label-map" in msg and str(root) in msg  # names the label, the file and the fix


@pytest.mark.parametrize("name", sorted(BAD_LABEL))
def test_wrong_layout_is_one_clear_error(name, tmp_path):
    # a folder of wavs with names no corpus uses
    fake.tone(tmp_path / "junk" / "recording one.wav")
    (tmp_path / "junk" / "notes.csv").write_text("x,y\n1,2\n")
    target = tmp_path / "junk" / ("notes.csv" if name == "generic" else "")
    with pytest.raises(CorpusError) as e:
        CORPORA[name].load(target)
    assert "does not look like" in str(e.value) and "expected" in str(e.value)


def test_emodb_wrong_layout_message(tmp_path):
    fake.tone(tmp_path / "wav" / "hello.wav")
    with pytest.raises(CorpusError) as e:
        CORPORA["emodb"].load(tmp_path)
    assert "hello.wav" in str(e.value) and "03a01Fa.wav" in str(e.value)
    with pytest.raises(CorpusError) as e:
        CORPORA["emodb"].load(tmp_path / "wav" / "hello.wav")
    assert "does not look like an EmoDB copy" in str(e.value) and "expected wav/ with files like 03a01Fa.wav" in str(e.value)
