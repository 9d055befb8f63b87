"""Kaldi-compatible log mel filterbank, batched, in torch.

EnCodecMAE's mel256 front end is ``torchaudio.compliance.kaldi.fbank``, which cannot be used
with torch 2.13 here (no matching torchaudio build). This is the same computation, written for
a batch of clips and for the GPU, restricted to the options that front end uses: ``snip_edges``
framing, DC removal, pre-emphasis 0.97, a symmetric Hann window, zero-padding to a power of two,
power spectrum, HTK-style triangular mel filters, log with a float epsilon floor, no energy,
no dither. tests/test_fbank.py checks it against the official implementation's output.
"""
from __future__ import annotations

import math

import torch

# EnCodecMAE's framing at 24 kHz: 637-sample windows (26.56 ms) every 318 samples (13.28 ms).
FRAME_LENGTH = 637
FRAME_SHIFT = 318


def mel_scale(freq: torch.Tensor) -> torch.Tensor:
    return 1127.0 * torch.log1p(freq / 700.0)


def kaldi_mel_banks(num_bins: int, n_fft: int, sample_rate: float, low_freq: float, high_freq: float) -> torch.Tensor:
    """Triangular filters on the Kaldi mel scale: [num_bins, n_fft // 2 + 1] (last column zero, as Kaldi)."""
    nyquist = 0.5 * sample_rate
    if high_freq <= 0.0:
        high_freq += nyquist
    fft_bin_width = sample_rate / n_fft
    mel_low, mel_high = mel_scale(torch.tensor(low_freq)), mel_scale(torch.tensor(high_freq))
    mel_delta = (mel_high - mel_low) / (num_bins + 1)
    b = torch.arange(num_bins, dtype=torch.float32).unsqueeze(1)
    left = mel_low + b * mel_delta
    center = mel_low + (b + 1.0) * mel_delta
    right = mel_low + (b + 2.0) * mel_delta
    mel = mel_scale(fft_bin_width * torch.arange(n_fft // 2, dtype=torch.float32)).unsqueeze(0)
    up_slope = (mel - left) / (center - left)
    down_slope = (right - mel) / (right - center)
    banks = torch.clamp(torch.minimum(up_slope, down_slope), min=0.0)
    return torch.nn.functional.pad(banks, (0, 1))


def num_fbank_frames(num_samples: int, frame_length: int, frame_shift: int) -> int:
    """Frames with Kaldi's snip_edges=True: only whole windows."""
    if num_samples < frame_length:
        return 0
    return 1 + (num_samples - frame_length) // frame_shift


class KaldiFbank(torch.nn.Module):
    """wav [batch, samples] -> log mel energies [batch, frames, num_bins].

    Defaults are EnCodecMAE's: 24 kHz, 256 bins, frame ``FRAME_LENGTH`` samples, shift
    ``FRAME_SHIFT`` samples, low 20 Hz. Input is audio in [-1, 1] (no 16-bit rescaling, as in the
    official front end).
    """

    def __init__(self, sample_rate: int = 24_000, num_bins: int = 256, frame_length: int = FRAME_LENGTH,
                 frame_shift: int = FRAME_SHIFT, low_freq: float = 20.0, high_freq: float = 0.0,
                 preemphasis: float = 0.97):
        super().__init__()
        self.frame_length, self.frame_shift, self.preemphasis = frame_length, frame_shift, preemphasis
        self.n_fft = 2 ** math.ceil(math.log2(frame_length))
        # Kaldi's "hanning" is the symmetric Hann window.
        self.register_buffer("window", torch.hann_window(frame_length, periodic=False), persistent=False)
        self.register_buffer("mel_banks", kaldi_mel_banks(num_bins, self.n_fft, sample_rate, low_freq, high_freq),
                             persistent=False)

    def num_frames(self, num_samples: int) -> int:
        return num_fbank_frames(num_samples, self.frame_length, self.frame_shift)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        if wav.shape[-1] < self.frame_length:
            raise ValueError(f"audio of {wav.shape[-1]} samples is shorter than one fbank frame ({self.frame_length})")
        wav = wav.float()
        frames = wav.unfold(-1, self.frame_length, self.frame_shift)  # [B, F, frame_length]
        frames = frames - frames.mean(dim=-1, keepdim=True)
        previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)  # Kaldi replicates sample 0
        frames = (frames - self.preemphasis * previous) * self.window
        spectrum = torch.fft.rfft(frames, n=self.n_fft).abs().pow(2)  # [B, F, n_fft/2 + 1]
        energies = spectrum @ self.mel_banks.T
        return energies.clamp(min=torch.finfo(torch.float32).eps).log()
