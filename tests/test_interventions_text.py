"""Transcript, instruction and activation-side interventions."""

from __future__ import annotations

import pytest

from interventions.activation import AblateSpan, PatchSpan, StreamAblate
from interventions.base import rng_for
from interventions.prompts import render as render_prompt
from interventions.transcript import InstructionVoiceOnly, Transcript, TranscriptNeutral, TranscriptSwap
from probes.adapter import Edit, Example


@pytest.fixture(scope="module")
def data(cue_manifest):
    from probes.data.manifest import Manifest

    return Manifest.read(cue_manifest)


def _ex(data, u):
    return Example(utt_id=u, row=data.row(u))


def test_transcript_is_true_text(data):
    ex = Transcript().apply(_ex(data, "spk_low_sad"), rng=rng_for(0))
    assert ex.transcript == data.row("spk_low_sad")["text"] and ex.meta["transcript_source"] == "self"
    assert ex.transcript in render_prompt("plain", ["sad", "happy"], transcript=ex.transcript)
    with pytest.raises(ValueError, match="no text"):
        Transcript().apply(Example("x", {"text": ""}), rng=rng_for(0))


def test_neutral_transcript(data):
    ex = TranscriptNeutral().apply(_ex(data, "spk_low_sad"), rng=rng_for(0))
    assert ex.transcript == TranscriptNeutral.sentence and ex.meta["transcript_source"] == "neutral"
    assert TranscriptNeutral(sentence="It is Tuesday.").apply(_ex(data, "spk_low_sad"), rng=rng_for(0)).transcript == "It is Tuesday."


def test_transcript_swap_other_sentence_seeded(data):
    iv = TranscriptSwap().fit(data, seed=0)
    texts = {r["utt_id"]: r["text"] for r in data.rows()}
    donors = {}
    for r in data.rows():
        ex = iv.apply(Example(r["utt_id"], r), rng=rng_for(0, r["utt_id"], "swap"))
        d = ex.meta["transcript_source"]
        assert ex.transcript == texts[d] and ex.transcript != r["text"]
        assert data.row(d)["sentence_id"] != r["sentence_id"]
        donors[r["utt_id"]] = d
        again = iv.apply(Example(r["utt_id"], r), rng=rng_for(0, r["utt_id"], "swap"))
        assert again.meta["transcript_source"] == d
    other = {r["utt_id"]: iv.apply(Example(r["utt_id"], r), rng=rng_for(1, r["utt_id"], "swap")).meta["transcript_source"]
             for r in data.rows()}
    assert other != donors
    lab = TranscriptSwap(prefer="other-label").fit(data, seed=0)
    for r in data.rows():
        d = lab.apply(Example(r["utt_id"], r), rng=rng_for(0, r["utt_id"])).meta["transcript_source"]
        assert data.row(d)["semantic_label"] != r["semantic_label"]


def test_voice_only_instruction(data):
    ex = InstructionVoiceOnly().apply(_ex(data, "spk_low_sad"), rng=rng_for(0))
    assert ex.template == "voice-only" and ex.meta["template"] == "voice-only"
    assert "tone of voice" in render_prompt(ex.template, ["sad", "happy"])
    with pytest.raises(KeyError, match="prompts.json"):
        InstructionVoiceOnly(template="nope").apply(_ex(data, "spk_low_sad"), rng=rng_for(0))


def test_ablate_and_stream_edits(data):
    ex = AblateSpan(span="cues", layer=2, mode="mean").apply(_ex(data, "spk_low_sad"), rng=rng_for(0))
    assert ex.edits == (Edit(kind="ablate", span="cues", layer=2, mode="mean"),)
    assert ex.meta["edit"] == "ablate:cues@2/mean"
    both = StreamAblate(span="semantic").apply(ex, rng=rng_for(0))
    assert both.edits == (ex.edits[0], Edit(kind="stream-ablate", span="semantic", layer="input", mode="zero"))
    with pytest.raises(ValueError, match="mode"):
        AblateSpan(mode="noise")
    with pytest.raises(ValueError, match="acoustic"):
        StreamAblate(span="audio")


