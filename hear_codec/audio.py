"""Audio files in, float32 mono at any rate out: the one audio reader of hear_codec.

    info = audio_info("clip.flac")                      # header only: frames, sample_rate, channels
    wav, sr = read_audio("clip.ogg")                    # [samples] float32 at the file's own rate
    wav, sr = read_audio("clip.wav", sample_rate=24000) # mixed down and resampled: sr == 24000
    wav, sr = read_audio("long.wav", 24000, start=60.0, duration=4.0)   # a segment
    for block in stream_audio("long.flac", 24000):      # [<= BLOCK_FRAMES] float32 blocks, in order
        ...
    files = find_audio_files("folder")                  # every file below it with an AUDIO_EXTENSIONS suffix

Any format soundfile (libsndfile) decodes works: WAV, FLAC, OGG/Vorbis and Opus, MP3 (libsndfile
>= 1.1), AIFF, CAF, ... Channels are mixed down by their mean. Resampling is the polyphase
filter of :func:`resample` (scipy's resample_poly design), done in float64.

Files are decoded, mixed down and resampled in blocks of BLOCK_FRAMES samples (:class:`Resampler`
carries the filter's overlap from one block to the next), so reading a 2-hour recording holds a
few blocks, not the recording: :func:`stream_audio` yields the blocks; :func:`read_audio`
assembles them into one array, equal to resampling the whole file at once up to float rounding.

Every failure (missing, unreadable or corrupt file, no samples, NaN/Inf samples, samples beyond
MAX_ABS_SAMPLE, a rate that needs an unreasonable filter) raises :class:`AudioReadError`, a
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
BLOCK_FRAMES = 1 << 20  # samples per channel decoded at a time: 22 s at 48 kHz, 8 MB of stereo float32
# Samples beyond this are not audio (HEAR audio is in [-1, 1]; int32 PCM values passed unscaled are
# 2e9): a mel front end squares them and overflows float32 from about 1e16, giving NaN embeddings.
MAX_ABS_SAMPLE = 1e12
# The longest resampling filter designed (16 MB in float64). Standard rates need a few thousand
# taps (44.1 -> 24 kHz: 2941); two rates with no common factor need 20 x the larger one
# (1,000,003 Hz: 20 million taps, seconds and a gigabyte before a sample comes out).
MAX_FILTER_TAPS = 1 << 21


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
    segment [start, start + duration) (shorter at the end of the file). Decoded in blocks
    (:func:`stream_audio`): the peak memory is the result and a few blocks. Raises AudioReadError.
    """
    stream = stream_audio(path, sample_rate, start=start, duration=duration)
    expected = stream.num_samples
    out = np.empty(expected, dtype=np.float32)
    filled, extra = 0, []
    for block in stream:  # a header can misstate a compressed file's length: the blocks decide
        take = min(len(block), expected - filled)
        out[filled:filled + take] = block[:take]
        filled += take
        if take < len(block):
            extra.append(block[take:])
    wav = np.concatenate([out[:filled]] + extra) if extra else out[:filled]
    return torch.from_numpy(wav), stream.sample_rate


