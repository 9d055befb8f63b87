"""hear_codec: HEAR API plugin over codec-token audio models (EnCodecMAE, AudioFormer).

    hear-validator hear_codec --model ckpt.pt
    python -m hear_codec.evaluate ckpt.pt --tasks-dir tasks --model-options '{"sample_rate": 16000, "layer": -1}'
    python -m hear_codec.evaluate --published mel256-ec-base_st --tasks-dir tasks

Kept light on purpose: importing it loads torch and this package only.
"""
from __future__ import annotations

import os

import torch

from .api import DEFAULT_SAMPLE_RATE, HearModel, check_int

__all__ = ["load_model", "get_scene_embeddings", "get_timestamp_embeddings", "HearModel"]
__version__ = "0.1.0"


def load_model(model_file_path: str | os.PathLike | None = None, *, sample_rate: int = DEFAULT_SAMPLE_RATE,
               layer: int = -1, batch_size: int | None = None, precision: str = "auto",
               chunk_context: float | None = None, random_weights: str | None = None, seed: int = 0,
               published: str | None = None) -> HearModel:
    """Load a model for the HEAR API. Every option can also come from heareval's ``--model-options``
    JSON; a bad value raises a ValueError that names the option and what it allows.

    model_file_path: a hear_codec checkpoint (see hear_codec/checkpoint.py), or a published EnCodecMAE
        model as its authors released it (a v2 .pt file, or a v1 folder with model.pt + config.gin),
        detected by content. None: the published EnCodecMAE weights named by ``published``.
    published: which published EnCodecMAE to fetch when no path is given (default
        hear_codec.published.DEFAULT; names in docs/published_models.md). Downloaded with
        huggingface_hub into its cache on first use; offline, the error says which file to put where.
    sample_rate: rate of the audio you will pass (16000, 22050, 44100 or 48000; resampled to 24 kHz).
    layer: which encoder layer's output to return (-1 = the last, after the final ResiDual sum);
        layers after it are not computed.
    batch_size: 4 s chunks run through the model at once (memory vs speed; default 16 on CPU; on
        CUDA as many as fit in half the free memory).
    precision: "auto" (bf16 where it is measured clearly faster on this CPU, once per machine and cached,
        or where a CUDA device runs it natively; else fp32; ``resolved_precision`` says which and why;
        HEAR_CODEC_MEASURE_PRECISION=0 skips the measurement: fp32 on a CPU), "fp32", or "bf16"
        (autocast; embeddings within cosine 0.999 of fp32).
    chunk_context: long audio runs in chunks of the model's training length (4 s); for timestamp
        embeddings every frame keeps at least this many seconds of context on each side of a cut
        (default: a sixteenth of a chunk, 0.25 s). Scene embeddings use none (docs/embedding.md).
    random_weights: build an untrained model instead of loading one, e.g. "encodecmae-tiny-mel256"
        or "encodecmae-base-ec" (family-preset-front_end). For tests and smoke runs only; it is never a
        fallback for a missing file.
    seed: the seed of ``random_weights``.
    """
    if random_weights is not None:
        if model_file_path is not None:
            raise ValueError("give either model_file_path or random_weights, not both")
        if published is not None:
            raise ValueError("give either published or random_weights, not both")
        model = _random_model(random_weights, check_int("seed", seed))
    elif model_file_path is None:
        from . import published as published_lib
        from .convert import load_any

        name = published_lib.DEFAULT if published is None else published
        model = load_any(published_lib.fetch(name))
        model.metadata = {**getattr(model, "metadata", {}), "published": name,
                          "licence": published_lib.resolve(name).licence}
    elif published is not None:
        raise ValueError("give either model_file_path or published, not both")
    else:
        from .convert import load_any  # our checkpoints, or published EnCodecMAE files detected by content

        model = load_any(model_file_path)
    return HearModel(model, sample_rate=sample_rate, layer=layer, batch_size=batch_size, precision=precision,
                     chunk_context=chunk_context)


def _random_model(spec: str, seed: int):
    from . import encodecmae
    from .codec import load_codec

    parts = spec.split("-") if isinstance(spec, str) else []
    if len(parts) != 3 or parts[0] != "encodecmae":
        raise ValueError(f"option 'random_weights' must look like 'encodecmae-<preset>-<mel256|ec>', got {spec!r}")
    _, preset, front_end = parts
    torch.manual_seed(seed)
    config = encodecmae.preset(preset, front_end=front_end, codec_weights="offline")
    encoder = load_codec("offline", seed=seed).encoder if front_end == "ec" else None
    return encodecmae.new_model(config, codec_encoder=encoder).eval()


def get_timestamp_embeddings(audio: torch.Tensor, model: HearModel):
    """audio [n_sounds, n_samples] float32 -> (embeddings [n, T, d] float32, timestamps [n, T] in ms)."""
    return model.timestamp_embeddings(audio)


def get_scene_embeddings(audio: torch.Tensor, model: HearModel) -> torch.Tensor:
    """audio [n_sounds, n_samples] float32 -> [n, d] float32: the mean of the frame embeddings."""
    return model.scene_embeddings(audio)
