"""What EnCodecMAE predicts for each frame: the targets of its masked-prediction loss, behind one
small interface.

A target source is a frozen ``nn.Module`` with

* ``name``: what the run records in its checkpoints' metadata (``targets``);
* ``weights``: one loss weight per stream (its length is the number of streams);
* ``vocab_size``: codes per stream;
* ``forward(batch, features) -> [B, streams, T] int64``: the codes of a training batch, from its
  ``wav`` [B, S] at 24 kHz, its ``padding_mask`` [B, T] and the model's input ``features``
  [B, T, F] (fp32, computed once per step);
* ``encode(wav) -> [B, streams, T]`` (optional): codes from audio alone, for datasets of fixed
  clips that compute them once; their batches carry them as ``codes``, which ``forward`` then
  returns as they are.

The sources here are the paper's: :class:`EncodecCodes` (pretraining: the published EnCodec's
8 codebooks) and :class:`TeacherKMeans` (self-training: the nearest of k centroids of a teacher's
features), and :class:`Stacked` (v1 self-training: both). The built-in offline run's stand-in
(``training/builtin/targets.py``) is another. A new kind of target is one class with these members.
"""
from __future__ import annotations

import torch
from torch import nn

from hear_codec import encodecmae as emae
from hear_codec.codec import Codec

KMEANS_STREAM_WEIGHT = 1.0  # official self-training configs: quantizer_weights [..., 1.0]


class EncodecCodes(nn.Module):
    """EnCodec's RVQ codes at 6 kbps: ``n_q`` codebooks of 1024 codes [B, n_q, T], weighted as the
    official loss (``hear_codec.encodecmae.QUANTIZER_WEIGHTS``, coarse codebooks more).

    ``from_features``: the model's front end is EnCodec's own encoder (``ec``), so its features
    are quantized directly and the encoder runs once per step."""

    vocab_size = 1024

    def __init__(self, codec: Codec, n_q: int = 8, from_features: bool = False):
        super().__init__()
        if not 1 <= n_q <= len(emae.QUANTIZER_WEIGHTS):
            raise ValueError(f"n_q must be in 1..{len(emae.QUANTIZER_WEIGHTS)}, got {n_q}")
        self.codec, self.n_q, self.from_features = codec, n_q, from_features
        self.weights = tuple(emae.QUANTIZER_WEIGHTS[:n_q])

    @property
    def name(self) -> str:
        return f"encodec-{self.codec.weights}"

    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        return self.codec.encode_codes(wav.float(), self.n_q)

    def forward(self, batch: dict, features: torch.Tensor) -> torch.Tensor:
        t = features.shape[1]  # the frames that have an input frame
        if "codes" in batch:
            return batch["codes"][..., :t]
        if self.from_features:
            return self.codec.quantize_features(features, self.n_q)
        return self.encode(batch["wav"])[..., :t]


def nearest_centroid(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """x [..., D], centroids [K, D] -> index of the nearest centroid (squared L2) [...]."""
    flat = x.reshape(-1, x.shape[-1]).float()
    c = centroids.float()
    d = (flat * flat).sum(1, keepdim=True) - 2 * flat @ c.T + (c * c).sum(1)[None, :]
    return d.argmin(dim=1).view(x.shape[:-1])


class TeacherKMeans(nn.Module):
    """Self-training's stream [B, 1, T]: the nearest of ``centroids`` [K, D] to each frame's
    feature in the frozen teacher's last encoder layer (its x0 stream, before the final ResiDual
    combination), in fp32, the precision the centroids were fitted in."""

    weights = (KMEANS_STREAM_WEIGHT,)

    def __init__(self, teacher: emae.EncodecMAE, centroids: torch.Tensor):
        super().__init__()
        self.teacher = teacher.eval().requires_grad_(False)
        self.register_buffer("centroids", centroids.float().clone())
        self.vocab_size = int(centroids.shape[0])
        self.name = f"teacher-kmeans-{self.vocab_size}"

    def train(self, mode: bool = True):  # frozen: the teacher never switches to training behaviour
        return super().train(False)

    def forward(self, batch: dict, features: torch.Tensor) -> torch.Tensor:
        hidden = self.teacher.last_layer_x0(features, batch["padding_mask"])
        return nearest_centroid(hidden, self.centroids).unsqueeze(1)


class Stacked(nn.Module):
    """Several sources' streams one after another (v1 self-training: EnCodec's, then the k-means
    stream). Their vocabularies must agree: one head size serves every stream."""

    def __init__(self, *sources: nn.Module):
        super().__init__()
        if len({s.vocab_size for s in sources}) != 1:
            raise ValueError(f"stacked targets need one vocabulary size, got {[s.vocab_size for s in sources]}")
        self.sources = nn.ModuleList(sources)
        self.vocab_size = sources[0].vocab_size
        self.weights = tuple(w for s in sources for w in s.weights)
        self.name = "+".join(s.name for s in sources)

    def forward(self, batch: dict, features: torch.Tensor) -> torch.Tensor:
        return torch.cat([s(batch, features) for s in self.sources], dim=1)
