"""The EnCodec 24 kHz front end: continuous encoder features and RVQ codes, plus resampling.

Everything in this package that touches EnCodec goes through :class:`Codec`. It wraps the real
model from the ``encodec`` package (0.1.1), frozen and always in eval mode: in training mode the
quantizer's codebooks take an EMA update even under ``no_grad``, so targets would drift.

Weights
-------
* ``load_codec("pretrained")`` uses encodec's own loader (torch hub cache,
  ``~/.cache/torch/hub/checkpoints/encodec_24khz-d7cc33bc.th``), or an explicit local file
  with ``load_codec("pretrained", weights=PATH)``. Offline, this fails with a message that says
  which file to download and where to put it. It never falls back to random weights.
* ``load_codec("offline")`` is a random encoder whose RVQ codebooks are built from the encoder's
  own output on synthetic audio (see :func:`_init_codebooks_offline`), so that codes are spread
  over the codebook instead of one constant code (``pretrained=False`` leaves the codebooks at
  zero). Tests and the built-in demo use it; nothing picks it implicitly. Unlike the trained
  codec, a random SEANet is close to a linear filter bank: its codes follow each partial's phase
  at the 320-sample hop, which is why the built-in corpus (training/data.py) keeps its pitches on
  the 75 Hz frame grid.

torchaudio
----------
``import encodec`` imports torchaudio at module level, but the codec itself never uses it (only
``convert_audio``/``save_audio`` and the training discriminator do). torchaudio has no CPU wheel
matching torch 2.13, so when it cannot be imported we put a placeholder module in
``sys.modules`` for the duration of ``import encodec`` only. Calling into the placeholder
raises an ImportError that names the function.
"""
from __future__ import annotations

import contextlib
import importlib
import math
import os
import sys
import types
import warnings
from pathlib import Path

import torch
from torch import nn

from hear_codec import seanet
from hear_codec.errors import CodecWeightsUnavailable

SAMPLE_RATE = 24_000
HOP_LENGTH = 320  # product of the SEANet strides [2, 4, 5, 8]
FRAME_RATE = SAMPLE_RATE / HOP_LENGTH  # 75 frames per second
FEATURE_DIM = 128
CODEBOOK_SIZE = 1024
# EnCodec 24 kHz: bandwidth (kbps) -> number of codebooks.
BANDWIDTH_TO_CODEBOOKS = {1.5: 2, 3.0: 4, 6.0: 8, 12.0: 16, 24.0: 32}
PRETRAINED_CHECKPOINT = "encodec_24khz-d7cc33bc.th"
PRETRAINED_URL = "https://dl.fbaipublicfiles.com/encodec/v0/" + PRETRAINED_CHECKPOINT


def _import_encodec():
    """Import the ``encodec`` package, working around a missing or broken torchaudio."""
    if "encodec" in sys.modules:
        return sys.modules["encodec"]
    try:
        import torchaudio  # noqa: F401
        return importlib.import_module("encodec")
    except Exception:  # ImportError, or OSError from a CUDA-only build's shared libraries
        pass
    for name in [n for n in sys.modules if n == "torchaudio" or n.startswith("torchaudio.")]:
        del sys.modules[name]  # a half-imported torchaudio must not shadow the placeholder

    def unavailable(name):
        def fail(*args, **kwargs):
            raise ImportError(
                f"torchaudio.{name} is not available (torchaudio is not installed or does not match "
                "this torch build); hear_codec does not need it, use hear_codec.audio.resample instead"
            )
        return fail

    placeholder = types.ModuleType("torchaudio")
    placeholder.__getattr__ = lambda name: unavailable(name)  # type: ignore[attr-defined]
    sys.modules["torchaudio"] = placeholder
    try:
        return importlib.import_module("encodec")
    finally:
        # Other libraries probe for torchaudio; they must see that it is really absent.
        if sys.modules.get("torchaudio") is placeholder:
            del sys.modules["torchaudio"]


def codebooks_for_bandwidth(bandwidth: float) -> int:
    if float(bandwidth) not in BANDWIDTH_TO_CODEBOOKS:
        raise ValueError(
            f"EnCodec 24 kHz has no bandwidth {bandwidth} kbps; choose one of {sorted(BANDWIDTH_TO_CODEBOOKS)}"
        )
    return BANDWIDTH_TO_CODEBOOKS[float(bandwidth)]


def num_frames(num_samples: int) -> int:
    """Frames EnCodec produces for ``num_samples`` samples at 24 kHz (it pads the last hop)."""
    return math.ceil(num_samples / HOP_LENGTH)


