"""The HEAR API over every model family: framing, chunk plans, precision, layer choice.

A model family only has to provide what :class:`ModelFamily` lists (EncodecMAE and AudioFormer
do; tests/test_api.py checks both).

Chunk plans
-----------
A clip longer than the training crop (4 s) is embedded in chunks. :func:`plan_chunks` covers it
with the fewest chunks of one common length, no longer than the crop, spread evenly over the
clip, consecutive chunks overlapping by ``2 * context`` frames (or by a few frames more where
the arithmetic rounds up); each frame is taken from the chunk in which it lies farther from a
cut, so it keeps at least ``context`` frames on each side, except at the clip's ends. Timestamp
embeddings use ``chunk_context`` (default: a sixteenth of a chunk, 0.25 s of 4 s: at most 1.16
chunk-seconds per audio-second); scene embeddings, a mean over every frame, use no context (at
most 1.01). docs/embedding.md measures what context buys and why these are the defaults. The
official wrapper cuts non-overlapping 4 s chunks, recomputes nothing, but gives frames next to
a cut no context across it and drops tails of 2048 samples or fewer; nothing is dropped here.

Chunks of the same length, from every clip of a call, run through the model together,
``batch_size`` at a time: memory is bounded by the batch, not by the clip's length.

Precision
---------
``precision="auto"`` (the default) runs the transformer in bf16 (autocast) only where that is
measured to be clearly faster: on a CPU, the model's own matmul shapes are timed in fp32 and
bf16 at the first use on this machine, and the decision is cached per machine, torch version
and thread count (hear_codec/precision.py); on CUDA, bf16 where the device runs it natively. It
is resolved for the device the model is on when embeddings are computed:
``resolved_precision``, which also says why. Front ends always run in fp32.
"""
from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from . import precision as precision_lib
from .audio import MAX_ABS_SAMPLE, resample
from .codec import SAMPLE_RATE as MODEL_SAMPLE_RATE

SUPPORTED_SAMPLE_RATES = (16000, 22050, 44100, 48000)
DEFAULT_SAMPLE_RATE = 48000  # the free HEAR 2021 task downloads are 48 kHz
PRECISIONS = ("auto", "fp32", "bf16")
DEFAULT_CONTEXT_FRACTION = 1 / 16  # of a chunk, kept on each side of a cut for timestamp embeddings
# Chunks per forward pass when batch_size is not given. CPU: 16 x 4 s chunks fill two cores and
# peak at ~1.5 GB for EnCodecMAE-base (benchmarks/embed_throughput.py). CUDA: as many as fit in
# CUDA_MEMORY_SHARE of the device's free memory, from the memory one chunk is measured to take
# (HearModel.effective_batch_size), at most MAX_CUDA_BATCH_SIZE.
CPU_BATCH_SIZE = 16
CUDA_MEMORY_SHARE = 0.5  # the rest: the caller's tensors, the allocator's fragmentation
MAX_CUDA_BATCH_SIZE = 1024  # 68 min of audio per forward: beyond it a GPU gains nothing more



@runtime_checkable
class ModelFamily(Protocol):
    """What :class:`HearModel` needs of a model (an ``nn.Module``). Lengths are samples at the
    model's rate."""

    sample_rate: int  # the rate the model runs at (24000)
    frame_hop: int  # frame k covers [k * frame_hop, k * frame_hop + frame_window); its timestamp is the centre
    frame_window: int
    min_samples: int  # the shortest input that gives one frame
    chunk_samples: int  # the training crop: longer audio is embedded in chunks no longer than this
    embedding_dim: int
    num_embedding_layers: int

    def num_frames(self, num_samples: int) -> int:
        """Frames of an input of ``num_samples``."""

    def embed_layers(self, wav: torch.Tensor, padding_mask: torch.Tensor | None = None,
                     num_layers: int | None = None) -> list:
        """wav [B, S]; padding_mask [B, T] bool (True = padding frame) -> the first ``num_layers``
        (default: all) layers' embeddings, each [B, T, embedding_dim]; later layers are not run."""


# ---------------------------------------------------------------- chunk plans

@dataclass(frozen=True)
class Chunk:
    first_frame: int  # global index of the chunk's frame 0
    own_from: int  # global frames [own_from, own_to) are taken from this chunk
    own_to: int


