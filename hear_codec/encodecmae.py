"""EnCodecMAE (Pepino et al., arXiv 2309.07391): a masked autoencoder predicting EnCodec codes.

    wav [B, S] @ 24 kHz
      -> front end: "mel256" (Kaldi fbank, normalised, Linear 256->D) or "ec" (frozen EnCodec
         encoder, Linear 128->D)                                          [B, T, D]
      -> + scale * sinusoidal positions
      -> MAE: only visible frames enter the ResiDual encoder              [B, T_visible, D]
      -> Linear(D, D), scattered back to all frames, masked slots = 0     [B, T, D]
      -> + decoder's own scaled positions -> ResiDual decoder -> head     [B, T, streams, 1024]

Streams are the 8 EnCodec codebooks (6 kbps) and, after self-training, k-means streams.
Embeddings for HEAR come from :meth:`EncodecMAE.embed_layers` (no masking).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from . import codec as codec_lib
from . import fbank
from .layers import ResiDualTransformer, ScaledSinusoidalPosition

# Per-codebook weights of the official loss (coarse codebooks weigh more).
QUANTIZER_WEIGHTS = (0.22407463, 0.1759858, 0.14499009, 0.12150037, 0.10315603, 0.08831368, 0.07608274,
                     0.06589669)


@dataclass
class EncodecMAEConfig:
    front_end: str = "mel256"  # "mel256" or "ec"
    dim: int = 768
    num_layers: int = 10
    num_heads: int = 12
    ff_dim: int = 4096
    decoder_layers: int = 2
    decoder_heads: int = 12
    decoder_ff_dim: int = 4096
    num_codec_streams: int = 8  # EnCodec codebooks predicted (8 = 6 kbps; the built-in run's stand-in has 9)
    num_kmeans_streams: int = 0  # > 0 after self-training
    vocab_size: int = 1024  # codebook size (and k of the k-means streams)
    mask_prop: float = 0.5
    mask_gap: int = 15
    masked_loss_weight: float = 0.9
    codec_stream_weights: tuple = QUANTIZER_WEIGHTS
    mel_mean: float = -6.12
    mel_std: float = 4.82
    chunk_seconds: float = 4.0  # training crop length; HEAR embeds long audio in chunks of this size
    codec_weights: str = "pretrained"  # the EnCodec of the targets and ec front end: "pretrained", "offline" or "none"

    @property
    def num_streams(self) -> int:
        return self.num_codec_streams + self.num_kmeans_streams

    def to_dict(self) -> dict:
        d = asdict(self)
        d["codec_stream_weights"] = list(self.codec_stream_weights)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "EncodecMAEConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown EnCodecMAE config keys: {sorted(unknown)}")
        d = dict(d)
        if "codec_stream_weights" in d:
            d["codec_stream_weights"] = tuple(d["codec_stream_weights"])
        return cls(**d)


# Named presets: the paper's sizes, "mini" for the built-in CPU run (training.pretrain without --data)
# and "tiny" for tests and smoke runs.
PRESETS = {
    "tiny": dict(dim=64, num_layers=2, num_heads=4, ff_dim=256, decoder_layers=1, decoder_heads=4,
                 decoder_ff_dim=256),
    "mini": dict(dim=128, num_layers=2, num_heads=4, ff_dim=512, decoder_layers=1, decoder_heads=4,
                 decoder_ff_dim=512),
    "small": dict(dim=768, num_layers=5, num_heads=12, ff_dim=4096),
    "base": dict(dim=768, num_layers=10, num_heads=12, ff_dim=4096),
    # The official large recipe only raises MODEL_DIM: 12 heads of 1024 // 12 = 85 channels.
    "large": dict(dim=1024, num_layers=20, num_heads=12, ff_dim=4096),
}


def preset(name: str, **overrides) -> EncodecMAEConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown EnCodecMAE preset {name!r}; choose one of {sorted(PRESETS)}")
    return EncodecMAEConfig(**{**PRESETS[name], **overrides})


class MelFrontEnd(nn.Module):
    """wav [B, S] -> normalised 256-bin Kaldi fbank [B, T, 256], T = 1 + (S - window) // hop."""

    hop = fbank.FRAME_SHIFT
    window = fbank.FRAME_LENGTH
    min_samples = window  # snip_edges: only whole windows make frames
    input_dim = 256

    def __init__(self, mean: float, std: float):
        super().__init__()
        self.fbank = fbank.KaldiFbank(frame_length=self.window, frame_shift=self.hop)
        self.mean, self.std = mean, std

    @classmethod
    def num_frames(cls, num_samples: int) -> int:
        return fbank.num_fbank_frames(num_samples, cls.window, cls.hop)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        with _full_precision(wav):  # log-mel of a power spectrum needs fp32
            return (self.fbank(wav.float()) - self.mean) / self.std


