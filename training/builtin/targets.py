"""The built-in run's stand-in for EnCodec's targets: k-means codebooks over bands of log-mel
frames, and one over how those bands move.

NOT EnCodec. The paper (and every ``--data`` run, by default) predicts the published EnCodec's
RVQ codes. Where those weights cannot be downloaded, the random-weight "offline" codec gives codes
that follow the waveform's phase at each 320-sample hop rather than anything a spectrogram shows
(docs/pretraining.md, "What the offline default trains on"), so a model trained on them learns
the built-in corpus rather than audio. This stand-in gives targets that mean the same thing for
any audio -- which spectral shape each part of the spectrum has in a frame, the idea of HuBERT's
first iteration (k-means over spectral frames) -- laid out like EnCodec's eight codebooks, plus a
ninth stream for how the sound moves around the frame, so the EnCodecMAE model, loss and head are
unchanged but for one more stream:

    wav [B, S] @ 24 kHz -> normalised 256-bin Kaldi log-mel [B, T, 256] (the mel256 front end's frames)
        -> streams 0..7: BANDS bands of 256 / BANDS neighbouring mel bins (band 0 the lowest),
           stream q = index of the nearest of K centroids fitted on band q of the corpus's frames
        -> stream 8: the nearest of K centroids fitted on the frames' modulation statistics
           (:func:`modulation_features`: per coarse band, over ~120 ms around the frame, how much
           the level changes from frame to frame, how far it spreads, and its slope)
        -> codes [B, n_q, T] int64,  T = 1 + (S - 637) // 318,  n_q <= STREAMS = 9

One codebook per band rather than residual codebooks over whole frames: with whole-frame
codebooks the trained model fell behind its init on the held-out consonants of the transfer
check, per band it stayed level there and gained more on vowels. The band codes say what colour a
frame has, not how the sound moves: inside a masked span of a pulsed noise their best guess is
the average colour, whatever the pulse rate, so a model trained on them alone had no reason to
tell an engine from wind, or a pluck (which dulls) from a bowed note (which does not). The
modulation stream gives it one; its statistics change slowly, so the stream is predictable from
the unmasked context (docs/pretraining.md, "A fifteenth pass").

The centroids are fitted (training/encodecmae/kmeans.py) on frames of the training corpus at the
start of a run, deterministically from the run's seed. :class:`MelBandKMeans` is a target source
(the interface of training/encodecmae/targets.py); runs that use it (``--targets mel-kmeans``)
record its name, with the centroids' hash, as ``targets`` in their checkpoints' metadata.
"""
from __future__ import annotations

import hashlib
import logging
import time

import torch
from torch import nn

from hear_codec.encodecmae import QUANTIZER_WEIGHTS, EncodecMAEConfig, MelFrontEnd
from training.encodecmae.kmeans import assign, kmeans

log = logging.getLogger(__name__)

NAME = "mel-kmeans"  # the --targets choice
BANDS = 8  # spectral codebooks, one per band: as many as the EnCodec codebooks EnCodecMAE predicts (6 kbps)
STREAMS = BANDS + 1  # the bands, then the modulation stream
# The loss weighs the bands as the official loss weighs EnCodec's codebooks (low bands more) and the
# modulation stream about as much as the lowest band (0.224, the value measured; at 0.12, or at the
# top band's 0.066 in place of the top band, it did worse: docs/pretraining.md, the fifteenth pass).
STREAM_WEIGHTS = tuple(QUANTIZER_WEIGHTS[:BANDS]) + (0.224,)
MODULATION_BANDS = 8  # coarse bands (32 mel bins each) whose level the modulation statistics follow
MODULATION_WINDOW = 9  # frames (about 120 ms) they summarise, centred on the frame (15 lost consonants)
CLUSTERS = 64  # per band (EnCodec: 1024 per codebook); coarser codes transfer better (docs/pretraining.md)
FIT_CLIPS = 400  # corpus clips whose frames the centroids are fitted on
FIT_FRAMES = 30_000  # at most this many of their frames (drawn at random)
FIT_ITERS = 30  # Lloyd iterations (a stand-in needs good, not converged, centroids)


def model_fields() -> dict:
    """The EnCodecMAEConfig fields of a model that predicts these targets: K codes per stream (a
    1024-way head, EnCodec's, would spend ~90 % of the tiny model's step on logits no target uses),
    in STREAMS streams weighed by STREAM_WEIGHTS."""
    return dict(vocab_size=CLUSTERS, num_codec_streams=STREAMS, codec_stream_weights=STREAM_WEIGHTS)