class AudioStream:
    """A file decoded, mixed down and resampled block by block: iterate for [n] float32 blocks.

    ``sample_rate`` is the rate of the blocks; ``num_samples`` the number of samples they will hold
    in all, as the header tells (a compressed file's decoder may deliver a few more or fewer; the
    blocks are what it delivered). Iterating raises AudioReadError naming the file.
    """

    def __init__(self, path, sample_rate: int | None, start: float, duration: float | None, block_frames: int):
        self.path, self.block_frames = path, int(block_frames)
        info = audio_info(path)
        self.source_rate = info.sample_rate
        self.sample_rate = info.sample_rate if sample_rate is None else int(sample_rate)
        self.first = min(int(start * info.sample_rate), max(0, info.frames - 1))
        # One extra sample so that resampling has context at the end; trimmed below.
        count = info.frames - self.first
        if duration is not None:
            count = min(count, int(math.ceil(duration * info.sample_rate)) + 1)
        self.source_frames = count
        self.limit = None if duration is None else int(round(duration * self.sample_rate))
        try:
            self.resampler = Resampler(self.source_rate, self.sample_rate)
        except ValueError as e:
            raise AudioReadError(f"{path}: {e}") from e
        n = self.resampler.output_length(count)
        self.num_samples = n if self.limit is None else min(n, self.limit)

    def __iter__(self):
        path, resampler = self.path, self.resampler.reset()
        produced, decoded = 0, 0
        try:
            with sf.SoundFile(str(path)) as f:
                f.seek(self.first)
                while decoded < self.source_frames:
                    data = f.read(min(self.block_frames, self.source_frames - decoded), dtype="float32",
                                  always_2d=True)
                    if len(data) == 0:
                        break
                    decoded += len(data)
                    _check_samples(path, data)
                    out = resampler.push(_mixdown(data))
                    produced, out = self._trim(produced, out)
                    if len(out):
                        yield out
            if decoded == 0:
                raise AudioReadError(f"{path}: no samples")
            produced, out = self._trim(produced, resampler.finish())
            if len(out):
                yield out
        except AudioReadError:
            raise
        except Exception as e:  # soundfile raises LibsndfileError / RuntimeError / OSError / TypeError
            raise AudioReadError(f"{path}: cannot read audio ({_reason(e)})") from e

    def _trim(self, produced: int, out: np.ndarray) -> tuple:
        if self.limit is not None:
            out = out[:max(0, self.limit - produced)]
        return produced + len(out), out


def stream_audio(path: str | os.PathLike, sample_rate: int | None = None, *, start: float = 0.0,
                 duration: float | None = None, block_frames: int = BLOCK_FRAMES) -> AudioStream:
    """The file ``path`` as blocks of float32 mono samples at ``sample_rate`` (None: the file's), each
    from about ``block_frames`` decoded samples: the same samples as :func:`read_audio`, in order.
    The header is read now (AudioReadError if it cannot be); the samples as the blocks are iterated."""
    return AudioStream(path, sample_rate, start, duration, block_frames)


def _mixdown(data: np.ndarray) -> np.ndarray:
    """[frames, channels] -> [frames]: the channels' mean. Stereo as (left + right) * 0.5, the same
    float32 numbers as ``mean(axis=1)`` and about 10x faster (mean's strided reduction is a third of
    the time of preparing a stereo corpus)."""
    if data.shape[1] == 1:
        return data[:, 0]
    if data.shape[1] == 2:
        return (data[:, 0] + data[:, 1]) * np.float32(0.5)
    return data.mean(axis=1)


def _check_samples(path, data: np.ndarray) -> None:
    """Raise AudioReadError unless every sample of ``data`` is finite and within MAX_ABS_SAMPLE."""
    peak = float(np.abs(data).max(initial=0.0))
    if not math.isfinite(peak):
        raise AudioReadError(f"{path}: NaN or Inf samples")
    if peak > MAX_ABS_SAMPLE:
        raise AudioReadError(f"{path}: samples up to {peak:.3g}, beyond ±{MAX_ABS_SAMPLE:.0e}: not audio "
                             "(float audio is in [-1, 1]); the model's float32 arithmetic would overflow")


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
    ratio = _ratio(orig_sr, target_sr)
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


def _ratio(orig_sr: int, target_sr: int) -> Fraction:
    """target_sr / orig_sr in lowest terms; ValueError if its filter would exceed MAX_FILTER_TAPS."""
    if int(orig_sr) <= 0 or int(target_sr) <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} and {target_sr}")
    ratio = Fraction(int(target_sr), int(orig_sr))
    taps = 20 * max(ratio.numerator, ratio.denominator) + 1
    if ratio != 1 and taps > MAX_FILTER_TAPS:
        raise ValueError(f"resampling {orig_sr} Hz to {target_sr} Hz needs a {taps:,}-tap filter (the two rates "
                         f"share no large factor; at most {MAX_FILTER_TAPS:,} are designed): convert the audio "
                         "to a standard rate such as 48000 Hz first")
    return ratio