class CodecFrontEnd(nn.Module):
    """wav [B, S] -> frozen EnCodec encoder features [B, T, 128], T = ceil(S / 320)."""

    hop = codec_lib.HOP_LENGTH
    window = codec_lib.HOP_LENGTH
    min_samples = 1  # EnCodec pads the last hop
    input_dim = codec_lib.FEATURE_DIM

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.encoder.requires_grad_(False)

    def train(self, mode: bool = True):  # frozen: its LSTM/conv never switch to training behaviour
        return super().train(False)

    @staticmethod
    def num_frames(num_samples: int) -> int:
        return codec_lib.num_frames(num_samples)

    @torch.no_grad()
    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        with _full_precision(wav):  # frozen conv + LSTM: bf16 gains nothing and is ~10x slower on CPU
            return codec_lib.run_encoder(self.encoder, wav.float())


FRONT_ENDS = {"mel256": MelFrontEnd, "ec": CodecFrontEnd}


def num_frames(front_end: str, num_samples: int) -> int:
    """Frames the front end ("mel256" or "ec") makes of ``num_samples`` at 24 kHz: the one framing
    rule, used by :meth:`EncodecMAE.num_frames` (the HEAR API) and by training's masks and targets."""
    return FRONT_ENDS[front_end].num_frames(num_samples)


def _full_precision(x: torch.Tensor):
    """Switch off autocast (bf16 runs) for the front ends."""
    return torch.autocast(device_type=x.device.type, enabled=False)


