"""A demo/test stand-in for EnCodec's targets: k-means of log-mel bands plus a pitch codebook.

NOT EnCodec. The paper (and every ``--data`` run, by default) predicts the published EnCodec's
RVQ codes. Where those weights cannot be downloaded, the random-weight "offline" codec gives codes
that follow the waveform's phase at each 320-sample hop rather than anything a spectrogram shows
(docs/pretraining.md, "What the offline default trains on"), so a model trained on them learns
the built-in corpus rather than audio. This stand-in gives targets that mean the same thing for
any audio, laid out like EnCodec's eight codebooks so that the EnCodecMAE model, loss and head
are unchanged:

    wav [B, S] @ 24 kHz -> normalised 256-bin Kaldi log-mel [B, T, 256] (the mel256 front end's frames)
        streams 0..6: 7 bands of neighbouring mel bins (BAND_EDGES: six of 32 bins from the lowest,
                      then the top 64, 5.5-12 kHz) -> index of the nearest of K centroids fitted on
                      that band of the corpus's frames (HuBERT's first iteration, per band)
        stream 7:     the frame's pitch -> 0 if aperiodic or silent, else its semitone above
                      PITCH_MIN_HZ (1..PITCH_SEMITONES): a fixed quantiser, nothing fitted
        -> codes [B, 8, T] int64,  T = 1 + (S - 637) // 318

One codebook per band rather than residual codebooks over whole frames: with whole-frame
codebooks the trained model fell behind its init on the held-out consonants of the transfer
check. The pitch stream is there because band codebooks cannot carry pitch that the corpus does
not have: a band of 32 mel bins spans a few hundred Hz, and its centroids, fitted on the corpus's
few pitches, map a pitch between them to one of theirs -- with eight band codebooks the trained
model fell behind its init on the held-out pitch registers. The pitch quantiser is the same for
every sound (semitones of an autocorrelation pitch estimate), so its codes order any pitch the
way a listener would (docs/pretraining.md has the measurements).

The centroids are fitted (training/encodecmae/kmeans.py) on frames of the training corpus at the
start of a run, deterministically from the run's seed. Runs that use it record ``codec =
"mel-kmeans"`` and the stand-in's name with the centroids' hash (``targets``) in their
checkpoints' metadata.
"""
from __future__ import annotations

import hashlib
import logging
import math
import time

import torch
from torch import nn

from hear_codec.encodecmae import EncodecMAEConfig, MelFrontEnd
from training.encodecmae.kmeans import assign, kmeans

log = logging.getLogger(__name__)

NAME = "mel-kmeans"  # the --codec choice and the checkpoints' metadata
BAND_EDGES = (0, 32, 64, 96, 128, 160, 192, 256)  # log-mel bins of the k-means bands (band q: [edge q, edge q+1))
STREAMS = len(BAND_EDGES)  # 7 band codebooks + 1 pitch codebook: EnCodec's 8 codebooks (6 kbps)
CLUSTERS = 256  # per band (EnCodec has 1024 codes per codebook; 256 suffices for a few hundred clips)
FIT_CLIPS = 400  # corpus clips whose frames the centroids are fitted on
FIT_FRAMES = 30_000  # at most this many of their frames (drawn at random)
FIT_ITERS = 30  # Lloyd iterations (a stand-in needs good, not converged, centroids)

# The pitch stream: normalised autocorrelation of a 1024-sample window (43 ms, two periods of the
# lowest pitch) centred on each log-mel frame; the pitch is the shortest-lag autocorrelation peak
# within 15 % of the highest one (not a multiple of the period), refined by a parabola.
PITCH_WINDOW = 1024
PITCH_MIN_HZ = 55.0  # lag 436 at 24 kHz
PITCH_MAX_HZ = 3400.0  # lag 7
PITCH_SEMITONES = int(math.ceil(12 * math.log2(PITCH_MAX_HZ / PITCH_MIN_HZ)))  # 72 codes 1..72; 0 = no pitch
PITCH_PERIODICITY = 0.6  # normalised autocorrelation peak below this: aperiodic (noise, silence)
PITCH_PEAK_RATIO = 0.85  # the shortest-lag peak within this ratio of the highest is the period
PITCH_MIN_POWER = 1e-6  # mean square of the window below this (-60 dBFS): silent


