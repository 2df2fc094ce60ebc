"""Model organisms: small Qwen2-Audio models whose reliance on the words is set by their training.

An organism is a real ``Qwen2AudioForConditionalGeneration`` whose audio tower is the real Whisper
tiny.en encoder (8 s window), whose vocabulary is the real Qwen one (trimmed to the ids used, with
an id map), and whose projector and 4-block decoder were trained here to answer the emotion
question (``train.py``; weights in ``weights/``). The words reach it only as a transcript in its
prompt: **a decoder trained from scratch cannot read words out of audio states**, so its reliance
on the words is reliance on the transcript span. Its answers are those of a model trained on a
small synthetic corpus, not of Qwen2-Audio: runs say ``weights: organism (trained here)``.

- ``text-reliant``: trained with the words' label on every training item (only the transcript predicts it);
- ``voice-reliant``: trained with the voice's label, each prompt carrying another item's transcript;
- ``congruent``: trained on congruent items only (which cue it takes is left to training).

The words' meaning enters inside the model: its ``embed_tokens`` (``model.OrganismEmbedding``)
adds a projected, frozen MiniLM sentence embedding of the transcript to the transcript span's
tokens, so it generalises to sentences never seen in training (FINDINGS lesson 8).

``load("qwen2-audio", "text-reliant")`` returns the ALMAdapter; every probe takes it
(``probe run predict --model qwen2-audio --organism text-reliant --data M``). docs/organisms.md
has the measured reliance, the causal ground truth and the instruments checked against it.
"""

from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).with_name("weights")
FAMILIES = ("qwen2-audio",)
_LOADED: dict = {}


class OrganismError(FileNotFoundError):
    """An organism that cannot be loaded (unknown family or name, missing or mismatched weights).

    A FileNotFoundError so that the CLI prints it as one line, as it does for other weights."""


def names() -> list[str]:
    """Organisms with committed weights."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.safetensors"))


def load(family: str, name: str, *, answer_mode: str = "closed", weights_dir: str | Path | None = None):
    """The organism ``name`` of ``family`` as an ALMAdapter (built once per process and answer mode).

    Raises OrganismError naming the known families / organisms and how to train a missing one."""
    import json

    if family not in FAMILIES:
        raise OrganismError(f"no organisms of model family {family!r}: organisms exist for {', '.join(FAMILIES)} "
                         "(use --model qwen2-audio --organism NAME)")
    wdir = Path(weights_dir) if weights_dir else WEIGHTS_DIR
    path = wdir / f"{name}.safetensors"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in wdir.glob("*.safetensors"))) or "none"
        raise OrganismError(f"organism {name!r}: no weights at {path} (known: {known}); train it with "
                         f"`python -m probes.models.organisms.train --name {name}`")
    key = (str(path.resolve()), answer_mode)
    if key in _LOADED:
        return _LOADED[key]
    from safetensors import safe_open
    from safetensors.torch import load_file

    from probes.models.organisms.model import WEIGHTS, WINDOW_S, OrganismQwen2Audio, build_body
    from probes.models.organisms.vocab import TrimmedTokenizer

    tok = TrimmedTokenizer.load(wdir / "vocab.json")
    with safe_open(str(path), "pt") as f:
        info = json.loads((f.metadata() or {}).get("organism", "{}"))
    model, fe = build_body(tok)
    sd = load_file(str(path))
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.startswith("model.audio_tower")]
    if missing or unexpected:
        raise OrganismError(f"{path}: weights do not fit the organism body (missing {missing[:3]}, unexpected {unexpected[:3]}); "
                         "retrain with `python -m probes.models.organisms.train`")
    a = OrganismQwen2Audio(model.eval(), tok, fe, weights=WEIGHTS, source=f"organism {name} ({path.name})",
                           answer_mode=answer_mode)
    a.max_seconds = float(WINDOW_S)
    a.organism = {"name": name, **{k: info[k] for k in ("about", "items", "transcript", "target", "embed", "seed") if k in info}}
    _LOADED[key] = a
    return a


__all__ = ["load", "names", "OrganismError", "FAMILIES", "WEIGHTS_DIR"]