class EncodecMAE(nn.Module):
    family = "encodecmae"
    sample_rate = codec_lib.SAMPLE_RATE

    def __init__(self, config: EncodecMAEConfig, codec_encoder: nn.Module | None = None):
        """``codec_encoder`` is the EnCodec encoder for the "ec" front end (a fresh untrained one if None)."""
        super().__init__()
        self.config = config
        d = config.dim
        if config.front_end == "mel256":
            self.front_end = MelFrontEnd(config.mel_mean, config.mel_std)
        elif config.front_end == "ec":
            self.front_end = CodecFrontEnd(codec_encoder if codec_encoder is not None else codec_lib.build_encoder())
        else:
            raise ValueError(f"front_end must be 'mel256' or 'ec', got {config.front_end!r}")
        self.input_proj = nn.Linear(self.front_end.input_dim, d)
        self.position = ScaledSinusoidalPosition(d)
        self.encoder = ResiDualTransformer(d, config.num_layers, config.num_heads, config.ff_dim)
        self.decoder_proj = nn.Linear(d, d)
        self.decoder_position = ScaledSinusoidalPosition(d)
        self.decoder = ResiDualTransformer(d, config.decoder_layers, config.decoder_heads, config.decoder_ff_dim)
        self.head = nn.Linear(d, config.num_streams * config.vocab_size)
        self.reset_parameters()

    def reset_parameters(self):
        """Xavier-uniform linear weights, zero biases, unit LayerNorms (as the official init)."""
        trainable = [self.input_proj, self.encoder, self.decoder_proj, self.decoder, self.head]
        for module in (m for part in trainable for m in part.modules()):
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    # ---- framing (used by the HEAR wrapper and by training) ----
    @property
    def frame_hop(self) -> int:
        """Samples at 24 kHz between frames (318 for mel256, 320 for ec)."""
        return self.front_end.hop

    @property
    def frame_window(self) -> int:
        """Samples at 24 kHz that one frame covers: frame k is [k * hop, k * hop + window) (637 / 320)."""
        return self.front_end.window

    def num_frames(self, num_samples: int) -> int:
        return num_frames(self.config.front_end, num_samples)

    @property
    def min_samples(self) -> int:
        return self.front_end.min_samples

    @property
    def embedding_dim(self) -> int:
        return self.config.dim

    @property
    def num_embedding_layers(self) -> int:
        return self.config.num_layers

    @property
    def chunk_samples(self) -> int:
        return int(round(self.config.chunk_seconds * self.sample_rate))

    # ---- forward paths ----
    def input_features(self, wav: torch.Tensor) -> torch.Tensor:
        """Front-end features before the projection: [B, S] -> [B, T, 256 or 128]."""
        return self.front_end(wav)

    def embed_layers(self, wav: torch.Tensor, padding_mask: torch.Tensor | None = None,
                     num_layers: int | None = None) -> list:
        """Per-layer activations for embeddings, no masking.

        wav [B, S] at 24 kHz; padding_mask [B, T] bool (True = padding frame); num_layers: run
        only the first this many encoder layers (default: all), e.g. ``layer + 1`` for one layer.
        Returns num_layers tensors [B, T, D]: the x0 stream of each layer and, when the whole
        stack runs, for the last layer the final ResiDual combination ``x0_L + final_norm(x1_L)``
        (the official ``extract_features`` convention).
        """
        num_layers = self.config.num_layers if num_layers is None else num_layers
        if not 1 <= num_layers <= self.config.num_layers:
            raise ValueError(f"num_layers must be in [1, {self.config.num_layers}], got {num_layers}")
        x = self.position(self.input_proj(self.input_features(wav)))
        layers, x1 = self.encoder.streams(x, padding_mask, num_layers)
        if num_layers == self.config.num_layers:
            layers[-1] = layers[-1] + self.encoder.final_norm(x1)
        return layers

    def last_layer_x0(self, features: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The last encoder layer's x0 stream, before the final ResiDual combination: [B, T, D].

        features [B, T, F] from :meth:`input_features`; padding_mask [B, T] bool (True = padding
        frame). Self-training's k-means features and targets (training/encodecmae/self_train.py)."""
        x = self.position(self.input_proj(features))
        _, streams, _ = self.encoder(x, padding_mask, return_layers=True)
        return streams[-1]

    def forward(self, wav: torch.Tensor, mask: torch.Tensor | None = None,
                padding_mask: torch.Tensor | None = None, features: torch.Tensor | None = None,
                max_visible: int | None = None) -> dict:
        """Masked-autoencoder forward.

        wav [B, S] at 24 kHz (or precomputed front-end ``features`` [B, T, F]);
        mask [B, T] bool, True = masked (hidden from the encoder), None = nothing masked;
        padding_mask [B, T] bool, True = frame beyond the clip.
        max_visible: the largest number of visible (unmasked, unpadded) frames in the batch, if the
        caller knows it on the host (the training collate does); otherwise it is read back from
        the device, one synchronisation per call.
        Returns dict with ``logits`` [B, T, streams, vocab], ``encoder_out`` [B, T_visible, D],
        ``visible_padding_mask`` [B, T_visible], ``decoder_in`` [B, T, D], ``decoder_out`` [B, T, D].
        """
        if features is None:
            features = self.input_features(wav)
        tokens = self.position(self.input_proj(features))  # positions are added before masking
        b, t, d = tokens.shape
        if padding_mask is None:
            padding_mask = torch.zeros(b, t, dtype=torch.bool, device=tokens.device)
        hidden = padding_mask if mask is None else (mask | padding_mask)
        # Stable sort puts visible frames first, in time order; rows are padded to the longest.
        order = torch.argsort(hidden.to(torch.int8), dim=1, stable=True)
        n_visible = (~hidden).sum(dim=1)
        if max_visible is None:
            t_visible = int(n_visible.max())
        else:
            t_visible = int(max_visible)
            # Too small would silently drop visible frames. Checking costs a device read-back, the
            # very thing max_visible avoids, so only host tensors are checked (where it is free).
            if tokens.device.type == "cpu" and int(n_visible.max()) > t_visible:
                raise ValueError(f"max_visible={t_visible} but a clip has {int(n_visible.max())} visible frames")
        order = order[:, :t_visible]
        visible_padding_mask = torch.arange(t_visible, device=tokens.device)[None, :] >= n_visible[:, None]
        visible = torch.gather(tokens, 1, order.unsqueeze(-1).expand(-1, -1, d))
        encoder_out = self.encoder(visible, visible_padding_mask)
        projected = self.decoder_proj(encoder_out).masked_fill(visible_padding_mask.unsqueeze(-1), 0.0)
        # Scatter back; masked and padding slots stay exactly zero (there is no mask token).
        decoder_in = tokens.new_zeros(b, t, d).scatter_add(1, order.unsqueeze(-1).expand(-1, -1, d), projected)
        decoder_out = self.decoder(self.decoder_position(decoder_in), padding_mask)
        logits = self.head(decoder_out).view(b, t, self.config.num_streams, self.config.vocab_size)
        return dict(logits=logits, encoder_out=encoder_out, visible_padding_mask=visible_padding_mask,
                    decoder_in=decoder_in, decoder_out=decoder_out)


def new_model(config: EncodecMAEConfig, codec_encoder: nn.Module | None = None) -> EncodecMAE:
    """A freshly initialised EnCodecMAE to train; ``codec_encoder``: the EnCodec encoder of the "ec"
    front end (an untrained one if None)."""
    return EncodecMAE(config, codec_encoder)


def build(config: EncodecMAEConfig | dict) -> EncodecMAE:
    """Rebuild an EnCodecMAE (untrained weights) for ``load_state_dict`` to fill."""
    if isinstance(config, dict):
        config = EncodecMAEConfig.from_dict(config)
    return EncodecMAE(config)