def pitch_codes(wav: torch.Tensor, sample_rate: int = 24_000) -> torch.Tensor:
    """[batch, samples] at 24 kHz -> [batch, T] int64 on the log-mel frame grid: 0 for frames
    without a clear period (noise, silence), else 1 + the semitone of the pitch above
    PITCH_MIN_HZ (rounded), at most PITCH_SEMITONES."""
    lag_min = int(math.floor(sample_rate / PITCH_MAX_HZ))
    lag_max = int(math.ceil(sample_rate / PITCH_MIN_HZ))
    n_fft = 2 * PITCH_WINDOW
    left = (PITCH_WINDOW - MelFrontEnd.window) // 2  # window centred on the log-mel frame's centre
    padded = nn.functional.pad(wav.float(), (left, PITCH_WINDOW - MelFrontEnd.window - left))
    frames = padded.unfold(-1, PITCH_WINDOW, MelFrontEnd.hop)  # [B, T, W]
    frames = frames - frames.mean(-1, keepdim=True)
    window = torch.hann_window(PITCH_WINDOW, periodic=False, dtype=frames.dtype)
    power = torch.fft.rfft(frames * window, n_fft).abs() ** 2
    autocorr = torch.fft.irfft(power, n_fft)[..., : lag_max + 2]  # [B, T, lags 0..lag_max + 1]
    window_autocorr = torch.fft.irfft(torch.fft.rfft(window, n_fft).abs() ** 2, n_fft)[: lag_max + 2]
    nac = autocorr / (autocorr[..., :1] + 1e-12) / (window_autocorr / window_autocorr[0])  # unbiased, 1 at lag 0
    inner = nac[..., 1:-1]  # lags 1..lag_max
    lags = torch.arange(1, lag_max + 1)
    is_peak = (inner > nac[..., :-2]) & (inner >= nac[..., 2:]) & (lags >= lag_min)
    peaks = torch.where(is_peak, inner, torch.full_like(inner, -2.0))
    highest = peaks.max(-1).values  # [B, T]
    lag = (peaks >= PITCH_PEAK_RATIO * highest[..., None]).float().argmax(-1) + 1  # the shortest such lag
    before, at, after = (nac.gather(-1, (lag + d)[..., None])[..., 0] for d in (-1, 0, 1))
    curvature = before - 2 * at + after
    offset = torch.where(curvature.abs() > 1e-9, 0.5 * (before - after) / curvature, torch.zeros_like(at))
    f0 = sample_rate / (lag + offset.clamp(-0.5, 0.5))
    semitone = torch.round(12 * torch.log2(f0 / PITCH_MIN_HZ)).long().clamp(0, PITCH_SEMITONES - 1) + 1
    periodic = (highest >= PITCH_PERIODICITY) & ((frames ** 2).mean(-1) >= PITCH_MIN_POWER)
    return torch.where(periodic, semitone, torch.zeros_like(semitone))