class Codec(nn.Module):
    """Frozen EnCodec 24 kHz: ``encode_features`` and ``encode_codes``.

    Only the encoder and the quantizer are kept (the decoder is not needed for representations).
    ``weights`` records where the weights came from: ``"pretrained"`` or ``"offline"``.
    """

    def __init__(self, encoder: nn.Module, quantizer: nn.Module, weights: str):
        super().__init__()
        self.encoder = encoder
        self.quantizer = quantizer
        self.weights = weights
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):  # noqa: D401 - always eval, see module docstring
        return super().train(False)

    @torch.no_grad()
    def encode_features(self, wav: torch.Tensor) -> torch.Tensor:
        """Continuous encoder output.

        wav: [batch, samples] float at 24 kHz -> [batch, frames, 128], frames = ceil(samples / 320).
        """
        _check_wav(wav)
        return run_encoder(self.encoder, wav)

    @torch.no_grad()
    def quantize_features(self, features: torch.Tensor, n_q: int) -> torch.Tensor:
        """RVQ codes of encoder features: [batch, frames, 128] -> [batch, n_q, frames] int64."""
        if not 1 <= n_q <= len(self.quantizer.vq.layers):
            raise ValueError(f"n_q must be in 1..{len(self.quantizer.vq.layers)}, got {n_q}")
        codes = self.quantizer.vq.encode(features.transpose(1, 2).float(), n_q=n_q)  # [n_q, B, T]
        return codes.transpose(0, 1)

    def encode_codes(self, wav: torch.Tensor, n_q: int = 8) -> torch.Tensor:
        """RVQ codes: [batch, samples] at 24 kHz -> [batch, n_q, frames] int64 (n_q=8 is 6 kbps)."""
        return self.quantize_features(self.encode_features(wav), n_q)


# On CPU the SEANet encoder has two halves that want opposite batch sizes. Its convolutions run
# at 24 kHz on wide activations and are memory-bound: micro-batches of 2 chunks keep them in cache.
# Its LSTM, at 75 Hz, is bound by reading its weights at every step, so it wants the whole batch
# at once. hear_codec/seanet.py runs both that way, with channels-last convolutions and each
# padding written once: 16 x 4 s chunks in about half the time of encodec's own forward
# (benchmarks/ec_front_end.py, docs/embedding.md). GPUs run encodec's forward on the whole batch.
CPU_CONV_MICRO_BATCH = 2


def run_encoder(encoder: nn.Module, wav: torch.Tensor) -> torch.Tensor:
    """A SEANet encoder over a batch: [batch, samples] -> [batch, frames, 128].

    On CPU through :func:`hear_codec.seanet.encode` (the same numbers up to float32 rounding)."""
    if wav.device.type != "cpu":
        return encodec_forward(encoder, wav)
    return seanet.encode(encoder, wav, CPU_CONV_MICRO_BATCH)


def encodec_forward(encoder: nn.Module, wav: torch.Tensor) -> torch.Tensor:
    """encodec's own SEANetEncoder forward, as the official EnCodecMAE runs it:
    [batch, samples] -> [batch, frames, 128]."""
    return encoder(wav.unsqueeze(1)).transpose(1, 2)


def _check_wav(wav: torch.Tensor) -> None:
    if not isinstance(wav, torch.Tensor) or wav.ndim != 2:
        raise ValueError(f"expected audio as a [batch, samples] tensor, got shape {tuple(getattr(wav, 'shape', ()))}")
    if not wav.is_floating_point():
        raise TypeError(f"expected floating-point audio, got {wav.dtype}")


def load_codec(weights: str = "pretrained", path: str | os.PathLike | None = None, seed: int = 0) -> Codec:
    """Build the EnCodec 24 kHz front end.

    weights: ``"pretrained"`` (the published model; ``path`` may name a local copy of
    ``encodec_24khz-d7cc33bc.th``) or ``"offline"`` (random, deterministic for a given ``seed``).
    """
    encodec = _import_encodec()
    if weights == "pretrained":
        with _quiet_weight_norm():
            model = encodec.EncodecModel.encodec_model_24khz(pretrained=False)
        model.load_state_dict(_load_pretrained_state(path))
    elif weights == "offline":
        with torch.random.fork_rng(devices=[]), _quiet_weight_norm():
            torch.manual_seed(seed)
            model = encodec.EncodecModel.encodec_model_24khz(pretrained=False)
        _init_codebooks_offline(model.encoder, model.quantizer, seed)
    else:
        raise ValueError(f"codec weights must be 'pretrained' or 'offline', got {weights!r}")
    return Codec(model.encoder, model.quantizer, weights)


