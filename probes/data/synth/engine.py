"""libespeak-ng through ctypes: text in, 16 kHz mono float32 out.

The library and its voice data ship inside the ``espeakng-loader`` wheel, so nothing needs a
system package. espeak-ng keeps global state (one voice, one set of parameters, one callback),
so this module keeps one process-wide ``Engine`` behind a lock and sets *every* parameter before
each utterance: a call never inherits the rate or pitch of the previous one.

Footguns written down here:
- The stock variants (``en-us+f3`` ...) add *flutter*, a slow pitch wobble read from a table
  whose index is a static counter that never resets, not even on ``espeak_Initialize``: the same
  text then comes out differently depending on what was spoken before. So the engine runs on its
  own copy of the data folder (links to the wheel's files) and speaks only variant files that
  it writes itself with ``flutter 0`` and no echo; ``Request.variant`` holds that file's text.
- espeak-ng speaks at 22,050 Hz; we resample to 16 kHz (polyphase, deterministic).
- ``espeak_SetVoiceByName`` resets rate / pitch / range / volume to the voice's defaults, so the
  voice is set first and the parameters after it.
- The synth callback must stay referenced from Python for as long as the library may call it.
- Some voice variants (breath, flutter, klatt) draw noise from espeak-ng's own generator; the
  engine reseeds it (``espeak_ng_SetRandSeed``) before every utterance so the same request gives
  the same samples whatever was spoken before in the process.
"""

from __future__ import annotations

import atexit
import ctypes
import hashlib
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np

ESPEAK_RATE = 22_050
OUT_RATE = 16_000

# speak_lib.h constants
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_SSML = 0x10
_ENDPAUSE = 0x1000
_RATE, _VOLUME, _PITCH, _RANGE, _WORDGAP = 1, 2, 3, 4, 7


# the default male en-us voice without flutter (see the module docstring)
PLAIN_VARIANT = "language variant\nname plain\ngender male\nflutter 0\necho 0 0\n"


class SynthError(ValueError):
    """espeak-ng could not speak a request; the message names the text and the fix."""


@dataclass(frozen=True)
class Request:
    """One utterance for espeak-ng. Ranges are espeak's own (see speak_lib.h)."""

    text: str
    variant: str = ""     # the text of an espeak voice-variant file (see voices.py); "" = PLAIN_VARIANT
    rate: int = 175       # words per minute, 80..450
    pitch: int = 50       # base pitch, 0..100 (50 = the voice's own)
    range: int = 50       # pitch range, 0..100 (0 = monotone)
    volume: int = 100     # amplitude, 0..200
    wordgap: int = 0      # extra pause between words, in units of 10 ms


class _Event(ctypes.Structure):
    # only the size matters to us: the callback receives a pointer to an array of these
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", ctypes.c_void_p)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


class Engine:
    """The process-wide espeak-ng instance. Use ``get_engine()``, not the constructor."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError:
            raise SynthError(
                "the synthetic corpus needs the espeakng-loader package (libespeak-ng in a wheel); "
                "install it with `pip install espeakng-loader==0.2.4`."
            ) from None
        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.stock = Path(espeakng_loader.get_data_path())
        self.home = _private_data_dir(self.stock)
        data = str(self.home).encode()
        sr = self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, ctypes.c_char_p(data), 0)
        if sr != ESPEAK_RATE:
            raise SynthError(f"libespeak-ng failed to initialise (returned {sr}) with data at {data.decode()}; reinstall espeakng-loader.")
        self._chunks: list[np.ndarray] = []
        self._cb = _CALLBACK(self._collect)  # keep a reference: the library holds a raw pointer
        self._lib.espeak_SetSynthCallback(self._cb)
        self._lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self._lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self._lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                           ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        self._lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        self._lock = threading.Lock()

    def _variant_name(self, body: str) -> str:
        """Write a variant file named by its content (so espeak can never serve a stale one)."""
        name = "dz" + hashlib.sha1(body.encode()).hexdigest()[:16]
        path = self.home / "voices" / "!v" / name
        if not path.exists():
            path.write_text(body)
        return name

    def _collect(self, wav, n, events) -> int:
        if n > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0  # 0 = go on synthesising

    def speak(self, req: Request) -> np.ndarray:
        """Return int16 samples at 22,050 Hz. # [time]"""
        text = req.text.strip()
        if not any(ch.isalnum() for ch in text):
            raise SynthError(f"cannot speak {req.text!r}: the text has no letters or digits; give a non-empty sentence.")
        with self._lock:
            voice = "en-us+" + self._variant_name(req.variant or PLAIN_VARIANT)
            if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise SynthError(f"espeak-ng could not load voice {voice!r} from {self.home}; reinstall espeakng-loader.")
            for param, value in ((_RATE, req.rate), (_PITCH, req.pitch), (_RANGE, req.range),
                                 (_VOLUME, req.volume), (_WORDGAP, req.wordgap)):
                self._lib.espeak_SetParameter(param, int(value), 0)
            self._lib.espeak_ng_SetRandSeed(0)
            self._chunks = []
            buf = text.encode("utf-8") + b"\0"
            err = self._lib.espeak_Synth(buf, len(buf), 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _ENDPAUSE, None, None)
            self._lib.espeak_Synchronize()
            chunks, self._chunks = self._chunks, []
        if err != 0:
            raise SynthError(f"espeak-ng failed (error {err}) on {req.text!r}.")
        wav = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
        if wav.size == 0 or int(np.abs(wav).max()) == 0:
            raise SynthError(f"espeak-ng produced no sound for {req.text!r} (volume {req.volume}); "
                             "check the text and that volume > 0.")
        return wav


def _private_data_dir(stock: Path) -> Path:
    """A temporary espeak-ng data folder: links to the wheel's files, an empty variant folder."""
    home = Path(tempfile.mkdtemp(prefix="dissonance-espeak-"))
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    for entry in stock.iterdir():
        if entry.name == "voices":
            continue
        try:
            os.symlink(entry, home / entry.name)
        except OSError:  # no symlinks (some Windows setups): copy instead
            (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, home / entry.name)
    (home / "voices" / "!v").mkdir(parents=True)
    return home


def stock_variant(name: str) -> str:
    """The text of one of the wheel's own voice variants (``m3``, ``f2``...)."""
    import espeakng_loader

    path = Path(espeakng_loader.get_data_path()) / "voices" / "!v" / name
    if not path.exists():
        raise SynthError(f"espeak-ng has no stock variant {name!r} in {path.parent}; pick one of the files there.")
    return path.read_text(errors="replace")


_ENGINE: Engine | None = None
_ENGINE_LOCK = threading.Lock()


def get_engine() -> Engine:
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            _ENGINE = Engine()
        return _ENGINE


def to_16k(wav: np.ndarray) -> np.ndarray:
    """int16 at 22,050 Hz -> float32 in [-1, 1] at 16,000 Hz. # [time]"""
    from scipy.signal import resample_poly

    g = gcd(ESPEAK_RATE, OUT_RATE)
    x = wav.astype(np.float32) / 32768.0
    return resample_poly(x, OUT_RATE // g, ESPEAK_RATE // g).astype(np.float32)


def speak(req: Request) -> np.ndarray:
    """Speak one request; float32 samples at 16 kHz. # [time]"""
    return to_16k(get_engine().speak(req))
