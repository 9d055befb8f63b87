"""A parameter-free HEAR module: log energies in log-spaced frequency bands.

It exists to check the evaluation pipeline (tasks → embeddings → predictions → scores) without
a trained model: on :mod:`hear_codec.evaluation.tasks`'s synthetic tone tasks it should score
near perfectly, so a low score points at the pipeline. Use it like any HEAR module::

    python -m hear_codec.evaluation.embeddings hear_codec.evaluation.spectral_baseline \\
        --tasks-dir tasks --model-options '{"sample_rate": 48000}'

API (HEAR 2021): ``load_model(model_file_path=None, sample_rate=16000)``,
``get_timestamp_embeddings(audio, model)`` and ``get_scene_embeddings(audio, model)``.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn

N_BANDS = 32
WINDOW_SECONDS = 0.05
HOP_SECONDS = 0.025
MIN_FREQ, MAX_FREQ = 100.0, 7800.0  # stays below the 8 kHz Nyquist of 16 kHz audio


class SpectralBands(nn.Module):
    """Band-energy front end; see the module docstring. Holds no trainable parameters."""

    def __init__(self, sample_rate: int = 16000):
        super().__init__()
        self.sample_rate = int(sample_rate)
        self.win_length = int(round(WINDOW_SECONDS * self.sample_rate))
        self.hop_length = int(round(HOP_SECONDS * self.sample_rate))
        self.timestamp_embedding_size = N_BANDS
        self.scene_embedding_size = 2 * N_BANDS  # mean and standard deviation over time
        freqs = torch.fft.rfftfreq(self.win_length, 1.0 / self.sample_rate)
        edges = torch.logspace(torch.log10(torch.tensor(MIN_FREQ)), torch.log10(torch.tensor(MAX_FREQ)), N_BANDS + 1)
        # [n_bins, N_BANDS] 0/1 matrix that sums FFT bins into bands
        bands = (freqs[:, None] >= edges[None, :-1]) & (freqs[:, None] < edges[None, 1:])
        self.register_buffer("bands", bands.float(), persistent=False)
        self.register_buffer("window", torch.hann_window(self.win_length), persistent=False)

    def forward(self, audio: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """audio [n, samples] → (embeddings [n, T, N_BANDS], timestamps [n, T] in ms)."""
        if audio.ndim != 2:
            raise ValueError(f"audio must have shape [n_sounds, n_samples], got {tuple(audio.shape)}")
        # Centre frames on their timestamps: pad half a window on both sides.
        padded = nn.functional.pad(audio, (self.win_length // 2, self.win_length // 2))
        if padded.shape[1] < self.win_length:
            padded = nn.functional.pad(padded, (0, self.win_length - padded.shape[1]))
        frames = padded.unfold(1, self.win_length, self.hop_length)  # [n, T, win]
        power = torch.fft.rfft(frames * self.window, dim=-1).abs() ** 2  # [n, T, bins]
        emb = torch.log(power @ self.bands + 1e-6)
        n_frames = emb.shape[1]
        ts = torch.arange(n_frames, device=audio.device, dtype=torch.float32) * (1000.0 * self.hop_length / self.sample_rate)
        return emb.float(), ts.expand(audio.shape[0], n_frames).contiguous()


def load_model(model_file_path: Optional[str] = None, sample_rate: int = 16000) -> SpectralBands:
    """The model; ``model_file_path`` is accepted for API symmetry and ignored (no weights)."""
    return SpectralBands(sample_rate=sample_rate)


def get_timestamp_embeddings(audio: torch.Tensor, model: SpectralBands) -> Tuple[torch.Tensor, torch.Tensor]:
    """audio [n, samples] → (embeddings [n, T, 32] float32, timestamps [n, T] ms)."""
    return model(audio)


def get_scene_embeddings(audio: torch.Tensor, model: SpectralBands) -> torch.Tensor:
    """audio [n, samples] → embeddings [n, 64] float32 (band mean and std over time)."""
    emb, _ = model(audio)
    return torch.cat([emb.mean(dim=1), emb.std(dim=1, unbiased=False)], dim=1)
