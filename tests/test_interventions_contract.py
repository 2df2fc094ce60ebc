"""Every registered intervention keeps the contract: a new intervention is checked on registration."""

from __future__ import annotations

import dataclasses
import inspect
import json
import sys

import numpy as np
import pytest

from interventions.base import Intervention, rng_for
from probes.adapter import Example
from probes.registry import INTERVENTIONS

NAMES = INTERVENTIONS.names()

EXPECTED = {
    "cues-aligned", "cues-shuffled", "cues-conflicting", "cues-corrupted", "transcript", "transcript-neutral",
    "transcript-swap", "instruction-voice-only", "audio-silence", "audio-noise", "audio-lowpass", "audio-reverse",
    "audio-flatten-f0", "ablate-span", "patch-span", "stream-ablate",
}


def test_all_names_registered():
    assert EXPECTED <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_contract(name, cue_manifest, cue_cache):
    from probes.audio import load_audio
    from probes.data.manifest import Manifest

    cls = INTERVENTIONS[name]
    assert issubclass(cls, Intervention) and dataclasses.is_dataclass(cls)
    assert cls.__dataclass_params__.frozen
    assert (cls.__doc__ or "").strip() and (inspect.getdoc(sys.modules[cls.__module__]) or "").strip()
    assert cls.side in ("prompt", "audio", "text", "activation")
    kw = {"cache_dir": str(cue_cache)} if "cache_dir" in {f.name for f in dataclasses.fields(cls)} else {}
    iv = cls(**kw)
    json.dumps(iv.config())                                  # the config goes into run manifests
    data = Manifest.read(cue_manifest)
    assert iv.fit(data, seed=0) is iv
    row = data.row(3)
    audio = load_audio(data.audio_path(3)) if cls.needs_audio else None
    ex = Example(utt_id=row["utt_id"], row=row, audio=audio, meta={"keep": 1})
    out = iv.apply(ex, rng=rng_for(0, row["utt_id"], name))
    assert isinstance(out, Example) and out.utt_id == ex.utt_id
    assert ex.meta == {"keep": 1} and out.meta["keep"] == 1      # a new dict, the old one untouched
    assert len(out.meta) > 1                                     # something was recorded
    json.dumps(out.meta)
    if cls.side == "audio":
        assert out.audio is not ex.audio and len(out.audio) == len(audio)
    else:
        assert out.audio is ex.audio
    if cls.side == "activation":
        assert len(out.edits) == 1 and (out.cues, out.transcript, out.template) == (None, None, "plain")
    else:
        assert out.edits == ()


def test_listing_shows_all(capsys):
    from probes.cli import main

    assert main(["list", "interventions"]) == 0
    listed = {ln.split()[0] for ln in capsys.readouterr().out.splitlines() if ln.strip()}
    assert EXPECTED <= listed


def test_module_import_is_light():
    """The registry imports every intervention module on `probe list`: no torch, no opensmile there."""
    import subprocess

    code = ("import sys; from probes.registry import INTERVENTIONS; INTERVENTIONS.names(); "
            "print(sorted(m for m in ('torch', 'transformers', 'opensmile', 'pyworld', 'scipy', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_determinism_of_seeded_ones(cue_manifest, cue_cache):
    from probes.data.manifest import Manifest

    data = Manifest.read(cue_manifest)
    row = data.row(5)
    audio = np.zeros(16000, dtype=np.float32) + 0.1
    for name in ("transcript-swap", "patch-span", "cues-corrupted", "audio-noise"):
        cls = INTERVENTIONS[name]
        kw = {"cache_dir": str(cue_cache)} if "cache_dir" in {f.name for f in dataclasses.fields(cls)} else {}
        iv = cls(**kw).fit(data, seed=0)
        ex = Example(row["utt_id"], row, audio=audio)
        a = iv.apply(ex, rng=rng_for(0, row["utt_id"], name))
        b = iv.apply(ex, rng=rng_for(0, row["utt_id"], name))
        assert a.meta == b.meta and a.cues == b.cues and a.transcript == b.transcript
        assert (a.audio is None and b.audio is None) or np.array_equal(a.audio, b.audio)
