"""A demo/test stand-in for EnCodec's targets: residual k-means codebooks over log-mel frames.

NOT EnCodec. The paper (and ``--data`` runs, by default) predicts the published EnCodec's RVQ
codes. Where those weights cannot be downloaded, the random-weight "offline" codec gives codes
that follow the waveform's phase at each 320-sample hop rather than anything a spectrogram shows
(docs/pretraining.md), so a model trained on them learns nothing that transfers to other audio.
This stand-in gives targets that mean the same thing for any audio: which spectral shape a frame
has -- the first iteration of HuBERT (k-means over MFCC frames), laid out like EnCodec's RVQ so
the EnCodecMAE model, loss and head are unchanged:

    wav [B, S] @ 24 kHz -> normalised 256-bin Kaldi log-mel (the mel256 front end's own frames)
        -> level 0: nearest of K centroids; level i: nearest centroid of what levels < i leave
        -> codes [B, n_q, T_mel] int64 (T_mel = 1 + (S - 637) // 318)

The centroids are fitted (training/kmeans.py) on frames of the training corpus and saved with
the run. Runs that use it record ``codec = "mel-kmeans"`` in their checkpoints' metadata.
"""
from __future__ import annotations

import hashlib

import torch
from torch import nn

from hear_codec.encodecmae import MelFrontEnd
from training.encodecmae.kmeans import assign, kmeans

WEIGHTS_NAME = "mel-kmeans"


class MelKMeansCodebooks(nn.Module):
    """Residual k-means codebooks over normalised log-mel frames: ``encode_codes(wav, n_q)``.

    Has the part of :class:`hear_codec.codec.Codec`'s interface that precomputed targets use
    (``weights``, ``encode_codes``); there is no encoder (it cannot be the ec front end).
    centroids: [levels, K, 256].
    """

    def __init__(self, centroids: torch.Tensor, mel_mean: float = -6.12, mel_std: float = 4.82):
        super().__init__()
        self.front_end = MelFrontEnd(mel_mean, mel_std)
        self.register_buffer("centroids", centroids.float())
        self.requires_grad_(False)

    @property
    def weights(self) -> str:
        """The name targets are cached under: the stand-in's name plus a hash of its centroids."""
        digest = hashlib.sha1(self.centroids.numpy().tobytes()).hexdigest()[:10]
        return f"{WEIGHTS_NAME}-{self.centroids.shape[1]}-{digest}"

    @torch.no_grad()
    def encode_codes(self, wav: torch.Tensor, n_q: int = 8) -> torch.Tensor:
        """[batch, samples] at 24 kHz -> [batch, n_q, T_mel] int64."""
        if not 1 <= n_q <= self.centroids.shape[0]:
            raise ValueError(f"n_q must be in 1..{self.centroids.shape[0]}, got {n_q}")
        frames = self.front_end(wav.float())  # [B, T, 256]
        residual = frames.reshape(-1, frames.shape[-1])
        codes = []
        for level in range(n_q):
            idx, _ = assign(residual, self.centroids[level])
            codes.append(idx)
            residual = residual - self.centroids[level][idx]
        return torch.stack(codes).view(n_q, *frames.shape[:2]).transpose(0, 1)

    @classmethod
    def fit(cls, frames: torch.Tensor, levels: int, clusters: int, iters: int = 30, seed: int = 0,
            max_frames: int = 30_000) -> "MelKMeansCodebooks":
        """Fit ``levels`` residual codebooks of ``clusters`` centroids on frames [N, 256] (normalised
        log-mel); at most ``max_frames`` of them, drawn at random, are used."""
        gen = torch.Generator().manual_seed(seed)
        if frames.shape[0] > max_frames:
            frames = frames[torch.randperm(frames.shape[0], generator=gen)[:max_frames]]
        residual = frames.float()
        centroids = []
        for level in range(levels):
            c = kmeans(residual, clusters, iters=iters, seed=seed + level)["centroids"]
            centroids.append(c)
            residual = residual - c[assign(residual, c)[0]]
        return cls(torch.stack(centroids))