@dataclass(frozen=True)
class ChunkPlan:
    total_frames: int
    chunk_frames: int  # every chunk has this many frames
    chunks: tuple

    @property
    def computed_frames(self) -> int:
        return self.chunk_frames * len(self.chunks)

    @property
    def compute_ratio(self) -> float:
        """Frames computed per frame of the clip (chunk-seconds per audio-second)."""
        return self.computed_frames / self.total_frames


def plan_chunks(total_frames: int, max_frames: int, context_frames: int = 0) -> ChunkPlan:
    """The fewest chunks of equal length <= ``max_frames`` that cover ``total_frames`` frames, with
    at least ``context_frames`` frames of context on each side of every cut.

    k chunks of length L overlapping by 2c cover k L - (k - 1) 2c frames, so
    k = ceil((F - 2c) / (C - 2c)) and L = ceil((F + (k - 1) 2c) / k); chunk i starts at
    floor(i (F - L) / (k - 1)), so consecutive starts differ by floor or ceil of the same step and
    every overlap is >= 2c. A cut falls in the middle of its overlap.
    """
    if total_frames < 1:
        raise ValueError(f"a clip has at least one frame, got {total_frames}")
    if not 0 <= 2 * context_frames < max_frames:
        raise ValueError(f"context of {context_frames} frames on each side leaves nothing of a "
                         f"{max_frames}-frame chunk")
    if total_frames <= max_frames:
        return ChunkPlan(total_frames, total_frames, (Chunk(0, 0, total_frames),))
    overlap = 2 * context_frames
    k = math.ceil((total_frames - overlap) / (max_frames - overlap))
    length = math.ceil((total_frames + (k - 1) * overlap) / k)
    starts = [i * (total_frames - length) // (k - 1) for i in range(k)]
    cuts = [0] + [(nxt + start + length) // 2 for start, nxt in zip(starts, starts[1:])] + [total_frames]
    return ChunkPlan(total_frames, length, tuple(Chunk(s, a, b) for s, a, b in zip(starts, cuts, cuts[1:])))


# ---------------------------------------------------------------- options

def check_int(name: str, value, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int in [low, high], or a ValueError naming the option and what it allows."""
    allowed = "an integer" + (f" in [{low}, {high}]" if high is not None else f" >= {low}" if low is not None else "")
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"option {name!r} must be {allowed}, got {value!r} ({type(value).__name__})")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"option {name!r} must be {allowed}, got {value}")
    return int(value)


def check_choice(name: str, value, choices):
    if value not in choices:
        raise ValueError(f"option {name!r} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def check_seconds(name: str, value, below: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < below:
        raise ValueError(f"option {name!r} must be a number of seconds in [0, {below:g}), got {value!r}")
    return float(value)


# ---------------------------------------------------------------- the wrapper

class HearModel(nn.Module):
    """A model family wrapped for the HEAR API.

    Attributes required by HEAR: ``sample_rate`` (of the input audio), ``scene_embedding_size``
    and ``timestamp_embedding_size``. ``resolved_precision`` is the precision the next call runs in.
    """

    def __init__(self, model: ModelFamily, sample_rate: int = DEFAULT_SAMPLE_RATE, layer: int = -1,
                 batch_size: int | None = None, precision: str = "auto", chunk_context: float | None = None):
        super().__init__()
        n_layers = model.num_embedding_layers
        chunk_seconds = model.chunk_samples / MODEL_SAMPLE_RATE
        self.sample_rate = check_choice("sample_rate", sample_rate, SUPPORTED_SAMPLE_RATES)
        self.layer = check_int("layer", layer, -n_layers, n_layers - 1)
        self.batch_size = None if batch_size is None else check_int("batch_size", batch_size, 1)
        self.precision = check_choice("precision", precision, PRECISIONS)
        chunk_context = chunk_seconds * DEFAULT_CONTEXT_FRACTION if chunk_context is None else chunk_context
        self.chunk_context = check_seconds("chunk_context", chunk_context, chunk_seconds / 2)
        self.model = model.eval()
        self.scene_embedding_size = model.embedding_dim
        self.timestamp_embedding_size = model.embedding_dim
        self._fitted_batch_sizes = {}  # (device, precision) -> chunks per forward on a GPU
        self._precisions = {}  # (device, precision, layer) -> the resolved Precision

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def effective_batch_size(self, device: torch.device) -> int:
        """Chunks per forward pass on ``device``: ``batch_size`` if given; on CUDA, as many as fit
        (measured once per device and precision); elsewhere CPU_BATCH_SIZE."""
        if self.batch_size is not None:
            return self.batch_size
        if device.type != "cuda":
            return CPU_BATCH_SIZE
        key = (str(device), self.resolved_precision)
        if key not in self._fitted_batch_sizes:
            self._fitted_batch_sizes[key] = self._fit_cuda_batch_size(device)
        return self._fitted_batch_sizes[key]

    def _fit_cuda_batch_size(self, device: torch.device) -> int:
        """Run two full-length chunks and size the batch from the memory they took: one host
        synchronisation, once (not tested here: no GPU on the development machine)."""
        probe = 2
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        self._embed(torch.zeros(probe, self.model.chunk_samples, device=device))
        per_chunk = max(1, torch.cuda.max_memory_allocated(device) - before) / probe
        free, _ = torch.cuda.mem_get_info(device)
        return max(1, min(MAX_CUDA_BATCH_SIZE, int(CUDA_MEMORY_SHARE * free / per_chunk)))

    @property
    def resolved_precision(self) -> precision_lib.Precision:
        """"fp32" or "bf16" (a str): ``precision`` resolved for the device the model is on, once per
        device; ``.source`` and ``.reason`` say how ("measured", "cached", "cuda rule", ...)."""
        device = self.device
        key = (str(device), self.precision, self.layer)
        if key not in self._precisions:
            num_layers = self.layer % self.model.num_embedding_layers + 1
            self._precisions[key] = precision_lib.resolve(self.precision, self.model, device, num_layers)
        return self._precisions[key]

    # ---- framing ----
    def frame_times_ms(self, num_frames: int, device=None) -> torch.Tensor:
        """Centre of each frame's audio span in milliseconds: [num_frames]."""
        k = torch.arange(num_frames, dtype=torch.float64, device=device)
        centre = self.model.frame_window / 2 + k * self.model.frame_hop
        return (centre * 1000.0 / MODEL_SAMPLE_RATE).float()

    def chunk_plan(self, num_samples: int, context_seconds: float | None = None) -> ChunkPlan:
        """The plan for a clip of ``num_samples`` samples at 24 kHz (default context: ``chunk_context``)."""
        m = self.model
        context = self.chunk_context if context_seconds is None else context_seconds
        context_frames = round(context * MODEL_SAMPLE_RATE / m.frame_hop)
        return plan_chunks(m.num_frames(max(num_samples, m.min_samples)), m.num_frames(m.chunk_samples),
                           context_frames)

    def chunk_samples(self, plan: ChunkPlan, num_samples: int) -> list:
        """[(start, end)] sample range of each chunk of ``plan``: a one-chunk plan is the whole clip;
        otherwise chunk i covers its frames' spans, cut at the clip's end (the last EnCodec frame
        pads its hop, as in a forward over the whole clip)."""
        if len(plan.chunks) == 1:
            return [(0, num_samples)]
        m = self.model
        span = (plan.chunk_frames - 1) * m.frame_hop + m.frame_window
        return [(c.first_frame * m.frame_hop, min(num_samples, c.first_frame * m.frame_hop + span))
                for c in plan.chunks]

    # ---- embeddings ----
    def timestamp_embeddings(self, audio: torch.Tensor):
        """audio [n, S] at ``sample_rate`` -> (embeddings [n, T, D] float32, timestamps [n, T] in ms)."""
        out = self.embed(self._to_model_rate(audio), scene=False)
        return out["timestamp"], out["timestamps_ms"]

    def scene_embeddings(self, audio: torch.Tensor) -> torch.Tensor:
        """audio [n, S] at ``sample_rate`` -> [n, D] float32: the mean of frame embeddings computed with
        no context at cuts (a mean over every frame does not need it; docs/embedding.md)."""
        return self.embed(self._to_model_rate(audio), timestamps=False)["scene"]

    def embed(self, wav: torch.Tensor, scene: bool = True, timestamps: bool = True) -> dict:
        """wav [n, S] float32 at the model's rate (24 kHz), checked by the caller.

        Returns a dict with ``scene`` [n, D] and/or ``timestamp`` [n, T, D] with ``timestamps_ms``
        [n, T], float32 on the model's device. A clip that fits in one chunk runs once for both.
        """
        m = self.model
        if wav.shape[1] < m.min_samples:  # shorter than one frame: zero-pad to exactly one frame
            wav = nn.functional.pad(wav, (0, m.min_samples - wav.shape[1]))
        out = {}
        timestamp_plan = self.chunk_plan(wav.shape[1]) if timestamps else None
        if timestamps:
            frames = self._run_plan(wav, timestamp_plan)
            total = frames.shape[1]
            out["timestamp"] = frames
            out["timestamps_ms"] = self.frame_times_ms(total, device=wav.device).expand(wav.shape[0], total).contiguous()
        if scene:
            scene_plan = self.chunk_plan(wav.shape[1], context_seconds=0.0)
            if scene_plan != timestamp_plan:
                frames = self._run_plan(wav, scene_plan)
            out["scene"] = frames.mean(dim=1)
        return out

    def embed_stream(self, blocks, num_samples: int, scene: bool = True, timestamps: bool = True,
                     write_frames=None) -> dict:
        """One clip of ``num_samples`` samples at 24 kHz that arrives as ``blocks`` (an iterable of
        [k] float32 arrays or tensors, in order): the embeddings of :meth:`embed`, equal to them up
        to float rounding, holding only the samples that the chunks not yet run need.

        Returns ``scene`` [D] (on the host) and ``timestamps_ms`` [T]; the timestamp embeddings
        are not returned but passed to ``write_frames(rows)`` as they are computed: consecutive
        [k, D] float32 numpy arrays, in order of frames, T rows in all. Raises
        :class:`StreamLengthError` when the blocks hold other than ``num_samples`` samples.
        """
        m, device = self.model, self.device
        length = max(num_samples, m.min_samples)  # shorter than one frame: zero-padded, as in embed
        plans = {}
        if timestamps:
            plans["timestamp"] = self.chunk_plan(length)
        if scene:
            plan = self.chunk_plan(length, context_seconds=0.0)
            plans["scene" if plans.get("timestamp") != plan else "both"] = plan
            if "both" in plans:
                del plans["timestamp"]
        jobs = sorted((start, end, name, i) for name, plan in plans.items()
                      for i, (start, end) in enumerate(self.chunk_samples(plan, length)))
        batch_size = self.effective_batch_size(device)
        scene_sum = torch.zeros(m.embedding_dim, dtype=torch.float64)
        rows_done, waiting = 0, {}  # timestamp rows written; {own_from: rows} computed ahead of them
        source = _Samples(blocks, num_samples, length)
        pending = {}  # (plan, chunk length) -> [(chunk index, samples)]: only equal lengths stack

        def run(key):
            nonlocal rows_done
            name, batch = key[0], pending.pop(key)
            emb = self._embed(to_device(torch.stack([wav for _, wav in batch]), device)).cpu()
            for row, (i, _) in enumerate(batch):
                c = plans[name].chunks[i]
                own = emb[row, c.own_from - c.first_frame:c.own_to - c.first_frame]
                if name in ("scene", "both"):
                    scene_sum.add_(own.double().sum(dim=0))
                if name in ("timestamp", "both"):
                    waiting[c.own_from] = own.numpy()
            while rows_done in waiting:
                rows = waiting.pop(rows_done)
                if write_frames is not None:
                    write_frames(rows)
                rows_done += len(rows)

        for n, (start, end, name, i) in enumerate(jobs):
            key = (name, end - start)
            pending.setdefault(key, []).append((i, source.take(start, end)))
            if len(pending[key]) == batch_size:
                run(key)
            source.forget_before(min([jobs[n + 1][0]] if n + 1 < len(jobs) else [end]))
        for key in list(pending):
            run(key)
        source.check_exhausted()
        total = next(iter(plans.values())).total_frames
        out = {"timestamps_ms": self.frame_times_ms(total)} if timestamps else {}
        if scene:
            out["scene"] = (scene_sum / total).float()
        return out

    def _run_plan(self, wav: torch.Tensor, plan: ChunkPlan) -> torch.Tensor:
        """Frame embeddings [n, T, D] of every clip in ``wav`` [n, S], chunked as ``plan`` says.

        Chunks of equal sample length, of all clips, are batched together; nothing here waits for
        the device (no host synchronisation per chunk)."""
        m = self.model
        n = wav.shape[0]
        ranges = self.chunk_samples(plan, wav.shape[1])
        out = torch.empty(n, plan.total_frames, m.embedding_dim, dtype=torch.float32, device=wav.device)
        jobs = {}  # sample length -> [(clip, chunk index)]: only equal lengths stack into a batch
        for i, (start, end) in enumerate(ranges):
            jobs.setdefault(end - start, []).extend((clip, i) for clip in range(n))
        batch_size = self.effective_batch_size(wav.device)
        for group in jobs.values():
            for b in range(0, len(group), batch_size):
                batch = group[b:b + batch_size]
                chunks = torch.stack([wav[clip, ranges[i][0]:ranges[i][1]] for clip, i in batch])
                emb = self._embed(chunks)
                for row, (clip, i) in enumerate(batch):
                    c = plan.chunks[i]
                    out[clip, c.own_from:c.own_to] = emb[row, c.own_from - c.first_frame:c.own_to - c.first_frame]
        return out

    @torch.no_grad()
    def _embed(self, wav: torch.Tensor) -> torch.Tensor:
        """The chosen layer for a batch of chunks: [B, S] -> [B, T, D], running no layer after it."""
        bf16 = self.resolved_precision == "bf16"
        autocast = torch.autocast(wav.device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
        with autocast:
            num_layers = self.layer % self.model.num_embedding_layers + 1
            return self.model.embed_layers(wav, num_layers=num_layers)[-1].float()

    def _to_model_rate(self, audio) -> torch.Tensor:
        """Check a HEAR batch, move it to the model's device (through pinned memory from the host)
        and resample it to 24 kHz: [n, S] -> [n, S']."""
        return resample(to_device(validate_audio(audio), self.device), self.sample_rate, MODEL_SAMPLE_RATE)


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``x`` on ``device``; from the host to a GPU through pinned memory, without waiting for the copy."""
    if x.device == device:
        return x
    if x.device.type == "cpu" and device.type == "cuda":
        x = x.pin_memory()
    return x.to(device, non_blocking=True)


def validate_audio(audio) -> torch.Tensor:
    """Check a HEAR input batch: float [n_sounds, n_samples], non-empty, finite and within
    ±MAX_ABS_SAMPLE (beyond it the front ends' float32 arithmetic overflows into NaN embeddings).
    Returns float32."""
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
    peak = float(audio.abs().max())  # one read of the device, NaN if any sample is
    if not math.isfinite(peak):
        raise ValueError("audio contains NaN or Inf values")
    if peak > MAX_ABS_SAMPLE:
        raise ValueError(f"audio has samples up to {peak:.3g}, beyond ±{MAX_ABS_SAMPLE:.0e}: HEAR audio is float32 in "
                         "[-1, 1] (the model's float32 arithmetic would overflow into NaN embeddings)")
    return audio.float()


class StreamLengthError(ValueError):
    """The blocks of :meth:`HearModel.embed_stream` held another number of samples than announced."""


class _Samples:
    """The samples of a stream of blocks, kept from the first one still needed: [start, end)
    slices on request, in order of ``start``."""

    def __init__(self, blocks, num_samples: int, length: int):
        self.blocks, self.num_samples, self.length = iter(blocks), num_samples, length
        self.kept, self.kept_from, self.received = [], 0, 0  # [tensor], index of kept[0][0]

    def take(self, start: int, end: int) -> torch.Tensor:
        """Samples [start, end) as a new tensor (zeros past the clip's announced end, up to ``length``)."""
        while self.received < min(end, self.num_samples):
            block = next(self.blocks, None)
            if block is None:
                raise StreamLengthError(f"the audio ended after {self.received} samples; {self.num_samples} "
                                        "were announced")
            block = torch.as_tensor(block, dtype=torch.float32)
            take = min(len(block), self.num_samples - self.received)
            if take < len(block):
                raise StreamLengthError(f"the audio holds more than the {self.num_samples} samples announced")
            self.kept.append(block)
            self.received += len(block)
        kept = torch.cat(self.kept) if len(self.kept) > 1 else self.kept[0] if self.kept else torch.zeros(0)
        self.kept = [kept] if len(kept) else []
        piece = kept[start - self.kept_from:end - self.kept_from]
        if len(piece) < end - start:  # a clip shorter than one frame, padded as embed pads it
            piece = nn.functional.pad(piece, (0, end - start - len(piece)))
        return piece.clone()

    def forget_before(self, index: int) -> None:
        if self.kept and index > self.kept_from:
            drop = min(index - self.kept_from, len(self.kept[0]))
            self.kept = [self.kept[0][drop:]]
            self.kept_from += drop

    def check_exhausted(self) -> None:
        """Raise StreamLengthError if the blocks hold more samples than were announced."""
        if self.received < self.num_samples:
            self.take(self.num_samples - 1, self.num_samples)
        for block in self.blocks:
            if len(block):
                raise StreamLengthError(f"the audio holds more than the {self.num_samples} samples announced")