_FILTERS: dict = {}


def _polyphase_filter(up: int, down: int) -> torch.Tensor:
    """The low-pass that scipy.signal.resample_poly designs: Kaiser(5.0), 10 zero crossings, gain
    ``up``; 20 max(up, down) + 1 taps (callers check :func:`_ratio` first)."""
    key = (up, down)
    if key not in _FILTERS:
        from scipy.signal import firwin

        max_rate = max(up, down)
        half_len = 10 * max_rate
        h = firwin(2 * half_len + 1, 1.0 / max_rate, window=("kaiser", 5.0)) * up
        _FILTERS[key] = torch.tensor(h, dtype=torch.float64)
    return _FILTERS[key]


class Resampler:
    """:func:`resample` of a signal that arrives in blocks: push blocks, get the output samples
    that they complete; finish() gives the rest. The result equals resampling the whole signal
    at once (scipy's resample_poly, zero outside the signal) up to float rounding.

    Output j is sum_i x[i] h[j down + H - i up] (h: the 2H + 1 taps of :func:`_polyphase_filter`),
    so it needs inputs up to (j down + H) / up: each push computes the outputs whose inputs have
    all arrived, with scipy's upfirdn on the inputs they need, and keeps only the inputs that a
    later output still needs (about 2H / up of them: the filter's state across block edges).
    """

    def __init__(self, orig_sr: int, target_sr: int):
        ratio = _ratio(orig_sr, target_sr)
        self.up, self.down = ratio.numerator, ratio.denominator
        if ratio != 1:
            self.taps = _polyphase_filter(self.up, self.down).numpy()
            self.half = (len(self.taps) - 1) // 2
        self.reset()

    def reset(self) -> "Resampler":
        self.kept = np.zeros(0)  # float64 inputs from index self.kept_from on
        self.kept_from = 0
        self.received = 0  # inputs pushed
        self.emitted = 0  # outputs returned
        return self

    def output_length(self, num_inputs: int) -> int:
        """ceil(num_inputs * up / down): the length resample gives."""
        return -(-num_inputs * self.up // self.down)

    def push(self, block: np.ndarray) -> np.ndarray:
        """[n] float32 inputs -> [m] float32 outputs (m may be 0)."""
        if self.up == self.down:
            self.received += len(block)
            return block
        self.kept = np.concatenate([self.kept, block.astype(np.float64)])
        self.received += len(block)
        ready = max(self.emitted, -(-(self.received * self.up - self.half) // self.down))
        return self._emit(ready)

    def finish(self) -> np.ndarray:
        """The outputs after the last input (the filter runs into the zeros beyond the signal)."""
        if self.up == self.down:
            return np.zeros(0, dtype=np.float32)
        return self._emit(self.output_length(self.received))

    def _emit(self, end: int) -> np.ndarray:
        from scipy.signal import upfirdn

        start, up, down, half = self.emitted, self.up, self.down, self.half
        if end <= start:
            return np.zeros(0, dtype=np.float32)
        first = max(0, -(-(start * down - half) // up))  # the first input output ``start`` needs
        last = min(self.received, ((end - 1) * down + half) // up + 1)
        x = self.kept[first - self.kept_from:last - self.kept_from]
        # upfirdn is causal (output m sees inputs up to m down / up): shift the filter by ``pad``
        # zeros and drop ``skip`` outputs so that its output ``skip`` is output ``start``.
        offset = start * down + half - first * up
        skip = -(-offset // down)
        taps = np.concatenate([np.zeros(skip * down - offset), self.taps])
        y = upfirdn(taps, x, up, down)[skip:skip + end - start]
        if len(y) < end - start:  # outputs whose inputs all lie beyond the signal's end
            y = np.concatenate([y, np.zeros(end - start - len(y))])
        self.emitted = end
        keep_from = max(0, -(-(end * down - half) // up))  # the first input a later output needs
        self.kept = self.kept[keep_from - self.kept_from:] if keep_from > self.kept_from else self.kept
        self.kept_from = max(self.kept_from, keep_from)
        return y.astype(np.float32)