class SpectralTargets(nn.Module):
    """The stand-in's 8 streams (``encode_codes(wav, n_q)``): k-means codebooks of log-mel bands,
    then the pitch stream.

    Has the part of :class:`hear_codec.codec.Codec`'s interface that targets use (``weights``,
    ``encode_codes``); there is no encoder, so it cannot feed the ec front end.
    centroids: one [K, width of band q] per band of ``band_edges`` (bins of the 256-bin log-mel).
    """

    def __init__(self, centroids, band_edges=BAND_EDGES, mel_mean: float = EncodecMAEConfig.mel_mean,
                 mel_std: float = EncodecMAEConfig.mel_std):
        super().__init__()
        band_edges = tuple(int(e) for e in band_edges)
        widths = [b - a for a, b in zip(band_edges, band_edges[1:])]
        if band_edges[0] != 0 or band_edges[-1] != MelFrontEnd.input_dim or min(widths) < 1:
            raise ValueError(f"band_edges must rise from 0 to {MelFrontEnd.input_dim}, got {band_edges}")
        if len(centroids) != len(widths) or any(c.ndim != 2 or c.shape[1] != w for c, w in zip(centroids, widths)):
            raise ValueError(f"centroids must be one [K, width] per band of {band_edges}, got "
                             f"{[tuple(c.shape) for c in centroids]}")
        self.front_end = MelFrontEnd(mel_mean, mel_std)
        self.band_edges = band_edges
        for q, c in enumerate(centroids):
            self.register_buffer(f"centroids_{q}", c.float())
        self.requires_grad_(False)

    @property
    def centroids(self) -> list:
        """One [K, width] per band."""
        return [getattr(self, f"centroids_{q}") for q in range(len(self.band_edges) - 1)]

    @property
    def num_streams(self) -> int:
        return len(self.band_edges)  # one per band, plus the pitch stream

    @property
    def weights(self) -> str:
        """The name cached targets are keyed on: the stand-in's name, its layout and a hash of its
        centroids and pitch settings."""
        digest = hashlib.sha1()
        for c in self.centroids:
            digest.update(c.cpu().numpy().tobytes())
        digest.update(repr((self.band_edges, PITCH_WINDOW, PITCH_MIN_HZ, PITCH_MAX_HZ, PITCH_PERIODICITY,
                            PITCH_PEAK_RATIO, PITCH_MIN_POWER)).encode())
        return f"{NAME}-{self.centroids[0].shape[0]}x{len(self.centroids)}+pitch-{digest.hexdigest()[:10]}"

    @torch.no_grad()
    def encode_codes(self, wav: torch.Tensor, n_q: int = STREAMS) -> torch.Tensor:
        """[batch, samples] at 24 kHz -> [batch, n_q, T] int64 (the first n_q streams)."""
        if not 1 <= n_q <= self.num_streams:
            raise ValueError(f"n_q must be in 1..{self.num_streams}, got {n_q}")
        frames = self.front_end(wav.float())  # [B, T, 256]
        b, t, _ = frames.shape
        flat = frames.reshape(b * t, -1)
        codes = [assign(flat[:, lo:hi].contiguous(), c)[0].view(b, t)
                 for lo, hi, c in zip(self.band_edges, self.band_edges[1:], self.centroids)]
        codes.append(pitch_codes(wav))
        return torch.stack(codes[:n_q], dim=1)

    @classmethod
    def fit(cls, frames: torch.Tensor, band_edges=BAND_EDGES, clusters: int = CLUSTERS, iters: int = FIT_ITERS,
            seed: int = 0, max_frames: int = FIT_FRAMES) -> "SpectralTargets":
        """Fit one codebook of ``clusters`` centroids per band on frames [N, 256] (normalised
        log-mel); at most ``max_frames`` of them, drawn at random with ``seed``."""
        if frames.ndim != 2 or frames.shape[1] != MelFrontEnd.input_dim:
            raise ValueError(f"frames must be [N, {MelFrontEnd.input_dim}], got {tuple(frames.shape)}")
        if frames.shape[0] < clusters:  # a corpus of a few clips (tests): fewer codes, not an error
            log.warning("stand-in targets: %d frames, so %d clusters per band instead of %d", frames.shape[0],
                        frames.shape[0], clusters)
            clusters = frames.shape[0]
        gen = torch.Generator().manual_seed(seed)
        if frames.shape[0] > max_frames:
            frames = frames[torch.randperm(frames.shape[0], generator=gen)[:max_frames]]
        frames = frames.float()
        return cls([kmeans(frames[:, lo:hi].contiguous(), clusters, iters=iters, seed=seed + q)["centroids"]
                    for q, (lo, hi) in enumerate(zip(band_edges, band_edges[1:]))], band_edges)


def fit_on_corpus(dataset, seed: int = 0, clips: int = FIT_CLIPS, **fit_options) -> SpectralTargets:
    """The stand-in fitted on the valid (unpadded) frames of the first ``clips`` items of a
    fixed corpus (:class:`training.data.SyntheticCorpus`: items with ``wav`` and ``length``)."""
    t0 = time.time()
    front_end = MelFrontEnd(EncodecMAEConfig.mel_mean, EncodecMAEConfig.mel_std)
    frames = []
    for i in range(min(clips, len(dataset))):
        item = dataset[i]
        valid = front_end.num_frames(int(item["length"]))
        frames.append(front_end(item["wav"][None])[0, :valid])
    targets = SpectralTargets.fit(torch.cat(frames), seed=seed, **fit_options)
    log.info("stand-in targets %s: k-means of %d log-mel bands fitted on %d frames of %d corpus clips in %.0f s, "
             "plus the pitch stream", targets.weights, len(targets.centroids), sum(len(f) for f in frames),
             len(frames), time.time() - t0)
    return targets