def modulation_features(frames: torch.Tensor, window: int = MODULATION_WINDOW) -> torch.Tensor:
    """How the level of each coarse band moves around each frame: [B, T, 256] normalised log-mel
    -> [B, T, 3 * MODULATION_BANDS], per band (in this order, band 0 the lowest):

    - the mean absolute change of the band's level from one frame to the next (fast fluctuation:
      a pulsed engine against steady wind; the first frame counts no change),
    - the standard deviation of the level (how far it swings: gusts, tremolo, an onset),
    - the least-squares slope of the level, in level per half window (a pluck dulls, a bow holds),

    each over the ``window`` frames centred on the frame, the clip's first and last frames
    repeated past its ends. Every frame of a steady sound gets the same statistics: unlike a
    frame-to-frame difference, they do not depend on where in a pulse the frame falls, so a
    masked frame's are predictable from its unmasked neighbours."""
    if frames.ndim != 3 or frames.shape[-1] % MODULATION_BANDS:
        raise ValueError(f"frames must be [batch, T, bins] with bins divisible by {MODULATION_BANDS}, "
                         f"got {tuple(frames.shape)}")
    if window < 3 or window % 2 == 0:
        raise ValueError(f"window must be an odd number of frames >= 3, got {window}")
    b, t, bins = frames.shape
    level = frames.reshape(b, t, MODULATION_BANDS, bins // MODULATION_BANDS).mean(-1)  # [B, T, bands]
    change = torch.cat([torch.zeros_like(level[:, :1]), (level[:, 1:] - level[:, :-1]).abs()], 1)
    half = window // 2

    def around(x: torch.Tensor) -> torch.Tensor:  # [B, T, bands] -> [B, T, bands, window]
        return torch.cat([x[:, :1].expand(-1, half, -1), x, x[:, -1:].expand(-1, half, -1)], 1).unfold(1, window, 1)

    levels = around(level)
    offsets = torch.arange(-half, half + 1, dtype=level.dtype, device=level.device)
    slope = (levels * offsets).sum(-1) / offsets.square().sum() * half
    return torch.cat([around(change).mean(-1), levels.std(-1), slope], -1)


class MelBandKMeans(nn.Module):
    """k-means codebooks over bands of normalised log-mel frames and over their modulation
    statistics: a target source of STREAMS streams (training/encodecmae/targets.py).

    centroids: [bands, K, 256 // bands]; modulation_centroids: [K', 3 * MODULATION_BANDS], over
    the statistics standardised by modulation_mean and modulation_std [3 * MODULATION_BANDS]
    (the fitted frames' mean and standard deviation).
    """

    def __init__(self, centroids: torch.Tensor, modulation_centroids: torch.Tensor, modulation_mean: torch.Tensor,
                 modulation_std: torch.Tensor, mel_mean: float = EncodecMAEConfig.mel_mean,
                 mel_std: float = EncodecMAEConfig.mel_std):
        super().__init__()
        if centroids.ndim != 3 or centroids.shape[0] * centroids.shape[2] != MelFrontEnd.input_dim:
            raise ValueError(f"centroids must be [bands, K, {MelFrontEnd.input_dim} // bands], "
                             f"got {tuple(centroids.shape)}")
        dims = 3 * MODULATION_BANDS
        if modulation_centroids.ndim != 2 or modulation_centroids.shape[1] != dims or \
                modulation_mean.shape != (dims,) or modulation_std.shape != (dims,):
            raise ValueError(f"modulation centroids must be [K, {dims}] and their mean and std [{dims}], got "
                             f"{tuple(modulation_centroids.shape)}, {tuple(modulation_mean.shape)}, "
                             f"{tuple(modulation_std.shape)}")
        self.front_end = MelFrontEnd(mel_mean, mel_std)
        self.register_buffer("centroids", centroids.float())
        self.register_buffer("modulation_centroids", modulation_centroids.float())
        self.register_buffer("modulation_mean", modulation_mean.float())
        self.register_buffer("modulation_std", modulation_std.float())
        self.requires_grad_(False)

    @property
    def num_streams(self) -> int:
        return self.centroids.shape[0] + 1

    @property
    def vocab_size(self) -> int:
        return self.centroids.shape[1]

    @property
    def weights(self) -> tuple:
        """The loss weight of each stream: STREAM_WEIGHTS."""
        return STREAM_WEIGHTS

    @property
    def name(self) -> str:
        """The stand-in's name plus a hash of its centroids (cached targets are keyed on it)."""
        digest = hashlib.sha1()
        for name in ("centroids", "modulation_centroids", "modulation_mean", "modulation_std"):
            digest.update(getattr(self, name).cpu().numpy().tobytes())
        return (f"{NAME}-{self.centroids.shape[1]}x{self.centroids.shape[0]}"
                f"-mod{self.modulation_centroids.shape[0]}-{digest.hexdigest()[:10]}")

    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """[batch, samples] at 24 kHz -> [batch, STREAMS, T] int64."""
        return self.encode_codes(wav, self.num_streams)

    def forward(self, batch: dict, features: torch.Tensor) -> torch.Tensor:
        """The codes of a training batch (its precomputed ``codes``, or those of its ``wav`` [B, S]),
        for the frames of ``features`` [B, T, F]."""
        codes = batch["codes"] if "codes" in batch else self.encode(batch["wav"])
        return codes[..., : features.shape[1]]

    @torch.no_grad()
    def encode_codes(self, wav: torch.Tensor, n_q: int = STREAMS) -> torch.Tensor:
        """[batch, samples] at 24 kHz -> [batch, n_q, T] int64: the first n_q streams (the bands
        from the lowest, then the modulation stream)."""
        if not 1 <= n_q <= self.num_streams:
            raise ValueError(f"n_q must be in 1..{self.num_streams}, got {n_q}")
        frames = self.front_end(wav.float())  # [B, T, 256]
        b, t, _ = frames.shape
        bands = frames.reshape(b * t, self.centroids.shape[0], -1)  # [B*T, n_bands, 256 / n_bands]
        codes = [assign(bands[:, q].contiguous(), self.centroids[q])[0] for q in range(min(n_q, len(self.centroids)))]
        if n_q == self.num_streams:
            stats = (modulation_features(frames) - self.modulation_mean) / self.modulation_std
            codes.append(assign(stats.reshape(b * t, -1), self.modulation_centroids)[0])
        return torch.stack(codes).view(n_q, b, t).transpose(0, 1)

    @classmethod
    def fit(cls, frames: torch.Tensor, modulation: torch.Tensor, bands: int, clusters: int = CLUSTERS,
            iters: int = FIT_ITERS, seed: int = 0, max_frames: int = FIT_FRAMES) -> "MelBandKMeans":
        """Fit one codebook of ``clusters`` centroids per band on frames [N, 256] (normalised
        log-mel) and one on their modulation statistics [N, 3 * MODULATION_BANDS]
        (:func:`modulation_features` of the same frames); at most ``max_frames`` of them, drawn
        at random with ``seed``."""
        if frames.ndim != 2 or frames.shape[1] % bands:
            raise ValueError(f"frames must be [N, D] with D divisible by {bands} bands, got {tuple(frames.shape)}")
        if modulation.shape != (frames.shape[0], 3 * MODULATION_BANDS):
            raise ValueError(f"modulation statistics must be [N, {3 * MODULATION_BANDS}] for the N = {frames.shape[0]} "
                             f"frames, got {tuple(modulation.shape)}")
        if frames.shape[0] < clusters:  # a corpus of a few clips (tests): fewer codes, not an error
            log.warning("stand-in targets: %d frames, so %d clusters per band instead of %d", frames.shape[0],
                        frames.shape[0], clusters)
            clusters = frames.shape[0]
        gen = torch.Generator().manual_seed(seed)
        if frames.shape[0] > max_frames:
            keep = torch.randperm(frames.shape[0], generator=gen)[:max_frames]
            frames, modulation = frames[keep], modulation[keep]
        split = frames.float().reshape(len(frames), bands, -1)
        centroids = torch.stack([kmeans(split[:, q].contiguous(), clusters, iters=iters, seed=seed + q)["centroids"]
                                 for q in range(bands)])
        # Standardised: the three statistics have different scales, and k-means weighs every dimension alike.
        mean, std = modulation.float().mean(0), modulation.float().std(0) + 1e-4
        standardised = ((modulation.float() - mean) / std).contiguous()
        return cls(centroids, kmeans(standardised, clusters, iters=iters, seed=seed + bands)["centroids"], mean, std)


def fit_on_corpus(dataset, bands: int = BANDS, seed: int = 0, clips: int = FIT_CLIPS, **fit_options) -> MelBandKMeans:
    """The stand-in fitted on the valid (unpadded) frames of the first ``clips`` items of a
    fixed corpus (:class:`training.builtin.corpus.SyntheticCorpus`: items with ``wav`` and ``length``)."""
    t0 = time.time()
    front_end = MelFrontEnd(EncodecMAEConfig.mel_mean, EncodecMAEConfig.mel_std)
    frames, modulation = [], []
    for i in range(min(clips, len(dataset))):
        item = dataset[i]
        valid = front_end.num_frames(int(item["length"]))
        clip = front_end(item["wav"][None])[:, :valid]  # [1, valid, 256]
        frames.append(clip[0])
        modulation.append(modulation_features(clip)[0])
    codebooks = MelBandKMeans.fit(torch.cat(frames), torch.cat(modulation), bands, seed=seed, **fit_options)
    log.info("stand-in targets %s: k-means of %d log-mel bands and of their modulation fitted on %d frames of %d "
             "corpus clips in %.0f s", codebooks.name, bands, sum(len(f) for f in frames), len(frames), time.time() - t0)
    return codebooks
