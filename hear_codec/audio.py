"""Audio files in, float32 mono at any rate out: the one audio reader of hear_codec.

    info = audio_info("clip.flac")                      # header only: frames, sample_rate, channels
    wav, sr = read_audio("clip.ogg")                    # [samples] float32 at the file's own rate
    wav, sr = read_audio("clip.wav", sample_rate=24000) # mixed down and resampled: sr == 24000
    wav, sr = read_audio("long.wav", 24000, start=60.0, duration=4.0)   # a segment
    files = find_audio_files("folder")                  # every file below it with an AUDIO_EXTENSIONS suffix

Any format soundfile (libsndfile) decodes works: WAV, FLAC, OGG/Vorbis and Opus, MP3 (libsndfile
>= 1.1), AIFF, CAF, ... Channels are mixed down by their mean. Resampling is
:func:`resample` (a polyphase filter, below), done in float64. Every failure (missing,
unreadable or corrupt file, no samples, NaN/Inf samples) raises :class:`AudioReadError`, a
ValueError whose message names the file.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from .codec import SAMPLE_RATE
from .errors import AudioReadError

# Suffixes treated as audio when a folder is searched (explicitly named files are read whatever
# their suffix).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".aifc", ".au", ".snd",
                    ".caf", ".w64", ".rf64", ".wv")


@dataclass(frozen=True)
class AudioInfo:
    frames: int  # samples per channel, at the file's rate
    sample_rate: int
    channels: int

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate

    def frames_at(self, sample_rate: int) -> int:
        """Samples per channel after resampling to ``sample_rate`` (what :func:`read_audio` returns)."""
        return math.ceil(self.frames * sample_rate / self.sample_rate)


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """The file's header (nothing is decoded). Raises AudioReadError."""
    try:
        info = sf.info(str(path))
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError / OSError / TypeError
        raise AudioReadError(f"{path}: cannot read audio ({_reason(e)})") from e
    if info.samplerate <= 0:
        raise AudioReadError(f"{path}: sample rate {info.samplerate} in the header")
    if info.frames <= 0:
        raise AudioReadError(f"{path}: no samples")
    return AudioInfo(int(info.frames), int(info.samplerate), int(info.channels))


def read_audio(path: str | os.PathLike, sample_rate: int | None = None, *, start: float = 0.0,
               duration: float | None = None) -> tuple:
    """Decode a file: (wav [samples] float32 mono in the file's range, sample rate).

    sample_rate: resample to this rate (None: keep the file's). start, duration: seconds, to read a
    segment [start, start + duration) (shorter at the end of the file). Raises AudioReadError.
    """
    try:
        with sf.SoundFile(str(path)) as f:
            rate = f.samplerate
            first = min(int(start * rate), max(0, f.frames - 1))
            # One extra sample so that resampling has context at the end; trimmed below.
            count = -1 if duration is None else int(math.ceil(duration * rate)) + 1
            f.seek(first)
            data = f.read(count, dtype="float32", always_2d=True)
    except Exception as e:
        raise AudioReadError(f"{path}: cannot read audio ({_reason(e)})") from e
    if data.size == 0:
        raise AudioReadError(f"{path}: no samples")
    if not np.isfinite(data).all():
        raise AudioReadError(f"{path}: NaN or Inf samples")
    wav = torch.from_numpy(data.mean(axis=1) if data.shape[1] > 1 else data[:, 0])
    target = rate if sample_rate is None else int(sample_rate)
    if target != rate:
        wav = resample(wav.double(), rate, target).float()
    if duration is not None:
        wav = wav[:int(round(duration * target))]
    return wav.contiguous(), target


def find_audio_files(folder: str | os.PathLike) -> list:
    """Every file below ``folder`` whose suffix is in AUDIO_EXTENSIONS (any case), sorted."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())


def _reason(error: Exception) -> str:
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


# ---------------------------------------------------------------- resampling

def resample(wav: torch.Tensor, orig_sr: int, target_sr: int = SAMPLE_RATE) -> torch.Tensor:
    """Band-limited polyphase resampling along the last axis (scipy's resample_poly design).

    48 kHz -> 24 kHz is an exact polyphase decimation by 2 with a Kaiser-windowed low-pass;
    16 kHz -> 24 kHz is up 3, down 2. CPU tensors go through scipy's C implementation (about 3x
    faster than a one-channel conv1d here); other devices run the same filter in torch.
    wav: [..., samples] -> [..., ceil(samples * target_sr / orig_sr)], same dtype and device.
    """
    if orig_sr == target_sr:
        return wav
    ratio = Fraction(int(target_sr), int(orig_sr))
    if wav.device.type == "cpu":
        from scipy.signal import resample_poly

        out = resample_poly(wav.detach().numpy(), ratio.numerator, ratio.denominator, axis=-1)
        return torch.from_numpy(out).to(wav.dtype)
    return _resample_torch(wav, ratio.numerator, ratio.denominator)


def _resample_torch(wav: torch.Tensor, up: int, down: int) -> torch.Tensor:
    """Zero-stuff by ``up``, low-pass, keep every ``down``-th sample: resample_poly in torch."""
    taps = _polyphase_filter(up, down).to(device=wav.device, dtype=wav.dtype)
    shape = wav.shape
    x = wav.reshape(-1, 1, shape[-1])
    n_out = -(-shape[-1] * up // down)
    if up > 1:
        stuffed = x.new_zeros(x.shape[0], 1, shape[-1] * up)
        stuffed[..., ::up] = x
        x = stuffed
    half = (taps.numel() - 1) // 2
    # conv1d is a correlation; the filter is symmetric so this is the convolution, centred.
    y = torch.nn.functional.conv1d(torch.nn.functional.pad(x, (half, half)), taps.view(1, 1, -1), stride=down)
    return y[..., :n_out].reshape(*shape[:-1], -1)


_FILTERS: dict = {}


def _polyphase_filter(up: int, down: int) -> torch.Tensor:
    """The low-pass that scipy.signal.resample_poly designs: Kaiser(5.0), 10 zero crossings, gain ``up``."""
    key = (up, down)
    if key not in _FILTERS:
        from scipy.signal import firwin

        max_rate = max(up, down)
        half_len = 10 * max_rate
        h = firwin(2 * half_len + 1, 1.0 / max_rate, window=("kaiser", 5.0)) * up
        _FILTERS[key] = torch.tensor(h, dtype=torch.float64)
    return _FILTERS[key]
