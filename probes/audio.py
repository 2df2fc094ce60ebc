"""Reading audio safely: one clear error per bad file, never a stack trace from a decoder.

Policy, the same on every path that reads audio:
- unreadable / truncated / not audio -> AudioError naming the file; a WAV whose body is shorter
  than its header announces (a copy cut short) is truncated, not a shorter sound;
- empty (0 samples) or all-silent (peak below 1e-5) -> AudioError (a silent *intervention* is
  made in memory and never read back, so a silent file on disk is a broken file);
- NaN or inf samples -> AudioError;
- stereo or more channels -> averaged to mono;
- any sample rate -> resampled to what the caller asks for (16 kHz by default);
- longer than ``max_seconds`` -> AudioError under ``too_long="error"`` (default), cut under
  ``"truncate"``; adapters that can chunk do so themselves and say so in their docstring.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SAMPLE_RATE = 16_000
SILENCE_PEAK = 1e-5


class AudioError(ValueError):
    """A file that cannot be used as audio; the message names the file and the fix."""


def load_audio(
    path: str | Path,
    sr: int = SAMPLE_RATE,
    *,
    max_seconds: float | None = None,
    too_long: str = "error",
) -> np.ndarray:
    """Return mono float32 samples at ``sr``. # [time]"""
    import soundfile as sf

    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: file not found; check the manifest's audio_path (relative paths are read from the manifest's folder).")
    check_wav_length(path)
    try:
        wav, file_sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises several types for broken headers and bodies
        raise AudioError(f"{path}: cannot be read as audio ({_one_line(e)}); re-export it as 16-bit PCM wav or drop the row.") from None
    wav = wav.mean(axis=1) if wav.shape[1] > 1 else wav[:, 0]
    check_samples(wav, path)
    if file_sr != sr:
        import librosa

        wav = librosa.resample(wav, orig_sr=file_sr, target_sr=sr).astype(np.float32)
    if max_seconds is not None and len(wav) > max_seconds * sr:
        if too_long == "truncate":
            wav = wav[: int(max_seconds * sr)]
        else:
            raise AudioError(
                f"{path}: {len(wav) / sr:.1f} s is longer than the model accepts ({max_seconds:.1f} s); "
                "cut it, or pass --too-long truncate."
            )
    return np.ascontiguousarray(wav, dtype=np.float32)


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text or type(e).__name__


def check_wav_length(path: str | Path) -> None:
    """A WAV file cut short (a copy that stopped, a full disk) still opens and reads as a shorter
    sound; its ``data`` chunk header says how many bytes there should be. Raise AudioError naming
    the file when the body is shorter than that, or when the header itself is cut."""
    import struct

    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
                if head[:4] in (b"RIFF", b"RIFX"):
                    raise AudioError(f"{path}: the WAV header is cut short ({size} bytes in all); copy the file again or drop the row.")
                return  # not a RIFF/WAVE file: the decoder judges it
            endian = "<" if head[:4] == b"RIFF" else ">"
            pos = 12
            while True:
                ch = f.read(8)
                if len(ch) < 8:
                    raise AudioError(f"{path}: the WAV file ends before its audio data begins ({size} bytes in all); "
                                     "copy the file again or drop the row.")
                cid, csize = ch[:4], struct.unpack(endian + "I", ch[4:])[0]
                pos += 8
                if cid == b"data":
                    if csize in (0, 0xFFFFFFFF):  # streamed writers leave the size open
                        return
                    have = size - pos
                    if have < csize:
                        raise AudioError(
                            f"{path}: truncated: its header announces {csize} bytes of audio, the file holds {max(have, 0)}; "
                            "copy or export it again, or drop the row."
                        )
                    return
                pos += csize + (csize & 1)
                if pos > size:
                    raise AudioError(f"{path}: the WAV file ends inside its {cid.decode('latin-1')!r} chunk; "
                                     "copy the file again or drop the row.")
                f.seek(pos)
    except OSError as e:
        raise AudioError(f"{path}: cannot be opened ({_one_line(e)}); check the file's permissions.") from None


def check_samples(wav: np.ndarray, path: str | Path = "<memory>") -> None:
    if wav.size == 0:
        raise AudioError(f"{path}: the file holds no samples; re-export it or drop the row.")
    if not np.all(np.isfinite(wav)):
        raise AudioError(f"{path}: the file holds NaN or inf samples; re-export it or drop the row.")
    if float(np.max(np.abs(wav))) < SILENCE_PEAK:
        raise AudioError(f"{path}: the file is silent (peak below {SILENCE_PEAK:g}); re-record it or drop the row.")


def write_wav(path: str | Path, wav: np.ndarray, sr: int = SAMPLE_RATE) -> None:
    """16-bit PCM, mono; clips to [-1, 1]."""
    import soundfile as sf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(np.asarray(wav, dtype=np.float32), -1.0, 1.0), sr, subtype="PCM_16")


def content_hash(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes: the key of every feature cache."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