def build_encoder() -> nn.Module:
    """An EnCodec 24 kHz SEANet encoder with untrained weights, for models whose checkpoint holds them.

    [batch, 1, samples] -> [batch, 128, frames].
    """
    encodec = _import_encodec()
    with _quiet_weight_norm():
        return encodec.modules.SEANetEncoder(channels=1, norm="weight_norm", causal=True).eval()


def build_codec_skeleton() -> Codec:
    """An EnCodec 24 kHz encoder + quantizer with untrained weights and empty codebooks.

    For models whose checkpoint holds the codec (e.g. AudioFormer): ``load_state_dict`` fills it.
    """
    encodec = _import_encodec()
    with _quiet_weight_norm():
        model = encodec.EncodecModel.encodec_model_24khz(pretrained=False)
    return Codec(model.encoder, model.quantizer, "skeleton")


@contextlib.contextmanager
def _quiet_weight_norm():
    """encodec 0.1.1 uses the old torch.nn.utils.weight_norm, which warns on every conv it builds."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*weight_norm.*", category=FutureWarning)
        yield


def _load_pretrained_state(path) -> dict:
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise CodecWeightsUnavailable(f"EnCodec weights file not found: {path}")
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise CodecWeightsUnavailable(f"{path} is not a readable EnCodec checkpoint ({e})") from e
    cached = Path(torch.hub.get_dir()) / "checkpoints" / PRETRAINED_CHECKPOINT
    try:
        return torch.hub.load_state_dict_from_url(PRETRAINED_URL, map_location="cpu", check_hash=True)
    except Exception as e:
        raise CodecWeightsUnavailable(
            f"Could not load the published EnCodec 24 kHz weights ({type(e).__name__}: {e}).\n"
            f"Download {PRETRAINED_URL}\n"
            f"and put it at {cached} (or pass its path explicitly). "
            "For tests and demos without network, ask for the offline codec explicitly "
            "(codec='offline'); it has random weights."
        ) from e


@torch.no_grad()
def _init_codebooks_offline(encoder: nn.Module, quantizer: nn.Module, seed: int) -> None:
    """Give a random EnCodec usable codebooks, built from its own features on synthetic audio.

    Layer i's codewords are frames of the residual that layers < i leave on a pool of frames,
    jittered by half the residual's spread: codewords are distinct, cover the data, and the
    residual never collapses to zero for the next layer (it would if codewords were exact
    copies of the pool). One encoder pass on 16 s of audio; no k-means, so it takes seconds.
    """
    gen = torch.Generator().manual_seed(seed + 1)
    encoder.eval()
    wav = _synthetic_audio(8, 2 * SAMPLE_RATE, gen)
    residual = encodec_forward(encoder, wav).reshape(-1, FEATURE_DIM)  # [1200, 128]
    for layer in quantizer.vq.layers:
        codebook = layer._codebook
        idx = torch.randint(0, residual.shape[0], (codebook.codebook_size,), generator=gen)
        spread = residual.std(dim=0, keepdim=True)
        codewords = residual[idx] + 0.5 * spread * torch.randn(len(idx), FEATURE_DIM, generator=gen)
        codebook.embed.copy_(codewords)
        codebook.embed_avg.copy_(codewords)
        codebook.cluster_size.fill_(1.0)
        codebook.inited.fill_(1.0)
        residual = residual - codebook.decode(codebook.quantize(residual))


def _synthetic_audio(batch: int, samples: int, gen: torch.Generator) -> torch.Tensor:
    """[batch, samples] of random linear chirps plus white noise, in [-1, 1]."""
    t = torch.arange(samples, dtype=torch.float64) / SAMPLE_RATE
    f0 = 50 + 2000 * torch.rand(batch, 1, generator=gen, dtype=torch.float64)
    f1 = 50 + 8000 * torch.rand(batch, 1, generator=gen, dtype=torch.float64)
    duration = samples / SAMPLE_RATE
    phase = 2 * math.pi * (f0 * t + 0.5 * (f1 - f0) / duration * t**2)
    amp = 0.1 + 0.5 * torch.rand(batch, 1, generator=gen, dtype=torch.float64)
    noise = 0.2 * torch.rand(batch, 1, generator=gen, dtype=torch.float64)
    wav = amp * torch.sin(phase) + noise * torch.randn(batch, samples, generator=gen, dtype=torch.float64)
    return wav.clamp(-1, 1).float()


