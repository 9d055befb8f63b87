"""The HEAR API over every model family: framing, chunking, timestamps, layer choice.

A model family only has to provide (see hear_codec/encodecmae.py):
    sample_rate (24000), frame_hop (samples), first_frame_centre (samples), num_frames(S),
    min_samples (the shortest input that gives one frame),
    chunk_samples, embedding_dim, num_embedding_layers, embed_layers(wav [B, S], padding_mask)
    -> list of [B, T, D].

Long audio is cut into chunks of the model's training length, aligned to its frame grid, that
overlap by ``2 * chunk_context`` seconds; each output frame is taken from the chunk in which it
lies farthest from a cut, so every frame sees at least ``chunk_context`` seconds (default: an
eighth of a chunk, 0.5 s for 4 s chunks) of
context on each side, except at the clip's ends. (The official wrapper cuts 4 s chunks with no
overlap: frames next to a cut see no context across it.)
HEAR batches hold clips of one length, so every clip has the same chunk plan and chunks of
equal length are batched together, ``batch_size`` chunks at a time: memory is bounded by the
batch, not by the clip's length.
"""
from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn

from .codec import SAMPLE_RATE as MODEL_SAMPLE_RATE
from .codec import resample

SUPPORTED_SAMPLE_RATES = (16000, 22050, 44100, 48000)
DEFAULT_SAMPLE_RATE = 48000  # the free HEAR 2021 task downloads are 48 kHz


class HearModel(nn.Module):
    """A model family wrapped for the HEAR API.

    Attributes required by HEAR: ``sample_rate`` (of the input audio), ``scene_embedding_size``
    and ``timestamp_embedding_size``.
    """

    def __init__(self, model: nn.Module, sample_rate: int = DEFAULT_SAMPLE_RATE, layer: int = -1,
                 batch_size: int = 16, precision: str = "fp32", chunk_context: float | None = None):
        super().__init__()
        if sample_rate not in SUPPORTED_SAMPLE_RATES:
            raise ValueError(f"sample_rate must be one of {SUPPORTED_SAMPLE_RATES}, got {sample_rate}")
        n_layers = model.num_embedding_layers
        if not -n_layers <= int(layer) < n_layers:
            raise ValueError(f"layer must be in [{-n_layers}, {n_layers - 1}] for this model, got {layer}")
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        chunk_seconds = model.chunk_samples / MODEL_SAMPLE_RATE
        if chunk_context is None:  # an eighth of a chunk: 0.5 s for the usual 4 s
            chunk_context = chunk_seconds / 8
        if not 0 <= float(chunk_context) < chunk_seconds / 2:
            raise ValueError(f"chunk_context must be in [0, {chunk_seconds / 2}) seconds, got {chunk_context}")
        self.context_frames = round(float(chunk_context) * MODEL_SAMPLE_RATE / model.frame_hop)
        self.model = model.eval()
        self.sample_rate = int(sample_rate)
        self.layer = int(layer)
        self.batch_size = int(batch_size)
        self.precision = precision
        self.scene_embedding_size = model.embedding_dim
        self.timestamp_embedding_size = model.embedding_dim

    # ---- framing ----
    def frame_times_ms(self, num_frames: int, device=None) -> torch.Tensor:
        """Centre of each frame's audio span in milliseconds: [num_frames]."""
        k = torch.arange(num_frames, dtype=torch.float64, device=device)
        centre = self.model.first_frame_centre + k * self.model.frame_hop
        return (centre * 1000.0 / MODEL_SAMPLE_RATE).float()

    def chunk_plan(self, num_samples: int) -> list:
        """Chunks for a clip of ``num_samples`` (at 24 kHz).

        Returns a list of (sample_start, sample_end, first_frame, own_from, own_to): the chunk
        covers samples [start, end), its frame j is global frame first_frame + j, and it supplies
        global frames [own_from, own_to).
        """
        m = self.model
        total = m.num_frames(num_samples)
        per_chunk = m.num_frames(m.chunk_samples)
        if total <= per_chunk:
            return [(0, num_samples, 0, 0, total)]
        step = per_chunk - 2 * self.context_frames
        offsets = list(range(0, total - per_chunk, step)) + [total - per_chunk]
        plan = []
        for i, o in enumerate(offsets):
            start = o * m.frame_hop
            end = min(num_samples, start + m.chunk_samples)
            own_from = 0 if i == 0 else (offsets[i - 1] + per_chunk + o) // 2  # midpoint of the overlap
            own_to = total if i == len(offsets) - 1 else (o + per_chunk + offsets[i + 1]) // 2
            plan.append((start, end, o, own_from, own_to))
        return plan

    # ---- embeddings ----
    def timestamp_embeddings(self, audio: torch.Tensor):
        audio = validate_audio(audio)
        wav = resample(audio, self.sample_rate, MODEL_SAMPLE_RATE)
        m = self.model
        if wav.shape[1] < m.min_samples:  # shorter than one frame: zero-pad to exactly one frame
            wav = nn.functional.pad(wav, (0, m.min_samples - wav.shape[1]))
        total = m.num_frames(wav.shape[1])
        n = wav.shape[0]
        out = torch.empty(n, total, m.embedding_dim, dtype=torch.float32, device=audio.device)
        for start, end, first, own_from, own_to in self.chunk_plan(wav.shape[1]):
            chunk = wav[:, start:end]
            for b in range(0, n, self.batch_size):
                layers = self._embed(chunk[b:b + self.batch_size])
                out[b:b + self.batch_size, own_from:own_to] = layers[:, own_from - first:own_to - first].float()
        timestamps = self.frame_times_ms(total, device=audio.device).expand(n, total).contiguous()
        return out, timestamps

    @torch.no_grad()
    def _embed(self, wav: torch.Tensor) -> torch.Tensor:
        autocast = (torch.autocast(wav.device.type, dtype=torch.bfloat16) if self.precision == "bf16"
                    else nullcontext())
        with autocast:
            return self.model.embed_layers(wav)[self.layer]

    def scene_embeddings(self, audio: torch.Tensor) -> torch.Tensor:
        embeddings, _ = self.timestamp_embeddings(audio)
        return embeddings.mean(dim=1)


def validate_audio(audio) -> torch.Tensor:
    """Check a HEAR input batch: float [n_sounds, n_samples], finite, non-empty. Returns float32."""
    if not isinstance(audio, torch.Tensor):
        raise TypeError(f"audio must be a torch.Tensor, got {type(audio).__name__}")
    if audio.ndim != 2:
        raise ValueError(f"audio must have shape [n_sounds, n_samples], got {tuple(audio.shape)}")
    if not audio.is_floating_point():
        raise TypeError(f"audio must be floating point (float32 in [-1, 1]), got {audio.dtype}")
    if audio.shape[0] == 0:
        raise ValueError("audio batch is empty (n_sounds = 0)")
    if audio.shape[1] == 0:
        raise ValueError("audio has zero length (n_samples = 0)")
    if not torch.isfinite(audio).all():
        raise ValueError("audio contains NaN or Inf values")
    return audio.float()
