"""A demo/test stand-in for EnCodec's targets: k-means codebooks over bands of log-mel frames.

NOT EnCodec. The paper (and every ``--data`` run, by default) predicts the published EnCodec's
RVQ codes. Where those weights cannot be downloaded, the random-weight "offline" codec gives codes
that follow the waveform's phase at each 320-sample hop rather than anything a spectrogram shows
(docs/pretraining.md, "What the offline default trains on"), so a model trained on them learns
the built-in corpus rather than audio. This stand-in gives targets that mean the same thing for
any audio -- which spectral shape each part of the spectrum has in a frame, the idea of HuBERT's
first iteration (k-means over spectral frames) -- laid out like EnCodec's eight codebooks, so the
EnCodecMAE model, loss and head are unchanged:

    wav [B, S] @ 24 kHz -> normalised 256-bin Kaldi log-mel [B, T, 256] (the mel256 front end's frames)
        -> n_q bands of 256 / n_q neighbouring mel bins (band 0 the lowest)
        -> stream q = index of the nearest of K centroids fitted on band q of the corpus's frames
        -> codes [B, n_q, T] int64,  T = 1 + (S - 637) // 318

One codebook per band rather than residual codebooks over whole frames: with whole-frame
codebooks the trained model fell behind its init on the held-out consonants of the transfer
check, per band it stayed level there and gained more on vowels (docs/pretraining.md, with the
families where neither beats the init: pitch and noise events).

The centroids are fitted (training/encodecmae/kmeans.py) on frames of the training corpus at the
start of a run, deterministically from the run's seed. Runs that use it record ``codec =
"mel-kmeans"`` and the centroids' hash (``targets``) in their checkpoints' metadata.
"""
from __future__ import annotations

import hashlib
import logging
import time

import torch
from torch import nn

from hear_codec.encodecmae import EncodecMAEConfig, MelFrontEnd
from training.encodecmae.kmeans import assign, kmeans

log = logging.getLogger(__name__)

NAME = "mel-kmeans"  # the --codec choice and the checkpoints' metadata
BANDS = 8  # codebooks, one per band: as many as the EnCodec codebooks EnCodecMAE predicts (6 kbps)
CLUSTERS = 64  # per band (EnCodec: 1024 per codebook); coarser codes transfer better (docs/pretraining.md)
FIT_CLIPS = 400  # corpus clips whose frames the centroids are fitted on
FIT_FRAMES = 30_000  # at most this many of their frames (drawn at random)
FIT_ITERS = 30  # Lloyd iterations (a stand-in needs good, not converged, centroids)


class MelBandKMeans(nn.Module):
    """k-means codebooks over bands of normalised log-mel frames: ``encode_codes(wav, n_q)``.

    Has the part of :class:`hear_codec.codec.Codec`'s interface that targets use (``weights``,
    ``encode_codes``); there is no encoder, so it cannot feed the ec front end.
    centroids: [n_q, K, 256 // n_q].
    """

    def __init__(self, centroids: torch.Tensor, mel_mean: float = EncodecMAEConfig.mel_mean,
                 mel_std: float = EncodecMAEConfig.mel_std):
        super().__init__()
        if centroids.ndim != 3 or centroids.shape[0] * centroids.shape[2] != MelFrontEnd.input_dim:
            raise ValueError(f"centroids must be [bands, K, {MelFrontEnd.input_dim} // bands], "
                             f"got {tuple(centroids.shape)}")
        self.front_end = MelFrontEnd(mel_mean, mel_std)
        self.register_buffer("centroids", centroids.float())
        self.requires_grad_(False)

    @property
    def weights(self) -> str:
        """The name cached targets are keyed on: the stand-in's name plus a hash of its centroids."""
        digest = hashlib.sha1(self.centroids.cpu().numpy().tobytes()).hexdigest()[:10]
        return f"{NAME}-{self.centroids.shape[1]}x{self.centroids.shape[0]}-{digest}"

    @torch.no_grad()
    def encode_codes(self, wav: torch.Tensor, n_q: int = 8) -> torch.Tensor:
        """[batch, samples] at 24 kHz -> [batch, n_q, T] int64 (the first n_q bands)."""
        if not 1 <= n_q <= self.centroids.shape[0]:
            raise ValueError(f"n_q must be in 1..{self.centroids.shape[0]}, got {n_q}")
        frames = self.front_end(wav.float())  # [B, T, 256]
        b, t, _ = frames.shape
        bands = frames.reshape(b * t, self.centroids.shape[0], -1)  # [B*T, n_bands, 256 / n_bands]
        codes = [assign(bands[:, q].contiguous(), self.centroids[q])[0] for q in range(n_q)]
        return torch.stack(codes).view(n_q, b, t).transpose(0, 1)

    @classmethod
    def fit(cls, frames: torch.Tensor, bands: int, clusters: int = CLUSTERS, iters: int = FIT_ITERS,
            seed: int = 0, max_frames: int = FIT_FRAMES) -> "MelBandKMeans":
        """Fit one codebook of ``clusters`` centroids per band on frames [N, 256] (normalised
        log-mel); at most ``max_frames`` of them, drawn at random with ``seed``."""
        if frames.ndim != 2 or frames.shape[1] % bands:
            raise ValueError(f"frames must be [N, D] with D divisible by {bands} bands, got {tuple(frames.shape)}")
        if frames.shape[0] < clusters:  # a corpus of a few clips (tests): fewer codes, not an error
            log.warning("stand-in targets: %d frames, so %d clusters per band instead of %d", frames.shape[0],
                        frames.shape[0], clusters)
            clusters = frames.shape[0]
        gen = torch.Generator().manual_seed(seed)
        if frames.shape[0] > max_frames:
            frames = frames[torch.randperm(frames.shape[0], generator=gen)[:max_frames]]
        split = frames.float().reshape(len(frames), bands, -1)
        return cls(torch.stack([kmeans(split[:, q].contiguous(), clusters, iters=iters, seed=seed + q)["centroids"]
                                for q in range(bands)]))


def fit_on_corpus(dataset, bands: int = BANDS, seed: int = 0, clips: int = FIT_CLIPS, **fit_options) -> MelBandKMeans:
    """The stand-in fitted on the valid (unpadded) frames of the first ``clips`` items of a
    fixed corpus (:class:`training.data.SyntheticCorpus`: items with ``wav`` and ``length``)."""
    t0 = time.time()
    front_end = MelFrontEnd(EncodecMAEConfig.mel_mean, EncodecMAEConfig.mel_std)
    frames = []
    for i in range(min(clips, len(dataset))):
        item = dataset[i]
        valid = front_end.num_frames(int(item["length"]))
        frames.append(front_end(item["wav"][None])[0, :valid])
    codebooks = MelBandKMeans.fit(torch.cat(frames), bands, seed=seed, **fit_options)
    log.info("stand-in targets %s: k-means of %d log-mel bands fitted on %d frames of %d corpus clips in %.0f s",
             codebooks.weights, bands, sum(len(f) for f in frames), len(frames), time.time() - t0)
    return codebooks