def test_patch_partner_same_sentence_other_voice(data):
    iv = PatchSpan(span="audio", layer=1).fit(data, seed=0)
    for r in data.rows():
        ex = iv.apply(Example(r["utt_id"], r), rng=rng_for(0, r["utt_id"]))
        src = ex.meta["patch_source"]
        (edit,) = ex.edits
        assert edit == Edit(kind="patch", span="audio", layer=1, source=src) and src != r["utt_id"]
        s = data.row(src)
        assert s["acoustic_label"] != r["acoustic_label"]
        if ex.meta["patch_partner"] == "same-sentence":
            assert s["sentence_id"] == r["sentence_id"]
        else:  # the fallback only when no same-sentence partner with another voice exists
            assert not any(o["sentence_id"] == r["sentence_id"] and o["acoustic_label"] != r["acoustic_label"]
                           for o in data.rows() if o["utt_id"] != r["utt_id"])
    # tiers: a lone sentence falls back to another label, then to anyone
    from probes.data.manifest import Manifest

    tiny = Manifest.from_records([
        dict(utt_id="a", audio_path="a.wav", acoustic_label="sad", sentence_id="s1"),
        dict(utt_id="b", audio_path="b.wav", acoustic_label="sad", sentence_id="s2"),
        dict(utt_id="c", audio_path="c.wav", acoustic_label="angry", sentence_id="s3"),
    ], check_audio=False)
    iv = PatchSpan().fit(tiny, seed=0)
    ex = iv.apply(Example("a", tiny.row("a")), rng=rng_for(0))
    assert (ex.meta["patch_source"], ex.meta["patch_partner"]) == ("c", "other-label")
    iv2 = PatchSpan().fit(tiny.subset(tiny.df["acoustic_label"] == "sad"), seed=0)
    ex = iv2.apply(Example("a", tiny.row("a")), rng=rng_for(0))
    assert (ex.meta["patch_source"], ex.meta["patch_partner"]) == ("b", "any")


def test_cue_placement_variants():
    """The study appends the cue tokens after the question: the default; before is a variant."""
    from interventions.prompts import cue_placement, split_placement, with_placement

    labels = ["sad", "happy"]
    cues = "[energy: high] [pitch: low]"
    for name in ("plain", "voice-only", "with-cues"):
        lines = render_prompt(name, labels, cues=cues).split("\n")
        assert lines[-1] == f"Acoustic cues measured from the recording: {cues}" and "sad, happy" in lines[0]
        assert cue_placement(name) == "after"
        before = render_prompt(with_placement(name, "before"), labels, cues=cues).split("\n")
        assert before[0].endswith(cues) and before[1:] == lines[:-1]
        assert cue_placement(with_placement(name, "before")) == "before"
    assert render_prompt("with-cues-before", labels, cues=cues) == render_prompt("plain+cues-before", labels, cues=cues)
    assert cue_placement("with-cues-before") == "before"
    assert render_prompt("with-cues-before+cues-after", labels, cues=cues) == render_prompt("plain", labels, cues=cues)
    # without cues the placement changes nothing; a transcript goes first either way
    assert render_prompt("plain+cues-before", labels) == render_prompt("plain", labels)
    t = render_prompt("plain", labels, cues=cues, transcript="hello there").split("\n")
    assert t[0].startswith("Transcript") and t[-1].endswith(cues)
    assert split_placement("voice-only+cues-before") == ("voice-only", "before")
    with pytest.raises(KeyError, match="cue placement"):
        render_prompt("plain+cues-middle", labels, cues=cues)
    # the voice-only instruction keeps a placement chosen before it
    ex = InstructionVoiceOnly().apply(Example("x", {}, template="plain+cues-before"), rng=rng_for(0))
    assert ex.template == "voice-only+cues-before" and "tone of voice" in render_prompt(ex.template, labels, cues=cues).split("\n")[1]
